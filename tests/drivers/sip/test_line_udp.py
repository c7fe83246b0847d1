"""A running SipLine on 127.0.0.1 driven by raw UDP/TCP sockets."""
from __future__ import annotations

import asyncio
import struct
from typing import Awaitable, Callable

import pytest

from appliance.lines import CallGone, HangupCause
from drivers.sip import transaction
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.message import SipRequest, parse_message
from drivers.sip.sdp import negotiate, parse_sdp
from tests.drivers.sip.peer import RtpPort, SipPeer, new_branch, new_call_id, offer_sdp

WAIT_S = 3.0

Behaviour = Callable[[object], Awaitable[None]]


class Handler:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.calls: list = []
        self.arrived: asyncio.Queue = asyncio.Queue(maxsize=16)
        self.errors: list[BaseException] = []

    async def __call__(self, call) -> None:
        self.calls.append(call)
        self.arrived.put_nowait(call)
        await self.behaviour(call)

    async def next_call(self):
        async with asyncio.timeout(WAIT_S):
            return await self.arrived.get()


async def ring_forever(call) -> None:
    await call.wait_ended()


@pytest.fixture
async def make_line():
    lines: list[SipLine] = []
    peers: list[SipPeer] = []

    async def factory(behaviour: Behaviour = ring_forever, progress_status: int = 183):
        handler = Handler(behaviour)
        line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None,
                                     progress_status=progress_status), handler)
        await line.start()
        lines.append(line)
        peer = await SipPeer(("127.0.0.1", line.udp_port)).open()
        peers.append(peer)
        return line, handler, peer

    yield factory
    for line in lines:
        await line.stop()
    for peer in peers:
        peer.close()


def _invite(peer: SipPeer, branch: str, call_id: str, rtp_port: int = 40000, **kw) -> str:
    return peer.request("INVITE", branch=branch, call_id=call_id, body=offer_sdp(rtp_port), **kw)


async def _answered_call(line, handler, peer, rtp_port: int = 40000):
    branch, call_id = new_branch(), new_call_id()
    peer.send(_invite(peer, branch, call_id, rtp_port))
    await peer.expect(100)
    call = await handler.next_call()
    await call.answer()
    ok = await peer.expect(200)
    peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag))
    return call, call_id, ok


async def test_options_gets_200_with_allow(make_line) -> None:
    line, handler, peer = await make_line()
    peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
    ok = await peer.expect(200)
    assert "INVITE" in ok.headers.get_all("Allow") and "BYE" in ok.headers.get_all("Allow")
    assert ok.headers.get("Accept") == "application/sdp"
    assert ok.to_addr.tag


async def test_retransmitted_invite_gives_one_call_and_last_response(make_line) -> None:
    line, handler, peer = await make_line()
    branch, call_id = new_branch(), new_call_id()
    invite = _invite(peer, branch, call_id)
    peer.send(invite)
    await peer.expect(100)
    peer.send(invite)
    await peer.expect(100)  # absorbed: the last response again
    call = await handler.next_call()
    await call.progress()
    p183 = await peer.expect(183)
    peer.send(invite)
    again = await peer.expect(183)
    assert again.to_addr.tag == p183.to_addr.tag
    assert len(handler.calls) == 1 and line.statistics().calls_total == 1
    assert call.call_id != call_id and len(call.call_id) == 32
    neg = negotiate(parse_sdp(p183.body))
    assert neg.codec == "PCMA" and neg.dtmf_payload_type == 101


