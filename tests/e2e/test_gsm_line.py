"""End to end on a GSM line: the real driver talks to the Huawei simulator over ptys.

A call from the simulated network is answered by a Chromium agent and recorded; a
three-part UCS-2 SMS arriving out of order reaches the agent's inbox whole, and the
agent's reply leaves the modem as a correctly encoded SMS-SUBMIT PDU.
"""
from __future__ import annotations

import asyncio
import wave
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from drivers.gsm import pdu
from drivers.sim.gsm import GsmSimulator
from tests.e2e.test_sip_call_to_browser import AGENT_TONE_HZ, UI_TIMEOUT_MS, load_record, login, peak_hz
from tests.support.box import running_box
from tests.support.browser import launch_chromium, write_tone_wav

pytestmark = [pytest.mark.browser]

CALLER = "+447700900461"
SMS_FROM = "+447700900462"


def gsm_config(sim: GsmSimulator) -> str:
    return f'[[gsm]]\nport = "{sim.port}"\naudio_port = "{sim.audio_port}"\nprofile = "huawei"\n'


def caller_wav(path: Path, seconds: float = 3.0) -> np.ndarray:
    """8 kHz mono speech-like test signal: two tones with a syllable-rate envelope."""
    t = np.arange(int(8000 * seconds)) / 8000
    env = 0.55 + 0.45 * np.sin(2 * np.pi * 3.0 * t)
    x = (6000 * env * (np.sin(2 * np.pi * 523 * t) + 0.6 * np.sin(2 * np.pi * 784 * t + 0.3))).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(x.tobytes())
    return x


def best_correlation(recorded: np.ndarray, reference: np.ndarray, *, window_s: float = 0.25, windows: int = 4) -> float:
    """Median over several reference windows of their peak normalised cross-correlation
    with the recording. Short windows keep one lost 20 ms frame (a loaded CI machine) from
    spoiling the comparison, while the median still needs most of the audio to match."""
    rec = recorded.astype(np.float64)
    n = int(8000 * window_s)
    energy = np.concatenate(([0.0], np.cumsum(rec * rec)))
    seg_norm = np.sqrt(np.maximum(energy[n:] - energy[:-n], 0.0))  # norm of rec[i:i+n] for every i
    scores = []
    for w in range(windows):
        ref = reference[w * n : (w + 1) * n].astype(np.float64)
        dots = np.correlate(rec, ref, mode="valid")  # every lag, one sample apart
        denom = seg_norm * np.linalg.norm(ref)
        scores.append(float(np.max(np.where(denom > 0, dots / np.where(denom > 0, denom, 1.0), 0.0))))
    return float(np.median(scores))


