"""In-band DTMF: generate digits, detect them back; no false digits on noise, speech, music."""
from __future__ import annotations

import numpy as np
import pytest

from media.dtmf import (
    COLS,
    ROWS,
    DtmfDetector,
    dtmf_frames,
    dtmf_pcm,
)
from media.frames import FRAME_BYTES, SAMPLE_RATE
from media.tones import hold_music_loop, to_pcm

ALL_DIGITS = "0123456789*#ABCD"


def detect(pcm: bytes, chunk: int = FRAME_BYTES) -> list[str]:
    det = DtmfDetector()
    found: list[str] = []
    for i in range(0, len(pcm), chunk):
        found += det.feed(pcm[i: i + chunk])
    return found


def with_noise(pcm: bytes, noise_rms: float, seed: int = 7) -> bytes:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    x += np.random.default_rng(seed).normal(0.0, noise_rms, x.size)
    return to_pcm(x)


def speech_like(seconds: float, seed: int = 3) -> bytes:
    """Voiced syllables (gliding f0, two moving formants) with noisy consonants between."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 140 + 60 * np.sin(2 * np.pi * 0.7 * t) + 20 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    f1 = 500 + 250 * np.sin(2 * np.pi * 1.3 * t)
    f2 = 1500 + 600 * np.sin(2 * np.pi * 0.9 * t + 1.0)
    voiced = np.zeros(n)
    for k in range(1, 30):  # harmonics shaped by the two formants
        hk = k * f0
        gain = np.exp(-(((hk - f1) / 150) ** 2)) + 0.6 * np.exp(-(((hk - f2) / 200) ** 2)) + 0.05
        voiced += np.where(hk < 3800, gain * np.sin(k * phase), 0.0)
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.5
    consonants = rng.normal(0, 0.3, n) * (1 - syllables) ** 4
    x = voiced * syllables + consonants
    return to_pcm(x * (8000 / np.sqrt(np.mean(x * x))))


def test_every_digit_round_trips() -> None:
    assert detect(dtmf_pcm(ALL_DIGITS)) == list(ALL_DIGITS)


def test_generator_frames_are_whole_and_lowercase_letters_accepted() -> None:
    frames = dtmf_frames("a1")
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert len(frames) == 2 * (5 + 5)  # 100 ms tone + 100 ms gap per digit
    assert detect(b"".join(frames)) == ["A", "1"]


def test_generator_rejects_non_digits() -> None:
    with pytest.raises(ValueError, match="not DTMF digits"):
        dtmf_pcm("12x")


def test_repeated_digits_need_the_gap_and_are_reported_each_time() -> None:
    assert detect(dtmf_pcm("1111")) == ["1"] * 4
    # one long press is one digit
    assert detect(dtmf_pcm("5", tone_ms=1000)) == ["5"]


def test_arbitrary_chunk_sizes_give_the_same_digits() -> None:
    pcm = dtmf_pcm("8675309#")
    assert detect(pcm, chunk=97 * 2) == detect(pcm, chunk=4000) == list("8675309#")


def test_minimum_durations_fast_dialling() -> None:
    # 60 ms tones with 60 ms pauses (faster than most phones dial) still decode
    assert detect(dtmf_pcm("159#", tone_ms=60, gap_ms=60)) == list("159#")
    # 30 ms blips (below the Q.24 40 ms minimum) are ignored
    assert detect(dtmf_pcm("159#", tone_ms=30, gap_ms=60)) == []


@pytest.mark.parametrize("noise_rms", [300.0, 1000.0])
def test_digits_survive_noise(noise_rms: float) -> None:
    # tones at -10 dBFS each (rms ~7300): SNR about 27 dB and 17 dB
    assert detect(with_noise(dtmf_pcm(ALL_DIGITS), noise_rms)) == list(ALL_DIGITS)


def test_quiet_digits_within_twist_limits() -> None:
    assert detect(dtmf_pcm("42", level_dbfs=-35.0)) == ["4", "2"]


def test_excessive_twist_is_rejected() -> None:
    n = np.arange(SAMPLE_RATE // 5)
    row = 10000 * np.sin(2 * np.pi * ROWS[0] * n / SAMPLE_RATE)
    col = 1000 * np.sin(2 * np.pi * COLS[0] * n / SAMPLE_RATE)  # 20 dB weaker
    assert detect(to_pcm(row + col)) == []
    assert detect(to_pcm(0.4 * row + col)) == []  # 12 dB: still beyond the 8 dB limit
    assert detect(to_pcm(0.2 * row + col)) == ["1"]  # 6 dB: accepted

def test_single_tones_and_silence_give_nothing() -> None:
    n = np.arange(SAMPLE_RATE)
    assert detect(bytes(SAMPLE_RATE * 2)) == []
    assert detect(to_pcm(10000 * np.sin(2 * np.pi * ROWS[2] * n / SAMPLE_RATE))) == []
    assert detect(with_noise(bytes(SAMPLE_RATE * 4), 3000.0)) == []


def test_no_false_digits_on_hold_music() -> None:
    assert detect(hold_music_loop() * 8) == []  # 64 s of music


def test_no_false_digits_on_speech_like_audio() -> None:
    assert detect(speech_like(60.0)) == []


def test_digits_detected_over_hold_music() -> None:
    music = np.frombuffer(hold_music_loop()[: len(dtmf_pcm("369"))], dtype="<i2").astype(np.float64)
    tones = np.frombuffer(dtmf_pcm("369"), dtype="<i2").astype(np.float64)
    assert detect(to_pcm(tones + 0.1 * music)) == list("369")
