"""Click-to-dial from the agent console, end to end, over the box's simulated GSM line.

The box runs as its own process with its built-in simulated GSM modem (no trunk is
configured, so the default dial plan falls through to GSM). A headless Chromium agent
(fake microphone: a 600 Hz tone) types a number and presses Call; the modem simulator
answers the ATD with the bytes a real modem sends and its simulated callee speaks a
1000 Hz tone. The agent hangs up after a few seconds of talk and files a disposition.
"""
from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_sip_call_to_browser import load_record, login, loud_seconds, peak_hz, wait_for_inbound_packets
from tests.support.box import running_box
from tests.support.browser import launch_chromium, write_tone_wav

pytestmark = [pytest.mark.browser, pytest.mark.skipif(shutil.which("chromium") is None, reason="no chromium")]

UI_TIMEOUT_MS = 30_000  # the console reacts in ms; the simulated callee answers after about 1 s
LINE_UP_TIMEOUT_S = 30.0  # the simulated modem comes up in about a second
AGENT_TONE_HZ = 600.0
CALLEE_TONE_HZ = 1000.0  # drivers/sim/callee.py default
TONE_TOLERANCE_HZ = 20.0
NUMBER = "+44 7700 900123"
TALK_PACKETS = 150  # 3 s of the callee's audio at 50 packets/s reach the agent before hanging up


