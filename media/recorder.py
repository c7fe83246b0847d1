"""Incremental stereo WAV recording of a bridged call: customer LEFT, agent RIGHT.

Format: RIFF/WAVE, PCM s16le, 8 kHz, 2 channels, canonical 44-byte header. One stereo
frame (20 ms, 640 bytes) per bridge tick, so both channels stay time-aligned.

Threading: the event loop only calls ``write(left, right)``, which puts the pair on a
bounded ``queue.Queue`` and never blocks; when the queue is full the pair is dropped
and counted (logged once per recording). One writer thread per recording interleaves,
writes and every ``SYNC_EVERY_FRAMES`` flushes + fsyncs, so a power cut loses at most
about a second of audio.

Crash safety ("open" marker): while a recording is in progress a sidecar file
``<name>.wav.open`` exists next to ``<name>.wav`` and the WAV header carries
placeholder (zero) sizes. A clean close patches the sizes, fsyncs, then removes the
marker. After a crash, ``find_open_recordings(folder)`` lists the WAVs whose marker is
still there and ``repair_wav(path)`` rewrites their header from the file size.

Failures never reach the call: a disk error (ENOSPC, EIO, ...) is logged once with an
operator message, the recorder stops writing and the bridge carries on.

The byte sink is pluggable (``sink_factory``): anything with ``write``, ``sync``,
``patch`` and ``close`` (see ``ByteSink``); the default is a plain file.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import queue
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from media.frames import FRAME_BYTES, FRAME_S, SAMPLE_RATE

log = logging.getLogger(__name__)

CHANNELS = 2
SAMPLE_WIDTH = 2
BLOCK_ALIGN = CHANNELS * SAMPLE_WIDTH  # bytes per stereo sample
BYTE_RATE = SAMPLE_RATE * BLOCK_ALIGN
HEADER_BYTES = 44
OPEN_SUFFIX = ".open"  # marker file is "<recording>.wav.open"

QUEUE_FRAMES = 250  # 5 s of stereo frames: rides out a slow disk (SD card fsync stalls of 1-2 s)
SYNC_EVERY_FRAMES = 50  # fsync every 1 s of audio: bounds the loss on power cut to ~1 s
WRITER_POLL_S = 0.25  # writer wakes this often to notice close() when the queue is full
CLOSE_TIMEOUT_S = 8.0  # drain 5 s of queued audio + patch header + fsync on a slow SD card;
# with the bridge's clock stop (2 s) this fits the call flow's 10 s finalise budget


class ByteSink(Protocol):
    """Where recording bytes go. Called only from the writer thread."""

    def write(self, data: bytes) -> None:
        """Append bytes."""

    def sync(self) -> None:
        """Make everything written so far durable (flush + fsync)."""

    def patch(self, offset: int, data: bytes) -> None:
        """Overwrite bytes at ``offset`` of the logical stream (used for the WAV header)."""

    def close(self) -> None:
        """Release the sink; ``sync`` has already been called."""


class FileSink:
    """The default sink: a plain file, created (truncated) at ``path``."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, data: bytes) -> None:
        self._f.write(data)

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def patch(self, offset: int, data: bytes) -> None:
        self._f.flush()
        end = self._f.tell()
        self._f.seek(offset)
        self._f.write(data)
        self._f.seek(end)

    def close(self) -> None:
        self._f.close()


SinkFactory = Callable[[Path], ByteSink]


@dataclass(frozen=True, slots=True)
class RecorderStats:
    path: str
    seconds_written: float  # audio handed to the sink
    seconds_synced: float  # audio known durable (fsynced); what survives a power cut
    frames_written: int
    frames_dropped: int  # queue overflow + frames arriving after a failure
    failed: str | None  # operator-readable reason the recording stopped early, else None
    finished: bool  # header finalised and marker removed


class RecordingError(Exception):
    """A recording file cannot be repaired (not one of our WAVs)."""


