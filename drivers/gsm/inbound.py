"""``GsmCall``: one voice call on a modem, implementing ``appliance.lines.InboundCall``
and, for calls we place (``direction == "out"``), ``appliance.lines.OutboundCall``.

The modem session drives it (``_set_state``, ``_finish``); the appliance calls
``answer``/``hangup`` (inbound) or ``wait_answered``/``hangup`` (outbound). An outgoing
call counts as answered when the modem's call state machine reaches ACTIVE: Huawei
``^CONN``, SIMCom ``VOICE CALL: BEGIN`` or ``+CLCC`` stat 0, Quectel ``^DSCI`` state 3,
``+COLP`` in the ATD response, or (generic 3GPP; Quectel firmware that refuses
``AT^DSCI=1``) ``+CLCC`` stat 0 from polling -- never the ``OK`` that ATD returns at once. ``audio`` is the modem's PCM port, the same path inbound
calls use; frames flow once the profile's audio command (``^DDSETEX=2``,
``+CPCMREG=1``, ``+QPCMV``) has run. A generic modem has no PCM port: no frames.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Callable

from appliance.lines import CallerId, CallGone, DialFailed, DialFailure, HangupCause, LineKind
from drivers.at.errors import DriverError
from drivers.gsm.audio import ModemAudio
from drivers.gsm.calls import CallState

if TYPE_CHECKING:
    from drivers.gsm.modem import GsmModem

log = logging.getLogger(__name__)

CONNECT_WAIT_S = 5.0  # after ATA's OK: SIMCom's VOICE CALL: BEGIN follows in ~0.4 s
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class GsmCall:
    kind = LineKind.GSM

    def __init__(self, modem: "GsmModem", caller: CallerId, *, direction: str = "in", called: str | None = None) -> None:
        self.call_id = f"gsm-{uuid.uuid4().hex[:12]}"
        self.line_id = modem.line_id
        self.caller = caller
        self.called = called
        self.direction = direction
        self.audio: ModemAudio = modem.audio
        self.state = CallState.RINGING if direction == "in" else CallState.DIALING
        self.history: list[CallState] = [self.state]
        self.end_detail = ""
        self.duration_s: int | None = None
        self.inband_dtmf = modem.profile.dtmf_urc is None  # Huawei: media/dtmf runs on the received audio
        self._modem = modem
        self._changed = asyncio.Event()
        self._ended: asyncio.Future[HangupCause] = asyncio.get_running_loop().create_future()
        self._dtmf: list[Callable[[str], None]] = []
        self.failure: DialFailed | None = None  # outgoing: why it never got answered

    # ---- driven by the modem session ------------------------------------------------
    def _set_state(self, state: CallState) -> None:
        if state != self.state:
            self.state = state
            self.history.append(state)
            self._changed.set()

    def _finish(self, cause: HangupCause, detail: str, duration_s: int | None,
                failure: DialFailure | None = None) -> None:
        if self._ended.done():
            return
        self.end_detail, self.duration_s = detail, duration_s
        if self.direction == "out" and CallState.ACTIVE not in self.history:
            self.failure = DialFailed(failure or DialFailure.ERROR, f"{self.called}: {detail}")
        self._set_state(CallState.IDLE)
        self._ended.set_result(cause)
        self._changed.set()
        log.info("call %s on %s ended: %s (%s)", self.call_id, self.line_id, cause, detail)

    def deliver_dtmf(self, digit: str) -> None:
        """A DTMF digit from the modem's URC, or from an in-band detector running on ``audio``."""
        for cb in list(self._dtmf):
            try:
                cb(digit)
            except Exception:
                log.exception("DTMF callback failed")

    @property
    def ended(self) -> bool:
        return self._ended.done()

    async def wait_state(self, state: CallState, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while state not in self.history:
                if self.ended and state is not CallState.IDLE:
                    raise CallGone(f"call ended ({self.end_detail}) before reaching {state}")
                self._changed.clear()
                await self._changed.wait()

    # ---- InboundCall -----------------------------------------------------------------
    async def progress(self) -> None:
        """No-op: the mobile network plays ringback to the caller until we answer."""

    async def answer(self) -> None:
        if self.ended:
            raise CallGone(self.end_detail)
        try:
            await self._modem.answer()
        except DriverError as exc:  # the modem vanished under us: the call is gone too
            raise CallGone(f"answer failed: {exc}") from None
        try:
            await self.wait_state(CallState.ACTIVE, CONNECT_WAIT_S)
        except TimeoutError:
            log.warning("call %s: modem answered but never reported the call connected", self.call_id)

    async def hangup(self, cause: HangupCause) -> None:
        if self.ended:
            return
        await self._modem.hangup(cause)

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self._ended)

    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        self._dtmf.append(callback)

    async def send_dtmf(self, digits: str) -> bool:
        """Send DTMF during the call (``AT+VTS`` / Huawei ``AT^DTMF``); False when it cannot be sent now."""
        if self.ended or self.state is not CallState.ACTIVE or not digits or set(digits.upper()) - DTMF_DIGITS:
            return False
        try:
            for d in digits.upper():
                await self._modem.send_dtmf(d)
        except DriverError as exc:
            log.info("call %s: DTMF %r not sent (%s)", self.call_id, digits, exc)
            return False
        return True

    # ---- OutboundCall ----------------------------------------------------------------
    async def wait_answered(self) -> None:
        """Return once the far end answered; DialFailed (busy, no answer ...) if the call ended first.
        The caller bounds this wait and hangs up on its own timeout."""
        while CallState.ACTIVE not in self.history:
            if self.ended:
                raise self.failure or DialFailed(DialFailure.ERROR, f"{self.called}: {self.end_detail}")
            self._changed.clear()
            await self._changed.wait()
