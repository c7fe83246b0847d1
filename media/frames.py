"""The one internal audio format: 8 kHz mono signed 16-bit little-endian PCM, 20 ms frames.

Every line (SIP G.711, GSM modem PCM, analog voice modem) converts to and from this
format at its edge, and every WebRTC leg resamples to and from it through PyAV.
"""
from __future__ import annotations

from typing import Protocol

SAMPLE_RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 160
FRAME_BYTES = FRAME_SAMPLES * 2  # 320
FRAME_S = FRAME_MS / 1000
SILENCE = bytes(FRAME_BYTES)


class LegAudio(Protocol):
    """The audio side of one call leg, seen by the bridge.

    The bridge runs a 20 ms clock; on every tick it takes at most one frame from each
    leg (``read_frame_nowait``) and gives each leg the other side's frame
    (``write_frame``). Neither call blocks.
    """

    def read_frame_nowait(self) -> bytes | None:
        """One 320-byte frame received from this leg's peer, or None when none is buffered."""

    def write_frame(self, pcm: bytes) -> None:
        """Send one 320-byte frame towards this leg's peer. Never blocks; drops when congested."""


class PcmFifo:
    """A bounded byte FIFO that re-chunks arbitrary PCM into 20 ms frames.

    Peers send packets of any duration (SIPp's pcap uses 30 ms); the bridge wants
    20 ms. When the FIFO holds more than ``max_ms`` the oldest audio is dropped, so
    latency cannot grow without bound.
    """

    def __init__(self, max_ms: int = 200) -> None:
        self._buf = bytearray()
        self._max = SAMPLE_RATE * 2 * max_ms // 1000
        self.dropped_bytes = 0
        self.received_bytes = 0

    def push(self, pcm: bytes) -> None:
        self.received_bytes += len(pcm)
        self._buf += pcm
        excess = len(self._buf) - self._max
        if excess > 0:
            excess += excess % 2
            del self._buf[:excess]
            self.dropped_bytes += excess

    def pop_frame(self) -> bytes | None:
        if len(self._buf) < FRAME_BYTES:
            return None
        frame = bytes(self._buf[:FRAME_BYTES])
        del self._buf[:FRAME_BYTES]
        return frame

    def __len__(self) -> int:
        return len(self._buf)
