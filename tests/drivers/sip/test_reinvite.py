"""Mid-call offers both ways: our hold/resume re-INVITEs, the caller's UPDATE, 491 glare, RFC 4028 timers."""
from __future__ import annotations

import asyncio

from appliance.lines import HangupCause
from drivers.sip import reoffer, session_timer
from drivers.sip.message import SipRequest, SipResponse, response_bytes
from drivers.sip.sdp import Direction, negotiate, parse_sdp
from tests.drivers.sip.peer import new_branch, new_call_id, offer_sdp
from tests.drivers.sip.test_line_udp import _answered_call, _invite, make_line  # noqa: F401 (fixture)

WAIT_S = 3.0



def _answer_to(request: SipRequest, status: int, peer, direction: str | None = None) -> bytes:
    body = offer_sdp(41000, pts="8 101", direction=direction).encode() if direction else b""
    extra = (("Contact", f"<sip:peer@127.0.0.1:{peer.port}>"),)
    if body:
        extra += (("Content-Type", "application/sdp"),)
    return response_bytes(request, status, extra=extra, body=body)


async def test_we_hold_and_resume_with_reinvite_and_ack(make_line) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    hold = asyncio.ensure_future(call.hold())
    invite = await peer.next_request("INVITE")
    assert invite.call_id == call_id and invite.from_addr.tag == ok.to_addr.tag
    assert invite.to_addr.tag == peer.from_tag
    assert negotiate(parse_sdp(invite.body)).direction is Direction.RECVONLY  # we offered sendonly
    assert b"a=sendonly" in invite.body
    peer.send(_answer_to(invite, 200, peer, "recvonly"))
    ack = await peer.next_request("ACK")
    assert ack.cseq.number == invite.cseq.number and ack.call_id == call_id
    async with asyncio.timeout(WAIT_S):
        assert await hold is True
    assert call._neg.direction is Direction.SENDONLY  # we still send (music on hold)

    resume = asyncio.ensure_future(call.resume())
    again = await peer.next_request("INVITE")
    assert b"a=sendrecv" in again.body and again.cseq.number == invite.cseq.number + 1
    peer.send(_answer_to(again, 200, peer, "sendrecv"))
    await peer.next_request("ACK")
    async with asyncio.timeout(WAIT_S):
        assert await resume is True
    assert call._neg.direction is Direction.SENDRECV


async def test_refused_hold_keeps_the_call(make_line) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    hold = asyncio.ensure_future(call.hold())
    invite = await peer.next_request("INVITE")
    peer.send(_answer_to(invite, 488, peer))
    ack = await peer.next_request("ACK")  # the transaction ACKs the non-2xx itself
    assert ack.branch == invite.branch
    async with asyncio.timeout(WAIT_S):
        assert await hold is False
    assert not call.ended


async def test_caller_update_puts_us_on_hold(make_line) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    peer.send(peer.request("UPDATE", branch=new_branch(), call_id=call_id, cseq=2, to_tag=ok.to_addr.tag,
                           body=offer_sdp(40000, direction="sendonly")))
    answer = await peer.expect(200)
    assert negotiate(parse_sdp(answer.body)).direction is Direction.SENDONLY  # we answered recvonly
    assert b"a=recvonly" in answer.body
    assert call._neg.on_hold


async def test_glare_491_both_ways_then_retry(make_line, monkeypatch) -> None:
    monkeypatch.setattr(reoffer, "GLARE_RETRY_MAX_S", 0.05)
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    hold = asyncio.ensure_future(call.hold())
    ours = await peer.next_request("INVITE")
    # the caller's own re-INVITE crosses ours: we refuse it with 491
    peer.send(peer.request("INVITE", branch=new_branch(), call_id=call_id, cseq=2, to_tag=ok.to_addr.tag,
                           body=offer_sdp(40000, direction="sendonly")))
    while True:
        msg = await peer.recv()
        if isinstance(msg, SipResponse) and msg.status >= 200:
            break
    assert msg.status == 491 and msg.cseq.method == "INVITE"
    # and the caller refuses ours with 491: we retry after a random 0..2 s (here 0..0.05)
    peer.send(_answer_to(ours, 491, peer))
    await peer.next_request("ACK")
    retry = await peer.next_request("INVITE")
    assert retry.cseq.number > ours.cseq.number and retry.branch != ours.branch
    peer.send(_answer_to(retry, 200, peer, "recvonly"))
    async with asyncio.timeout(WAIT_S):
        assert await hold is True


async def test_session_timer_granted_and_expiry_hangs_up(make_line, monkeypatch) -> None:
    monkeypatch.setattr(session_timer, "MIN_SE_S", 2)
    line, handler, peer = await make_line()
    call_id = new_call_id()
    peer.send(_invite(peer, new_branch(), call_id, extra=("Supported: timer", "Session-Expires: 3;refresher=uac")))
    await peer.expect(100)
    call = await handler.next_call()
    await call.answer()
    ok = await peer.expect(200)
    assert ok.headers.get("Session-Expires") == "3;refresher=uac"
    assert "timer" in ok.headers.get_all("Require")
    peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag))
    # no refresh: after 3 - min(32, 3/3) = 2 s we send BYE
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    bye = await peer.next_request("BYE")
    assert 1.5 < loop.time() - t0 < 2.8
    peer.send(response_bytes(bye, 200))
    async with asyncio.timeout(WAIT_S):
        assert await call.wait_ended() is HangupCause.TIMEOUT


async def test_session_timer_we_refresh_when_asked(make_line, monkeypatch) -> None:
    monkeypatch.setattr(session_timer, "MIN_SE_S", 2)
    line, handler, peer = await make_line()
    call_id = new_call_id()
    peer.send(_invite(peer, new_branch(), call_id, extra=("Supported: timer", "Session-Expires: 2;refresher=uas")))
    await peer.expect(100)
    call = await handler.next_call()
    await call.answer()
    ok = await peer.expect(200)
    assert ok.headers.get("Session-Expires") == "2;refresher=uas"
    peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag))
    refresh = await peer.next_request("INVITE")  # after interval / 2 = 1 s
    # RFC 4028 §7.4: named from the refresh's own view: we send it and stay the refresher, so "uac"
    assert refresh.headers.get("Session-Expires") == "2;refresher=uac" and b"a=sendrecv" in refresh.body
    peer.send(_answer_to(refresh, 200, peer, "sendrecv"))
    await peer.next_request("ACK")
    assert not call.ended


async def test_session_interval_too_small_gets_422(make_line) -> None:
    line, handler, peer = await make_line()
    peer.send(_invite(peer, new_branch(), new_call_id(), extra=("Session-Expires: 30", "Min-SE: 60")))
    await peer.expect(100)
    answer = await peer.expect(422)
    assert answer.headers.get("Min-SE") == "90"
    assert line.active_calls == 0