async def test_the_same_invite_by_another_path_is_a_merged_request_482(make_line) -> None:
    """§8.2.2.2: From tag, Call-ID and CSeq of a running transaction with another branch (a loop,
    or forks merging back) get 482 Loop Detected and no second call; a new CSeq is a new request."""
    line, handler, peer = await make_line()
    call_id = new_call_id()
    peer.send(_invite(peer, new_branch(), call_id))
    await peer.expect(100)
    call = await handler.next_call()
    peer.send(_invite(peer, new_branch(), call_id))  # the same INVITE, forked back to us
    await peer.expect(100)
    looped = await peer.expect(482)
    assert looped.reason == "Loop Detected" and looped.cseq.method == "INVITE"
    assert len(handler.calls) == 1 and line.statistics().calls_total == 1
    for method in ("OPTIONS", "OPTIONS"):  # out of dialog non-INVITE: the second copy by another branch
        peer.send(peer.request(method, branch=new_branch(), call_id=call_id, cseq=7))
    assert (await peer.expect(200)).cseq.number == 7
    assert (await peer.expect(482)).cseq.number == 7
    peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=call_id, cseq=8))
    assert (await peer.expect(200)).cseq.number == 8
    await call.hangup(HangupCause.REJECTED)


async def test_cancel_while_ringing(make_line) -> None:
    line, handler, peer = await make_line()
    branch, call_id = new_branch(), new_call_id()
    peer.send(_invite(peer, branch, call_id))
    await peer.expect(100)
    call = await handler.next_call()
    peer.send(peer.request("CANCEL", branch=branch, call_id=call_id))
    first, second = await peer.recv(), await peer.recv()
    by_method = {m.cseq.method: m for m in (first, second)}
    assert by_method["CANCEL"].status == 200
    assert by_method["INVITE"].status == 487
    peer.send(peer.request("ACK", branch=branch, call_id=call_id, to_tag=by_method["INVITE"].to_addr.tag))
    async with asyncio.timeout(WAIT_S):
        assert await call.wait_ended() is HangupCause.CANCELLED
    with pytest.raises(CallGone):
        await call.answer()
    await call.hangup(HangupCause.NO_AGENT)  # idempotent, no raise, nothing sent
    peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
    await peer.expect(200)  # (not a 480 left over from the hangup)


@pytest.mark.parametrize(
    "mutate,status",
    [
        (lambda s: s.replace("CSeq: 1 INVITE", "CSeq: abc INVITE"), 400),
        (lambda s: s.replace("CSeq: 1 INVITE", "CSeq: 1 BYE"), 400),
        (lambda s: s.replace(" SIP/2.0\r\n", " SIP/3.0\r\n", 1), 505),
        (lambda s: s.replace("Content-Length: ", "Content-Length: 9"), 400),
        (lambda s: s.replace("m=audio 40000", "m=audio 4000x"), 400),
        (lambda s: s.replace("RTP/AVP 8 101", "RTP/AVP 18 99"), 488),
        (lambda s: s.replace("INVITE sip:", "INVITE tel:", 1).replace("@127.0.0.1:", "-", 1), 416),
    ],
    ids=["bad-cseq", "cseq-method", "version", "content-length", "bad-sdp", "no-codec", "uri-scheme"],
)
async def test_malformed_requests_are_answered_and_line_keeps_serving(make_line, mutate, status) -> None:
    line, handler, peer = await make_line()
    peer.send(mutate(_invite(peer, new_branch(), new_call_id())))
    got = await peer.recv_raw()
    if got.startswith(b"SIP/2.0 100 "):
        got = await peer.recv_raw()  # SDP is checked after the INVITE is accepted as a message
    assert got.startswith(f"SIP/2.0 {status} ".encode())
    peer.send(b"\x00\x01garbage that is not SIP\r\n\r\n")
    assert (await peer.recv_raw()).startswith(b"SIP/2.0 400 ")
    peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
    await peer.expect(200)
    assert handler.calls == []


async def test_bye_retransmitted_gets_200_twice(make_line) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    bye = peer.request("BYE", branch=new_branch(), call_id=call_id, cseq=2, to_tag=ok.to_addr.tag)
    peer.send(bye)
    await peer.expect(200)
    peer.send(bye)
    await peer.expect(200)
    async with asyncio.timeout(WAIT_S):
        assert await call.wait_ended() is HangupCause.CALLER_HUNG_UP
    assert line.active_calls == 0


