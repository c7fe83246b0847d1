"""Helpers for modem driver tests: run a line against a simulator over real ptys, read
call audio with a timeout, and check that audio is the simulated callee's tone."""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import numpy as np

from drivers.gsm.line import GsmConfig, GsmLine
from drivers.sim.gsm import GsmSimulator

WAIT_S = 5.0  # every wait in these helpers; a pty round trip takes milliseconds


def dominant_hz(pcm: bytes) -> float:
    """The strongest frequency in 8 kHz s16le ``pcm`` (Hann window; ~1 Hz per bin for 1 s)."""
    x = np.frombuffer(pcm, "<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum) * 8000 / x.size)


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, "<i2").astype(float)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


async def read_audio(audio, frames: int, timeout: float = WAIT_S) -> bytes:
    """``frames`` 20 ms frames from a LegAudio that only offers ``read_frame_nowait``.

    GSM ``ModemAudio`` has an ``arrived`` event; others are waited on through their own
    ``read_frame``. Never sleeps: every wait is on an event, bounded by ``timeout``."""
    got = bytearray()
    async with asyncio.timeout(timeout):
        while len(got) < frames * 320:
            if hasattr(audio, "read_frame"):
                frame = await audio.read_frame()
                assert frame is not None, "call audio closed early"
            else:
                frame = audio.read_frame_nowait()
                if frame is None:
                    audio.arrived.clear()
                    await audio.arrived.wait()
                    continue
            assert len(frame) == 320
            got += frame
    return bytes(got)


class NoInbound:
    """An IncomingCallHandler for outbound tests: an inbound call here is a test failure."""

    def __init__(self) -> None:
        self.offered: list[object] = []

    async def __call__(self, call) -> None:
        self.offered.append(call)


@contextlib.asynccontextmanager
async def running_gsm_line(sim: GsmSimulator, profile: str | None = None) -> AsyncIterator[GsmLine]:
    """A supervised ``GsmLine`` bound to ``sim`` and brought up (``wait_ready``)."""
    cfg = GsmConfig(port=sim.port, audio_port=sim.audio_port, profile=profile or sim.profile.key)
    line = GsmLine(cfg)
    task = asyncio.create_task(line.run(NoInbound()), name=f"test-gsm-line-{cfg.profile}")
    try:
        await line.wait_ready(timeout=WAIT_S)
        yield line
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
