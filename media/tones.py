"""Audio sources for callers: ringback, hold music, WAV/audio files, beeps and test tones.

Every source produces the internal format (8 kHz mono s16le, 20 ms = 320-byte frames)
through ``next_frame()``. Sources are plain objects, not tasks: whoever runs the 20 ms
clock (the bridge) pulls one frame per tick, so a source can never run ahead or behind.
Generators compute samples from an absolute sample counter, so phase and cadence are
continuous across frames.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import av
import numpy as np

from media.frames import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE, SILENCE

log = logging.getLogger(__name__)

FULL_SCALE = 32767
RINGBACK_LEVEL_DBFS = -16.0  # peak of the summed tone; comfortable, well below clipping
BEEP_LEVEL_DBFS = -12.0
HOLD_MUSIC_PEAK = 0.35  # of full scale: music sits a little under speech level
MAX_FILE_SECONDS = 1200  # a 20 min announcement/music file = 19 MB at 8 kHz; refuse larger


class FrameSource(Protocol):
    """Anything that yields 320-byte internal-format frames, one per call."""

    def next_frame(self) -> bytes: ...


def dbfs_to_amplitude(level_dbfs: float) -> float:
    return FULL_SCALE * 10 ** (level_dbfs / 20)


def to_pcm(samples: np.ndarray) -> bytes:
    """Float samples (full scale = 32767) to s16le bytes, clipped."""
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


# -- tones and cadences ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ToneCadence:
    """Frequencies played together, and an on/off pattern in seconds that repeats."""

    freqs: tuple[float, ...]
    pattern: tuple[float, ...] = ()  # (on, off, on, off, ...); empty = continuous
    level_dbfs: float = RINGBACK_LEVEL_DBFS


RINGBACK_CADENCES: dict[str, ToneCadence] = {
    "eu": ToneCadence((425.0,), (1.0, 4.0)),  # ITU-T E.180 / ETSI ES 201 970 common ringback
    "us": ToneCadence((440.0, 480.0), (2.0, 4.0)),  # North American precise tone plan
    "uk": ToneCadence((400.0, 450.0), (0.4, 0.2, 0.4, 2.0)),  # BT double ring
}
# Country codes that use the cadences above (ISO 3166 alpha-2, lower case).
RINGBACK_COUNTRY_ALIASES: dict[str, str] = {
    **{c: "eu" for c in ("de", "at", "ch", "nl", "be", "it", "es", "pt", "pl", "cz", "dk",
                         "se", "no", "fi", "gr", "hu", "ro", "sk", "si", "hr", "lu", "ie")},
    "ca": "us", "gb": "uk",
}


def ringback_cadence(country: str) -> ToneCadence:
    """Cadence for a configured country ("eu", "us", "uk" or an ISO code mapped to them)."""
    key = country.strip().lower()
    key = RINGBACK_COUNTRY_ALIASES.get(key, key)
    try:
        return RINGBACK_CADENCES[key]
    except KeyError:
        known = ", ".join(sorted({*RINGBACK_CADENCES, *RINGBACK_COUNTRY_ALIASES}))
        raise ValueError(f"no ringback cadence for country {country!r}; known: {known}") from None


class ToneSource:
    """Continuous or cadenced tone of one or more summed sine waves."""

    def __init__(self, cadence: ToneCadence) -> None:
        if not cadence.freqs or any(not 0 < f < SAMPLE_RATE / 2 for f in cadence.freqs):
            raise ValueError(f"tone frequencies must be within 0-{SAMPLE_RATE // 2} Hz: {cadence.freqs}")
        if any(d <= 0 for d in cadence.pattern) or len(cadence.pattern) % 2:
            raise ValueError(f"cadence needs positive (on, off) pairs: {cadence.pattern}")
        self.cadence = cadence
        self._omega = 2 * np.pi * np.asarray(cadence.freqs)[:, None] / SAMPLE_RATE
        self._amp = dbfs_to_amplitude(cadence.level_dbfs) / len(cadence.freqs)
        edges = np.cumsum(np.rint(np.asarray(cadence.pattern) * SAMPLE_RATE)).astype(np.int64)
        self._edges = edges
        self._period = int(edges[-1]) if edges.size else 0
        self._pos = 0

    def next_frame(self) -> bytes:
        n = np.arange(self._pos, self._pos + FRAME_SAMPLES, dtype=np.int64)
        self._pos += FRAME_SAMPLES
        x = self._amp * np.sin(self._omega * n).sum(axis=0)
        if self._period:
            segment = np.searchsorted(self._edges, n % self._period, side="right")
            x[segment % 2 == 1] = 0.0  # odd segments are the "off" parts
        return to_pcm(x)


def ringback(country: str = "eu") -> ToneSource:
    return ToneSource(ringback_cadence(country))


def tone(freq: float, level_dbfs: float = BEEP_LEVEL_DBFS) -> ToneSource:
    """A continuous test tone."""
    return ToneSource(ToneCadence((freq,), (), level_dbfs))


def beep_frames(freq: float = 1000.0, ms: int = 200, level_dbfs: float = BEEP_LEVEL_DBFS) -> list[bytes]:
    """A single beep as whole frames (``ms`` rounded up to 20 ms), with 5 ms fade in/out."""
    count = max(1, -(-ms // 20))
    n = np.arange(count * FRAME_SAMPLES)
    x = dbfs_to_amplitude(level_dbfs) * np.sin(2 * np.pi * freq * n / SAMPLE_RATE)
    ramp = np.linspace(0.0, 1.0, SAMPLE_RATE * 5 // 1000)
    x[: ramp.size] *= ramp
    x[-ramp.size:] *= ramp[::-1]
    pcm = to_pcm(x)
    return [pcm[i: i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]


class SequenceSource:
    """Plays a list of frames once (then silence) or in a loop."""

    def __init__(self, frames: Sequence[bytes], *, loop: bool = False) -> None:
        if any(len(f) != FRAME_BYTES for f in frames):
            raise ValueError(f"every frame must be {FRAME_BYTES} bytes")
        self._frames = list(frames)
        self._loop = loop
        self._i = 0

    @property
    def finished(self) -> bool:
        return not self._loop and self._i >= len(self._frames)

    def next_frame(self) -> bytes:
        if not self._frames or self.finished:
            return SILENCE
        frame = self._frames[self._i % len(self._frames)]
        self._i = (self._i + 1) % len(self._frames) if self._loop else self._i + 1
        return frame


# -- generated hold music ----------------------------------------------------------------
_BEAT_S = 0.25
# I - vi - IV - V in C major; each chord is 8 arpeggiated eighth notes over a bass note.
_PROGRESSION: tuple[tuple[float, tuple[float, ...]], ...] = (
    (130.81, (261.63, 329.63, 392.00, 523.25, 392.00, 329.63, 392.00, 329.63)),  # C
    (110.00, (220.00, 261.63, 329.63, 440.00, 329.63, 261.63, 329.63, 261.63)),  # Am
    (87.31, (174.61, 220.00, 261.63, 349.23, 261.63, 220.00, 261.63, 220.00)),  # F
    (98.00, (196.00, 246.94, 293.66, 392.00, 293.66, 246.94, 293.66, 246.94)),  # G
)


def _note(freq: float, seconds: float, decay_s: float) -> np.ndarray:
    """A soft plucked note: fundamental + two weak harmonics, 10 ms attack, exponential decay."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = (np.sin(2 * np.pi * freq * t) + 0.25 * np.sin(4 * np.pi * freq * t)
            + 0.08 * np.sin(6 * np.pi * freq * t))
    env = np.minimum(t / 0.010, 1.0) * np.exp(-t / decay_s)
    env[-80:] *= np.linspace(1.0, 0.0, 80)  # 10 ms release so notes end at zero
    return wave * env