async def test_gsm_call_answered_by_browser_agent_and_recorded(tmp_path: Path) -> None:
    sim = GsmSimulator("huawei").start()
    reference = caller_wav(tmp_path / "caller.wav")
    sim.load_wav(str(tmp_path / "caller.wav"))
    mic = write_tone_wav(tmp_path / "mic.wav", freq=AGENT_TONE_HZ, seconds=3.0)
    try:
        async with running_box(tmp_path, extra_config=gsm_config(sim)) as box:
            await box.wait_for_log(r"gsm:356938035643809 ready on", timeout=30)
            async with launch_chromium(fake_audio_wav=mic) as browser:
                page = await browser.new_page()
                await login(page, box.web_url, "alice", "alice-pw")
                sim.place_call(CALLER)
                await page.wait_for_selector("#offer:not([hidden])", timeout=UI_TIMEOUT_MS)
                assert await page.text_content("#offer-caller") == CALLER
                await page.click("#btn-answer")
                await page.wait_for_selector("#call:not([hidden])", timeout=UI_TIMEOUT_MS)
                # the modem's uplink carries the agent: 3 s of PCM written to the audio port
                uplink = await sim.wait_audio(3 * 16000, timeout=15)
                up = np.frombuffer(uplink[: len(uplink) // 2 * 2], dtype="<i2")
                assert abs(peak_hz(up[-16000:]) - AGENT_TONE_HZ) <= 20
                sim.caller_hangs_up()
                await page.wait_for_selector("#wrapup:not([hidden])", timeout=UI_TIMEOUT_MS)
                await page.click("#btn-wrapup-done")
                await page.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)
            assert await box.stop() == 0
    finally:
        sim.close()
    calls, rec_dir = await load_record(box.data_dir)
    assert len(calls) == 1
    rec = calls[0]
    assert rec.outcome == "answered" and rec.line_kind == "gsm" and rec.line_id == "gsm:356938035643809"
    assert rec.from_number == CALLER and rec.agent_id == "alice" and rec.hangup_cause == "caller hung up"
    with wave.open(str(rec_dir / rec.recording_path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert len(frames) / 8000 > 2.5
    assert best_correlation(frames[:, 0], reference) >= 0.9
    assert abs(peak_hz(frames[:, 1]) - AGENT_TONE_HZ) <= 20


async def test_multipart_ucs2_sms_reaches_console_and_reply_is_encoded(tmp_path: Path) -> None:
    text = "Hello from the branch 👋 " + "ÄÖÜ é ñ ç — " * 13 + "the end 🎉"
    raw = text.encode("utf-16-be")
    cut1, cut2 = 134, 268
    assert not (0xD8 <= raw[cut1 - 2] <= 0xDB) and not (0xD8 <= raw[cut2 - 2] <= 0xDB)
    parts = [raw[:cut1], raw[cut1:cut2], raw[cut2:]]
    when = datetime(2026, 12, 3, 10, 30, tzinfo=timezone.utc)
    pdus = [
        pdu.encode_deliver(SMS_FROM, p.decode("utf-16-be"), when, concat=pdu.Concat(0x42, 3, i + 1, 0x00), ucs2=True).hex
        for i, p in enumerate(parts)
    ]
    sim = GsmSimulator("huawei").start()
    try:
        async with running_box(tmp_path, extra_config=gsm_config(sim)) as box:
            await box.wait_for_log(r"gsm:356938035643809 ready on", timeout=30)
            async with launch_chromium() as browser:
                page = await browser.new_page()
                await login(page, box.web_url, "bob", "bob-pw")
                for i in (2, 0, 1):  # out of order
                    sim.deliver_sms(pdus[i])
                conv = page.locator("#conversations li.conversation")
                await conv.first.wait_for(timeout=UI_TIMEOUT_MS)
                await conv.first.click()
                msg = page.locator("#thread-messages li.message.in")
                await msg.first.wait_for(timeout=UI_TIMEOUT_MS)
                assert await msg.count() == 1
                assert (await msg.first.text_content()).endswith(text)
                assert await page.text_content("#thread-number") == SMS_FROM

                reply = "Thanks 👍 we will call you back today"
                await page.fill("#reply-text", reply)
                await page.click("#btn-reply")
                await page.locator("#thread-messages li.message.out").first.wait_for(timeout=UI_TIMEOUT_MS)
                sent = await sim.wait_matching(r"[0-9A-F]{30,}", timeout=10)
                # a fresh console loads the stored conversation through the API
                fresh = await browser.new_page()
                await login(fresh, box.web_url, "alice", "alice-pw")
                await fresh.locator("#conversations li.conversation").first.click(timeout=UI_TIMEOUT_MS)
                stored = fresh.locator("#thread-messages li.message")
                await stored.nth(1).wait_for(timeout=UI_TIMEOUT_MS)
                assert await stored.count() == 2
                assert (await stored.nth(1).text_content()).endswith(reply)
            assert await box.stop() == 0
    finally:
        sim.close()
    submit = pdu.decode(sent)
    assert isinstance(submit, pdu.Submit)
    assert submit.destination == SMS_FROM and submit.text == reply and submit.dcs == 0x08
