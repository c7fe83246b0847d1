"""The modem's PCM port as a ``LegAudio`` (Huawei 2nd tty, SIMCom/Quectel audio tty).

The modem sends 8 kHz mono s16le in 320-byte frames every 20 ms; reads may return
partial frames, so bytes go through a ``PcmFifo`` that re-chunks to 20 ms. Frames
are exchanged only while the call's audio is enabled (after ``^DDSETEX=2``,
``+CPCMREG=1`` ...); otherwise received bytes are discarded and nothing is written.
Writes never block: when the port is congested (uplink not consumed, a known SIM7600
fault) frames are dropped and counted.
"""
from __future__ import annotations

import asyncio
import logging

from typing import Callable

from drivers.at.errors import PortLost
from drivers.serial_port import SerialLink
from media.dtmf import DtmfDetector
from media.frames import FRAME_BYTES, PcmFifo

log = logging.getLogger(__name__)

AUDIO_JITTER_MS = 200  # at most 10 frames buffered towards the bridge; older audio is dropped


class ModemAudio:
    def __init__(self) -> None:
        self._link: SerialLink | None = None
        self._fifo = PcmFifo(max_ms=AUDIO_JITTER_MS)
        self.enabled = False
        self.frames_in = 0
        self.frames_out = 0
        self.dropped_out = 0
        self._warned = False
        self.arrived = asyncio.Event()  # set whenever call audio arrives (for owners that wait, not poll)
        self._detector: DtmfDetector | None = None
        self._on_digit: Callable[[str], None] | None = None

    def detect_dtmf(self, on_digit: Callable[[str], None]) -> None:
        """Run the in-band DTMF detector on received call audio (modems without a DTMF URC)."""
        self._detector, self._on_digit = DtmfDetector(), on_digit

    def attach(self, link: SerialLink | None) -> None:
        self._link = link

    def on_data(self, data: bytes) -> None:
        if self.enabled:
            self._fifo.push(data)
            self.arrived.set()
            if self._detector is not None and self._on_digit is not None:
                for digit in self._detector.feed(data):
                    self._on_digit(digit)

    def enable(self) -> None:
        self._fifo = PcmFifo(max_ms=AUDIO_JITTER_MS)
        if self._detector is not None:
            self._detector = DtmfDetector()
        self.enabled = True
        self._warned = False

    def disable(self) -> None:
        self.enabled = False
        self._fifo = PcmFifo(max_ms=AUDIO_JITTER_MS)

    # LegAudio
    def read_frame_nowait(self) -> bytes | None:
        if not self.enabled:
            return None
        frame = self._fifo.pop_frame()
        if frame is not None:
            self.frames_in += 1
        return frame

    def write_frame(self, pcm: bytes) -> None:
        if not self.enabled or self._link is None:
            return
        if len(pcm) != FRAME_BYTES or self._link.congested():
            self.dropped_out += 1
            if not self._warned:
                log.warning("modem audio port %s congested; dropping uplink frames", self._link.name)
                self._warned = True
            return
        try:
            self._link.write(pcm)
            self.frames_out += 1
        except PortLost:
            self.dropped_out += 1