@functools.cache
def hold_music_loop() -> bytes:
    """The generated hold-music loop (8 s), computed once per process."""
    beat = int(_BEAT_S * SAMPLE_RATE)
    out = np.zeros(beat * 8 * len(_PROGRESSION))
    for c, (bass, arpeggio) in enumerate(_PROGRESSION):
        start = c * beat * 8
        out[start: start + beat * 8] += 0.6 * _note(bass, _BEAT_S * 8, decay_s=0.9)
        for i, f in enumerate(arpeggio):
            s = start + i * beat
            out[s: s + beat] += 0.5 * _note(f, _BEAT_S, decay_s=0.12)
    out *= HOLD_MUSIC_PEAK * FULL_SCALE / np.max(np.abs(out))
    return to_pcm(out)


class HoldMusic:
    """Loops the generated melody (no recorded or copyrighted material)."""

    def __init__(self) -> None:
        self._player = PcmLoop(hold_music_loop())

    def next_frame(self) -> bytes:
        return self._player.next_frame()


class PcmLoop:
    """Loops a buffer of internal-format PCM, frame by frame, wrapping across the end."""

    def __init__(self, pcm: bytes) -> None:
        pcm = pcm[: len(pcm) - len(pcm) % 2]
        if not pcm:
            raise ValueError("nothing to play: empty audio")
        if len(pcm) < FRAME_BYTES:  # a clip shorter than a frame: repeat it to fill one
            pcm *= -(-FRAME_BYTES // len(pcm))
        self._pcm = pcm
        self._pos = 0

    def next_frame(self) -> bytes:
        frame = self._pcm[self._pos: self._pos + FRAME_BYTES]
        if len(frame) < FRAME_BYTES:  # wrap across the end of the clip
            frame += self._pcm[: FRAME_BYTES - len(frame)]
        self._pos = (self._pos + FRAME_BYTES) % len(self._pcm)
        return frame


# -- files -------------------------------------------------------------------------------
class AudioFileError(Exception):
    """An audio file cannot be played (missing, not audio, empty, too long)."""


def decode_to_internal(path: Path | str) -> bytes:
    """Decode any audio file PyAV understands to 8 kHz mono s16le. Blocking: run off the loop."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            chunks: list[bytes] = []
            total = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().tobytes())
                    total += out.samples
                if total > MAX_FILE_SECONDS * SAMPLE_RATE:
                    raise AudioFileError(f"{path}: longer than {MAX_FILE_SECONDS} s")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().tobytes())
    except FileNotFoundError:
        raise AudioFileError(f"{path}: no such file") from None
    except (av.FFmpegError, OSError) as exc:
        # FFmpeg's own errors carry a negative code that means nothing to an operator: keep its words
        words = getattr(exc, "strerror", None) or str(exc)
        raise AudioFileError(f"{path}: not an audio file this box can play ({words})") from None
    pcm = b"".join(chunks)
    if not pcm:
        raise AudioFileError(f"{path}: contains no audio samples")
    return pcm


class WavPlayer:
    """Loops an audio file (WAV or anything PyAV decodes), converted to 8 kHz mono.

    The whole file is decoded in the constructor, which blocks: build it at startup or
    through ``asyncio.to_thread(WavPlayer, path)``.
    """

    def __init__(self, path: Path | str, *, loop: bool = True) -> None:
        self.path = Path(path)
        pcm = decode_to_internal(self.path)
        self.seconds = len(pcm) / (2 * SAMPLE_RATE)
        if loop:
            self._source: FrameSource = PcmLoop(pcm)
        else:
            pcm += bytes(-len(pcm) % FRAME_BYTES)
            self._source = SequenceSource([pcm[i: i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)])
        log.debug("loaded %s: %.1f s of audio", self.path.name, self.seconds)

    def next_frame(self) -> bytes:
        return self._source.next_frame()
