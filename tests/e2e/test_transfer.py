"""Acceptance, end to end: an attended transfer from agent A to agent B on the real box.

SIPp calls in and plays SIPp's g711a speech (looped, so it lasts through the transfer);
two headless Chromium agents talk through fake microphones (Alice a 1 kHz tone, Bob
600 Hz). Alice answers, consults Bob, Bob answers, Alice's page reloads (she stays logged in and
her console shows the consult again) and she completes; Bob then hangs up from his console
and SIPp gets the box's BYE. Checked: the two stored segment records, each agent's own wrap-up, the queue statistics from the local API, the continuous recording
(left = caller throughout, right = 1 kHz then 600 Hz), and caller audio reaching Bob.
"""
from __future__ import annotations

import asyncio
import shutil
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from appliance.api.client import SocketClient
from tests.drivers.sip.pcap import write_rtp_pcap
from tests.e2e.test_sip_call_to_browser import free_udp_port, load_record, peak_hz
from tests.support.box import run_sipp, running_box
from tests.support.browser import launch_chromium, write_tone_wav

pytestmark = [pytest.mark.browser, pytest.mark.sipp]

UI_TIMEOUT_MS = 20_000
SIPP_PCAP = Path("/usr/share/sip-tester/g711a.pcap")  # 7.05 s of A-law speech, 30 ms packets
PCAP_LOOPS = 3  # 21 s: the whole answer -> consult -> complete -> hang-up sequence fits inside
SCENARIO = Path(__file__).resolve().parents[1] / "data" / "sipp" / "uac_pcma_until_bye.xml"
ALICE_HZ, BOB_HZ = 1000.0, 600.0
# Bob's inbound energy is read from 1 s after the transfer (Alice's tone still in flight
# through the jitter buffer is gone by then) for 2 s; SIPp's speech adds ~0.0034 per
# second, digital silence adds nothing
ENERGY_SKIP_MS, ENERGY_WINDOW_MS, MIN_ENERGY = 1000, 2000, 0.001
ALICE_HEARS = 0.003  # about a second of the caller's speech at Alice before she consults


def looped_caller_pcap(dst: Path) -> None:
    """SIPp's g711a.pcap payloads, ``PCAP_LOOPS`` times over, with consecutive RTP seq/timestamps."""
    data = SIPP_PCAP.read_bytes()
    payloads, off = [], 24
    while off < len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        pkt = data[off + 16: off + 16 + incl]
        off += 16 + incl
        ip = 14
        rtp = pkt[ip + (pkt[ip] & 0x0F) * 4 + 8:]
        payloads.append(rtp[12 + 4 * (rtp[0] & 0x0F):])
    write_rtp_pcap(dst, payloads * PCAP_LOOPS, payload_type=8, ptime_ms=30)


async def log_in(page, web_url: str, agent: str, password: str, *, available: bool) -> None:
    await page.goto(web_url)
    await page.fill("#agent-id", agent)
    await page.fill("#password", password)
    await page.click("#login-btn")
    await page.wait_for_selector("#audio-status[data-state=connected]", timeout=UI_TIMEOUT_MS)
    if available:
        await page.click("#btn-available")
        await page.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)


async def wait_energy(page, minimum: float) -> bool:
    """Poll the page's getStats until its inbound audio energy exceeds ``minimum`` (bounded)."""
    return await page.evaluate(
        """async ([minimum, timeoutMs]) => {
             const end = Date.now() + timeoutMs;
             while (Date.now() < end) {
               const s = await bl.stats();
               if (s.inboundAudio && s.inboundAudio.totalAudioEnergy > minimum) return true;
               await new Promise(r => setTimeout(r, 100));
             }
             return false;
           }""",
        [minimum, UI_TIMEOUT_MS],
    )


async def energy_growth(page) -> float:
    """Inbound audio energy added over a window starting ``ENERGY_SKIP_MS`` from now (measured in the page)."""
    return await page.evaluate(
        """async ([skipMs, windowMs]) => {
             const energy = async () => ((await bl.stats()).inboundAudio || {}).totalAudioEnergy || 0;
             await new Promise(r => setTimeout(r, skipMs));
             const start = await energy();
             await new Promise(r => setTimeout(r, windowMs));
             return (await energy()) - start;
           }""",
        [ENERGY_SKIP_MS, ENERGY_WINDOW_MS],
    )


async def wrap_up(page, disposition: str) -> None:
    await page.wait_for_selector("#wrapup:not([hidden])", timeout=UI_TIMEOUT_MS)
    assert await page.get_attribute("#state", "data-state") == "wrap_up"
    await page.select_option("#disposition", disposition)
    await page.click("#btn-wrapup-done")
    await page.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)


def windows(samples: np.ndarray, rate: int = 8000) -> np.ndarray:
    win = rate // 50
    n = len(samples) // win
    return samples[: n * win].reshape(n, win).astype(np.float64)


