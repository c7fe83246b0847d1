"""What a caller hears while no agent is on the line, as ``LegAudio`` the bridge can use."""
from __future__ import annotations

import logging

from appliance.config import QueueConfig
from media.frames import FRAME_S
from media.tones import AudioFileError, FrameSource, HoldMusic, PcmLoop, decode_to_internal, ringback

log = logging.getLogger(__name__)


class SourceLeg:
    """A leg that plays a frame source and ignores what it is sent."""

    def __init__(self, source: FrameSource) -> None:
        self._source = source

    def read_frame_nowait(self) -> bytes | None:
        return self._source.next_frame()

    def write_frame(self, pcm: bytes) -> None:
        return None


class QueueAudio:
    """Ringback for the queue's ``ringback_s``, then hold music, looped.

    ``music_pcm`` is the queue's hold music already decoded to the internal format
    (``load_hold_music``, run off the event loop at start-up); None plays the built-in tune.
    """

    def __init__(self, queue: QueueConfig, music_pcm: bytes | None = None, country: str = "eu") -> None:
        try:
            self._ringback = ringback(country or "eu")
        except ValueError:
            self._ringback = ringback("eu")
        self._ringback_frames = int(queue.ringback_s / FRAME_S)
        self._music: FrameSource = PcmLoop(music_pcm) if music_pcm else HoldMusic()
        self._frames = 0

    def read_frame_nowait(self) -> bytes | None:
        self._frames += 1
        if self._frames <= self._ringback_frames:
            return self._ringback.next_frame()
        return self._music.next_frame()

    def write_frame(self, pcm: bytes) -> None:
        return None


def load_hold_music(queue: QueueConfig) -> bytes | None:
    """Decode the queue's hold-music file (blocking: call it in an executor). None: built-in tune."""
    if not queue.hold_music:
        return None
    try:
        pcm = decode_to_internal(queue.hold_music)
    except AudioFileError as exc:
        log.warning("queue %s: hold music %s cannot be played (%s); using the built-in tune", queue.id, queue.hold_music, exc)
        return None
    return pcm or None
