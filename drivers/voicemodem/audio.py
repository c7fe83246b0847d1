"""The analog call's audio leg (``media.frames.LegAudio``).

Received modem samples are converted to 8 kHz s16le on arrival and re-chunked into
20 ms frames by a bounded ``PcmFifo`` (oldest audio dropped beyond ``max_ms``). Frames
the bridge writes are converted to the modem's format, DLE-shielded and written to
the port -- only in full duplex (``+VTR``); a half-duplex (``+VRX``) call counts them
as dropped. Writes are dropped too while the port is congested, so a slow modem can
never make the bridge block or memory grow.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Callable

from drivers.voicemodem.dle import shield
from drivers.voicemodem.formats import SampleConverter
from media.frames import FRAME_BYTES, PcmFifo

RX_BUFFER_MS = 200  # latency bound for received audio; the bridge drains a frame every 20 ms
MAX_INSERTED_FRAMES = 100  # in-band DTMF queued ahead of the bridge's audio: 2 s, about ten digits


class ModemAudio:
    def __init__(
        self,
        converter: SampleConverter,
        *,
        send: Callable[[bytes], None] | None,
        congested: Callable[[], bool] = lambda: False,
        max_ms: int = RX_BUFFER_MS,
    ) -> None:
        self._converter = converter
        self._send = send  # None: half duplex, nothing goes to the line
        self._congested = congested
        self._rx = PcmFifo(max_ms=max_ms)
        self._readable = asyncio.Event()
        self.closed = False
        self.frames_written = 0
        self.frames_dropped = 0
        self._inserted: deque[bytes] = deque()  # frames that replace the bridge's next ones (DTMF)

    @property
    def full_duplex(self) -> bool:
        return self._send is not None

    # ---- modem side ----------------------------------------------------------------
    def push_received(self, pcm: bytes) -> None:
        self._rx.push(pcm)
        if len(self._rx) >= FRAME_BYTES:
            self._readable.set()

    def receive_only(self) -> None:
        """The modem refused full duplex: what the bridge writes is dropped from now on."""
        self._send = None

    def close(self) -> None:
        self.closed = True
        self._send = None
        self._readable.set()

    # ---- LegAudio --------------------------------------------------------------------
    def read_frame_nowait(self) -> bytes | None:
        frame = self._rx.pop_frame()
        if len(self._rx) < FRAME_BYTES and not self.closed:
            self._readable.clear()
        return frame

    async def read_frame(self) -> bytes | None:
        """Wait for the next frame; None once the call's audio has closed and drained."""
        while True:
            frame = self.read_frame_nowait()
            if frame is not None or self.closed:
                return frame
            await self._readable.wait()

    def insert_frames(self, frames: list[bytes]) -> bool:
        """Send ``frames`` in place of the next frames the bridge writes (in-band DTMF).
        False on a half-duplex or closed leg, or when too much is queued already."""
        if self._send is None or len(self._inserted) + len(frames) > MAX_INSERTED_FRAMES:
            return False
        self._inserted.extend(frames)
        return True

    def write_frame(self, pcm: bytes) -> None:
        if self._inserted:
            pcm = self._inserted.popleft()
        send = self._send
        if send is None or self._congested():
            self.frames_dropped += 1
            return
        send(shield(self._converter.from_pcm(pcm)))
        self.frames_written += 1

    def statistics(self) -> "AudioStats":
        return AudioStats(
            rx_received_bytes=self._rx.received_bytes,
            rx_dropped_bytes=self._rx.dropped_bytes,
            rx_depth_bytes=len(self._rx),
            tx_frames=self.frames_written,
            tx_dropped_frames=self.frames_dropped,
        )


@dataclass(frozen=True, slots=True)
class AudioStats:
    rx_received_bytes: int  # PCM received from the modem (after conversion)
    rx_dropped_bytes: int  # dropped because the bridge did not drain in time
    rx_depth_bytes: int
    tx_frames: int  # frames written to the modem
    tx_dropped_frames: int  # half duplex, congestion, or after the call ended


class UnansweredLeg:
    """An analog call's audio before answer(): the line cannot carry early media, so nothing
    is read and writes (ringback, hold music) are dropped. ``answer()`` replaces it."""

    full_duplex = False

    def read_frame_nowait(self) -> bytes | None:
        return None

    def write_frame(self, pcm: bytes) -> None:
        return None
