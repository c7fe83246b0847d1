"""Outgoing SIP calls against SIPp as the called party (a carrier behind our trunk).

The line is configured with an IP-authenticated trunk (``trunk_register = false``) pointing
at SIPp, so ``dial_trunk`` sends its INVITE there. Each SIPp scenario fails (non-zero exit)
when we do not send what it waits for: the ACK of a 486, the CANCEL, the 407 credentials,
the NOTIFYs of a REFER.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.outgoing import OutgoingState
from media.frames import FRAME_S
from tests.drivers.sip.test_sipp import SCENARIO_DIR, _free_port
from tests.support.box import run_sipp

pytestmark = [pytest.mark.sipp, pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")]

SIPP_RUN_S = 30.0  # each scenario lasts a few seconds; SIPp's own timeouts fail it well before this
ANSWER_WAIT_S = 10.0  # SIPp starts in ~100 ms; our INVITE retransmissions (Timer A) cover a slow start
END_WAIT_S = 10.0
TALK_FRAMES = 60  # 1.2 s of audio each way
TONE = b"\x00\x10" * 160


async def _no_calls(call) -> None:
    raise AssertionError("no inbound call expected")


async def _line(sipp_port: int, **extra) -> SipLine:
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, tcp=False,
                                 trunk_registrar=f"127.0.0.1:{sipp_port}", trunk_register=False,
                                 trunk_username="trunkuser", trunk_password="trunk-pass-1",
                                 trunk_domain="trunk.test", trunk_caller_id="+441632960000", **extra), _no_calls)
    await line.start()
    return line


def _sipp(tmp_path: Path, port: int, *scenario: str, echo: bool = False) -> asyncio.Task:
    args = [*scenario, "-i", "127.0.0.1", "-p", str(port), "-mp", str(_free_port()), "-m", "1", "-trace_err"]
    if echo:
        args.append("-rtp_echo")
    return asyncio.get_running_loop().create_task(run_sipp(args, tmp_path, timeout=SIPP_RUN_S), name="sipp")


async def _talk(call, frames: int = TALK_FRAMES) -> list[bytes]:
    """Play the bridge for ``frames`` 20 ms ticks: send a tone, collect what comes back."""
    heard: list[bytes] = []
    ended = asyncio.ensure_future(call.wait_ended())
    try:
        for _ in range(frames):
            call.audio.write_frame(TONE)
            while (frame := call.audio.read_frame_nowait()) is not None:
                heard.append(frame)
            await asyncio.wait({ended}, timeout=FRAME_S)
            if ended.done():
                break
    finally:
        ended.cancel()
    return heard


async def test_sipp_uas_answers_rtp_flows_and_our_bye_gets_200(tmp_path: Path) -> None:
    port = _free_port()
    sipp = _sipp(tmp_path, port, "-sn", "uas", echo=True)
    line = await _line(port)
    try:
        call = await line.dial_trunk("+15550001111", CallerId("+441632960123", "Jane Doe"))
        async with asyncio.timeout(ANSWER_WAIT_S):
            await call.wait_answered()
        assert call.state is OutgoingState.CONFIRMED and call._neg.codec == "PCMU"
        heard = await _talk(call)
        stats = call.audio.statistics()
        assert stats.sent >= TALK_FRAMES - 5 and stats.received >= TALK_FRAMES // 2, stats  # echoed back to us
        assert len(heard) >= TALK_FRAMES // 2 and all(len(f) == 320 for f in heard)
        assert stats.dropped_source == 0 and stats.dropped_pt == 0
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        rc, out = await sipp  # the built-in uas exits 0 once our BYE got its 200
        assert rc == 0, out
        assert await call.wait_ended() is HangupCause.AGENT_HUNG_UP
    finally:
        await line.stop()


async def test_far_end_bye_ends_our_call(tmp_path: Path) -> None:
    port = _free_port()
    sipp = _sipp(tmp_path, port, "-sf", str(SCENARIO_DIR / "uas_answer_then_bye.xml"), echo=True)
    line = await _line(port)
    try:
        call = await line.dial_trunk("+15550001111")
        async with asyncio.timeout(ANSWER_WAIT_S):
            await call.wait_state(OutgoingState.PROCEEDING)  # the 180
            await call.wait_answered()
        await _talk(call, frames=500)  # until SIPp hangs up (after 1.5 s)
        async with asyncio.timeout(END_WAIT_S):
            assert await call.wait_ended() is HangupCause.FAR_END_HUNG_UP
        assert call.audio.statistics().received > 20
        rc, out = await sipp
        assert rc == 0, out
        assert line.active_calls == 0
    finally:
        await line.stop()


async def test_busy_is_dial_failed_and_acked(tmp_path: Path) -> None:
    port = _free_port()
    sipp = _sipp(tmp_path, port, "-sf", str(SCENARIO_DIR / "uas_busy.xml"))
    line = await _line(port)
    try:
        call = await line.dial_trunk("+15550001111")
        with pytest.raises(DialFailed) as failed:
            async with asyncio.timeout(ANSWER_WAIT_S):
                await call.wait_answered()
        assert failed.value.reason is DialFailure.BUSY
        rc, out = await sipp  # fails without our ACK
        assert rc == 0, out
    finally:
        await line.stop()


async def test_407_is_answered_with_proxy_authorization(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="drivers.sip.outgoing")
    port = _free_port()
    sipp = _sipp(tmp_path, port, "-sf", str(SCENARIO_DIR / "uas_proxy_auth.xml"))
    line = await _line(port)
    try:
        call = await line.dial_trunk("+15550001111")
        async with asyncio.timeout(ANSWER_WAIT_S):
            await call.wait_answered()  # SIPp answers only an INVITE with Proxy-Authorization
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        rc, out = await sipp
        assert rc == 0, out
    finally:
        await line.stop()
    assert any("407, sending the INVITE again with credentials" in r.getMessage() for r in caplog.records)


async def test_ringing_then_we_hang_up_sends_cancel(tmp_path: Path) -> None:
    port = _free_port()
    sipp = _sipp(tmp_path, port, "-sf", str(SCENARIO_DIR / "uas_ring_cancel.xml"))
    line = await _line(port)
    try:
        call = await line.dial_trunk("+15550001111")
        async with asyncio.timeout(ANSWER_WAIT_S):
            await call.wait_state(OutgoingState.PROCEEDING)
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        with pytest.raises(DialFailed) as failed:
            await call.wait_answered()
        assert failed.value.reason is DialFailure.CANCELLED
        assert await call.wait_ended() is HangupCause.CANCELLED
        rc, out = await sipp  # CANCEL, then the ACK of the 487, or SIPp fails
        assert rc == 0, out
    finally:
        await line.stop()


async def test_refer_in_dialog_gets_202_and_two_notifies(tmp_path: Path) -> None:
    port = _free_port()
    sipp = _sipp(tmp_path, port, "-sf", str(SCENARIO_DIR / "uas_refer.xml"))
    line = await _line(port)
    try:
        call = await line.dial_trunk("+15550001111")
        requests = []
        got = asyncio.Event()

        async def transfer(request) -> bool:
            requests.append(request)
            got.set()
            return True

        call.on_refer(transfer)
        async with asyncio.timeout(ANSWER_WAIT_S):
            await call.wait_answered()
            await got.wait()
        refer = requests[0]
        assert refer.target_user == "202" and refer.target_uri == "sip:202@127.0.0.1"
        assert refer.replaces == ("c4ll@pbx.example", "tt1", "ff1")
        assert refer.referred_by == "sip:sipp@127.0.0.1"
        assert line.find_dialog(call.sip_call_id, call.remote_tag, call.local_tag) is call
        # SIPp answers the second NOTIFY then waits for our BYE
        await asyncio.wait_for(_notified(call), END_WAIT_S)
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        rc, out = await sipp
        assert rc == 0, out
    finally:
        await line.stop()


async def _notified(call) -> None:
    """Both NOTIFYs were sent (the final one goes out when the callback task finishes)."""
    while call._side_tasks:
        await asyncio.gather(*call._side_tasks, return_exceptions=True)
