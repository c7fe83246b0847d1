"""The 20 ms clock that joins a customer leg and an agent leg and feeds the recorder.

Each tick takes at most one frame from each leg (silence when a leg has none), gives
each leg the other side's frame and hands the pair to the recorder (left = customer,
right = agent). Tick ``i`` is due at ``start + i * 20 ms``, computed from the start time,
so timing never drifts. If the loop falls more than ``max_lag_ticks`` behind (a stalled
event loop), the missed ticks are skipped and counted instead of being run in a burst.

Hold: ``hold(source)`` makes the customer hear ``source`` (hold music) instead of the
agent; the agent hears silence; the agent's audio is still read (so its queue does not
grow) but goes nowhere, and the recording's right channel is silent.

Legs can be swapped while running (transfer): ``replace_agent(leg)``.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from media.frames import FRAME_BYTES, FRAME_S, SILENCE, LegAudio
from media.recorder import RecorderStats, StereoWavRecorder
from media.tones import FrameSource

log = logging.getLogger(__name__)

MAX_LAG_TICKS = 5  # 100 ms behind: beyond this, bursting would only add latency; skip ahead
STOP_TIMEOUT_S = 2.0  # the tick task has no blocking work; it ends at its next await


@dataclass(frozen=True, slots=True)
class BridgeStats:
    ticks: int
    skipped_ticks: int  # ticks dropped because the loop fell behind
    late_ticks: int  # ticks run after their deadline (but within max_lag_ticks)
    customer_frames: int  # frames that came from the customer leg
    agent_frames: int
    customer_silence: int  # ticks where the customer leg had nothing (silence used)
    agent_silence: int
    leg_errors: int  # exceptions raised by a leg's read/write (logged once per leg)
    recorder: RecorderStats | None


class NullLeg:
    """A leg with nobody on it: reads nothing, discards writes (e.g. while queued)."""

    def read_frame_nowait(self) -> bytes | None:
        return None

    def write_frame(self, pcm: bytes) -> None:
        return None


class Bridge:
    def __init__(
        self,
        customer: LegAudio,
        agent: LegAudio,
        recorder: StereoWavRecorder | None = None,
        *,
        name: str = "bridge",
        max_lag_ticks: int = MAX_LAG_TICKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._customer = customer
        self._agent = agent
        self._recorder = recorder
        self._hold: FrameSource | None = None
        self._max_lag = max_lag_ticks
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._failed_legs: set[int] = set()
        self._ticks = self._skipped = self._late = 0
        self._cust_frames = self._agent_frames = self._cust_silence = self._agent_silence = 0
        self._leg_errors = 0
        self.started = asyncio.Event()  # set after the first tick has run

    # -- control -----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.name} already started")
        if self._recorder is not None:
            self._recorder.start()
        self._task = asyncio.create_task(self._run(), name=f"bridge:{self.name}")

    async def stop(self, timeout: float = STOP_TIMEOUT_S) -> BridgeStats:
        """Stop the clock, then finalise the recording (bounded by the recorder's own timeout)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.wait({task})
            except TimeoutError:
                log.error("%s: clock task did not stop within %.1f s", self.name, timeout)
        rec_stats = await self._recorder.close() if self._recorder is not None else None
        stats = self.statistics(rec_stats)
        log.info(
            "%s stopped: %d ticks, %d skipped, customer silent %d, agent silent %d",
            self.name, stats.ticks, stats.skipped_ticks, stats.customer_silence, stats.agent_silence,
        )
        return stats

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def replace_customer(self, leg: LegAudio) -> LegAudio:
        old, self._customer = self._customer, leg
        return old

    def replace_agent(self, leg: LegAudio) -> LegAudio:
        """Swap the agent side (transfer); returns the previous leg. Takes effect next tick."""
        old, self._agent = self._agent, leg
        return old

    @property
    def customer(self) -> LegAudio:
        return self._customer

    @property
    def agent(self) -> LegAudio:
        return self._agent

    def hold(self, source: FrameSource) -> None:
        """Customer hears ``source`` instead of the agent until ``unhold()``."""
        self._hold = source

    def unhold(self) -> None:
        self._hold = None

    @property
    def on_hold(self) -> bool:
        return self._hold is not None

    def statistics(self, recorder: RecorderStats | None = None) -> BridgeStats:
        if recorder is None and self._recorder is not None:
            recorder = self._recorder.statistics()
        return BridgeStats(
            ticks=self._ticks, skipped_ticks=self._skipped, late_ticks=self._late,
            customer_frames=self._cust_frames, agent_frames=self._agent_frames,
            customer_silence=self._cust_silence, agent_silence=self._agent_silence,
            leg_errors=self._leg_errors, recorder=recorder,
        )

    # -- the clock ---------------------------------------------------------------------
    async def _run(self) -> None:
        start = self._clock()
        index = 0
        while True:
            now = self._clock()
            due = start + index * FRAME_S
            if now < due:
                await asyncio.sleep(due - now)
            elif now - due > self._max_lag * FRAME_S:
                caught_up = int((now - start) / FRAME_S)
                self._skipped += caught_up - index
                index = caught_up
            elif now - due > FRAME_S:
                self._late += 1
            self.tick()
            index += 1
            if index == 1:
                self.started.set()

    def tick(self) -> None:
        """One 20 ms step (public so tests and a future media worker can drive it)."""
        self._ticks += 1
        from_customer = self._read(self._customer)
        from_agent = self._read(self._agent)
        if from_customer is None:
            self._cust_silence += 1
            from_customer = SILENCE
        else:
            self._cust_frames += 1
        if from_agent is None:
            self._agent_silence += 1
            from_agent = SILENCE
        else:
            self._agent_frames += 1
        if self._hold is not None:
            to_customer, to_agent, recorded_agent = self._hold_frame(), SILENCE, SILENCE
        else:
            to_customer, to_agent, recorded_agent = from_agent, from_customer, from_agent
        self._write(self._agent, to_agent)
        self._write(self._customer, to_customer)
        if self._recorder is not None:
            self._recorder.write(from_customer, recorded_agent)

    def _hold_frame(self) -> bytes:
        assert self._hold is not None
        try:
            frame = self._hold.next_frame()
        except Exception:
            log.exception("%s: hold source failed; playing silence", self.name)
            self._hold = _SILENT_SOURCE
            return SILENCE
        return frame if len(frame) == FRAME_BYTES else SILENCE

    def _read(self, leg: LegAudio) -> bytes | None:
        try:
            frame = leg.read_frame_nowait()
        except Exception:
            self._leg_failed(leg, "read")
            return None
        if frame is not None and len(frame) != FRAME_BYTES:
            frame = frame[:FRAME_BYTES].ljust(FRAME_BYTES, b"\x00")
        return frame

    def _write(self, leg: LegAudio, frame: bytes) -> None:
        try:
            leg.write_frame(frame)
        except Exception:
            self._leg_failed(leg, "write")

    def _leg_failed(self, leg: LegAudio, op: str) -> None:
        self._leg_errors += 1
        if id(leg) not in self._failed_legs:  # log once per leg, keep the call up
            self._failed_legs.add(id(leg))
            log.exception("%s: %s on leg %r failed; using silence", self.name, op, leg)


class _Silent:
    def next_frame(self) -> bytes:
        return SILENCE


_SILENT_SOURCE = _Silent()
