"""Bridge: frames cross, the recorder gets aligned pairs, hold, leg swap, clock behaviour."""
from __future__ import annotations

import asyncio
import collections
import errno
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from media.bridge import Bridge, NullLeg
from media.frames import FRAME_BYTES, SILENCE
from media.recorder import FileSink, StereoWavRecorder
from media.tones import SequenceSource

WAIT_S = 5.0  # generous bound for a few dozen 20 ms ticks on a loaded 2-core box


def frame(n: int) -> bytes:
    """A recognisable frame: every sample equals ``n``."""
    return np.full(160, n, dtype="<i2").tobytes()


class FakeLeg:
    """In-memory LegAudio: plays a list of frames, records what it is sent."""

    def __init__(self, frames: list[bytes] = (), *, notify_after: int = 0) -> None:
        self.inbox = collections.deque(frames)
        self.written: list[bytes] = []
        self.notify_after = notify_after
        self.reached = asyncio.Event()

    def read_frame_nowait(self) -> bytes | None:
        return self.inbox.popleft() if self.inbox else None

    def write_frame(self, pcm: bytes) -> None:
        self.written.append(pcm)
        if self.notify_after and len(self.written) >= self.notify_after:
            self.reached.set()


class BrokenLeg(FakeLeg):
    def read_frame_nowait(self) -> bytes | None:
        raise RuntimeError("driver bug")


