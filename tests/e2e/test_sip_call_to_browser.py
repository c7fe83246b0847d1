"""End to end: SIPp dials the box, a Chromium agent answers, the call is bridged and recorded.

Real peers only: the box runs as its own process (``run.py``), SIPp plays the 7.05 s A-law
pcap and an RFC 4733 digit, and headless Chromium's fake microphone plays a 1 kHz tone.
"""
from __future__ import annotations

import asyncio
import socket
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.support.box import running_box, run_sipp, sipp_workdir
from tests.support.browser import launch_chromium, write_tone_wav

pytestmark = [pytest.mark.browser, pytest.mark.sipp]

UI_TIMEOUT_MS = 20_000
PCAP_SECONDS = 7.05  # /usr/share/sip-tester/g711a.pcap
AGENT_TONE_HZ = 1000.0


async def login(page, web_url: str, agent: str, password: str) -> None:
    await page.goto(web_url)
    await page.fill("#agent-id", agent)
    await page.fill("#password", password)
    await page.click("#login-btn")
    await page.wait_for_selector("#audio-status[data-state=connected]", timeout=UI_TIMEOUT_MS)
    await page.click("#btn-available")
    await page.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)


async def wait_for_inbound_packets(page, count: int, timeout_ms: int = UI_TIMEOUT_MS) -> bool:
    """Poll the page's getStats until inbound audio packets exceed ``count`` (bounded)."""
    return await page.evaluate(
        """async ([count, timeoutMs]) => {
             const end = Date.now() + timeoutMs;
             while (Date.now() < end) {
               const s = await bl.stats();
               if (s.inboundAudio && s.inboundAudio.packetsReceived > count) return true;
               await new Promise(r => setTimeout(r, 100));
             }
             return false;
           }""",
        [count, timeout_ms],
    )


def load_record(data_dir: Path):
    from appliance.storage import Store

    async def read():
        store = await Store.open(data_dir)
        try:
            return await store.recent_calls(10), store.recordings_dir()
        finally:
            await store.close()

    return read()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def carried_span_s(samples: np.ndarray, rate: int = 8000) -> float:
    """Span of 20 ms windows holding audio from the peer.

    G.711 never decodes to an exact 0 (A-law's quietest code is +-8), while the bridge
    fills ticks without a frame with exact zeros; so non-zero windows are carried audio,
    including the pcap's own quiet lead-in.
    """
    win = rate // 50
    n = len(samples) // win
    carried = np.flatnonzero(np.abs(samples[: n * win].reshape(n, win)).max(axis=1) > 0)
    return 0.0 if carried.size == 0 else (carried[-1] - carried[0] + 1) * win / rate


def loud_seconds(samples: np.ndarray, rate: int = 8000, threshold: float = 200.0) -> float:
    win = rate // 50
    n = len(samples) // win
    rms = np.sqrt(np.mean(samples[: n * win].reshape(n, win).astype(np.float64) ** 2, axis=1))
    return float(np.count_nonzero(rms > threshold) * win / rate)


def peak_hz(samples: np.ndarray, rate: int = 8000) -> float:
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])


async def test_sipp_call_answered_by_browser_agent_bridged_and_recorded(tmp_path: Path) -> None:
    mic = write_tone_wav(tmp_path / "mic.wav", freq=AGENT_TONE_HZ, seconds=3.0)
    async with running_box(tmp_path, extra_config="[acd]\nwrapup_s = 60\n") as box:
        async with launch_chromium(fake_audio_wav=mic) as browser:
            page = await browser.new_page()
            await login(page, box.web_url, "alice", "alice-pw")

            sipp = asyncio.create_task(run_sipp(
                [f"127.0.0.1:{box.sip_udp}", "-sn", "uac_pcap", "-s", "support", "-m", "1",
                 "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port())],
                cwd=sipp_workdir(tmp_path), timeout=90,
            ), name="sipp")

            await page.wait_for_selector("#offer:not([hidden])", timeout=UI_TIMEOUT_MS)
            assert await page.text_content("#offer-caller") == "sipp"
            assert float(await page.text_content("#offer-wait")) >= 0.0
            await page.click("#btn-answer")
            await page.wait_for_selector("#call:not([hidden])", timeout=UI_TIMEOUT_MS)
            assert await page.is_visible("#call-recording")
            # the browser hears the caller while the call is up
            assert await wait_for_inbound_packets(page, 50)
            rc, out = await sipp
            assert rc == 0, out[-3000:]

            await page.wait_for_selector("#wrapup:not([hidden])", timeout=UI_TIMEOUT_MS)
            assert await page.get_attribute("#state", "data-state") == "wrap_up"
            await page.select_option("#disposition", "resolved")
            await page.click("#btn-wrapup-done")
            await page.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)
            stats = await page.evaluate("bl.stats()")
            assert stats["inboundAudio"]["packetsReceived"] > 50
            assert stats["inboundAudio"]["totalAudioEnergy"] > 0
        await box.wait_for_log(r"call \S+ wrap-up done: disposition resolved", timeout=10)
        assert await box.stop() == 0

    calls, rec_dir = await load_record(box.data_dir)
    assert len(calls) == 1
    rec = calls[0]
    assert rec.outcome == "answered" and rec.agent_id == "alice" and rec.agent_name == "Alice Martin"
    assert rec.from_number == "sipp" and rec.to_number == "support" and rec.queue == "support"
    assert rec.line_kind == "sip" and rec.hangup_cause == "caller hung up"
    assert rec.disposition == "resolved"
    assert rec.enqueued_at <= rec.offered_at <= rec.answered_at <= rec.ended_at <= rec.wrapup_ended_at
    assert 0 <= rec.wait_s < 20 and 7.0 < rec.talk_s < 15 and rec.wrapup_s >= 0
    assert rec.dtmf == "1"
    assert rec.offers == ("alice",)

    wav_path = rec_dir / rec.recording_path
    with wave.open(str(wav_path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert abs(len(frames) / 8000 - rec.talk_s) < 1.0
    left, right = frames[:, 0], frames[:, 1]
    assert abs(carried_span_s(left) - PCAP_SECONDS) <= 0.3
    assert loud_seconds(left) > 5.0  # speech-level audio, not just idle codes
    assert abs(peak_hz(right) - AGENT_TONE_HZ) <= 20
    assert [p for p in rec_dir.rglob("*") if p.name.endswith(".open")] == []