def wav_header(data_bytes: int) -> bytes:
    """Canonical 44-byte header for 8 kHz stereo s16le with ``data_bytes`` of PCM."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, CHANNELS, SAMPLE_RATE, BYTE_RATE, BLOCK_ALIGN, SAMPLE_WIDTH * 8,
        b"data", data_bytes,
    )


def marker_path(wav_path: Path | str) -> Path:
    p = Path(wav_path)
    return p.with_name(p.name + OPEN_SUFFIX)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fit(pcm: bytes) -> bytes:
    """Exactly one mono frame: pad short input with silence, cut long input."""
    if len(pcm) == FRAME_BYTES:
        return pcm
    return pcm[:FRAME_BYTES].ljust(FRAME_BYTES, b"\x00")


class StereoWavRecorder:
    """Records one call. Create, ``start()``, ``write()`` per tick, ``await close()``."""

    def __init__(
        self,
        path: Path | str,
        *,
        sink_factory: SinkFactory = FileSink,
        queue_frames: int = QUEUE_FRAMES,
    ) -> None:
        self.path = Path(path)
        self._sink_factory = sink_factory
        self._q: queue.Queue[tuple[bytes, bytes] | None] = queue.Queue(maxsize=queue_frames)
        self._thread = threading.Thread(
            target=self._run, name=f"recorder:{self.path.name}", daemon=True
        )
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._done = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._frames_written = 0
        self._frames_synced = 0
        self._frames_dropped = 0
        self._overflow_logged = False
        self._failed: str | None = None
        self._finished = False

    # -- event-loop side -------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (it creates the marker and the file)."""
        self._thread.start()

    def write(self, left: bytes, right: bytes) -> None:
        """Queue one tick: ``left`` = customer, ``right`` = agent (320 bytes each). Never blocks."""
        if self._failed is not None or self._closing.is_set():
            self._frames_dropped += 1
            return
        try:
            self._q.put_nowait((left, right))
        except queue.Full:
            self._frames_dropped += 1
            if not self._overflow_logged:
                self._overflow_logged = True
                log.warning(
                    "recording %s: disk too slow, dropping audio (queue of %d frames full)",
                    self.path.name, self._q.maxsize,
                )

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> RecorderStats:
        """Finish the file (drain, patch header, fsync, remove marker); bounded by ``timeout``."""
        self._request_close()
        if self._thread.ident is None:
            self._done.set()  # never started: nothing to finalise
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if not self._done.is_set():
                self._waiters.append((loop, fut))
            else:
                fut.set_result(None)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            log.error(
                "recording %s: writer did not finish within %.0f s; file stays marked open "
                "and will be repaired at next start", self.path.name, timeout,
            )
        return self.statistics()

    def close_blocking(self, timeout: float = CLOSE_TIMEOUT_S) -> RecorderStats:
        """``close()`` for code without an event loop (tools, tests)."""
        self._request_close()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return self.statistics()

    def _request_close(self) -> None:
        self._closing.set()
        try:
            self._q.put_nowait(None)  # prompt wake-up; if full the writer sees _closing
        except queue.Full:
            pass

    def statistics(self) -> RecorderStats:
        return RecorderStats(
            path=str(self.path),
            seconds_written=round(self._frames_written * FRAME_S, 3),
            seconds_synced=round(self._frames_synced * FRAME_S, 3),
            frames_written=self._frames_written,
            frames_dropped=self._frames_dropped,
            failed=self._failed,
            finished=self._finished,
        )

    # -- writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        sink: ByteSink | None = None
        try:
            sink = self._open()
            self._pump(sink)
            self._finish(sink)
            sink = None
        except OSError as exc:
            self._fail(exc)
        except Exception as exc:  # a sink bug must not take the call down either
            log.exception("recording %s: unexpected writer failure", self.path.name)
            self._fail(exc)
        finally:
            if sink is not None:
                try:
                    sink.close()
                except Exception:  # already failed; closing is best effort
                    pass
            self._signal_done()

    def _open(self) -> ByteSink:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        if self.path.exists():  # never overwrite (or mark open) an existing recording
            raise FileExistsError(errno.EEXIST, "recording file already exists, not overwritten", str(self.path))
        marker_path(self.path).write_text(
            f"recording in progress since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
            f" pid {os.getpid()}\n",
            encoding="ascii",
        )
        sink = self._sink_factory(self.path)
        sink.write(wav_header(0))  # placeholder sizes until close (or repair_wav)
        sink.sync()
        _fsync_dir(folder)
        return sink

    def _pump(self, sink: ByteSink) -> None:
        unsynced = 0
        stop = False
        while not stop:
            try:
                item = self._q.get(timeout=WRITER_POLL_S)
            except queue.Empty:
                stop = self._closing.is_set()  # close() found the queue full: drained now
                continue
            if item is None:  # sentinel: write() refuses frames once closing, so none follow
                break
            batch = [item]
            while unsynced + len(batch) < SYNC_EVERY_FRAMES:  # what is queued, up to the sync point
                try:
                    more = self._q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            try:
                sink.write(_interleave(batch))
            except BaseException:
                self._frames_dropped += len(batch)  # this batch never reached the file
                raise
            self._frames_written += len(batch)
            unsynced += len(batch)
            if unsynced >= SYNC_EVERY_FRAMES:
                sink.sync()
                self._frames_synced = self._frames_written
                unsynced = 0

    def _finish(self, sink: ByteSink) -> None:
        data_bytes = self._frames_written * FRAME_BYTES * CHANNELS
        sink.sync()
        sink.patch(0, wav_header(data_bytes))
        sink.sync()
        self._frames_synced = self._frames_written
        sink.close()
        marker_path(self.path).unlink(missing_ok=True)
        _fsync_dir(self.path.parent)
        self._finished = True
        log.info(
            "recording %s finished: %.1f s, %d frames dropped",
            self.path.name, self._frames_written * FRAME_S, self._frames_dropped,
        )

    def _fail(self, exc: BaseException) -> None:
        self._failed = f"{type(exc).__name__}: {exc}"
        marker = marker_path(self.path)
        log.error(
            "recording %s stopped after %.1f s: %s. The call continues without recording; "
            "check free space and the disk%s",
            self.path.name, self._frames_written * FRAME_S, self._failed,
            f" (marker {marker.name} left for repair)" if marker.exists() else "",
        )
        while True:  # discard what is queued so memory is released
            try:
                if self._q.get_nowait() is not None:
                    self._frames_dropped += 1
            except queue.Empty:
                break

    def _signal_done(self) -> None:
        with self._lock:
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # loop already closed: nobody is waiting any more
                pass


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _interleave(batch: list[tuple[bytes, bytes]]) -> bytes:
    left = np.frombuffer(b"".join(_fit(l) for l, _ in batch), dtype="<i2")
    right = np.frombuffer(b"".join(_fit(r) for _, r in batch), dtype="<i2")
    out = np.empty(left.size * 2, dtype="<i2")
    out[0::2] = left
    out[1::2] = right
    return out.tobytes()


