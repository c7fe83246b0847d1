"""One call in progress: its mutable state, its party segments, and what its task needs from the box.

A call is owned by one task (``CallCenter.handle_inbound``). Once answered it runs as a
chain of *segments*: one per party that talks to the caller (agent A, then agent B after
a transfer, or an external number). Each segment becomes its own ``CallRecord``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol

from appliance.call_events import LiveCallSnapshot, LiveState
from appliance.config import BoxConfig, QueueConfig
from appliance.lines import InboundCall, OutboundCall
from appliance.records import CallOutcome, CallRecord
from media.frames import LegAudio

if TYPE_CHECKING:
    from appliance.acd.router import Acd, QueuedCall

log = logging.getLogger(__name__)

DialExternal = Callable[[str], Awaitable[OutboundCall]]


class AgentMediaDirectory(Protocol):
    def media_for(self, agent_id: str) -> LegAudio | None: ...
    async def wait_reconnected(self, agent_id: str, old: LegAudio, timeout: float) -> LegAudio | None: ...


class CallServices(Protocol):
    """What a call's task uses from the box (the ``CallCenter`` implements it)."""

    cfg: BoxConfig
    acd: Acd
    agents: AgentMediaDirectory
    stopping: asyncio.Event
    dial_external: DialExternal | None

    def agent_name(self, agent_id: str) -> str: ...
    def queue_config(self, queue_id: str) -> QueueConfig | None: ...
    def hold_source(self, queue: QueueConfig) -> Any: ...
    def publish(self, event: Any) -> None: ...
    def set_state(self, lc: LiveCall, state: LiveState, cause: str | None = None) -> None: ...
    async def save(self, rec: CallRecord) -> None: ...
    def save_later(self, rec: CallRecord) -> None: ...
    def start_wrapup(self, agent_id: str, rec: CallRecord) -> None: ...


class LiveCall:
    """Mutable state of one call; owned by its task."""

    def __init__(self, call: InboundCall, queue: QueueConfig, menu: str | None = None) -> None:
        self.call = call
        self.queue = queue  # while in a menu: the queue the call goes to if it never chooses
        self.menu = menu  # the IVR menu the caller is in; None once routed to ``queue``
        self.arrived_at = time.time()
        self.state = LiveState.ARRIVING
        self.since = self.arrived_at
        self.agent_id: str | None = None
        self.agent_name: str | None = None
        self.queued: QueuedCall | None = None
        self.dtmf: list[str] = []  # every digit the caller pressed (``add_dtmf``)
        self._dtmf_listeners: list[Callable[[str], None]] = []
        self.recording_path: str | None = None
        self.line_answered = False
        self.answer_failed = False  # the line did not confirm our answer: it was hung up
        self.segment = 1
        self.transfer: str | None = None  # the transfer phase while one is in progress
        self.on_hold = False  # the agent put the caller on hold
        self.conversation: Any = None  # the Conversation once answered; it takes the agents' requests

    def add_dtmf(self, digit: str) -> None:
        """A digit from the caller's line: kept, and passed to whoever listens now (the IVR)."""
        self.dtmf.append(digit)
        for listener in tuple(self._dtmf_listeners):
            try:
                listener(digit)
            except Exception:  # a listener's bug must not reach the line driver
                log.exception("call %s: DTMF listener failed", self.call.call_id)

    def listen_dtmf(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener`` with each digit from now on; returns the unsubscribe callable."""
        self._dtmf_listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._dtmf_listeners:
                self._dtmf_listeners.remove(listener)

        return unsubscribe

    def snapshot(self, cause: str | None = None) -> LiveCallSnapshot:
        c = self.call
        return LiveCallSnapshot(
            call_id=c.call_id,
            line_id=c.line_id,
            line_kind=str(c.kind),
            caller_number=c.caller.number,
            caller_name=c.caller.name,
            queue_id=None if self.menu is not None else self.queue.id,
            state=self.state,
            since=self.since,
            arrived_at=self.arrived_at,
            agent_id=self.agent_id,
            agent_name=self.agent_name,
            hangup_cause=cause,
            recording=self.recording_path is not None,
            segment=self.segment,
            transfer=self.transfer,
            on_hold=self.on_hold,
            keys=callable(getattr(c, "send_dtmf", None)),
            menu=self.menu,
        )


def segment_call_id(parent: str, n: int) -> str:
    return parent if n == 1 else f"{parent}-{n}"


@dataclass(frozen=True, slots=True)
class Segment:
    """One party's part of an answered call."""

    n: int
    call_id: str
    answered_at: float
    queue: str | None
    agent_id: str | None = None  # None: an external number
    agent_name: str | None = None
    number: str | None = None  # the external number, for an external segment
    transferred_from: str | None = None
    enqueued_at: float | None = None  # only when the segment entered a queue other than the previous one
    offers: tuple[str, ...] = ()


def segment_record(base: CallRecord, seg: Segment, *, ended_at: float, cause: str, transfer: str = "",
                   transferred_to: str | None = None, recording_s: float | None = None, dtmf: str = "",
                   hold_s: float | None = None, holds: int = 0) -> CallRecord:
    """The record of one answered segment. Segment 1 keeps the queue wait (ASA counts once)."""
    rec = replace(
        base,
        outcome=CallOutcome.ANSWERED,
        hangup_cause=cause,
        ended_at=ended_at,
        talk_s=max(0.0, ended_at - seg.answered_at),
        recording_s=recording_s,
        dtmf=dtmf,
        hold_s=hold_s,
        holds=holds,
        transfer=transfer,
        transferred_to=transferred_to,
        parent_call_id=base.call_id,
    )
    if seg.n == 1:
        return replace(rec, answered_at=seg.answered_at, agent_id=seg.agent_id, agent_name=seg.agent_name)
    return replace(
        rec,
        call_id=seg.call_id,
        segment=seg.n,
        queue=seg.queue,
        enqueued_at=seg.enqueued_at,
        offered_at=None,
        wait_s=(seg.answered_at - seg.enqueued_at) if seg.enqueued_at is not None else None,
        offers=seg.offers,
        answered_at=seg.answered_at,
        agent_id=seg.agent_id,
        agent_name=seg.agent_name,
        to_number=seg.number if seg.agent_id is None else base.to_number,
        transferred_from=seg.transferred_from,
    )


def unanswered_segment_record(base: CallRecord, n: int, call_id: str, queue: str | None, enqueued_at: float | None,
                              transferred_from: str | None, offers: tuple[str, ...], ended_at: float,
                              cause: str, outcome: CallOutcome) -> CallRecord:
    """The caller left (or the box gave up) while a transfer was still looking for a party."""
    return replace(
        base,
        call_id=call_id, segment=n, parent_call_id=base.call_id, queue=queue, outcome=outcome, hangup_cause=cause,
        enqueued_at=enqueued_at, offered_at=None, answered_at=None, ended_at=ended_at, offers=offers,
        wait_s=(ended_at - enqueued_at) if enqueued_at is not None else None, talk_s=None,
        agent_id=None, agent_name=None, transferred_from=transferred_from, dtmf="",
    )
