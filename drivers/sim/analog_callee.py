"""The far end of a call the host dials through the analog simulator (``ATD<number>;``).

Call progress in the bytes V.253 modems send (modems.md B.1, B.3): after
``answer_after_s`` the dial ends with ``VCON`` (answered) or ``BUSY`` / ``NO ANSWER`` /
``NO CARRIER``. A chipset that returns ``VCON`` at once (``vcon_at_once``) instead
reports what it hears in the voice stream: ``<DLE>r`` ringback while it rings,
``<DLE>b`` for busy/reorder. Once answered the callee's tone is streamed in
``+VRX``/``+VTR``; ``hangup_after_s`` later the exchange plays busy: ``<DLE>b``. Any byte
from the host while the dial is pending aborts it with ``NO CARRIER`` (V.250 6.3.1).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from drivers.sim.callee import Outcome, SimCallee
from media.frames import FRAME_BYTES

if TYPE_CHECKING:
    from drivers.sim.analog import AnalogModemSim

log = logging.getLogger(__name__)

_FAILED = {Outcome.BUSY: "BUSY", Outcome.NO_ANSWER: "NO ANSWER", Outcome.UNREACHABLE: "NO CARRIER"}


class AnalogFarEnd:
    """One dialled call: its timeline task and the audio the callee sends once answered."""

    def __init__(self, sim: "AnalogModemSim", number: str, callee: SimCallee) -> None:
        self.sim = sim
        self.number = number
        self.callee = callee
        self.answered = False
        self.pending = True  # ATD has not had its final result yet
        self._pcm = callee.pcm()
        self.task = sim._spawn(self._timeline(), f"far-end-{number}")

    def frame(self, index: int) -> bytes:
        """The callee's audio for frame ``index`` of the stream: silence until the answer."""
        if not self.answered:
            return bytes(FRAME_BYTES)
        off = (index * FRAME_BYTES) % len(self._pcm)
        return (self._pcm + self._pcm)[off : off + FRAME_BYTES]

    def abort(self) -> None:
        """The host sent something while ATD was pending: the dial is abandoned."""
        self.task.cancel()
        if self.pending:
            self.pending = False
            self.sim.off_hook = False
            self.sim._result("NO CARRIER")

    def stop(self) -> None:
        """On hook: the call is over; nothing more from the far end."""
        self.task.cancel()
        self.pending = False

    def _finish_dial(self, result: str) -> None:
        self.pending = False
        self.sim.off_hook = result == "VCON"
        self.sim._result(result)

    async def _timeline(self) -> None:
        # the far end's behaviour over time, scaled like the rest of the simulator
        c, ts, sim = self.callee, self.sim.time_scale, self.sim
        at_once = sim.vcon_at_once
        if at_once:
            self._finish_dial("VCON")
        await asyncio.sleep(c.alert_after_s * ts)
        if at_once:
            sim.send_event("r")  # ringback heard in the voice stream
        await asyncio.sleep((c.answer_after_s - c.alert_after_s) * ts)
        if c.outcome is not Outcome.ANSWER:
            if at_once:
                sim.send_event("b")  # busy / reorder tone after a VCON that meant nothing
            else:
                self._finish_dial(_FAILED[c.outcome])
            return
        self.answered = True
        if not at_once:
            self._finish_dial("VCON")
        sim._note("sent", f"callee {self.number} answered")
        if c.hangup_after_s is None:
            return
        await asyncio.sleep(c.hangup_after_s * ts)
        self.answered = False
        sim.send_event("b")  # the callee hung up: the exchange plays busy/reorder
