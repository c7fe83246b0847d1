"""Small numpy helpers the media tests use to look at audio."""
from __future__ import annotations

import numpy as np

from media.frames import SAMPLE_RATE


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64)


def peak_hz(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Frequency of the strongest FFT bin (Hann window, DC ignored)."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    spectrum[0] = 0.0
    return float(np.fft.rfftfreq(x.size, 1 / rate)[int(np.argmax(spectrum))])


def top_peaks_hz(x: np.ndarray, count: int, rate: int = SAMPLE_RATE, min_gap_hz: float = 15.0) -> list[float]:
    """The ``count`` strongest spectral peaks at least ``min_gap_hz`` apart, ascending."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    spectrum[0] = 0.0
    freqs = np.fft.rfftfreq(x.size, 1 / rate)
    found: list[float] = []
    for i in np.argsort(spectrum)[::-1]:
        if all(abs(freqs[i] - f) >= min_gap_hz for f in found):
            found.append(float(freqs[i]))
        if len(found) == count:
            break
    return sorted(found)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0
