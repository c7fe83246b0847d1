"""Fixtures: the analog simulator on a real pty and an ``AnalogLine`` running against it."""
from __future__ import annotations

import asyncio
import contextlib
import math
import struct

import pytest

from appliance.supervisor import Backoff
from drivers.sim.analog import AnalogModemSim
from drivers.voicemodem.line import AnalogLine
from drivers.voicemodem.modem import ModemSettings

FAST_BACKOFF = Backoff(first_s=0.05, factor=1.5, max_s=0.2, healthy_after_s=60.0)
WAIT_S = 5.0  # every wait in these tests; the pty round trip is milliseconds


class Calls:
    """An IncomingCallHandler that hands calls to the test through a bounded queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=8)

    async def __call__(self, call) -> None:
        await self.queue.put(call)

    async def next(self, timeout: float = WAIT_S):
        async with asyncio.timeout(timeout):
            return await self.queue.get()


@contextlib.asynccontextmanager
async def running_line(sim: AnalogModemSim, calls: Calls, *, settings: ModemSettings = ModemSettings(),
                       profile=None, **kwargs):
    line = AnalogLine(line_id="analog:0", port=lambda: sim.port, handler=calls, settings=settings,
                      profile=profile, backoff=FAST_BACKOFF, **kwargs)
    task = asyncio.create_task(line.run(), name="test-analog-line")
    try:
        async with asyncio.timeout(WAIT_S):
            await line.wait_up()
        yield line
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def sweep_pcm(seconds: float = 1.0, amplitude: float = 0.95) -> bytes:
    """A 300-3000 Hz sweep at 8 kHz s16le, loud enough that 8-bit samples hit 0x10."""
    n = int(8000 * seconds)
    samples = []
    phase = 0.0
    for i in range(n):
        f = 300 + 2700 * i / n
        phase += 2 * math.pi * f / 8000
        samples.append(int(amplitude * 32767 * math.sin(phase)))
    return struct.pack(f"<{n}h", *samples)


@pytest.fixture
async def sim_factory():
    sims = []

    async def make(*args, **kwargs) -> AnalogModemSim:
        sim = await AnalogModemSim(*args, **kwargs).start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        await sim.close()
