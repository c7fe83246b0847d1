"""What every call flow (inbound queue calls, agents' outbound calls) needs around the audio:
the customer behind a number with their latest contacts, and the call's stereo recording.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from appliance.acd.events import HistoryItem
from appliance.numbers import to_e164
from media.bridge import Bridge
from media.recorder import StereoWavRecorder

log = logging.getLogger(__name__)

CUSTOMER_LOOKUP_TIMEOUT_S = 2.0  # index lookups are in memory; a slow disk must not hold the call
BRIDGE_STOP_TIMEOUT_S = 10.0  # finalising the recorder (flush + fsync + header) must end by then
HANGUP_TIMEOUT_S = 5.0  # a line that cannot confirm a hang-up within this is left to its driver
HISTORY_ITEMS = 5  # earlier contacts shown beside an offer


class Hangable(Protocol):
    call_id: str
    line_id: str

    async def hangup(self, cause: Any) -> None: ...


class CallStore(Protocol):
    async def save_call(self, rec: Any) -> str: ...
    async def customer_by_phone(self, number: str) -> Any: ...
    async def upsert_customer(self, customer_id: str | None = None, *, name: str | None = None, phones: tuple[str, ...] = ()) -> Any: ...
    async def interactions_for_customer(self, customer_id: str, limit: int | None = None) -> list[Any]: ...
    def recordings_dir(self) -> Path: ...
    def recordings_allowed(self) -> bool: ...
    def recording_sink_factory(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class CustomerContext:
    customer_id: str | None = None
    name: str | None = None
    history: tuple[HistoryItem, ...] = ()


async def customer_context(store: CallStore, number: str | None, country: str, name: str | None,
                           call_id: str) -> CustomerContext:
    """The customer with this number (created on first contact) and their latest contacts."""
    e164 = to_e164(number, country)
    if e164 is None:
        return CustomerContext()
    try:
        async with asyncio.timeout(CUSTOMER_LOOKUP_TIMEOUT_S):
            customer = await store.customer_by_phone(e164)
            if customer is None:
                customer = await store.upsert_customer(name=name, phones=(e164,))
                return CustomerContext(customer.customer_id, customer.name)
            items = await store.interactions_for_customer(customer.customer_id, limit=HISTORY_ITEMS)
    except TimeoutError:
        log.warning("call %s: customer lookup took over %.0fs; going on without history", call_id, CUSTOMER_LOOKUP_TIMEOUT_S)
        return CustomerContext()
    return CustomerContext(customer.customer_id, customer.name, tuple(HistoryItem(i.kind, i.at, i.summary) for i in items))


def start_recorder(enabled: bool, store: CallStore, call_id: str, at: float) -> tuple[StereoWavRecorder | None, str | None]:
    """A stereo recorder for the call (left customer, right agent) and its path relative to the
    recordings folder; (None, None) when recording is off or refused (the call goes on)."""
    if not enabled:
        return None, None
    if not store.recordings_allowed():
        log.warning("call %s is not recorded: recordings are refused (disk nearly full); the call goes on", call_id)
        return None, None
    rel = f"{time.strftime('%Y/%m/%d', time.localtime(at))}/{call_id}.wav"
    path = store.recordings_dir() / rel
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return StereoWavRecorder(path, sink_factory=store.recording_sink_factory()), rel
    except OSError as exc:
        log.warning("call %s is not recorded: cannot create %s (%s)", call_id, path, exc.strerror or exc)
        return None, None


async def stop_bridge(bridge: Bridge) -> float | None:
    """Stop the bridge; the seconds its recorder wrote (None without one, or when it hung)."""
    try:
        async with asyncio.timeout(BRIDGE_STOP_TIMEOUT_S):
            stats = await bridge.stop()
    except TimeoutError:
        log.warning("recording did not finalise within %.0fs; it will be repaired at next start", BRIDGE_STOP_TIMEOUT_S)
        return None
    return stats.recorder.seconds_written if stats.recorder is not None else None


class AnswerFailed(Exception):
    """The line did not confirm our answer in time (a SIP caller that never acknowledges our
    provisional or final response, a modem that does not go off-hook). The line is hung up."""


async def hang_up(call: Hangable, cause: Any) -> None:
    """Hang up a line call (inbound or outbound), waiting a bounded time for the line to confirm."""
    try:
        async with asyncio.timeout(HANGUP_TIMEOUT_S):
            await call.hangup(cause)
    except TimeoutError:
        log.warning("line %s did not confirm hang-up of call %s within %.0fs", call.line_id, call.call_id, HANGUP_TIMEOUT_S)


async def save_record(store: CallStore, rec: Any) -> None:
    """Store a call record; a storage failure is logged, never raised into the call flow."""
    try:
        await store.save_call(rec)
    except Exception:
        log.exception("could not store the record of call %s", rec.call_id)
