"""Late offer (RFC 3261 §13.2.1): an INVITE without SDP gets our offer in the 200 and the ACK
carries the answer. Driven by raw UDP against a running SipLine; SIPp does the same in test_sipp."""
from __future__ import annotations

import asyncio

from appliance.lines import HangupCause
from drivers.sip.call import CallState
from drivers.sip.message import response_bytes
from drivers.sip.sdp import Direction, parse_sdp
from tests.drivers.sip.peer import RtpPort, new_branch, new_call_id, offer_sdp
from tests.drivers.sip.test_line_udp import make_line  # noqa: F401 (fixture)

WAIT_S = 3.0



async def _late_offer_answered(line, handler, peer):
    """An INVITE without a body, rung (180) and answered (200 with our offer)."""
    call_id = new_call_id()
    peer.send(peer.request("INVITE", branch=new_branch(), call_id=call_id))
    await peer.expect(100)
    call = await handler.next_call()
    await call.progress()
    ringing = await peer.expect(180)
    await call.answer()
    ok = await peer.expect(200)
    return call, call_id, ringing, ok


def _ack(peer, call_id: str, ok, body: str = "") -> str:
    return peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag, body=body)


async def test_our_200_offers_and_the_ack_answer_sets_the_media(make_line) -> None:
    line, handler, peer = await make_line(progress_status=180)
    rtp_t = await RtpPort.open()
    try:
        call, call_id, ringing, ok = await _late_offer_answered(line, handler, peer)
        assert ringing.body == b"" and ringing.headers.get("Content-Type") is None  # no early media
        assert call.state is CallState.ANSWERED and call.late_offer
        assert ok.headers.get("Content-Type") == "application/sdp"
        offer = parse_sdp(ok.body)
        audio = offer.media[0]
        assert audio.formats == ("0", "8", "101") and audio.port == call.audio._rtp.local_port
        assert dict(audio.rtpmap)[101] == "telephone-event/8000"
        assert await call.send_dtmf("5") is False  # nothing agreed yet: nowhere to send it

        peer.send(_ack(peer, call_id, ok, offer_sdp(rtp_t.port, pts="8 101")))  # the caller picks PCMA
        await peer.sync()
        call.audio.write_frame(b"\x10\x00" * 160)
        packet = await rtp_t.next_packet()  # sent only once the ACK's answer told us where
        assert packet[1] & 0x7F == 8 and len(packet) == 12 + 160
        assert call.state is CallState.CONFIRMED and not call.late_offer

        hold = asyncio.ensure_future(call.hold())  # a re-offer built from the caller's answer
        invite = await peer.next_request("INVITE")
        reoffer = parse_sdp(invite.body)
        assert reoffer.media[0].formats == ("8", "101") and reoffer.media[0].direction is Direction.SENDONLY
        peer.send(response_bytes(invite, 200, extra=(("Contact", f"<sip:peer@127.0.0.1:{peer.port}>"),
                                                     ("Content-Type", "application/sdp")),
                                 body=offer_sdp(rtp_t.port, pts="8 101", direction="recvonly").encode()))
        await peer.next_request("ACK")
        async with asyncio.timeout(WAIT_S):
            assert await hold is True
    finally:
        rtp_t.close()
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    bye = await peer.next_request("BYE")
    assert bye.call_id == call_id
    peer.send(response_bytes(bye, 200))


async def test_an_ack_without_an_answer_ends_the_call_with_bye(make_line, caplog) -> None:
    line, handler, peer = await make_line(progress_status=180)
    call, call_id, _, ok = await _late_offer_answered(line, handler, peer)
    peer.send(_ack(peer, call_id, ok))
    bye = await peer.next_request("BYE")
    assert bye.call_id == call_id and bye.from_addr.tag == ok.to_addr.tag
    peer.send(response_bytes(bye, 200))
    async with asyncio.timeout(WAIT_S):
        assert await call.wait_ended() is HangupCause.ERROR
    assert line.active_calls == 0
    assert "the ACK carries no SDP answer" in caplog.text and "ending the call with BYE" in caplog.text


async def test_an_answer_without_our_codecs_ends_the_call_with_bye(make_line) -> None:
    line, handler, peer = await make_line(progress_status=180)
    call, call_id, _, ok = await _late_offer_answered(line, handler, peer)
    peer.send(_ack(peer, call_id, ok, offer_sdp(42000, pts="18")))  # G.729: not what we offered
    peer.send(response_bytes(await peer.next_request("BYE"), 200))
    async with asyncio.timeout(WAIT_S):
        assert await call.wait_ended() is HangupCause.ERROR


async def test_an_update_before_the_ack_meets_our_pending_offer_491(make_line) -> None:
    line, handler, peer = await make_line(progress_status=180)
    call, call_id, _, ok = await _late_offer_answered(line, handler, peer)
    peer.send(peer.request("UPDATE", branch=new_branch(), call_id=call_id, cseq=2, to_tag=ok.to_addr.tag,
                           body=offer_sdp(42000)))
    await peer.expect(491)
    peer.send(_ack(peer, call_id, ok, offer_sdp(42000)))
    await peer.sync()
    assert call.state is CallState.CONFIRMED
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    peer.send(response_bytes(await peer.next_request("BYE"), 200))


async def test_a_body_that_is_not_sdp_gets_415(make_line) -> None:
    line, handler, peer = await make_line()
    invite = peer.request("INVITE", branch=new_branch(), call_id=new_call_id(), body="hello")
    peer.send(invite.replace("Content-Type: application/sdp", "Content-Type: text/plain"))
    await peer.expect(100)
    refused = await peer.expect(415)
    assert refused.headers.get("Accept") == "application/sdp"
    assert handler.calls == []


async def test_an_offerless_reinvite_gets_our_offer_and_the_ack_answer_moves_the_media(make_line) -> None:
    """§14.2: a re-INVITE without SDP (e.g. a PBX re-routing media) gets our SDP as an offer in
    the 200; the answer in its ACK may name a new address, where our audio then goes."""
    line, handler, peer = await make_line()
    first, moved = await RtpPort.open(), await RtpPort.open()
    try:
        call_id = new_call_id()
        peer.send(peer.request("INVITE", branch=new_branch(), call_id=call_id, body=offer_sdp(first.port)))
        await peer.expect(100)
        call = await handler.next_call()
        await call.answer()
        ok = await peer.expect(200)
        peer.send(_ack(peer, call_id, ok))
        await peer.sync()
        call.audio.write_frame(b"\x10\x00" * 160)
        assert len(await first.next_packet()) == 12 + 160

        peer.send(peer.request("INVITE", branch=new_branch(), call_id=call_id, cseq=2, to_tag=ok.to_addr.tag))
        await peer.expect(100)
        again = await peer.expect(200)
        assert parse_sdp(again.body).media[0].formats == ("8", "101")  # what we had agreed, as an offer
        peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, cseq=2, to_tag=ok.to_addr.tag,
                               body=offer_sdp(moved.port)))
        await peer.sync()
        call.audio.write_frame(b"\x10\x00" * 160)
        assert len(await moved.next_packet()) == 12 + 160
        assert first.packets.empty()
    finally:
        first.close()
        moved.close()
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    peer.send(response_bytes(await peer.next_request("BYE"), 200))
