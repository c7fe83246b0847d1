"""The agent's browser leg on the box side: one aiortc peer connection as a ``LegAudio``.

Signalling is non-trickle: the browser gathers all its candidates, sends one offer, and
``answer()`` returns our complete answer (aiortc gathers during setLocalDescription).
The box is offline, so there are no STUN/TURN servers (aiortc's default is Google STUN).

Inbound: the browser's audio track (Opus, decoded by aiortc to 48 kHz stereo) is read by
a named task, resampled by PyAV to 8 kHz mono s16 and re-chunked into 20 ms frames in a
bounded ``PcmFifo``; ``read_frame_nowait()`` pops them. Every received track is consumed,
including video (decoded by aiortc, then discarded: no transcoding), because aiortc
queues decoded frames without bound otherwise.

Outbound: ``write_frame()`` puts 20 ms frames on a small queue (oldest dropped when
full); a self-paced ``MediaStreamTrack`` hands one 160-sample 8 kHz frame to aiortc
every 20 ms (deadline = start + pts), silence when the queue is empty.

Loopback ICE: aioice never offers 127.0.0.1. Tests (and later a ``webrtc.host_addresses``
config option) call ``use_host_addresses()`` / ``loopback_only_ice()`` explicitly; this
module never patches anything by itself.
"""
from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Sequence

import aioice.ice
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.exceptions import InternalError, InvalidAccessError, OperationError
from aiortc.mediastreams import MediaStreamError

from media.frames import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE, PcmFifo

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 10.0  # setRemote + full ICE gathering on host interfaces (~0.1-1 s measured)
CLOSE_TIMEOUT_S = 5.0  # pc.close() stops DTLS/SCTP/ICE; normally well under a second
OUTBOUND_QUEUE_FRAMES = 3  # 60 ms: absorbs bridge/encoder jitter, bounds added latency
INBOUND_FIFO_MS = 200  # browser -> bridge buffer; oldest audio dropped beyond this
MAX_OUTBOUND_LAG_S = 0.2  # if the encoder fell this far behind, restart pacing, don't burst
TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)


