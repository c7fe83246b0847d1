"""Our own re-offers on calls we place: hold/resume, 491 glare as the Call-ID owner, RFC 4028
session timers granted in the 2xx (either refresher) and the 422 retry with Min-SE."""
from __future__ import annotations

import asyncio

import pytest

from appliance.lines import DialFailed, DialFailure, HangupCause
from drivers.sip import reoffer, session_timer
from drivers.sip.message import SipResponse
from drivers.sip.reoffer import ReOffers
from drivers.sip.sdp import Direction
from tests.drivers.sip.outgoing_peer import EXT, answer_sdp, in_dialog, next_request, reply
from tests.drivers.sip.test_outgoing import _answered, phone_line  # noqa: F401 (fixture)

WAIT_S = 3.0


def _contact(peer) -> str:
    return f"<sip:{EXT}@127.0.0.1:{peer.port}>"


def _answer(request, peer, status: int = 200, direction: str | None = None,
            extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    body = answer_sdp(41000, direction=direction) if status < 300 else b""
    return reply(request, status, contact=_contact(peer), body=body, extra=extra)


async def _final(peer, method: str) -> SipResponse:
    while True:
        msg = await peer.recv()
        if isinstance(msg, SipResponse) and msg.status >= 200 and msg.cseq.method == method:
            return msg


async def test_we_hold_and_resume_a_call_we_placed(phone_line) -> None:
    line, peer = await phone_line()
    call, invite = await _answered(line, peer)
    assert "timer" in invite.headers.get_all("Supported")  # RFC 4028: we take part in session timers
    hold = asyncio.ensure_future(call.hold())
    ours = await next_request(peer.recv, "INVITE")
    assert ours.call_id == invite.call_id and ours.from_addr.tag == invite.from_addr.tag
    assert ours.to_addr.tag == "ph1" and str(ours.uri) == f"sip:{EXT}@127.0.0.1:{peer.port}"
    assert ours.cseq.number == invite.cseq.number + 1 and b"a=sendonly" in ours.body
    assert f"m=audio {call.audio.local_port} ".encode() in ours.body
    peer.send(_answer(ours, peer, direction="recvonly"))
    ack = await next_request(peer.recv, "ACK")
    assert ack.cseq.number == ours.cseq.number and ack.to_addr.tag == "ph1"
    async with asyncio.timeout(WAIT_S):
        assert await hold is True
    assert call._neg.direction is Direction.SENDONLY  # we still send (music on hold)

    resume = asyncio.ensure_future(call.resume())
    again = await next_request(peer.recv, "INVITE")
    assert b"a=sendrecv" in again.body and again.cseq.number == ours.cseq.number + 1
    peer.send(_answer(again, peer, direction="sendrecv"))
    await next_request(peer.recv, "ACK")
    async with asyncio.timeout(WAIT_S):
        assert await resume is True
    assert call._neg.direction is Direction.SENDRECV and not call.ended


async def test_an_answer_to_our_hold_after_the_far_ends_bye_is_ignored(phone_line) -> None:
    line, peer = await phone_line()
    call, invite = await _answered(line, peer)
    hold = asyncio.ensure_future(call.hold())
    ours = await next_request(peer.recv, "INVITE")
    peer.send(in_dialog(invite, "BYE", 2, peer.port))  # the phone hangs up while our hold is pending
    async with asyncio.timeout(WAIT_S):
        await call.wait_ended()
    peer.send(_answer(ours, peer, direction="recvonly", extra=(("Session-Expires", "120;refresher=uac"),)))
    async with asyncio.timeout(WAIT_S):
        await hold
    assert call._offers._handle is None  # no session timer re-armed on a call that has ended
    assert call._neg.direction is Direction.SENDRECV  # and its media was not reconfigured


async def test_hold_before_the_answer_is_refused_without_sending(phone_line) -> None:
    line, peer = await phone_line()
    call = await line.dial_extension(EXT)
    invite = await next_request(peer.recv, "INVITE")
    async with asyncio.timeout(WAIT_S):
        assert await call.hold() is False  # no dialog yet
    peer.send(reply(invite, 486))
    await next_request(peer.recv, "ACK")  # nothing but the ACK of the 486 was sent
    with pytest.raises(DialFailed):
        async with asyncio.timeout(WAIT_S):
            await call.wait_answered()


async def test_refused_hold_keeps_the_call(phone_line) -> None:
    line, peer = await phone_line()
    call, invite = await _answered(line, peer)
    hold = asyncio.ensure_future(call.hold())
    ours = await next_request(peer.recv, "INVITE")
    peer.send(_answer(ours, peer, 488))
    ack = await next_request(peer.recv, "ACK")  # the transaction ACKs the non-2xx itself
    assert ack.branch == ours.branch
    async with asyncio.timeout(WAIT_S):
        assert await hold is False
    assert not call.ended and call._neg.direction is Direction.SENDRECV


def _offers(owner: bool) -> ReOffers:
    async def hangup(cause) -> None:
        pass
    return ReOffers(None, "t", contact="<sip:x@h>", call_id_owner=owner, ready=lambda: False,
                    dialog=lambda: None, body=lambda d: b"", answered=lambda n: None, hangup=hangup,
                    spawn=lambda coro, name: coro.close())


def test_glare_wait_is_2_1_to_4_s_as_call_id_owner_else_0_to_2() -> None:
    owner = [_offers(True)._glare_wait() for _ in range(300)]
    other = [_offers(False)._glare_wait() for _ in range(300)]
    assert all(2.1 <= w <= 4.0 for w in owner) and max(owner) - min(owner) > 1.0
    assert all(0.0 <= w <= 2.0 for w in other) and max(other) - min(other) > 1.0


async def test_glare_on_a_call_we_placed_491_both_ways_then_retry(phone_line, monkeypatch) -> None:
    monkeypatch.setattr(reoffer, "GLARE_OWNER_RETRY_S", (0.01, 0.05))
    monkeypatch.setattr(reoffer, "GLARE_RETRY_MAX_S", 60.0)  # the other range would time the test out
    line, peer = await phone_line()
    call, invite = await _answered(line, peer)
    hold = asyncio.ensure_future(call.hold())
    ours = await next_request(peer.recv, "INVITE")
    # the phone's own re-INVITE crosses ours: refused with 491
    peer.send(in_dialog(invite, "INVITE", 2, peer.port, body=answer_sdp(41000, direction="sendonly")))
    refused = await _final(peer, "INVITE")
    assert refused.status == 491 and refused.headers.get("Retry-After") == "1"
    assert call._neg.direction is Direction.SENDRECV  # their crossing offer was not applied
    # and the phone refuses ours with 491: we retry (as Call-ID owner after 2.1..4 s, here 0.01..0.05)
    peer.send(_answer(ours, peer, 491))
    await next_request(peer.recv, "ACK")
    retry = await next_request(peer.recv, "INVITE")
    assert retry.cseq.number > ours.cseq.number and retry.branch != ours.branch
    assert b"a=sendonly" in retry.body
    peer.send(_answer(retry, peer, direction="recvonly"))
    async with asyncio.timeout(WAIT_S):
        assert await hold is True


async def test_session_timer_refresher_uac_we_refresh_with_our_current_direction(phone_line, monkeypatch) -> None:
    monkeypatch.setattr(session_timer, "MIN_SE_S", 2)  # a 2 s session keeps the test short
    line, peer = await phone_line()
    call, invite = await _answered(line, peer, extra=(("Session-Expires", "2;refresher=uac"), ("Require", "timer")))
    hold = asyncio.ensure_future(call.hold())
    ours = await next_request(peer.recv, "INVITE")
    assert ours.headers.get("Session-Expires") == "2;refresher=uac"  # we stay the refresher (§7.4)
    peer.send(_answer(ours, peer, direction="recvonly", extra=(("Session-Expires", "2;refresher=uac"),)))
    async with asyncio.timeout(WAIT_S):
        assert await hold is True
    loop = asyncio.get_running_loop()
    held_at = loop.time()
    refresh = await next_request(peer.recv, "INVITE")  # half the interval after the hold's 2xx
    assert 0.6 < loop.time() - held_at < 1.8
    assert refresh.headers.get("Session-Expires") == "2;refresher=uac"
    assert b"a=sendonly" in refresh.body  # a refresh keeps the hold
    peer.send(_answer(refresh, peer, direction="recvonly", extra=(("Session-Expires", "2;refresher=uac"),)))
    await next_request(peer.recv, "ACK")
    assert not call.ended
    await call.hangup()


async def test_session_timer_refresher_uas_expiry_sends_bye(phone_line, monkeypatch) -> None:
    monkeypatch.setattr(session_timer, "MIN_SE_S", 2)  # their 3 s refresh would otherwise get 422
    line, peer = await phone_line()
    loop = asyncio.get_running_loop()
    call, invite = await _answered(line, peer, extra=(("Session-Expires", "3;refresher=uas"),))
    answered_at = loop.time()
    # their refresh is answered with the interval (their view: they are the UAC, the refresher)
    peer.send(in_dialog(invite, "UPDATE", 2, peer.port, extra=("Session-Expires: 3;refresher=uac",
                                                               "Supported: timer")))
    ok = await _final(peer, "UPDATE")
    assert ok.status == 200 and ok.headers.get("Session-Expires") == "3;refresher=uac"
    assert ok.body == b"" and ok.headers.get("Content-Type") is None  # a refresh, not an offer
    refreshed_at = loop.time()
    # no further refresh: 3 - min(32, 3/3) = 2 s after it we send BYE and end as TIMEOUT
    bye = await next_request(peer.recv, "BYE")
    assert 1.5 < loop.time() - refreshed_at < 2.8 and loop.time() - answered_at >= 1.5
    assert bye.call_id == invite.call_id
    peer.send(reply(bye, 200, to_tag=""))
    async with asyncio.timeout(WAIT_S):
        assert await call.wait_ended() is HangupCause.TIMEOUT


async def test_no_session_expires_in_the_2xx_means_no_timer(phone_line) -> None:
    line, peer = await phone_line()
    call, invite = await _answered(line, peer)
    assert call._offers.timer is None and call._offers._handle is None


async def test_422_is_retried_once_with_its_min_se(phone_line) -> None:
    line, peer = await phone_line()
    call = await line.dial_extension(EXT)
    first = await next_request(peer.recv, "INVITE")
    assert first.headers.get("Session-Expires") is None
    peer.send(reply(first, 422, extra=(("Min-SE", "1800"),)))
    await next_request(peer.recv, "ACK")
    second = await next_request(peer.recv, "INVITE")
    assert second.call_id == first.call_id and second.from_addr.tag == first.from_addr.tag
    assert second.cseq.number == first.cseq.number + 1 and second.branch != first.branch
    assert second.headers.get("Session-Expires") == "1800" and second.headers.get("Min-SE") == "1800"
    peer.send(_answer(second, peer, extra=(("Session-Expires", "1800;refresher=uas"),)))
    async with asyncio.timeout(WAIT_S):
        await call.wait_answered()
    assert call._offers.timer.interval == 1800 and not call._offers.timer.we_refresh
    await call.hangup()


@pytest.mark.parametrize("second_status_headers", [
    None,  # a 422 without Min-SE: nothing to retry with
    (("Min-SE", "3600"),),  # a second 422: we retried once already
])
async def test_422_we_cannot_meet_fails_the_dial(phone_line, second_status_headers) -> None:
    line, peer = await phone_line()
    call = await line.dial_extension(EXT)
    invite = await next_request(peer.recv, "INVITE")
    if second_status_headers is not None:
        peer.send(reply(invite, 422, extra=(("Min-SE", "1800"),)))
        invite = await next_request(peer.recv, "INVITE")
    peer.send(reply(invite, 422, extra=second_status_headers or ()))
    with pytest.raises(DialFailed) as failed:
        async with asyncio.timeout(WAIT_S):
            await call.wait_answered()
    assert failed.value.reason is DialFailure.ERROR and "422" in failed.value.detail


@pytest.mark.parametrize("header, expected", [
    ("1800;refresher=uac", (1800, True)),
    ("1800;refresher=uas", (1800, False)),
    ("600", (600, True)),  # no refresher named in a 2xx to our INVITE: we refresh (§7.2)
    ("1;refresher=uas", (90, False)),  # below the RFC 4028 floor: held to 90 s, not a BYE within a second
])
def test_the_interval_a_2xx_grants(header: str, expected: tuple[int, bool]) -> None:
    from drivers.sip.message import parse_message

    ok = parse_message(("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
                        "To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
                        f"Session-Expires: {header}\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(ok, SipResponse)
    timer = session_timer.session_timer_granted(ok)
    assert timer is not None and (timer.interval, timer.we_refresh) == expected
