"""In-band DTMF: a Goertzel detector and a tone generator, on 8 kHz s16le audio.

Lines that cannot signal DTMF out of band (analog voice modems, GSM PCM audio, SIP peers
without RFC 4733) carry digits as tones inside the audio. ``DtmfDetector`` finds them
in 20 ms blocks (160 samples):

* power at the 8 DTMF frequencies: Goertzel magnitudes, computed for the whole block
  at once as a numpy product with precomputed coefficients (the same value the
  Goertzel recurrence gives, without a per-sample Python loop);
* checks, per block: enough energy; the strongest row and column tones each clearly
  above the other tones of their group; twist within ITU-T Q.24 limits; and the two
  tones carrying most of the block's energy (this is what rejects speech and music);
* de-bounce: a digit is reported once, after ``HIT_BLOCKS`` consecutive agreeing blocks
  (40 ms), and again only after ``GAP_BLOCKS`` blocks without it.
"""
from __future__ import annotations

import numpy as np

from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from media.tones import dbfs_to_amplitude, to_pcm

ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYS = ("123A", "456B", "789C", "*0#D")
DIGITS = frozenset("".join(KEYS))

BLOCK = FRAME_SAMPLES  # 20 ms at 8 kHz; rectangular window, bins ~50 Hz wide
MIN_TONE_RMS = 60.0  # per tone, ~ -55 dBFS: Q.24 accepts down to about -30 dBm0 per tone
MAX_NORMAL_TWIST_DB = 8.0  # column louder than row (Q.24: 8 dB accepted)
MAX_REVERSE_TWIST_DB = 8.0  # row louder than column (Q.24 says 4 dB; lines here are lossy)
MIN_GROUP_MARGIN_DB = 6.0  # winning tone must beat the runner-up in its group by this
MIN_TONE_ENERGY_RATIO = 0.75  # row+column power / block power; speech and music fall far short
HIT_BLOCKS = 2  # 40 ms of agreeing blocks before a digit counts (Q.24 minimum tone: 40 ms)
GAP_BLOCKS = 2  # 40 ms without the digit before the same key counts again (Q.24 pause: 40 ms)

TONE_MS = 100
GAP_MS = 100
TONE_LEVEL_DBFS = -10.0  # per tone; the pair peaks at -4 dBFS


def _basis(freqs: tuple[float, ...]) -> np.ndarray:
    n = np.arange(BLOCK)
    return np.exp(-2j * np.pi * np.asarray(freqs)[:, None] * n / SAMPLE_RATE)


_ROW_BASIS = _basis(ROWS)
_COL_BASIS = _basis(COLS)


def tone_powers(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-square power of each row and column tone in a 160-sample block."""
    scale = 2.0 / (BLOCK * BLOCK)  # |X(f)|^2 of A*sin over N samples is (A*N/2)^2; power A^2/2
    return (np.abs(_ROW_BASIS @ block) ** 2 * scale, np.abs(_COL_BASIS @ block) ** 2 * scale)


def classify_block(block: np.ndarray) -> str | None:
    """The digit present in one block, or None. ``block`` holds 160 float samples."""
    rows, cols = tone_powers(block)
    r, c = int(np.argmax(rows)), int(np.argmax(cols))
    pr, pc = rows[r], cols[c]
    floor = MIN_TONE_RMS**2
    if pr < floor or pc < floor:
        return None
    twist_db = 10 * np.log10(pc / pr)
    if twist_db > MAX_NORMAL_TWIST_DB or -twist_db > MAX_REVERSE_TWIST_DB:
        return None
    margin = 10 ** (MIN_GROUP_MARGIN_DB / 10)
    if np.sort(rows)[-2] * margin > pr or np.sort(cols)[-2] * margin > pc:
        return None
    total = float(np.mean(block * block))
    if pr + pc < MIN_TONE_ENERGY_RATIO * total:
        return None
    return KEYS[r][c]


class DtmfDetector:
    """Feed audio of any length; returns digits as they are recognised."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._candidate: str | None = None
        self._hits = 0
        self._reported: str | None = None
        self._misses = 0
        self.blocks = 0

    def feed(self, pcm: bytes) -> list[str]:
        self._buf += pcm
        usable = len(self._buf) - len(self._buf) % (BLOCK * 2)
        if not usable:
            return []
        samples = np.frombuffer(bytes(self._buf[:usable]), dtype="<i2").astype(np.float64)
        del self._buf[:usable]
        found = []
        for block in samples.reshape(-1, BLOCK):
            digit = self._debounce(classify_block(block))
            if digit is not None:
                found.append(digit)
        return found

    def _debounce(self, digit: str | None) -> str | None:
        self.blocks += 1
        if digit is not None and digit == self._candidate:
            self._hits += 1
        else:
            self._candidate, self._hits = digit, (1 if digit is not None else 0)
        if digit is None or digit != self._reported:
            self._misses += 1
            if self._misses >= GAP_BLOCKS:
                self._reported = None
        else:
            self._misses = 0
        if digit is not None and self._hits >= HIT_BLOCKS and digit != self._reported:
            self._reported, self._misses = digit, 0
            return digit
        return None


def dtmf_pcm(
    digits: str,
    *,
    tone_ms: int = TONE_MS,
    gap_ms: int = GAP_MS,
    level_dbfs: float = TONE_LEVEL_DBFS,
) -> bytes:
    """8 kHz s16le audio for ``digits``: each a tone of ``tone_ms`` followed by ``gap_ms`` silence."""
    bad = set(digits.upper()) - DIGITS
    if bad:
        raise ValueError(f"not DTMF digits: {''.join(sorted(bad))!r}")
    amp = dbfs_to_amplitude(level_dbfs)
    n = np.arange(SAMPLE_RATE * tone_ms // 1000)
    gap = np.zeros(SAMPLE_RATE * gap_ms // 1000)
    parts = []
    for d in digits.upper():
        r = next(i for i, row in enumerate(KEYS) if d in row)
        c = KEYS[r].index(d)
        t = amp * (np.sin(2 * np.pi * ROWS[r] * n / SAMPLE_RATE) + np.sin(2 * np.pi * COLS[c] * n / SAMPLE_RATE))
        parts += [t, gap]
    return to_pcm(np.concatenate(parts)) if parts else b""


def dtmf_frames(
    digits: str,
    *,
    tone_ms: int = TONE_MS,
    gap_ms: int = GAP_MS,
    level_dbfs: float = TONE_LEVEL_DBFS,
) -> list[bytes]:
    """``dtmf_pcm`` cut into 320-byte frames (the tail padded with silence)."""
    pcm = dtmf_pcm(digits, tone_ms=tone_ms, gap_ms=gap_ms, level_dbfs=level_dbfs)
    pcm += bytes(-len(pcm) % (BLOCK * 2))
    return [pcm[i: i + BLOCK * 2] for i in range(0, len(pcm), BLOCK * 2)]