async def test_final_non_2xx_retransmitted_with_timer_g_until_ack(make_line, monkeypatch) -> None:
    monkeypatch.setattr(transaction, "T1", 0.05)
    monkeypatch.setattr(transaction, "T2", 0.2)
    line, handler, peer = await make_line()
    branch, call_id = new_branch(), new_call_id()
    peer.send(_invite(peer, branch, call_id))
    await peer.expect(100)
    call = await handler.next_call()
    await call.hangup(HangupCause.NO_AGENT)
    loop = asyncio.get_running_loop()
    times = []
    for _ in range(4):
        r = await peer.expect(480)
        times.append(loop.time())
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[2] > gaps[0] * 1.5  # doubling (T1, 2T1, 4T1 capped at T2)
    peer.send(peer.request("ACK", branch=branch, call_id=call_id, to_tag=r.to_addr.tag))
    with pytest.raises(TimeoutError):
        await peer.recv(timeout=0.6)  # > 2 * T2 with no further 480
    assert await call.wait_ended() is HangupCause.NO_AGENT


async def test_reject_codes(make_line) -> None:
    line, handler, peer = await make_line()
    for cause, status in ((HangupCause.SHUTDOWN, 503), (HangupCause.REJECTED, 603)):
        peer.send(_invite(peer, new_branch(), new_call_id()))
        await peer.expect(100)
        call = await handler.next_call()
        await call.hangup(cause)
        await peer.expect(status)


async def test_unknown_method_501_and_unknown_dialog_481(make_line) -> None:
    line, handler, peer = await make_line()
    peer.send(peer.request("FROBNICATE", branch=new_branch(), call_id=new_call_id()))
    assert (await peer.expect(501)).headers.get("Allow")
    peer.send(peer.request("BYE", branch=new_branch(), call_id=new_call_id(), to_tag="nope"))
    await peer.expect(481)
    peer.send(peer.request("BYE", branch=new_branch(), call_id=new_call_id()))
    await peer.expect(481)
    peer.send(peer.request("CANCEL", branch=new_branch(), call_id=new_call_id()))
    await peer.expect(481)


async def test_cancel_after_200_has_no_effect(make_line) -> None:
    line, handler, peer = await make_line()
    branch, call_id = new_branch(), new_call_id()
    peer.send(_invite(peer, branch, call_id))
    await peer.expect(100)
    call = await handler.next_call()
    await call.answer()
    ok = await peer.expect(200)
    peer.send(peer.request("CANCEL", branch=branch, call_id=call_id))
    assert (await peer.expect(200)).cseq.method == "CANCEL"
    peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag))
    assert not call.ended
    peer.send(peer.request("BYE", branch=new_branch(), call_id=call_id, cseq=2, to_tag=ok.to_addr.tag))
    await peer.expect(200)
    assert await call.wait_ended() is HangupCause.CALLER_HUNG_UP


async def test_200_retransmitted_until_ack(make_line, monkeypatch) -> None:
    monkeypatch.setattr(transaction, "T1", 0.05)
    line, handler, peer = await make_line()
    branch, call_id = new_branch(), new_call_id()
    peer.send(_invite(peer, branch, call_id))
    await peer.expect(100)
    call = await handler.next_call()
    await call.answer()
    first = await peer.expect(200)
    second = await peer.expect(200)
    assert second.body == first.body
    peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=first.to_addr.tag))
    peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
    # at most one 200 that crossed the ACK, then the OPTIONS answer
    msg = await peer.recv()
    if msg.cseq.method == "INVITE":
        msg = await peer.recv()
    assert msg.cseq.method == "OPTIONS"
    with pytest.raises(TimeoutError):
        await peer.recv(timeout=0.4)


async def test_hangup_after_answer_sends_bye(make_line) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    bye = await peer.recv()
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert bye.call_id == call_id and bye.from_addr.tag == ok.to_addr.tag
    assert bye.to_addr.tag == peer.from_tag
    assert str(bye.uri) == f"sip:peer@127.0.0.1:{peer.port}"
    assert await call.wait_ended() is HangupCause.AGENT_HUNG_UP


