"""An agent takes queue calls on a registered SIP desk phone instead of the browser.

The box runs as its own process with extension 201 in its registrar and agent alice's
``phone = "201"``. baresip (Debian) is the desk phone: it registers as 201, auto-answers and
plays a 600 Hz tone as its microphone. Alice logs in over the console's WebSocket (what her
browser does), switches to her desk phone and goes available. SIPp's ``uac_pcap`` calls the
queue: the box rings the phone with the caller's identity, baresip picks up, SIPp's 7 s of
speech plays, SIPp hangs up, the box hangs the phone up and alice gets her wrap-up.
"""
from __future__ import annotations

import asyncio
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_queue_raw_sip import AnyWith, ConsoleAgent
from tests.e2e.test_baresip import free_sip_port, running_baresip, write_baresip_config
from tests.e2e.test_sip_call_to_browser import free_udp_port, load_record, loud_seconds, peak_hz
from tests.support.box import running_box, run_sipp, sipp_workdir
from tests.support.softphone import EXTENSION_201, PHONE_TONE_HZ, TONE_TOLERANCE_HZ, free_tcp_port, write_phone_wav

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None or shutil.which("sipp") is None,
                                reason="needs baresip and sipp")

EVENT_TIMEOUT_S = 20.0  # SIP and console events arrive in ms on loopback; generous for a loaded box
SIPP_TIMEOUT_S = 60.0  # the pcap lasts 7.05 s; SIPp then hangs up
PCAP_S = 7.05

AGENTS = """
[[agents]]
id = "alice"
name = "Alice Martin"
password = "alice-pw"
queues = ["support"]
phone = "201"
"""


