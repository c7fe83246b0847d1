"""StereoWavRecorder: WAV layout, channel content, crash repair, disk failures, overflow."""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import sys
import textwrap
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from media.frames import FRAME_BYTES, SAMPLE_RATE, SILENCE
from media.recorder import (
    FileSink,
    RecordingError,
    StereoWavRecorder,
    find_open_recordings,
    marker_path,
    repair_wav,
    wav_header,
)
from media.tones import tone
from tests.media.audio_asserts import peak_hz

REPO = Path(__file__).resolve().parents[2]
CRASH_TIMEOUT_S = 20.0  # subprocess start (numpy/av import) + 3 s of audio on a busy box


def read_wav(path: Path) -> tuple[wave._wave_params, np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        data = np.frombuffer(w.readframes(params.nframes), dtype="<i2")
    return params, data[0::2].astype(np.float64), data[1::2].astype(np.float64)


class SignallingSink(FileSink):
    """FileSink that tells the test when it has been created."""

    def __init__(self, path: Path, created: threading.Event) -> None:
        super().__init__(path)
        created.set()


async def test_stereo_wav_left_customer_right_agent(tmp_path: Path) -> None:
    created = threading.Event()
    path = tmp_path / "call.wav"
    rec = StereoWavRecorder(path, sink_factory=lambda p: SignallingSink(p, created))
    rec.start()
    assert await asyncio.to_thread(created.wait, 5.0)
    assert marker_path(path).exists(), "marker must exist while recording"
    assert find_open_recordings(tmp_path) == [path]
    customer, agent = tone(440.0), tone(1000.0)
    for _ in range(100):  # 2 s
        rec.write(customer.next_frame(), agent.next_frame())
    stats = await rec.close()

    assert stats.finished and stats.failed is None
    assert stats.frames_written == 100 and stats.frames_dropped == 0
    assert stats.seconds_written == pytest.approx(2.0)
    assert not marker_path(path).exists()
    assert find_open_recordings(tmp_path) == []
    params, left, right = read_wav(path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, SAMPLE_RATE)
    assert params.nframes == 100 * 160
    assert path.stat().st_size == 44 + 100 * FRAME_BYTES * 2
    assert peak_hz(left) == pytest.approx(440, abs=5)
    assert peak_hz(right) == pytest.approx(1000, abs=5)
    # exact sample alignment: the first left frame is the first customer frame
    assert left[:160].astype("<i2").tobytes() == tone(440.0).next_frame()


async def test_silence_and_short_frames_keep_alignment(tmp_path: Path) -> None:
    path = tmp_path / "align.wav"
    rec = StereoWavRecorder(path)
    rec.start()
    marker = b"\x10\x00" * 160
    rec.write(marker, SILENCE)
    rec.write(b"\x01\x00" * 10, marker)  # short frame: padded, never shifts the channels
    rec.write(SILENCE, SILENCE)
    await rec.close()
    _, left, right = read_wav(path)
    assert left.size == right.size == 3 * 160
    assert np.all(left[:160] == 16) and np.all(right[:160] == 0)
    assert np.all(left[160:170] == 1) and np.all(left[170:320] == 0)
    assert np.all(right[160:320] == 16)


CRASH_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    sys.path.insert(0, {repo!r})
    from media.recorder import FileSink, StereoWavRecorder
    from media.tones import tone

    class ReportingSink(FileSink):
        def sync(self):
            super().sync()
            print("synced", self._f.tell(), flush=True)

    rec = StereoWavRecorder({path!r}, sink_factory=ReportingSink)
    rec.start()
    customer, agent = tone(440.0), tone(1000.0)
    for _ in range(160):  # 3.2 s of audio, faster than real time; queue holds 250 frames
        rec.write(customer.next_frame(), agent.next_frame())
    threading.Event().wait(60)  # killed by the test long before this
    """
)


async def test_sigkill_mid_recording_then_repair(tmp_path: Path) -> None:
    path = tmp_path / "crash.wav"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_SCRIPT.format(repo=str(REPO), path=str(path)),
        stdout=asyncio.subprocess.PIPE,
    )
    synced = 0
    try:
        async with asyncio.timeout(CRASH_TIMEOUT_S):
            while synced < 44 + 150 * FRAME_BYTES * 2:  # three 1 s sync points
                line = await proc.stdout.readline()
                assert line, "recorder subprocess exited early"
                synced = int(line.split()[1])
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL

    assert marker_path(path).exists()
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 0  # placeholder header: unreadable length until repaired
    assert find_open_recordings(tmp_path) == [path]

    seconds = repair_wav(path)
    assert abs(seconds - 3.2) <= 1.0  # 3.2 s were written before the kill
    assert seconds >= 3.0  # everything up to the last fsync survived
    assert not marker_path(path).exists()
    assert find_open_recordings(tmp_path) == []
    params, left, right = read_wav(path)
    assert params.nframes == round(seconds * SAMPLE_RATE)
    assert params.nchannels == 2
    assert peak_hz(left) == pytest.approx(440, abs=5) and peak_hz(right) == pytest.approx(1000, abs=5)


def test_repair_truncates_to_whole_frames(tmp_path: Path) -> None:
    path = tmp_path / "partial.wav"
    path.write_bytes(wav_header(0) + bytes(8001 * 4 + 3))  # 3 stray bytes of a torn sample
    marker_path(path).write_text("open")
    assert repair_wav(path) == pytest.approx(8001 / SAMPLE_RATE)
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 8001
    assert path.stat().st_size == 44 + 8001 * 4
    assert not marker_path(path).exists()


def test_repair_of_file_cut_inside_header(tmp_path: Path) -> None:
    path = tmp_path / "torn.wav"
    path.write_bytes(wav_header(0)[:20])
    assert repair_wav(path) == 0.0
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 0 and w.getnchannels() == 2


def test_repair_refuses_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_bytes(b"this is not a wav file at all, honest" * 3)
    with pytest.raises(RecordingError, match="not a WAV"):
        repair_wav(path)
    assert path.read_bytes().startswith(b"this is not")


def test_stale_marker_without_wav_is_removed(tmp_path: Path) -> None:
    marker_path(tmp_path / "gone.wav").write_text("open")
    assert find_open_recordings(tmp_path) == []
    assert not marker_path(tmp_path / "gone.wav").exists()


class FullDiskSink(FileSink):
    """Accepts ``limit`` bytes, then fails like a full disk."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(path)
        self.limit = limit
        self.written = 0

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self.limit:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += len(data)
        super().write(data)


async def test_disk_full_stops_recording_but_never_raises(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="media.recorder")
    path = tmp_path / "full.wav"
    rec = StereoWavRecorder(path, sink_factory=lambda p: FullDiskSink(p, limit=44 + 20 * 1280))
    rec.start()
    src = tone(300.0)
    for _ in range(200):
        rec.write(src.next_frame(), src.next_frame())  # must never raise
    stats = await rec.close()
    assert stats.failed is not None and "No space" in stats.failed
    assert not stats.finished
    assert stats.frames_written < 200
    assert stats.frames_written + stats.frames_dropped == 200
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "call continues" in errors[0].getMessage()
    assert marker_path(path).exists()  # left for repair_wav at next start
    assert repair_wav(path) == pytest.approx(stats.frames_written * 0.02, abs=0.05)


async def test_unopenable_path_is_reported_not_raised(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rec = StereoWavRecorder(blocker / "sub" / "r.wav")  # parent is a file: mkdir fails
    rec.start()
    rec.write(SILENCE, SILENCE)
    stats = await rec.close()
    assert stats.failed is not None and not stats.finished


class GatedSink(FileSink):
    """Blocks the writer thread until the test opens the gate (a stalled disk)."""

    def __init__(self, path: Path, gate: threading.Event) -> None:
        super().__init__(path)
        self.gate = gate

    def write(self, data: bytes) -> None:
        if not self.gate.wait(10.0):
            raise OSError(errno.EIO, "gate never opened")
        super().write(data)


async def test_queue_overflow_drops_and_logs_once(tmp_path: Path, caplog) -> None:
    gate = threading.Event()
    rec = StereoWavRecorder(tmp_path / "slow.wav", sink_factory=lambda p: GatedSink(p, gate), queue_frames=5)
    rec.start()
    for _ in range(40):
        rec.write(SILENCE, SILENCE)
    warnings = [r for r in caplog.records if "dropping audio" in r.getMessage()]
    assert len(warnings) == 1
    assert rec.statistics().frames_dropped >= 40 - 5 - 1
    gate.set()
    stats = await rec.close()
    assert stats.finished
    assert stats.frames_written + stats.frames_dropped == 40
    _, left, _ = read_wav(tmp_path / "slow.wav")
    assert left.size == stats.frames_written * 160


async def test_close_without_start_is_harmless(tmp_path: Path) -> None:
    rec = StereoWavRecorder(tmp_path / "never.wav")
    stats = await rec.close(timeout=1.0)
    assert stats.frames_written == 0 and not (tmp_path / "never.wav").exists()


async def test_existing_recording_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "taken.wav"
    path.write_bytes(b"precious")
    rec = StereoWavRecorder(path)
    rec.start()
    rec.write(SILENCE, SILENCE)
    stats = await rec.close()
    assert stats.failed is not None and "already exists" in stats.failed
    assert path.read_bytes() == b"precious"
    assert not marker_path(path).exists()


class SyncLogSink(FileSink):
    def __init__(self, path: Path, log: list[int]) -> None:
        super().__init__(path)
        self.log = log

    def sync(self) -> None:
        super().sync()
        self.log.append(self._f.tell())


async def test_fsync_every_second_of_audio_exactly(tmp_path: Path) -> None:
    syncs: list[int] = []
    rec = StereoWavRecorder(tmp_path / "s.wav", sink_factory=lambda p: SyncLogSink(p, syncs))
    rec.start()
    for _ in range(120):
        rec.write(SILENCE, SILENCE)
    await rec.close()
    second = 50 * FRAME_BYTES * 2
    assert syncs[:3] == [44, 44 + second, 44 + 2 * second]  # header, then every 1 s
    assert syncs[-1] == 44 + 120 * FRAME_BYTES * 2  # final sync after the header patch