async def test_hold_reinvite_answered_recvonly(make_line) -> None:
    line, handler, peer = await make_line()
    call, call_id, ok = await _answered_call(line, handler, peer)
    body = offer_sdp(40000, direction="sendonly")
    peer.send(peer.request("INVITE", branch=new_branch(), call_id=call_id, cseq=2, to_tag=ok.to_addr.tag,
                           body=body))
    await peer.expect(100)
    hold_ok = await peer.expect(200)
    assert b"a=recvonly" in hold_ok.body
    assert not call.ended


async def test_caller_id_from_uri_not_display_name(make_line) -> None:
    line, handler, peer = await make_line()
    frm = f'From: "Bob <sip:evil@x>" <sip:bob@127.0.0.1:{peer.port}>;tag={peer.from_tag}'
    peer.send(_invite(peer, new_branch(), new_call_id(), from_header=frm))
    await peer.expect(100)
    call = await handler.next_call()
    assert call.caller.number == "bob"
    assert call.caller.name == "Bob <sip:evil@x>"
    assert call.called == "100"


def _rtp(pt: int, seq: int, ts: int, payload: bytes, marker: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, (marker << 7) | pt, seq, ts, 0x1234) + payload


async def test_default_progress_is_180_with_sdp(make_line) -> None:
    line, handler, peer = await make_line(progress_status=180)
    peer.send(_invite(peer, new_branch(), new_call_id()))
    await peer.expect(100)
    call = await handler.next_call()
    await call.progress()
    ringing = await peer.expect(180)
    assert negotiate(parse_sdp(ringing.body)).codec == "PCMA"
    await call.answer()
    ok = await peer.expect(200)
    assert ok.body == ringing.body and ok.to_addr.tag == ringing.to_addr.tag


async def test_early_media_flows_both_ways_and_dtmf_once(make_line) -> None:
    line, handler, peer = await make_line()
    rtp_t = await RtpPort.open()
    try:
        peer.send(_invite(peer, new_branch(), new_call_id(), rtp_t.port))
        await peer.expect(100)
        call = await handler.next_call()
        digits: list[str] = []
        call.on_dtmf(digits.append)
        await call.progress()
        p183 = await peer.expect(183)
        neg = negotiate(parse_sdp(p183.body))
        ours = (neg.remote_host, neg.remote_port)
        # caller -> us: 30 ms of A-law (0xD5 is A-law silence-ish, use 0x55 for loud)
        rtp_t.sendto(_rtp(8, 1, 0, b"\xaa" * 240), ours)
        # DTMF '5': start, update, three end packets with one timestamp
        for i, flags in enumerate((0x0A, 0x0A, 0x8A, 0x8A, 0x8A)):
            rtp_t.sendto(_rtp(101, 2 + i, 800, bytes([5, flags]) + struct.pack("!H", 160 * (i + 1))), ours)
        rtp_t.sendto(_rtp(101, 10, 2000, bytes([11, 0x8A, 0, 160])), ours)  # '#' end only
        # us -> caller
        call.audio.write_frame(b"\x10\x00" * 160)
        packet = await rtp_t.next_packet()
        assert packet[1] & 0x7F == 8 and packet[1] & 0x80  # PCMA, marker on the first packet
        assert len(packet) == 12 + 160
        async with asyncio.timeout(WAIT_S):
            while call.audio.statistics().received < 1 or len(digits) < 2:
                await asyncio.sleep(0.01)  # polling a counter fed by the socket, bounded above
        frame = call.audio.read_frame_nowait()
        assert frame is not None and len(frame) == 320 and any(frame)
        assert digits == ["5", "#"]
    finally:
        rtp_t.close()


async def test_stop_ends_calls_with_503_and_bye(make_line) -> None:
    line, handler, peer = await make_line()
    answered, a_call_id, ok = await _answered_call(line, handler, peer)
    peer.send(_invite(peer, new_branch(), new_call_id()))
    await peer.expect(100)
    ringing = await handler.next_call()
    await line.stop()
    got = [await peer.recv(), await peer.recv()]
    kinds = sorted(getattr(m, "method", None) or str(m.status) for m in got)
    assert kinds == ["503", "BYE"]
    assert await answered.wait_ended() is HangupCause.SHUTDOWN
    assert await ringing.wait_ended() is HangupCause.SHUTDOWN


