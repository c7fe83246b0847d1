import asyncio
import contextlib

import pytest

from drivers.gsm import modem as modem_mod
from drivers.gsm import setup as setup_mod
from drivers.gsm import sms as sms_mod
from drivers.gsm.modem import GsmModem
from drivers.gsm.profiles import PROFILES
from drivers.sim.gsm import GsmSimulator


class Events:
    """Collects driver events; tests wait on a predicate with a timeout (no sleeps)."""

    def __init__(self) -> None:
        self.items: list[object] = []
        self._changed = asyncio.Event()

    def __call__(self, ev: object) -> None:
        self.items.append(ev)
        self._changed.set()

    def of(self, cls):
        return [e for e in self.items if isinstance(e, cls)]

    async def wait_for(self, cls, count: int = 1, timeout: float = 3.0):
        async with asyncio.timeout(timeout):
            while len(self.of(cls)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(cls)


@pytest.fixture(autouse=True)
def short_delays(monkeypatch):
    """Bring-up/retry delays shortened so tests run fast (the logic is unchanged)."""
    monkeypatch.setattr(setup_mod, "SIM_BUSY_FIRST_S", 0.01)
    monkeypatch.setattr(sms_mod, "SEND_RETRY_DELAY_S", 0.01)
    monkeypatch.setattr(modem_mod, "AUDIO_RETRY_S", 0.01)
    monkeypatch.setattr(modem_mod, "CLCC_POLL_S", 0.05)


@pytest.fixture
async def sims():
    made: list[GsmSimulator] = []

    def make(profile="generic", **kw) -> GsmSimulator:
        sim = GsmSimulator(profile, **kw).start()
        made.append(sim)
        return sim

    yield make
    for sim in made:
        sim.close()


@contextlib.asynccontextmanager
async def attached(sim: GsmSimulator, *, profile=None, echo: bool = False, serve: bool = False, **kw):
    """A GsmModem connected to ``sim`` over real ptys; no bring-up unless the test runs it."""
    events = Events()
    m = GsmModem(profile or sim.profile, emit=events, **kw)
    await m.connect(sim.port, sim.audio_port)
    sim.model.echo = echo
    task = asyncio.create_task(m.serve(), name="test-serve") if serve else None
    try:
        yield m, events
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await m.close()


@pytest.fixture
def attach():
    return attached


@pytest.fixture
def profiles():
    return PROFILES


@pytest.fixture(autouse=True)
async def no_lingering_tasks():
    """Every task a test started (driver, line, simulator) is finished when it ends."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    for t in left:
        # serial_asyncio_fast closes ports in a short background task; give those a moment
        if t.get_coro().__qualname__.startswith("SerialTransport"):
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await t
    left = [t for t in left if not t.done()]
    assert not left, f"lingering tasks: {[t.get_name() for t in left]}"
