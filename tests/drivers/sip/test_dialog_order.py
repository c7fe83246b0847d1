"""In-dialog order (RFC 3261 §12.2.2: a lower CSeq gets 500), 491 while the offer in our 200 to an
offerless re-INVITE awaits its ACK, and media addresses we cannot send to (488, never a traceback)."""
from __future__ import annotations

import asyncio

from appliance.lines import HangupCause
from drivers.sip.message import response_bytes
from tests.drivers.sip.peer import RtpPort, new_branch, new_call_id, offer_sdp
from tests.drivers.sip.test_line_udp import _answered_call, _invite, make_line  # noqa: F401 (fixture)

WAIT_S = 3.0


def _in_dialog(peer, method: str, call_id: str, ok, cseq: int, body: str = "") -> str:
    return peer.request(method, branch=new_branch(), call_id=call_id, cseq=cseq, to_tag=ok.to_addr.tag, body=body)


async def test_a_request_with_a_lower_cseq_gets_500_and_changes_nothing(make_line) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    peer.send(_in_dialog(peer, "INVITE", call_id, ok, 101, offer_sdp(40000, direction="sendonly")))
    await peer.expect(100)
    await peer.expect(200)  # the caller holds us
    peer.send(_in_dialog(peer, "ACK", call_id, ok, 101))
    assert call._neg.on_hold
    peer.send(_in_dialog(peer, "INVITE", call_id, ok, 50, offer_sdp(40000)))  # an old resume, out of order
    await peer.expect(100)
    stale = await peer.expect(500)
    assert stale.reason == "Request Out of Order" and stale.cseq.number == 50
    assert call._neg.on_hold  # still held
    peer.send(_in_dialog(peer, "BYE", call_id, ok, 60))
    assert (await peer.expect(500)).cseq.method == "BYE"
    assert not call.ended
    peer.send(_in_dialog(peer, "BYE", call_id, ok, 102))
    await peer.expect(200)
    async with asyncio.timeout(WAIT_S):
        assert await call.wait_ended() is HangupCause.CALLER_HUNG_UP


async def test_a_reinvite_while_our_offer_in_a_200_awaits_its_ack_gets_491(make_line) -> None:
    line, handler, peer = await make_line()
    moved = await RtpPort.open()
    try:
        call, call_id, ok = await _answered_call(line, handler, peer)
        peer.send(_in_dialog(peer, "INVITE", call_id, ok, 2))  # offerless: our 200 offers
        await peer.expect(100)
        ours = await peer.expect(200)
        assert b"m=audio" in ours.body
        peer.send(_in_dialog(peer, "INVITE", call_id, ok, 3, offer_sdp(40000, direction="sendonly")))
        await peer.expect(100)
        assert (await peer.expect(491)).cseq.number == 3
        peer.send(_in_dialog(peer, "ACK", call_id, ok, 2, offer_sdp(moved.port)))  # the answer, applied
        await peer.sync()
        call.audio.write_frame(b"\x10\x00" * 160)
        assert len(await moved.next_packet()) == 12 + 160
    finally:
        moved.close()
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    peer.send(response_bytes(await peer.next_request("BYE"), 200))


async def test_media_at_an_ipv6_or_host_name_address_is_refused_with_488(make_line, caplog) -> None:
    line, handler, peer = await make_line()
    for conn, why in (("c=IN IP6 ::1", "is IPv6 but the box's RTP is IPv4"),
                      ("c=IN IP4 localhost", "is not an IP address")):
        body = offer_sdp(40000).replace("c=IN IP4 127.0.0.1", conn)
        peer.send(_invite(peer, new_branch(), new_call_id()).split("\r\n\r\n")[0].replace(
            f"Content-Length: {len(offer_sdp(40000))}", f"Content-Length: {len(body)}") + "\r\n\r\n" + body)
        await peer.expect(100)
        assert (await peer.expect(488)).cseq.method == "INVITE"
        assert why in caplog.text
    assert handler.calls == [] and "Traceback" not in caplog.text
