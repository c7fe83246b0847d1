"""Outgoing calls on an analog line (``appliance.lines.OutboundCall``).

What a V.253 voice modem can tell us about a call we place, and what we make of it:

* ``ATD<number>;`` in voice mode (``+FCLASS=8``) dials. The modem listens to the line
  and ends the command with a call-progress result: ``VCON`` (or ``OK``) means the call
  is up for voice; ``BUSY``, ``NO ANSWER``, ``NO CARRIER``, ``NO DIALTONE`` /
  ``NO DIAL TONE`` mean it is not (-> ``DialFailure`` BUSY, NO_ANSWER, UNREACHABLE,
  LINE_DOWN: without dial tone the line itself cannot dial).
* There is no reliable answer supervision on an analog loop. Chipsets that time the
  ringback (Conexant ``+VRA``/``+VRN``) return ``VCON`` when the ringback stops, which is
  usually the answer; other chipsets return ``VCON`` at once, while the far end still
  rings. Either way ``VCON`` is all there is: **the call counts as answered at VCON**,
  ``wait_answered()`` returns and the voice stream (``+VTR``, else ``+VRX``) starts. On
  an "at once" chipset the agent may therefore hear ringback (reported as ``<DLE>r``)
  and, if the callee is busy, the busy tone: ``<DLE>b`` then ends the call as a far-end
  hang-up after the "answer".
* Far-end hang-up during the call is the line state machine's job (drivers.voicemodem
  .state): ``<DLE>b`` busy/reorder, ``<DLE>d`` dial tone, ``<DLE>l`` loop break, or
  silence -> ``HangupCause.FAR_END_HUNG_UP``.
* ``hangup()`` while dialling aborts the ATD (any byte the host sends aborts a dial,
  V.250 6.3.1) and puts the line back on hook: ``DialFailure.CANCELLED``.
* Caller ID presentation is the exchange's business: a withheld call is dialled with
  the line's configured prefix (``withhold_prefix``, e.g. ``141`` UK, ``*67`` US);
  without one the number is presented as usual (logged).
* DTMF to the far end is in-band (analog lines have no other way): the digit's tone
  frames replace the next frames the bridge writes (full duplex only).
* Audio is the same ``ModemAudio`` leg inbound calls use.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from appliance.lines import DialFailed, DialFailure, HangupCause
from drivers.voicemodem.analog_call import AnalogCallBase
from drivers.voicemodem.audio import ModemAudio
from drivers.voicemodem.modem import DialResult
from media.dtmf import DIGITS, dtmf_frames

if TYPE_CHECKING:
    from drivers.voicemodem.line import AnalogLine

log = logging.getLogger(__name__)

DIAL_FAILURES = {
    DialResult.BUSY: DialFailure.BUSY,
    DialResult.NO_ANSWER: DialFailure.NO_ANSWER,
    DialResult.NO_CARRIER: DialFailure.UNREACHABLE,
    DialResult.NO_DIALTONE: DialFailure.LINE_DOWN,  # no dial tone: the line cannot dial at all
    DialResult.ERROR: DialFailure.ERROR,
}


class AnalogOutboundCall(AnalogCallBase):
    def __init__(self, line: "AnalogLine", number: str) -> None:
        super().__init__(line.line_id)
        self.called = number
        self._line = line
        self._answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._answered.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)  # no "never retrieved"
        self.dial_task: asyncio.Task[None] | None = None

    @property
    def answered(self) -> bool:
        return self._answered.done() and self._answered.exception() is None

    # ---- OutboundCall ---------------------------------------------------------------------
    async def wait_answered(self) -> None:
        """Return at VCON (see the module docstring); DialFailed when the dial did not connect."""
        await asyncio.shield(self._answered)

    async def hangup(self, cause: HangupCause) -> None:
        if self.ended:
            return
        await self._line._hangup_outbound(self, cause)

    async def send_dtmf(self, digit: str) -> bool:
        """In-band: False before the answer, after the end, on a half-duplex modem or for a non-digit."""
        audio = self.audio
        if self.ended or not isinstance(audio, ModemAudio) or not audio.full_duplex or not digit \
                or set(digit.upper()) - DIGITS:
            return False
        return audio.insert_frames(dtmf_frames(digit.upper()))

    # ---- driver side ------------------------------------------------------------------------
    def _connected(self, audio: ModemAudio) -> None:
        self.audio = audio
        if not self._answered.done():
            self._answered.set_result(None)

    def _fail(self, failure: DialFailure, detail: str) -> None:
        if not self._answered.done():
            self._answered.set_exception(DialFailed(failure, f"{self.called}: {detail}"))

    def _end(self, cause: HangupCause) -> None:
        if self._ended.done():
            return
        if not self._answered.done():
            failure = {HangupCause.TIMEOUT: DialFailure.NO_ANSWER, HangupCause.LINE_LOST: DialFailure.LINE_DOWN,
                       HangupCause.SHUTDOWN: DialFailure.LINE_DOWN}.get(cause, DialFailure.CANCELLED)
            self._fail(failure, f"ended while dialling ({cause})")
        self._ended.set_result(cause)
        if isinstance(self.audio, ModemAudio):
            self.audio.close()
            st = self.audio.statistics()
            log.info("%s: outgoing call %s to %s ended (%s); received %d bytes, sent %d frames",
                     self.line_id, self.call_id, self.called, cause, st.rx_received_bytes, st.tx_frames)
        else:
            log.info("%s: outgoing call %s to %s ended (%s)", self.line_id, self.call_id, self.called, cause)
        self._line._call_finished()
