"""What a caller hears while no agent is on the line, as ``LegAudio`` the bridge can use."""
from __future__ import annotations

import logging
from typing import Callable, Iterable

from appliance.config import QueueConfig
from appliance.ivr import MenuConfig
from media.frames import FRAME_BYTES, FRAME_S, SILENCE
from media.tones import AudioFileError, FrameSource, HoldMusic, PcmLoop, beep_frames, decode_to_internal, ringback

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
    return _load(queue.hold_music, f"queue {queue.id}: hold music", "the built-in tune")


def _load(path: str, what: str, instead: str) -> bytes | None:
    """Decode an audio file to the internal format; None (with a warning naming it) when it cannot be played."""
    if not path:
        return None
    try:
        pcm = decode_to_internal(path)
    except AudioFileError as exc:
        log.warning("%s %s cannot be played (%s); using %s", what, path, exc, instead)
        return None
    return pcm or None


# --- IVR prompts --------------------------------------------------------------------------
CHIME_NOTES_HZ = (660.0, 880.0)  # the built-in prompt: two short rising notes
CHIME_NOTE_MS = 160
CHIME_GAP_MS = 80


def chime_pcm() -> bytes:
    """What a menu without a playable prompt file plays: two short rising notes (0.4 s)."""
    gap = SILENCE * (CHIME_GAP_MS // 20)
    return gap.join(b"".join(beep_frames(f, CHIME_NOTE_MS)) for f in CHIME_NOTES_HZ)


def load_prompts(menus: Iterable[MenuConfig]) -> dict[str, bytes]:
    """Decode every menu's ``prompt`` and ``invalid_prompt`` once (blocking: run it in an executor).

    Keys are "<menu id>" and "<menu id>:invalid". A menu whose prompt is missing or cannot be
    decoded gets the built-in chime (a startup warning names the file); a bad invalid_prompt
    is left out (the prompt is simply replayed).
    """
    prompts: dict[str, bytes] = {}
    for menu in menus:
        if not menu.prompt:
            log.info("menu %s has no prompt file; callers hear the built-in chime", menu.id)
        prompts[menu.id] = _load(menu.prompt, f"menu {menu.id}: prompt", "the built-in chime") or chime_pcm()
        if (pcm := _load(menu.invalid_prompt, f"menu {menu.id}: invalid_prompt", "only the prompt again")) is not None:
            prompts[f"{menu.id}:invalid"] = pcm
    return prompts


class PromptPlayer:
    """A leg that plays queued clips once each, in order, then silence.

    ``on_end`` is called (from the bridge's tick) when the last clip has played out;
    ``stop()`` drops what is left without calling it (barge-in).
    """

    def __init__(self, on_end: Callable[[], None]) -> None:
        self._on_end = on_end
        self._pcm = b""
        self._pos = 0
        self.frames_played = 0

    def play(self, *clips: bytes) -> None:
        self._pcm, self._pos = b"".join(c + bytes(-len(c) % FRAME_BYTES) for c in clips), 0  # each clip starts a frame

    def stop(self) -> None:
        self._pcm, self._pos = b"", 0

    @property
    def playing(self) -> bool:
        return self._pos < len(self._pcm)

    def read_frame_nowait(self) -> bytes | None:
        if not self.playing:
            return None
        frame = self._pcm[self._pos: self._pos + FRAME_BYTES]
        self._pos += FRAME_BYTES
        self.frames_played += 1
        if not self.playing:
            self._on_end()
        return frame

    def write_frame(self, pcm: bytes) -> None:
        return None
