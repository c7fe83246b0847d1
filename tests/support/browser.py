"""Launch the Debian Chromium headless through Playwright, for real WebRTC tests.

Usage::

    wav = write_tone_wav(tmp_path / "mic.wav", freq=1000.0)
    async with launch_chromium(fake_audio_wav=wav) as browser:
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{port}/")

* Uses ``/usr/bin/chromium`` (never ``playwright install``), headless.
* Media permission is granted, the mic/camera are fake (``fake_audio_wav`` makes the mic
  play that WAV in a loop: 48 kHz mono s16 is what Chromium expects), and remote audio
  autoplays, so ``getStats()`` inbound audio energy is populated.
* ``--allow-loopback-in-peer-connection``: Chromium offers 127.0.0.1 candidates. The box
  side must call ``media.webrtc.loopback_only_ice()`` too for a loopback-only run.
* Pages on ``http://127.0.0.1`` are a secure context: no TLS needed.
"""
from __future__ import annotations

import contextlib
import wave
from pathlib import Path
from typing import AsyncIterator, Sequence

import numpy as np
from playwright.async_api import Browser, async_playwright

CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--disable-gpu",
    "--disable-quic",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)
LAUNCH_TIMEOUT_MS = 30_000  # a cold Chromium start on a busy 2-core box takes 1-5 s


@contextlib.asynccontextmanager
async def launch_chromium(
    *, fake_audio_wav: Path | None = None, extra_args: Sequence[str] = ()
) -> AsyncIterator[Browser]:
    """A headless Chromium ``Browser``; closed on exit."""
    args = list(CHROMIUM_FLAGS)
    if fake_audio_wav is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio_wav}")
    args += extra_args
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM_PATH, headless=True, args=args, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield browser
        finally:
            await browser.close()


def write_tone_wav(
    path: Path, *, freq: float = 1000.0, seconds: float = 3.0, rate: int = 48_000, amplitude: float = 0.5
) -> Path:
    """Write a mono s16 sine WAV (default 1 kHz, 48 kHz, 3 s) for the fake mic; returns ``path``.

    The length is a whole number of cycles so the loop Chromium plays has no click.
    """
    cycles = max(1, round(freq * seconds))
    n = np.arange(round(cycles * rate / freq))
    samples = np.rint(amplitude * 32767 * np.sin(2 * np.pi * freq * n / rate)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path