def wav_channels(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return data[0::2], data[1::2]


async def test_frames_cross_and_recorder_gets_aligned_pairs(tmp_path: Path) -> None:
    customer = FakeLeg([frame(1), frame(2), frame(3)])
    agent = FakeLeg([frame(11), frame(12)])
    rec = StereoWavRecorder(tmp_path / "b.wav")
    bridge = Bridge(customer, agent, rec)
    rec.start()  # tick() driven by hand: no clock task
    for _ in range(4):
        bridge.tick()
    assert agent.written == [frame(1), frame(2), frame(3), SILENCE]
    assert customer.written == [frame(11), frame(12), SILENCE, SILENCE]
    stats = await bridge.stop()
    assert (stats.ticks, stats.customer_frames, stats.agent_frames) == (4, 3, 2)
    assert (stats.customer_silence, stats.agent_silence) == (1, 2)
    assert stats.recorder is not None and stats.recorder.frames_written == 4
    left, right = wav_channels(tmp_path / "b.wav")
    assert list(left[::160]) == [1, 2, 3, 0]
    assert list(right[::160]) == [11, 12, 0, 0]


async def test_hold_plays_source_to_customer_and_silence_to_agent(tmp_path: Path) -> None:
    customer = FakeLeg([frame(1), frame(2), frame(3)])
    agent = FakeLeg([frame(11), frame(12), frame(13)])
    rec = StereoWavRecorder(tmp_path / "h.wav")
    rec.start()
    bridge = Bridge(customer, agent, rec)
    bridge.tick()
    bridge.hold(SequenceSource([frame(99)], loop=True))
    assert bridge.on_hold
    bridge.tick()
    bridge.unhold()
    bridge.tick()
    assert customer.written == [frame(11), frame(99), frame(13)]
    assert agent.written == [frame(1), SILENCE, frame(3)]
    await bridge.stop()
    left, right = wav_channels(tmp_path / "h.wav")
    assert list(left[::160]) == [1, 2, 3]
    assert list(right[::160]) == [11, 0, 13]  # the agent's audio while on hold is not recorded


async def test_replace_agent_takes_effect_next_tick() -> None:
    customer = FakeLeg([frame(1), frame(2)])
    first, second = FakeLeg([frame(11), frame(12)]), FakeLeg([frame(21)])
    bridge = Bridge(customer, first)
    bridge.tick()
    assert bridge.replace_agent(second) is first
    bridge.tick()
    assert first.written == [frame(1)] and second.written == [frame(2)]
    assert customer.written == [frame(11), frame(21)]
    assert first.inbox == collections.deque([frame(12)])  # the old leg is no longer read
    assert bridge.agent is second


async def test_broken_leg_is_contained_and_logged_once(caplog) -> None:
    customer, agent = BrokenLeg(), FakeLeg([frame(5)] * 3)
    bridge = Bridge(customer, agent)
    for _ in range(3):
        bridge.tick()
    assert agent.written == [SILENCE] * 3
    assert customer.written == [frame(5)] * 3
    assert bridge.statistics().leg_errors == 3
    assert len([r for r in caplog.records if "failed; using silence" in r.getMessage()]) == 1


async def test_wrong_length_frames_are_fitted() -> None:
    customer, agent = FakeLeg([b"\x01\x00" * 10, b"\x02\x00" * 400]), FakeLeg()
    bridge = Bridge(customer, agent)
    bridge.tick()
    bridge.tick()
    assert [len(f) for f in agent.written] == [FRAME_BYTES, FRAME_BYTES]


class FullDiskSink(FileSink):
    def write(self, data: bytes) -> None:
        if len(data) > 44:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(data)


async def test_disk_full_recorder_never_disturbs_the_call(tmp_path: Path) -> None:
    customer = FakeLeg([frame(i) for i in range(60)], notify_after=60)
    agent = FakeLeg([frame(100 + i) for i in range(60)], notify_after=60)
    rec = StereoWavRecorder(tmp_path / "full.wav", sink_factory=FullDiskSink)
    bridge = Bridge(customer, agent, rec)
    bridge.start()
    async with asyncio.timeout(WAIT_S):
        await agent.reached.wait()
    stats = await bridge.stop()
    assert agent.written[:60] == [frame(i) for i in range(60)]
    assert customer.written[:60] == [frame(100 + i) for i in range(60)]
    assert stats.recorder is not None and stats.recorder.failed is not None
    assert stats.leg_errors == 0


async def test_real_clock_runs_at_50_ticks_per_second() -> None:
    customer, agent = FakeLeg(notify_after=50), FakeLeg()
    bridge = Bridge(customer, agent)
    t0 = time.monotonic()
    bridge.start()
    async with asyncio.timeout(WAIT_S):
        await customer.reached.wait()
    elapsed = time.monotonic() - t0
    stats = await bridge.stop()
    # 50 ticks take 0.98 s (tick 0 is immediate); never faster than the clock allows
    assert elapsed >= 0.97
    assert stats.ticks + stats.skipped_ticks <= elapsed / 0.02 + 2
    assert not bridge.running


async def test_falling_behind_skips_ahead_instead_of_bursting() -> None:
    offset = 0.0

    def clock() -> float:
        return time.monotonic() + offset

    class JumpLeg(FakeLeg):
        def write_frame(self, pcm: bytes) -> None:
            nonlocal offset
            super().write_frame(pcm)
            if len(self.written) == 3:
                offset += 1.0  # the loop "stalled" for a second after tick 3

    customer, agent = JumpLeg(notify_after=10), FakeLeg()
    bridge = Bridge(customer, agent, clock=clock, max_lag_ticks=5)
    t0 = time.monotonic()
    bridge.start()
    async with asyncio.timeout(WAIT_S):
        await customer.reached.wait()
    elapsed = time.monotonic() - t0
    stats = await bridge.stop()
    assert 45 <= stats.skipped_ticks <= 60  # the 1 s jump is 50 ticks; a loaded box may add a few
    # no burst: the 10 frames still took ~8 real ticks (~0.16 s)
    assert elapsed >= 0.12


async def test_null_leg_and_stop_is_idempotent() -> None:
    customer = FakeLeg([frame(7)])
    bridge = Bridge(customer, NullLeg())
    bridge.hold(SequenceSource([frame(3)], loop=True))
    bridge.tick()
    assert customer.written == [frame(3)]
    await bridge.stop()
    stats = await bridge.stop()
    assert stats.ticks == 1


async def test_start_twice_is_refused() -> None:
    bridge = Bridge(FakeLeg(), FakeLeg())
    bridge.start()
    try:
        with pytest.raises(RuntimeError):
            bridge.start()
    finally:
        await bridge.stop()
