"""Inbound calls on an analog line (``appliance.lines.InboundCall``).

One ``AnalogCall`` per ring sequence, made by ``AnalogLine`` when the line state
machine offers the call (with the caller-ID report if one arrived). ``answer()`` and
``hangup()`` run on the line, serialised with every other modem operation; the line
ends the call (``_end``) when the caller gives up, the far end goes or the modem is lost.
Outgoing calls are drivers.voicemodem.outbound.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from appliance.lines import CallerId, CallGone, HangupCause
from drivers.voicemodem.analog_call import AnalogCallBase
from drivers.voicemodem.audio import ModemAudio
from drivers.voicemodem.callerid import CallerIdReport
from media.frames import SAMPLE_RATE

if TYPE_CHECKING:
    from drivers.voicemodem.line import AnalogLine

log = logging.getLogger(__name__)


class AnalogCall(AnalogCallBase):
    """One inbound call on an analog line (implements ``appliance.lines.InboundCall``)."""

    def __init__(self, line: "AnalogLine", report: CallerIdReport | None) -> None:
        super().__init__(line.line_id)
        self.report = report  # full caller-ID detail (date, time, trust) for the call record
        self.caller = report.to_caller_id() if report is not None else CallerId(None, None, "unavailable")
        self.called: str | None = None
        self._line = line

    async def progress(self) -> None:
        """Analog lines have no early media: the caller keeps hearing the exchange's ringing."""

    async def answer(self) -> None:
        if self.ended:
            raise CallGone(f"{self.call_id} already ended ({self._ended.result()})")
        await self._line._answer(self)

    async def hangup(self, cause: HangupCause) -> None:
        if self.ended:
            return
        await self._line._hangup(self, cause)

    # ---- driver side -------------------------------------------------------------------
    def _end(self, cause: HangupCause) -> None:
        if not self._ended.done():
            self._ended.set_result(cause)
            if isinstance(self.audio, ModemAudio):
                self.audio.close()
                st = self.audio.statistics()
                log.info("%s: call %s ended (%s); received %.1f s (%d bytes dropped), sent %d frames (%d dropped)",
                         self.line_id, self.call_id, cause, st.rx_received_bytes / (2 * SAMPLE_RATE), st.rx_dropped_bytes,
                         st.tx_frames, st.tx_dropped_frames)
            else:
                log.info("%s: call %s ended (%s)", self.line_id, self.call_id, cause)
            self._line._call_finished()