async def test_options_over_tcp_with_lf_only_lines(make_line) -> None:
    line, handler, peer = await make_line()
    reader, writer = await asyncio.open_connection("127.0.0.1", line.tcp_port)
    try:
        req = peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()).replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        writer.write(b"\r\n\r\n" + req.replace("\r\n", "\n").encode() + b"OPTIONS sip:x SIP/2.0\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(WAIT_S):
            head = await reader.readuntil(b"\r\n\r\n")
            first = parse_message(head, stream=True)
            second = await reader.readuntil(b"\r\n\r\n")
        assert first.status == 200
        assert second.startswith(b"SIP/2.0 400 ")  # the broken one is answered, the connection stays up
    finally:
        writer.close()
        await writer.wait_closed()


async def test_tu_bug_gives_500_and_line_keeps_serving(make_line, monkeypatch) -> None:
    line, handler, peer = await make_line()

    def broken(request, txn):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(line, "on_invite", broken)
    peer.send(_invite(peer, new_branch(), new_call_id()))
    await peer.expect(100)
    await peer.expect(500)
    peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
    await peer.expect(200)


async def test_no_ack_for_200_gives_bye_and_timeout(make_line, monkeypatch) -> None:
    monkeypatch.setattr(transaction, "T1", 0.05)
    monkeypatch.setattr(transaction, "TIMEOUT_64T1", 0.5)
    line, handler, peer = await make_line()
    branch, call_id = new_branch(), new_call_id()
    peer.send(_invite(peer, branch, call_id))
    await peer.expect(100)
    call = await handler.next_call()
    await call.answer()
    oks = 0
    while True:
        msg = await peer.recv()
        if isinstance(msg, SipRequest):
            break
        assert msg.status == 200
        oks += 1
    assert msg.method == "BYE" and oks >= 3
    assert await call.wait_ended() is HangupCause.TIMEOUT


@pytest.mark.parametrize(
    "from_header,extra",
    [
        ('From: "Anonymous" <sip:anonymous@anonymous.invalid>;tag=x1', ()),
        ("From: <sip:5551234@127.0.0.1>;tag=x2", ("Privacy: id",)),
    ],
)
async def test_withheld_caller_id(make_line, from_header, extra) -> None:
    line, handler, peer = await make_line()
    peer.send(_invite(peer, new_branch(), new_call_id(), from_header=from_header, extra=extra))
    await peer.expect(100)
    call = await handler.next_call()
    assert call.caller.number is None and call.caller.presentation == "withheld"


async def test_call_over_tcp_answers_and_byes_on_the_same_connection(make_line) -> None:
    from drivers.sip.message import StreamFramer, response_bytes

    line, handler, peer = await make_line()
    reader, writer = await asyncio.open_connection("127.0.0.1", line.tcp_port)
    framer = StreamFramer()
    pending: list[bytes] = []

    async def next_msg():
        async with asyncio.timeout(WAIT_S):
            while not pending:
                pending.extend(framer.feed(await reader.read(4096)))
        return parse_message(pending.pop(0), stream=True)

    try:
        call_id = new_call_id()
        invite = _invite(peer, new_branch(), call_id).replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        writer.write(invite.encode())
        assert (await next_msg()).status == 100
        call = await handler.next_call()
        await call.answer()
        ok = await next_msg()
        assert ok.status == 200 and b";transport=tcp" in ok.headers.get("Contact").encode()
        ack = peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag)
        writer.write(ack.replace("SIP/2.0/UDP", "SIP/2.0/TCP").encode())
        await writer.drain()
        async with asyncio.timeout(WAIT_S):
            while call.state.value != "confirmed":
                await asyncio.sleep(0.005)  # bounded poll: the ACK has no response to wait for
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        bye = await next_msg()
        assert isinstance(bye, SipRequest) and bye.method == "BYE" and bye.via.transport == "TCP"
        writer.write(response_bytes(bye, 200))
        await writer.drain()
        assert await call.wait_ended() is HangupCause.AGENT_HUNG_UP
    finally:
        writer.close()
        await writer.wait_closed()