# -- crash recovery (run at startup, off the event loop) ---------------------------------
def find_open_recordings(folder: Path | str) -> list[Path]:
    """WAV files under ``folder`` (recursively) still marked open, i.e. left by a crash."""
    found = []
    for marker in sorted(Path(folder).rglob("*.wav" + OPEN_SUFFIX)):
        wav = marker.with_name(marker.name[: -len(OPEN_SUFFIX)])
        if wav.exists():
            found.append(wav)
        else:
            log.warning("removing stale recording marker %s (no WAV file next to it)", marker)
            marker.unlink(missing_ok=True)
    return found


def repair_wav(path: Path | str) -> float:
    """Fix the header of a recording left open by a crash; returns its length in seconds.

    The length comes from the file size, truncated to whole stereo samples. Removes the
    marker. Raises ``RecordingError`` if the file is not one of our WAVs.
    """
    wav = Path(path)
    with open(wav, "r+b") as f:
        head = f.read(HEADER_BYTES)
        if len(head) >= 12 and (head[:4] != b"RIFF" or head[8:12] != b"WAVE"):
            raise RecordingError(f"{wav}: not a WAV file, left untouched")
        if len(head) >= HEADER_BYTES and head[12:36] != wav_header(0)[12:36]:
            raise RecordingError(f"{wav}: not an 8 kHz stereo s16 recording, left untouched")
        size = f.seek(0, os.SEEK_END)
        data_bytes = max(0, size - HEADER_BYTES)
        data_bytes -= data_bytes % BLOCK_ALIGN
        f.truncate(HEADER_BYTES + data_bytes)
        f.seek(0)
        f.write(wav_header(data_bytes))
        f.flush()
        os.fsync(f.fileno())
    marker_path(wav).unlink(missing_ok=True)
    _fsync_dir(wav.parent)
    seconds = data_bytes / BYTE_RATE
    log.info("repaired recording %s left open by a crash: %.1f s", wav.name, seconds)
    return seconds
