"""Reliable provisional responses (RFC 3262) for a caller that sends ``Require: 100rel``.
Raw UDP against a running SipLine; SIPp plays such a caller in test_sipp."""
from __future__ import annotations

import asyncio

from appliance.lines import CallGone, HangupCause
from drivers.sip import transaction
from drivers.sip.call import CallState
from drivers.sip.message import response_bytes
from tests.drivers.sip.peer import new_branch, new_call_id, offer_sdp
from tests.drivers.sip.test_line_udp import make_line  # noqa: F401 (fixture)

WAIT_S = 3.0
REQUIRE_100REL = ("Require: 100rel", "Supported: 100rel")


def _invite(peer, call_id: str, body: str | None = None) -> str:
    return peer.request("INVITE", branch=new_branch(), call_id=call_id, extra=REQUIRE_100REL,
                        body=offer_sdp(40000) if body is None else body)


def _prack(peer, call_id: str, to_tag: str, rack: str, cseq: int = 2) -> str:
    return peer.request("PRACK", branch=new_branch(), call_id=call_id, cseq=cseq, to_tag=to_tag,
                        extra=(f"RAck: {rack}",))


async def _confirm_then_hang_up(peer, call, call_id: str, ok, body: str = "") -> None:
    """ACK the 200 (with ``body``), check the call is confirmed, hang up and answer the BYE."""
    peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag, body=body))
    await peer.sync()
    assert call.state is CallState.CONFIRMED
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    peer.send(response_bytes(await peer.next_request("BYE"), 200))


async def _reliable_18x(handler, peer, status: int = 180):
    """A call from a caller that requires 100rel, rung: our reliable ``status`` (180/183)."""
    call_id = new_call_id()
    peer.send(_invite(peer, call_id))
    await peer.expect(100)
    call = await handler.next_call()
    await call.progress()
    ringing = await peer.expect(status)
    return call, call_id, ringing


async def test_a_reliable_180_is_resent_until_prack_and_the_200_waits_for_it(make_line, monkeypatch) -> None:
    monkeypatch.setattr(transaction, "T1", 0.05)
    line, handler, peer = await make_line(progress_status=180)
    call, call_id, ringing = await _reliable_18x(handler, peer)
    assert ringing.headers.get("Require") == "100rel" and ringing.body  # with SDP: early media
    rseq = int(ringing.headers.get("RSeq"))
    assert 1 <= rseq < 2**31
    answering = asyncio.ensure_future(call.answer())
    again = await peer.expect(180)  # resent after T1: no PRACK yet
    assert again.headers.get("RSeq") == str(rseq) and again.to_addr.tag == ringing.to_addr.tag
    assert not answering.done()  # §3: no 200 before the PRACK of an 18x with SDP

    peer.send(_prack(peer, call_id, ringing.to_addr.tag, f"{rseq} 1 INVITE"))
    got = [await peer.recv(), await peer.recv()]  # (a last 180 resend may be in flight)
    while not all(m.status == 200 for m in got):
        got = [m for m in got if m.status == 200] + [await peer.recv()]
    assert sorted(m.cseq.method for m in got) == ["INVITE", "PRACK"]
    async with asyncio.timeout(WAIT_S):
        await answering
    await _confirm_then_hang_up(peer, call, call_id, next(m for m in got if m.cseq.method == "INVITE"))


async def test_a_prack_that_names_another_response_gets_481(make_line) -> None:
    line, handler, peer = await make_line(progress_status=183)
    call, call_id, early = await _reliable_18x(handler, peer, 183)
    rseq = int(early.headers.get("RSeq"))
    for rack in (f"{rseq + 1} 1 INVITE", f"{rseq} 7 INVITE", "x 1 INVITE", ""):
        peer.send(_prack(peer, call_id, early.to_addr.tag, rack))
        refused = await peer.expect(481)
        assert refused.cseq.method == "PRACK"
    peer.send(_prack(peer, call_id, early.to_addr.tag, f"{rseq} 1 INVITE"))
    await peer.expect(200)
    peer.send(_prack(peer, call_id, early.to_addr.tag, f"{rseq} 1 INVITE", cseq=3))  # acknowledged already
    await peer.expect(481)
    await call.hangup(HangupCause.NO_AGENT)
    await peer.expect(480)


async def test_without_a_prack_the_call_is_refused_with_500_after_64_t1(make_line, monkeypatch, caplog) -> None:
    monkeypatch.setattr(transaction, "T1", 0.01)  # like timers A/B: resent at 1, 3, 7 ... 63 T1, given up at 64 T1
    line, handler, peer = await make_line(progress_status=180)
    call, call_id, ringing = await _reliable_18x(handler, peer)
    answering = asyncio.ensure_future(call.answer())
    resent = 0
    while (msg := await peer.recv()).status == 180:
        resent += 1
    assert msg.status == 500 and msg.reason == "No PRACK Received"
    assert resent == 6
    async with asyncio.timeout(WAIT_S):
        assert await call.wait_ended() is HangupCause.TIMEOUT
    try:
        await answering
        raise AssertionError("answer() succeeded without a PRACK")
    except CallGone:
        pass
    assert "no PRACK for our reliable 180" in caplog.text
    assert line.active_calls == 0


async def test_a_late_offer_caller_that_requires_100rel_gets_no_18x_and_our_offer_in_the_200(make_line) -> None:
    line, handler, peer = await make_line(progress_status=180)
    call_id = new_call_id()
    peer.send(_invite(peer, call_id, body=""))
    await peer.expect(100)
    call = await handler.next_call()
    await call.progress()  # a reliable 18x would have to carry our offer: nothing is sent
    await call.answer()
    ok = await peer.expect(200)
    assert b"m=audio" in ok.body and ok.headers.get("RSeq") is None
    await _confirm_then_hang_up(peer, call, call_id, ok, body=offer_sdp(40002))


async def test_100rel_is_accepted_only_on_a_new_invite(make_line) -> None:
    line, handler, peer = await make_line()
    peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id(), extra=("Require: 100rel",)))
    refused = await peer.expect(420)
    assert refused.headers.get("Unsupported") == "100rel"
    peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
    ok = await peer.expect(200)
    assert "PRACK" in ok.headers.get_all("Allow")