class ConnectionState(StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    CLOSED = "closed"


class SignallingError(Exception):
    """The browser's offer cannot be answered (malformed, wrong type, no audio)."""


@dataclass(frozen=True, slots=True)
class WebRtcStats:
    state: ConnectionState
    frames_received: int  # 20 ms frames made available to the bridge
    inbound_dropped_bytes: int  # browser audio dropped because the bridge did not read
    frames_sent: int  # frames written by the bridge and sent
    outbound_dropped: int  # bridge frames dropped because the queue was full
    silence_sent: int  # 20 ms periods sent as silence (nothing written in time)
    video_frames: int  # video frames received and discarded


def use_host_addresses(addresses: Sequence[str]) -> Callable[[], None]:
    """Make aioice gather candidates only on ``addresses``; returns a function that undoes it.

    aioice has no option for this, so its module function is replaced for the process.
    Used by tests (``loopback_only_ice``) and by config that pins the LAN interface.
    """
    original = aioice.ice.get_host_addresses
    pinned = list(addresses)

    def pinned_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in pinned if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = pinned_addresses

    def restore() -> None:
        aioice.ice.get_host_addresses = original

    return restore


def loopback_only_ice() -> Callable[[], None]:
    """Gather only 127.0.0.1 (hermetic tests). Returns the undo function."""
    return use_host_addresses(["127.0.0.1"])


class _OutboundTrack(MediaStreamTrack):
    """Self-paced 8 kHz mono track fed by ``AgentMediaSession.write_frame``."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.queue: collections.deque[bytes] = collections.deque(maxlen=OUTBOUND_QUEUE_FRAMES)
        self.dropped = 0
        self.sent = 0
        self.silence = 0
        self._start: float | None = None
        self._pts = 0

    def push(self, pcm: bytes) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1  # deque drops the oldest
        self.queue.append(pcm)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._pts += FRAME_SAMPLES
            due = self._start + self._pts / SAMPLE_RATE
            if now < due:
                await asyncio.sleep(due - now)
            elif now - due > MAX_OUTBOUND_LAG_S:
                self._start = now - self._pts / SAMPLE_RATE  # re-anchor; pts stays monotonic
        if self.queue:
            pcm = self.queue.popleft()
            self.sent += 1
        else:
            pcm = bytes(FRAME_BYTES)
            self.silence += 1
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        return frame


class AgentMediaSession:
    """One agent browser's media. Implements ``LegAudio`` for the bridge."""

    def __init__(
        self,
        name: str = "agent",
        *,
        on_state: Callable[[ConnectionState], None] | None = None,
    ) -> None:
        self.name = name
        self._on_state = on_state
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._out = _OutboundTrack()
        self._fifo = PcmFifo(max_ms=INBOUND_FIFO_MS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._state = ConnectionState.NEW
        self._frames_received = 0
        self._video_frames = 0
        self._answered = False
        self._closed = False
        self.connected = asyncio.Event()  # set once media can flow
        self.ended = asyncio.Event()  # set on failed/closed (the call should drop this leg)
        self._settled = asyncio.Event()  # connected or ended, whichever comes first
        self.audio_received = asyncio.Event()  # first inbound audio frame decoded
        self.video_received = asyncio.Event()  # first inbound video frame decoded (and discarded)
        self._pc.on("connectionstatechange", self._state_changed)
        self._pc.on("track", self._track_received)

    # -- signalling --------------------------------------------------------------------
    async def answer(self, offer_sdp: str, offer_type: str) -> tuple[str, str]:
        """Answer a complete (non-trickle) offer; returns ``(answer_sdp, "answer")``."""
        if offer_type != "offer":
            raise SignallingError(f"{self.name}: expected an SDP offer, got type {offer_type!r}")
        if self._closed:
            raise SignallingError(f"{self.name}: session already closed")
        if self._answered:
            raise SignallingError(f"{self.name}: already answered (renegotiation is not supported)")
        if not offer_sdp.startswith("v=0"):
            raise SignallingError(f"{self.name}: offer is not SDP (must start with 'v=0')")
        self._answered = True
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
                if not any(t.kind == "audio" for t in self._pc.getTransceivers()):
                    raise SignallingError(f"{self.name}: offer has no audio")
                self._pc.addTrack(self._out)  # reuses the offered audio transceiver: sendrecv
                await self._pc.setLocalDescription(await self._pc.createAnswer())
        except TimeoutError:
            raise SignallingError(f"{self.name}: answering took longer than {ANSWER_TIMEOUT_S:.0f} s") from None
        except SignallingError:
            raise
        except (ValueError, KeyError, IndexError, TypeError, AssertionError, InvalidAccessError,
                InternalError, OperationError) as exc:
            # aiortc's SDP parser reports bad input with asserts and ValueErrors; the
            # peer connection raises InvalidAccessError/OperationError for offers it rejects
            raise SignallingError(f"{self.name}: malformed offer ({type(exc).__name__}: {exc})") from None
        desc = self._pc.localDescription
        log.info("%s: answered WebRTC offer", self.name)
        return desc.sdp, desc.type

    # -- LegAudio ----------------------------------------------------------------------
    def read_frame_nowait(self) -> bytes | None:
        return self._fifo.pop_frame()

    def write_frame(self, pcm: bytes) -> None:
        if not self._closed:
            self._out.push(pcm)

    # -- state -------------------------------------------------------------------------
    @property
    def state(self) -> ConnectionState:
        return self._state

    async def wait_connected(self, timeout: float) -> None:
        """Wait until connected; raises TimeoutError, or SignallingError if it failed first."""
        async with asyncio.timeout(timeout):
            await self._settled.wait()
        if not self.connected.is_set():
            raise SignallingError(f"{self.name}: connection {self._state} before media flowed")

    def statistics(self) -> WebRtcStats:
        return WebRtcStats(
            state=self._state,
            frames_received=self._frames_received,
            inbound_dropped_bytes=self._fifo.dropped_bytes,
            frames_sent=self._out.sent,
            outbound_dropped=self._out.dropped,
            silence_sent=self._out.silence,
            video_frames=self._video_frames,
        )

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Close the peer connection and stop the consumer tasks, bounded by ``timeout``."""
        if self._closed:
            return
        self._closed = True
        self._out.stop()
        try:
            async with asyncio.timeout(timeout):
                await self._pc.close()
        except TimeoutError:
            log.warning("%s: peer connection did not close within %.0f s", self.name, timeout)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.wait(set(self._tasks))
            except TimeoutError:
                log.warning("%s: media tasks did not stop within %.0f s", self.name, timeout)
        self._set_state(ConnectionState.CLOSED)
        stats = self.statistics()
        log.info(
            "%s: closed; received %d frames, sent %d (+%d silence), dropped in %d B / out %d",
            self.name, stats.frames_received, stats.frames_sent, stats.silence_sent,
            stats.inbound_dropped_bytes, stats.outbound_dropped,
        )

    def _state_changed(self) -> None:
        try:
            state = ConnectionState(self._pc.connectionState)
        except ValueError:
            log.warning("%s: unknown connection state %r", self.name, self._pc.connectionState)
            return
        self._set_state(state)

    def _set_state(self, state: ConnectionState) -> None:
        if state == self._state:
            return
        log.info("%s: WebRTC %s -> %s", self.name, self._state, state)
        self._state = state
        if state is ConnectionState.CONNECTED:
            self.connected.set()
            self._settled.set()
        elif state in (ConnectionState.FAILED, ConnectionState.CLOSED):
            self.ended.set()
            self._settled.set()
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                log.exception("%s: connection state callback failed", self.name)

    # -- inbound media -----------------------------------------------------------------
    def _track_received(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            coro, label = self._consume_audio(track), "audio"
        else:
            coro, label = self._consume_video(track), track.kind
        task = asyncio.create_task(coro, name=f"webrtc-rx-{label}:{self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        before = self._fifo.received_bytes
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                log.debug("%s: inbound audio track ended", self.name)
                return
            try:
                converted = resampler.resample(frame)
            except (av.FFmpegError, ValueError) as exc:  # e.g. format change mid-stream
                log.warning("%s: cannot resample inbound audio (%s); resetting resampler", self.name, exc)
                resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
                continue
            for out in converted:
                self._fifo.push(out.to_ndarray().tobytes())
            self.audio_received.set()
            self._frames_received = (self._fifo.received_bytes - before) // FRAME_BYTES

    async def _consume_video(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            self._video_frames += 1
            self.video_received.set()