async def test_agent_dials_out_on_the_gsm_line_talks_and_wraps_up(tmp_path: Path) -> None:
    mic = write_tone_wav(tmp_path / "mic.wav", freq=AGENT_TONE_HZ, seconds=3.0)
    async with running_box(tmp_path, extra_config="[acd]\nwrapup_s = 60\n", simulators="gsm = true\nanalog = false") as box:
        await box.wait_for_log(r"gsm:\d+ ready on", timeout=LINE_UP_TIMEOUT_S)
        async with launch_chromium(fake_audio_wav=mic) as browser:
            page = await browser.new_page()
            await login(page, box.web_url, "alice", "alice-pw")
            await page.wait_for_selector("#dial-form:not([hidden])", timeout=UI_TIMEOUT_MS)
            await page.fill("#dial-number", "not a number")
            await page.click("#btn-dial")
            await page.wait_for_selector("#console-error:has-text('not a number that can be dialled')", timeout=UI_TIMEOUT_MS)
            await page.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)  # nothing changed

            await page.fill("#dial-number", NUMBER)
            await page.click("#btn-dial")
            await page.wait_for_selector("#call-title:has-text('Calling')", timeout=UI_TIMEOUT_MS)
            await page.wait_for_selector("#call-title:has-text('outbound')", timeout=UI_TIMEOUT_MS)  # answered
            answered = (await page.evaluate("bl.stats()"))["inboundAudio"]["packetsReceived"]
            assert await wait_for_inbound_packets(page, answered + TALK_PACKETS)
            await page.click("#btn-hangup")
            await page.wait_for_selector("#wrapup:not([hidden])", timeout=UI_TIMEOUT_MS)
            await page.select_option("#disposition", "resolved")
            await page.click("#btn-wrapup-done")
            await page.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)
        await box.wait_for_log(r"outbound call \S+ ended: agent hung up", timeout=10)
        assert await box.stop() == 0
    calls, rec_dir = await load_record(box.data_dir)
    rec = next(c for c in calls if c.disposition == "resolved")
    assert rec.direction == "outbound" and rec.outcome == "answered" and rec.agent_id == "alice", rec
    assert rec.to_number == "+447700900123" and rec.line_id.startswith("gsm:") and rec.line_kind == "gsm", rec
    assert rec.hangup_cause == "agent hung up" and rec.customer_id, rec
    assert 2.5 < rec.talk_s < 60.0, rec.talk_s
    with wave.open(str(rec_dir / rec.recording_path)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert abs(len(frames) / 8000 - rec.talk_s) < 1.0
    left, right = frames[:, 0], frames[:, 1]
    assert abs(peak_hz(left) - CALLEE_TONE_HZ) <= TONE_TOLERANCE_HZ  # the customer's side: the simulated callee
    assert loud_seconds(left) > rec.talk_s - 1.5
    assert abs(peak_hz(right) - AGENT_TONE_HZ) <= TONE_TOLERANCE_HZ  # the agent's microphone


async def test_busy_number_is_reported_to_the_agent_and_stored(tmp_path: Path) -> None:
    from tests.e2e.test_queue_raw_sip import AnyWith, ConsoleAgent
    from tests.e2e.test_simulated_lines import sim_cli

    async with running_box(tmp_path, simulators="gsm = true\nanalog = false") as box:
        await box.wait_for_log(r"gsm:\d+ ready on", timeout=LINE_UP_TIMEOUT_S)
        rc, out = await sim_cli(box, "callee", "gsm", "busy", "--number", "+447700900999")
        assert rc == 0 and "busy" in out, out
        agent = ConsoleAgent(box.web_url, "alice", "alice-pw")
        try:
            await agent.login()
            await agent.connect_audio()
            await agent.go_available()
            await agent.send("dial", number="+447700900999")
            dialing = await agent.next("dialing")
            ended = await agent.next("call", state="ended")
            assert ended["call_id"] == dialing["call_id"] and ended["cause"] == "busy", ended
            await agent.next("state", agent=AnyWith(state="wrap_up"))
            await agent.send("wrapup", disposition="wrong number")
            await agent.next("state", agent=AnyWith(state="available"))
        finally:
            await agent.close()
        assert await box.stop() == 0
    calls, _ = await load_record(box.data_dir)
    rec = next(c for c in calls if c.call_id == dialing["call_id"])
    assert rec.direction == "outbound" and rec.outcome == "failed" and rec.hangup_cause == "busy", rec
    assert rec.answered_at is None and rec.recording_path is None and rec.line_id.startswith("gsm:"), rec
    assert rec.disposition == "wrong number", rec


async def test_agent_dials_out_on_the_analog_line(tmp_path: Path) -> None:
    """Default dial plan, no trunk and no GSM: the call goes out on the simulated V.253 line
    (ATD in voice mode, VCON); the simulated callee speaks a 1000 Hz tone for 3 s and hangs up."""
    from tests.e2e.test_queue_raw_sip import AnyWith, ConsoleAgent
    from tests.e2e.test_simulated_lines import sim_cli

    async with running_box(tmp_path, simulators="gsm = false\nanalog = true") as box:
        await box.wait_for_log(r"analog:0: ready on", timeout=LINE_UP_TIMEOUT_S)
        rc, out = await sim_cli(box, "callee", "analog", "answer", "--hangup-after", "3")
        assert rc == 0, out
        agent = ConsoleAgent(box.web_url, "alice", "alice-pw")
        try:
            await agent.login()
            await agent.connect_audio()
            await agent.go_available()
            await agent.send("dial", number="503-555-0100")
            dialing = await agent.next("dialing")
            on_call = await agent.next("call", state="on_call", timeout_s=30.0)
            assert on_call["line"] == "analog:0" and on_call["direction"] == "outbound", on_call
            ended = await agent.next("call", state="ended", timeout_s=30.0)
            assert ended["cause"] == "far end hung up", ended
            await agent.next("state", agent=AnyWith(state="wrap_up"))
        finally:
            await agent.close()
        assert await box.stop() == 0
    calls, rec_dir = await load_record(box.data_dir)
    rec = next(c for c in calls if c.call_id == dialing["call_id"])
    assert rec.direction == "outbound" and rec.outcome == "answered" and rec.line_id == "analog:0", rec
    assert rec.to_number == "5035550100" and rec.line_kind == "analog", rec
    assert 2.0 < rec.talk_s < 10.0, rec.talk_s  # the callee hung up 3 s after answering (busy tone detection adds a little)
    with wave.open(str(rec_dir / rec.recording_path)) as w:
        left = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)[:, 0]
    assert abs(peak_hz(left) - CALLEE_TONE_HZ) <= TONE_TOLERANCE_HZ  # the analog callee's voice
    assert loud_seconds(left) > 2.0
