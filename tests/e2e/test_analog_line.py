"""End to end on an analog line: the V.253 driver talks to the simulated Conexant modem
over a pty; the call rings with US-style caller ID and a Chromium agent answers it."""
from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from drivers.sim.analog import AnalogModemSim, SimCaller
from tests.e2e.test_gsm_line import best_correlation
from tests.e2e.test_sip_call_to_browser import AGENT_TONE_HZ, UI_TIMEOUT_MS, load_record, login, peak_hz
from tests.support.box import running_box
from tests.support.browser import launch_chromium, write_tone_wav

pytestmark = [pytest.mark.browser]
SIM_WAIT_S = 15.0


def sweep(seconds: float = 3.0) -> bytes:
    """A loud 300-3000 Hz sweep: 8-bit samples hit 0x10, so DLE shielding is exercised."""
    t = np.arange(int(8000 * seconds)) / 8000
    f = 300 + 2700 * (t % 1.0)
    phase = 2 * np.pi * np.cumsum(f) / 8000
    return (0.9 * 32767 * np.sin(phase)).astype("<i2").tobytes()


async def test_analog_call_with_us_caller_id_answered_by_browser_agent(tmp_path: Path) -> None:
    pcm = sweep()
    sim = await AnalogModemSim("conexant", audio=pcm, time_scale=0.25).start()
    mic = write_tone_wav(tmp_path / "mic.wav", freq=AGENT_TONE_HZ, seconds=3.0)
    ringing: asyncio.Task | None = None
    try:
        extra = f'[[analog]]\nport = "{sim.port}"\nprofile = "conexant"\n'
        async with running_box(tmp_path, extra_config=extra) as box:
            await box.wait_for_log(r"analog:0: ready on", timeout=30)
            async with launch_chromium(fake_audio_wav=mic) as browser:
                page = await browser.new_page()
                await login(page, box.web_url, "alice", "alice-pw")
                ringing = asyncio.create_task(sim.ring(SimCaller(), style="us", rings=20), name="sim-ring")
                await page.wait_for_selector("#offer:not([hidden])", timeout=UI_TIMEOUT_MS)
                assert await page.text_content("#offer-caller") == "5035551234"
                assert await page.text_content("#offer-name") == "(SMITH JOHN)"
                await page.click("#btn-answer")
                await page.wait_for_selector("#call:not([hidden])", timeout=UI_TIMEOUT_MS)
                await sim.wait_for(lambda: len(sim.sent_audio) >= len(pcm) // 2, timeout=SIM_WAIT_S)  # 8-bit: 1 B/sample
                await sim.wait_for(lambda: len(sim.received_audio) >= 16000, timeout=SIM_WAIT_S)  # 2 s of the agent
                sim.send_dtmf("5")
                sim.send_event("b")  # busy tone: the far end has gone
                await page.wait_for_selector("#wrapup:not([hidden])", timeout=UI_TIMEOUT_MS)
                await page.click("#btn-wrapup-done")
                await page.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)
            agent_audio = sim.converter().to_pcm(bytes(sim.received_audio))
            assert await box.stop() == 0
    finally:
        if ringing is not None:
            ringing.cancel()
        await sim.close()
    up = np.frombuffer(agent_audio, dtype="<i2")
    assert abs(peak_hz(up[-8000:]) - AGENT_TONE_HZ) <= 20
    calls, rec_dir = await load_record(box.data_dir)
    assert len(calls) == 1
    rec = calls[0]
    assert rec.line_kind == "analog" and rec.line_id == "analog:0" and rec.outcome == "answered"
    assert rec.from_number == "5035551234" and rec.from_name == "SMITH JOHN"
    assert rec.hangup_cause == "far end hung up"
    assert rec.dtmf == "5"
    with wave.open(str(rec_dir / rec.recording_path)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    reference = np.frombuffer(pcm, dtype="<i2")
    assert best_correlation(frames[:, 0], reference) >= 0.9
    assert abs(peak_hz(frames[:, 1]) - AGENT_TONE_HZ) <= 20
