"""What every "real softphone calls the queue, a Chromium agent answers" end-to-end test shares.

The phone (baresip, linphonec, ...) plays a 600 Hz tone, the agent's fake microphone a 1 kHz
tone; the box records the call as a stereo WAV (left: caller, right: agent). This module holds
the tone files, free loopback ports, the agent-side steps in the browser and the checks on the
call record and recording the box stored.
"""
from __future__ import annotations

import contextlib
import socket
import wave
from pathlib import Path

import numpy as np

from tests.e2e.test_sip_call_to_browser import load_record, loud_seconds, peak_hz
from tests.support.box import BoxProcess

UI_TIMEOUT_MS = 20_000  # the agent console reacts in ms; generous for a loaded 2-core box
WRAPUP_LOG_TIMEOUT_S = 10.0  # the box logs the wrap-up within ms of the click
PHONE_TONE_HZ = 600.0
AGENT_TONE_HZ = 1000.0
TALK_S = 3.0  # audio flows this long before hold, and again after resume
MIN_ENERGY_GAIN = 0.01  # WebRTC totalAudioEnergy gained (level^2 x seconds): a -12 dBFS tone adds ~0.06/s
MAX_TALK_S = 60.0  # a test call never lasts longer; a longer talk time means a lost hangup
TONE_TOLERANCE_HZ = 20.0  # FFT bin width of a few seconds of 8 kHz audio is well under this
# sip_extra for running_box: extension 201 with the default challenges (SHA-256, then MD5) ...
EXTENSION_201_PASSWORD = "secret"
EXTENSION_201_BOTH = f'users = [["201", "{EXTENSION_201_PASSWORD}"]]'
# ... or MD5 only: baresip 1.0 gives up on any SHA-256 challenge (see tests/e2e/test_baresip.py).
EXTENSION_201 = EXTENSION_201_BOTH + '\nauth_algorithms = ["MD5"]'


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_pair(kinds: tuple[int, ...] = (socket.SOCK_DGRAM,), *, even: bool = False) -> int:
    """A port P such that P and P+1 are free on 127.0.0.1 for every socket kind in ``kinds``.

    ``even=True`` gives an RTP port (even, RTCP on P+1, RFC 3550 §11).
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if even and port % 2:
            port -= 1
        try:
            with contextlib.ExitStack() as stack:
                for kind in kinds:
                    for p in (port, port + 1):
                        stack.enter_context(socket.socket(socket.AF_INET, kind)).bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
    raise AssertionError("no free loopback port pair")


def write_phone_wav(path: Path, seconds: float = 60.0, freq: float = PHONE_TONE_HZ) -> Path:
    """8 kHz mono s16 tone: what the phone sends (its "microphone")."""
    n = np.arange(int(8000 * seconds))
    samples = np.rint(8000 * np.sin(2 * np.pi * freq * n / 8000)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.tobytes())
    return path


async def answer_offer(page, caller: str) -> None:
    """The agent sees the offer from ``caller`` and answers it."""
    await page.wait_for_selector("#offer:not([hidden])", timeout=UI_TIMEOUT_MS)
    assert await page.text_content("#offer-caller") == caller
    await page.click("#btn-answer")


async def agent_hears_the_phone(page) -> None:
    """Wait until the agent's browser received TALK_S more seconds of audio (50 packets/s), not silent.

    The box streams (silent) packets to a logged-in agent all the time, so both counts are
    taken relative to now; the energy check (any non-silence) is what proves the phone's audio.
    """
    packets, energy = await page.evaluate(
        "bl.stats().then(s => [s.inboundAudio.packetsReceived, s.inboundAudio.totalAudioEnergy])")
    # wait_for_function does not await a promise (a Promise is truthy), so the page waits itself
    reached = await page.evaluate(
        """async ([packets, energy, ms]) => {
             const end = Date.now() + ms;
             while (Date.now() < end) {
               const a = (await bl.stats()).inboundAudio;
               if (a.packetsReceived > packets && a.totalAudioEnergy > energy) return true;
               await new Promise(r => setTimeout(r, 100));
             }
             return false;
           }""", [packets + int(TALK_S * 50), energy + MIN_ENERGY_GAIN, UI_TIMEOUT_MS])
    assert reached, await page.evaluate("bl.stats()")


async def finish_wrapup(page, box: BoxProcess, disposition: str = "resolved") -> None:
    """After the caller hung up: the agent files the disposition and is available again."""
    await page.wait_for_selector("#wrapup:not([hidden])", timeout=UI_TIMEOUT_MS)
    await page.select_option("#disposition", disposition)
    await page.click("#btn-wrapup-done")
    await page.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)
    await box.wait_for_log(rf"call \S+ wrap-up done: disposition {disposition}", timeout=WRAPUP_LOG_TIMEOUT_S)


async def assert_answered_call_recorded(data_dir: Path, *, caller: str = "201", queue: str = "support",
                                       agent: str = "alice") -> None:
    """The box (already stopped) stored one answered SIP call, hung up by the caller, whose stereo
    recording carries the phone's tone on the left and the agent's on the right for the talk time
    (TALK_S before the hold and TALK_S after the resume)."""
    calls, rec_dir = await load_record(data_dir)
    assert len(calls) == 1, calls
    rec = calls[0]
    assert rec.outcome == "answered" and rec.agent_id == agent and rec.hangup_cause == "caller hung up", rec
    assert rec.from_number == caller and rec.to_number == queue and rec.line_kind == "sip", rec
    assert 2 * TALK_S < rec.talk_s < MAX_TALK_S, rec.talk_s
    with wave.open(str(rec_dir / rec.recording_path)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert abs(len(frames) / 8000 - rec.talk_s) < 1.0
    left, right = frames[:, 0], frames[:, 1]
    assert abs(peak_hz(left) - PHONE_TONE_HZ) <= TONE_TOLERANCE_HZ  # the phone's tone reached the box
    assert loud_seconds(left) > 2 * TALK_S - 1.0
    assert abs(peak_hz(right) - AGENT_TONE_HZ) <= TONE_TOLERANCE_HZ  # the agent's tone reached the box
