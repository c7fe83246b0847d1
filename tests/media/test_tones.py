"""Tone sources: frequencies (FFT), cadences, hold music, file player."""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from media.frames import FRAME_BYTES, SAMPLE_RATE
from media.tones import (
    AudioFileError,
    HoldMusic,
    SequenceSource,
    ToneCadence,
    ToneSource,
    WavPlayer,
    beep_frames,
    ringback,
    ringback_cadence,
    tone,
)
from tests.media.audio_asserts import peak_hz, rms, samples, top_peaks_hz


def take(source, seconds: float) -> bytes:
    frames = [source.next_frame() for _ in range(round(seconds / 0.02))]
    assert all(len(f) == FRAME_BYTES for f in frames)
    return b"".join(frames)


def on_off_per_frame(pcm: bytes) -> list[bool]:
    x = samples(pcm).reshape(-1, 160)
    return [bool(np.any(row != 0)) for row in x]


def test_eu_ringback_425hz_one_on_four_off() -> None:
    pcm = take(ringback("eu"), 10.0)
    flags = on_off_per_frame(pcm)
    assert flags == ([True] * 50 + [False] * 200) * 2
    assert peak_hz(samples(pcm)[:SAMPLE_RATE]) == pytest.approx(425, abs=2)


def test_default_ringback_is_eu_and_iso_codes_map() -> None:
    assert ringback().cadence == ringback_cadence("eu") == ringback_cadence("DE")
    assert ringback_cadence("gb") == ringback_cadence("uk")


def test_us_ringback_440_480_two_on_four_off() -> None:
    pcm = take(ringback("us"), 6.0)
    flags = on_off_per_frame(pcm)
    assert flags == [True] * 100 + [False] * 200
    assert top_peaks_hz(samples(pcm)[: 2 * SAMPLE_RATE], 2) == pytest.approx([440, 480], abs=2)


def test_uk_double_ring_cadence() -> None:
    flags = on_off_per_frame(take(ringback("uk"), 3.0))
    assert flags == [True] * 20 + [False] * 10 + [True] * 20 + [False] * 100


def test_unknown_country_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no ringback cadence for country 'xx'"):
        ringback("xx")


def test_ringback_level_and_phase_continuity() -> None:
    pcm = samples(take(ringback("eu"), 1.0))
    assert np.max(np.abs(pcm)) == pytest.approx(32767 * 10 ** (-16 / 20), rel=0.01)
    # a continuous sine has no jumps bigger than one sample step at the frame joins
    step = 2 * np.pi * 425 / SAMPLE_RATE * np.max(np.abs(pcm))
    assert np.max(np.abs(np.diff(pcm))) <= step * 1.01


def test_bad_cadence_rejected() -> None:
    with pytest.raises(ValueError):
        ToneSource(ToneCadence((5000.0,)))
    with pytest.raises(ValueError):
        ToneSource(ToneCadence((400.0,), (1.0,)))


def test_tone_and_beep_frequencies() -> None:
    assert peak_hz(samples(take(tone(1000.0), 1.0))) == pytest.approx(1000, abs=2)
    frames = beep_frames(750.0, ms=210)
    assert len(frames) == 11 and all(len(f) == FRAME_BYTES for f in frames)
    beep = samples(b"".join(frames))
    assert beep[0] == 0 and abs(beep[-1]) < 200  # faded in and out: no click
    assert peak_hz(beep) == pytest.approx(750, abs=10)


def test_hold_music_is_audible_tonal_and_loops() -> None:
    pcm = take(HoldMusic(), 16.0)
    x = samples(pcm)
    loop = x[: 8 * SAMPLE_RATE]
    assert np.array_equal(loop, x[8 * SAMPLE_RATE:])  # an 8 s loop, seamless frames
    assert 1500 < rms(loop) < 8000  # audible, not loud
    assert np.max(np.abs(loop)) < 0.4 * 32767
    silent = [rms(c) < 50 for c in loop.reshape(-1, 1600)]  # 200 ms windows
    assert not any(silent), "hold music must never drop out"
    spectrum = np.abs(np.fft.rfft(loop)) ** 2
    freqs = np.fft.rfftfreq(loop.size, 1 / SAMPLE_RATE)
    assert spectrum[(freqs > 80) & (freqs < 1600)].sum() > 0.95 * spectrum.sum()


def test_sequence_source_once_then_silence() -> None:
    a, b = b"\x01" * FRAME_BYTES, b"\x02" * FRAME_BYTES
    src = SequenceSource([a, b])
    assert [src.next_frame() for _ in range(3)] == [a, b, bytes(FRAME_BYTES)]
    assert src.finished
    looped = SequenceSource([a, b], loop=True)
    assert [looped.next_frame() for _ in range(3)] == [a, b, a]


def write_wav(path: Path, *, rate: int, channels: int, freq: float, seconds: float) -> Path:
    n = np.arange(int(rate * seconds))
    mono = np.rint(12000 * np.sin(2 * np.pi * freq * n / rate)).astype("<i2")
    data = np.repeat(mono, channels) if channels > 1 else mono
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (16000, 1), (8000, 1), (48000, 2)])
def test_wav_player_converts_to_8k_mono_and_loops(tmp_path: Path, rate: int, channels: int) -> None:
    path = write_wav(tmp_path / f"m{rate}.wav", rate=rate, channels=channels, freq=700.0, seconds=0.5)
    player = WavPlayer(path)
    assert player.seconds == pytest.approx(0.5, abs=0.02)
    pcm = take(player, 1.5)  # three passes over the file
    x = samples(pcm)
    assert peak_hz(x[:4000]) == pytest.approx(700, abs=5)
    assert peak_hz(x[-4000:]) == pytest.approx(700, abs=5)
    assert rms(x[-4000:]) == pytest.approx(12000 / np.sqrt(2), rel=0.1)


def test_wav_player_once_pads_then_silence(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "once.wav", rate=8000, channels=1, freq=500.0, seconds=0.05)
    player = WavPlayer(path, loop=False)
    frames = [player.next_frame() for _ in range(5)]
    assert all(len(f) == FRAME_BYTES for f in frames)
    assert any(frames[0]) and frames[3] == frames[4] == bytes(FRAME_BYTES)


def test_wav_player_rejects_garbage_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00junk" * 20)
    with pytest.raises(AudioFileError):
        WavPlayer(junk)
    with pytest.raises(AudioFileError):
        WavPlayer(tmp_path / "missing.wav")


def test_decode_errors_are_worded_for_an_operator(tmp_path: Path) -> None:
    from media.tones import decode_to_internal

    junk = tmp_path / "notes.wav"
    junk.write_text("this is not audio")
    with pytest.raises(AudioFileError, match=r"notes\.wav: not an audio file this box can play \(") as info:
        decode_to_internal(junk)
    assert "Errno" not in str(info.value)
    with pytest.raises(AudioFileError, match=r"missing\.wav: no such file$"):
        decode_to_internal(tmp_path / "missing.wav")