async def test_agent_answers_queue_call_on_registered_desk_phone(tmp_path: Path) -> None:
    phone_wav = write_phone_wav(tmp_path / "phone.wav")
    ctrl_port = free_tcp_port()
    work = sipp_workdir(tmp_path)
    async with running_box(tmp_path, extra_config="[acd]\nwrapup_s = 60\n", agents=AGENTS, sip_extra=EXTENSION_201) as box:
        conf = write_baresip_config(tmp_path / "baresip", box_port=box.sip_udp, wav=phone_wav,
                                    sip_port=free_sip_port(), ctrl_port=ctrl_port)
        accounts = conf / "accounts"  # the desk phone answers by itself (a handset lifted at once)
        accounts.write_text(accounts.read_text().rstrip("\n") + ";answermode=auto\n")
        agent = ConsoleAgent(box.web_url, "alice", "alice-pw")  # what her browser does, minus the audio
        try:
            await agent.login()
            assert agent.hello["phone"] == "201" and agent.hello["device"] == "browser"
            await agent.send("device", device="phone")  # refused: the phone is not registered yet
            refused = await agent.next("error")
            assert "not registered" in refused["message"], refused
            async with running_baresip(conf, ctrl_port) as phone:
                await box.wait_for_log(r"SIP extension 201: 1 contact\(s\) registered", timeout=EVENT_TIMEOUT_S)
                await agent.send("device", device="phone")
                assert (await agent.next("device"))["device"] == "phone"
                await agent.go_available()
                sipp = asyncio.create_task(run_sipp(
                    [f"127.0.0.1:{box.sip_udp}", "-sn", "uac_pcap", "-s", "support", "-m", "1",
                     "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port())],
                    cwd=work, timeout=SIPP_TIMEOUT_S))
                offer = await agent.next("offer")
                assert offer["caller"] == "sipp"
                established = await phone.event("CALL_ESTABLISHED")  # the box rang the phone; it picked up (auto-answer)
                assert established["direction"] == "incoming" and established["peeruri"].startswith("sip:sipp@"), established
                await agent.next("call", state="on_call")
                code, out = await sipp
                assert code == 0, out[-2000:]
                await phone.event("CALL_CLOSED")  # the box hung the phone up after the caller left
                await agent.next("state", agent=AnyWith(state="wrap_up"))
                await agent.send("wrapup", disposition="resolved")
                await agent.next("state", agent=AnyWith(state="available"))
        finally:
            await agent.close()
        await box.wait_for_log(r"call \S+ wrap-up done: disposition resolved", timeout=EVENT_TIMEOUT_S)
        await box.stop()
    calls, rec_dir = await load_record(box.data_dir)
    assert len(calls) == 1, calls
    rec = calls[0]
    assert rec.outcome == "answered" and rec.agent_id == "alice" and rec.from_number == "sipp", rec
    assert rec.hangup_cause == "caller hung up" and rec.disposition == "resolved", rec
    assert PCAP_S - 1.0 < rec.talk_s < PCAP_S + 5.0, rec.talk_s
    with wave.open(str(rec_dir / rec.recording_path)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    left, right = frames[:, 0], frames[:, 1]
    assert loud_seconds(left) > PCAP_S - 2.5  # SIPp's speech: the caller's side
    assert abs(peak_hz(right) - PHONE_TONE_HZ) <= TONE_TOLERANCE_HZ  # the desk phone's microphone: the agent's side
    assert loud_seconds(right) > PCAP_S - 3.0


async def test_transfer_key_on_the_desk_phone_moves_the_call_to_another_agent(tmp_path: Path) -> None:
    """alice (desk phone) presses Transfer to bob: baresip sends REFER sip:bob@box; the box
    answers 202 and NOTIFYs, offers the caller to bob (console), hangs alice's phone up and
    gives each agent a record segment and a wrap-up."""
    phone_wav = write_phone_wav(tmp_path / "phone.wav")
    ctrl_port = free_tcp_port()
    work = sipp_workdir(tmp_path)
    agents = AGENTS + '\n[[agents]]\nid = "bob"\nname = "Bob Okafor"\npassword = "bob-pw"\nqueues = ["support"]\n'
    async with running_box(tmp_path, extra_config="[acd]\nwrapup_s = 60\n", agents=agents, sip_extra=EXTENSION_201) as box:
        conf = write_baresip_config(tmp_path / "baresip", box_port=box.sip_udp, wav=phone_wav,
                                    sip_port=free_sip_port(), ctrl_port=ctrl_port)
        accounts = conf / "accounts"
        accounts.write_text(accounts.read_text().rstrip("\n") + ";answermode=auto\n")
        alice = ConsoleAgent(box.web_url, "alice", "alice-pw")
        bob = ConsoleAgent(box.web_url, "bob", "bob-pw")
        try:
            await alice.login()
            await bob.login()
            await bob.connect_audio()
            async with running_baresip(conf, ctrl_port) as phone:
                await box.wait_for_log(r"SIP extension 201: 1 contact\(s\) registered", timeout=EVENT_TIMEOUT_S)
                await alice.send("device", device="phone")
                assert (await alice.next("device"))["device"] == "phone"
                await alice.go_available()
                sipp = asyncio.create_task(run_sipp(
                    [f"127.0.0.1:{box.sip_udp}", "-sn", "uac_pcap", "-s", "support", "-m", "1",
                     "-i", "127.0.0.1", "-p", str(free_udp_port()), "-mp", str(free_udp_port())],
                    cwd=work, timeout=SIPP_TIMEOUT_S))
                await phone.event("CALL_ESTABLISHED")
                await alice.next("state", agent=AnyWith(state="on_call"))
                await bob.send("available")  # bob is free only now, so the queue call went to alice
                await bob.next("state", agent=AnyWith(state="available"))
                await phone.command("transfer", f"sip:bob@127.0.0.1:{box.sip_udp}")
                offer = await bob.next("offer")
                assert offer["caller"] == "sipp" and offer["from_agent"] == "alice", offer
                await bob.send("answer", call_id=offer["call_id"])
                await bob.next("call", state="on_call")
                await phone.event("CALL_CLOSED")  # alice's phone was released after the transfer
                await alice.next("state", agent=AnyWith(state="wrap_up"))
                await alice.send("wrapup", disposition="escalated")
                code, out = await sipp  # the caller talks to bob until the pcap ends, then hangs up
                assert code == 0, out[-2000:]
                await bob.next("state", agent=AnyWith(state="wrap_up"))
                await bob.send("wrapup", disposition="resolved")
                await bob.next("state", agent=AnyWith(state="available"))
            console = "".join(phone.output)
            assert "REFER sip:" in console and "SIP/2.0 202 Accepted" in console, console[-3000:]
            notifies = [block for block in console.split("NOTIFY sip:")[1:] if "Event: refer" in block]
            assert len(notifies) == 2 and "SIP/2.0 100 Trying" in notifies[0], notifies  # sipfrag progress ...
            assert "terminated" in notifies[1] and "SIP/2.0 200 OK" in notifies[1], notifies[1]  # ... and success
            assert "481 Call/Transaction Does Not Exist" not in console  # the phone hung up itself; no crossing BYEs
        finally:
            await alice.close()
            await bob.close()
        await box.wait_for_log(r"call \S+ wrap-up done: disposition resolved", timeout=EVENT_TIMEOUT_S)
        assert await box.stop() == 0
    calls, _ = await load_record(box.data_dir)
    by_agent = {c.agent_id: c for c in calls}
    assert set(by_agent) == {"alice", "bob"}, calls
    first, second = by_agent["alice"], by_agent["bob"]
    assert first.hangup_cause == "transferred" and first.transferred_to == "bob" and first.disposition == "escalated", first
    assert second.transferred_from == "alice" and second.parent_call_id == first.call_id, second
    assert second.hangup_cause == "caller hung up" and second.disposition == "resolved" and second.talk_s > 0, second
