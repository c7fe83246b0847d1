"""Click-to-dial over the SIP trunk, end to end: console -> dial plan -> trunk -> SIPp as the carrier.

The box runs as its own process with an IP-authenticated trunk (``trunk_register = false``)
aimed at a SIPp UAS and a dial plan that sends +44 numbers to the trunk. Its caller-ID
presentation is "withheld": the carrier (the scenario checks each header) must see an
anonymous From, ``Privacy: id`` and our number in P-Asserted-Identity, and the INVITE is
challenged with 407 first. The carrier answers, speaks SIPp's 7 s pcap and hangs up.
"""
from __future__ import annotations

import asyncio
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_queue_raw_sip import AnyWith, ConsoleAgent
from tests.e2e.test_sip_call_to_browser import free_udp_port, load_record, loud_seconds
from tests.support.box import ROOT, running_box, run_sipp, sipp_workdir

pytestmark = pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp")

SCENARIO = ROOT / "tests" / "data" / "sipp" / "uas_carrier_withheld.xml"
SIPP_TIMEOUT_S = 60.0  # the carrier answers at once, speaks 7.5 s, hangs up
PCAP_S = 7.05


async def test_agent_dials_out_through_the_trunk_with_withheld_caller_id(tmp_path: Path) -> None:
    work = sipp_workdir(tmp_path)
    carrier_port = free_udp_port()
    carrier = asyncio.create_task(run_sipp(
        ["-sf", str(SCENARIO), "-trace_err", "-i", "127.0.0.1", "-p", str(carrier_port), "-mp", str(free_udp_port()), "-m", "1"],
        cwd=work, timeout=SIPP_TIMEOUT_S))
    sip_extra = (f'trunk_registrar = "127.0.0.1:{carrier_port}"\ntrunk_register = false\n'
                 'trunk_username = "trunkuser"\ntrunk_password = "trunk-pass-1"\ntrunk_domain = "trunk.test"\n'
                 'trunk_caller_id = "+441632960001"\ntrunk_presentation = "withheld"\n')
    dial_plan = '[[dial_plan]]\nname = "UK"\npattern = "\\\\+44\\\\d+"\nvia = "trunk"\n'
    try:
        async with running_box(tmp_path, extra_config="[acd]\nwrapup_s = 60\n" + dial_plan, sip_extra=sip_extra) as box:
            agent = ConsoleAgent(box.web_url, "alice", "alice-pw")
            try:
                await agent.login()
                await agent.connect_audio()
                await agent.send("available")
                await agent.next("state", agent=AnyWith(state="available"))
                await agent.send("dial", number="+44 20 7946 0000")
                dialing = await agent.next("dialing")
                on_call = await agent.next("call", state="on_call")
                assert on_call["direction"] == "outbound" and on_call["call_id"] == dialing["call_id"], on_call
                ended = await agent.next("call", state="ended", timeout_s=SIPP_TIMEOUT_S)  # the carrier hangs up after 7.5 s
                assert ended["cause"] == "far end hung up", ended
                await agent.next("state", agent=AnyWith(state="wrap_up"))
                await agent.send("wrapup", disposition="resolved")
                await agent.next("state", agent=AnyWith(state="available"))
            finally:
                await agent.close()
            code, out = await carrier
            assert code == 0, out[-3000:]  # every header check in the scenario passed
            assert await box.stop() == 0
    finally:
        if not carrier.done():
            carrier.cancel()
    calls, rec_dir = await load_record(box.data_dir)
    rec = next(c for c in calls if c.call_id == dialing["call_id"] and c.disposition == "resolved")
    assert rec.direction == "outbound" and rec.outcome == "answered" and rec.line_kind == "sip", rec
    assert rec.to_number == "+442079460000" and rec.hangup_cause == "far end hung up", rec
    assert PCAP_S - 1.0 < rec.talk_s < PCAP_S + 5.0, rec.talk_s
    with wave.open(str(rec_dir / rec.recording_path)) as w:
        left = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)[:, 0]
    assert loud_seconds(left) > PCAP_S - 2.5  # the carrier's speech is the customer's side of the recording