async def test_attended_transfer_alice_to_bob(tmp_path: Path) -> None:
    alice_mic = write_tone_wav(tmp_path / "alice.wav", freq=ALICE_HZ, seconds=3.0)
    bob_mic = write_tone_wav(tmp_path / "bob.wav", freq=BOB_HZ, seconds=3.0)
    work = tmp_path / "sipp"
    (work / "pcap").mkdir(parents=True)
    looped_caller_pcap(work / "pcap" / "caller.pcap")
    shutil.copy(SCENARIO, work / SCENARIO.name)

    async with running_box(tmp_path, extra_config="[acd]\nwrapup_s = 60\n") as box:
        async with launch_chromium(fake_audio_wav=alice_mic) as chrome_a, launch_chromium(fake_audio_wav=bob_mic) as chrome_b:
            alice, bob = await chrome_a.new_page(), await chrome_b.new_page()
            await log_in(alice, box.web_url, "alice", "alice-pw", available=True)
            await log_in(bob, box.web_url, "bob", "bob-pw", available=False)  # the call must go to Alice

            sipp = asyncio.create_task(run_sipp(
                [f"127.0.0.1:{box.sip_udp}", "-sf", SCENARIO.name, "-s", "support", "-m", "1",
                 "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port())],
                cwd=work, timeout=120,
            ), name="sipp")

            await alice.wait_for_selector("#offer:not([hidden])", timeout=UI_TIMEOUT_MS)
            await alice.click("#btn-answer")
            await alice.wait_for_selector("#call:not([hidden])", timeout=UI_TIMEOUT_MS)
            assert await wait_energy(alice, ALICE_HEARS)  # Alice hears the caller; her tone is on the recording

            await bob.click("#btn-available")
            await bob.wait_for_selector("#state[data-state=available]", timeout=UI_TIMEOUT_MS)
            await alice.wait_for_selector("#transfer-agent option[value=bob]", state="attached", timeout=UI_TIMEOUT_MS)
            await alice.select_option("#transfer-agent", "bob")
            await alice.click("#btn-consult")
            await alice.wait_for_selector("#consult-box[data-state=consult_ringing]", timeout=UI_TIMEOUT_MS)

            await bob.wait_for_selector("#offer:not([hidden])", timeout=UI_TIMEOUT_MS)
            assert await bob.text_content("#offer-from") == "Alice Martin is consulting you about sipp"
            await bob.click("#btn-answer")
            await alice.wait_for_selector("#consult-box[data-state=consulting]", timeout=UI_TIMEOUT_MS)
            await bob.wait_for_selector("#consulted:not([hidden])", timeout=UI_TIMEOUT_MS)

            # Alice's page reloads mid-consult: still logged in (this tab's session), her console
            # shows the consult again
            await alice.reload()
            await alice.wait_for_selector("#consult-box[data-state=consulting]", timeout=UI_TIMEOUT_MS)
            assert await alice.is_hidden("#login-view")
            assert await alice.text_content("#call-caller") == "sipp"
            await alice.click("#btn-complete")
            await bob.wait_for_selector("#call:not([hidden])", timeout=UI_TIMEOUT_MS)
            assert await bob.text_content("#call-caller") == "sipp"
            assert await energy_growth(bob) > MIN_ENERGY  # Bob hears the caller after the transfer
            await wrap_up(alice, "escalated")  # Alice's own wrap-up, while Bob talks

            await bob.click("#btn-hangup")
            rc, out = await sipp
            assert rc == 0, out[-3000:]
            await wrap_up(bob, "resolved")
            for page in (alice, bob):
                # the hello after a log-in carries the state then: Alice's reloaded page starts on_call
                states = await page.evaluate("bl.events.filter(e => e.type === 'state' || e.type === 'hello')"
                                             ".map(e => e.agent.state)")
                changes = [st for i, st in enumerate(states) if i == 0 or states[i - 1] != st]
                assert changes[-3:] == ["on_call", "wrap_up", "available"], states

        await box.wait_for_log(r"call \S+-2 wrap-up done: disposition resolved", timeout=10)
        async with SocketClient(box.data_dir / "run") as api:
            snap = await api.snapshot()
        support = next(q for q in snap.queues if q.queue_id == "support")
        assert (support.offered_today, support.answered_today, support.abandoned_today) == (1, 1, 0)
        assert await box.stop() == 0

    calls, rec_dir = await load_record(box.data_dir)
    assert len(calls) == 2
    first, second = sorted(calls, key=lambda r: r.segment)
    assert (first.segment, first.agent_id, first.hangup_cause) == (1, "alice", "transferred")
    assert (first.transfer, first.transferred_to, first.disposition) == ("attended", "bob", "escalated")
    assert first.wait_s is not None and first.offered_at is not None and first.talk_s > 0
    assert (second.segment, second.call_id, second.parent_call_id) == (2, f"{first.call_id}-2", first.call_id)
    assert (second.agent_id, second.transferred_from, second.disposition) == ("bob", "alice", "resolved")
    assert second.hangup_cause == "agent hung up" and second.talk_s > 0 and second.wait_s is None
    assert first.recording_path and second.recording_path == first.recording_path

    with wave.open(str(rec_dir / first.recording_path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    assert abs(len(frames) / 8000 - (second.ended_at - first.answered_at)) < 1.0
    left, right = windows(frames[:, 0]), windows(frames[:, 1])
    t = np.arange(len(left)) * 0.02  # start of each 20 ms window in the recording
    switch = first.ended_at - first.answered_at  # when Bob took over, in recording time

    # left: the caller is carried across the transfer (G.711 never decodes to exact 0; the bridge's gaps do)
    around = np.abs(left[(t > switch - 1.0) & (t < switch + 1.0)]).max(axis=1)
    assert (around > 0).mean() > 0.9, "caller audio interrupted by the transfer"
    # right: Alice's 1 kHz before the consult, silence on hold, Bob's 600 Hz after the transfer
    loud = np.sqrt((right ** 2).mean(axis=1)) > 200
    before, after = right[loud & (t < switch - 0.2)], right[loud & (t > switch + 0.3)]
    assert len(before) * 0.02 > 0.3 and len(after) * 0.02 > 0.3
    assert abs(peak_hz(before.ravel()) - ALICE_HZ) <= 20
    assert abs(peak_hz(after.ravel()) - BOB_HZ) <= 20
