"""Outgoing calls (we are the UAC) against a raw-socket desk phone registered with our registrar."""
from __future__ import annotations

import asyncio

import pytest

from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause
from drivers.sip import transaction
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.outgoing import OutgoingState
from drivers.sip.sdp import Direction
from drivers.sip.uac import dial_failure
from tests.drivers.sip.outgoing_peer import (
    EXT, TcpPhone, answer_sdp, in_dialog, next_request, register, reply,
)
from tests.drivers.sip.peer import SipPeer

WAIT_S = 3.0


async def _no_calls(call) -> None:
    raise AssertionError("no inbound call expected")


@pytest.fixture
async def phone_line():
    made: list = []

    async def factory(**cfg):
        line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, users=((EXT, "pw-201"),),
                                     auth_algorithms=("MD5",), **cfg), _no_calls)
        await line.start()
        peer = await SipPeer(("127.0.0.1", line.udp_port)).open()
        made.append((line, peer))
        await register(peer.send, peer.recv, line.udp_port, peer.port)
        return line, peer

    yield factory
    for line, peer in made:
        peer.close()
        await line.stop()


async def _answered(line, peer, caller=None, extra: tuple[tuple[str, str], ...] = ()):
    """Dial the extension, answer with ``extra`` headers in the 200, wait for the ACK."""
    call = await line.dial_extension(EXT, caller)
    invite = await next_request(peer.recv, "INVITE")
    peer.send(reply(invite, 200, contact=f"<sip:{EXT}@127.0.0.1:{peer.port}>", body=answer_sdp(41000),
                    extra=extra))
    async with asyncio.timeout(WAIT_S):
        await call.wait_answered()
    await next_request(peer.recv, "ACK")
    return call, invite


@pytest.mark.parametrize("status, failure", [
    (486, DialFailure.BUSY), (600, DialFailure.BUSY), (408, DialFailure.NO_ANSWER), (480, DialFailure.NO_ANSWER),
    (487, DialFailure.NO_ANSWER), (403, DialFailure.REJECTED), (603, DialFailure.REJECTED),
    (404, DialFailure.UNREACHABLE), (484, DialFailure.UNREACHABLE), (500, DialFailure.UNREACHABLE),
    (503, DialFailure.UNREACHABLE), (488, DialFailure.ERROR), (604, DialFailure.REJECTED),
    (302, DialFailure.UNREACHABLE),
])
def test_dial_failure_mapping(status: int, failure: DialFailure) -> None:
    assert dial_failure(status) is failure


def test_state_table_only_moves_forward_and_ended_is_final() -> None:
    from drivers.sip.outgoing import _ALLOWED

    order = list(OutgoingState)
    assert order == [OutgoingState.CALLING, OutgoingState.PROCEEDING, OutgoingState.EARLY, OutgoingState.CONFIRMED,
                     OutgoingState.ENDED]
    for state, targets in _ALLOWED.items():
        assert all(order.index(t) > order.index(state) for t in targets), state
        assert state is OutgoingState.ENDED or OutgoingState.ENDED in targets
    assert _ALLOWED[OutgoingState.ENDED] == frozenset()


async def test_illegal_transition_is_refused(phone_line) -> None:
    line, peer = await phone_line()
    call = await line.dial_extension(EXT)
    with pytest.raises(RuntimeError, match="calling -> calling"):
        call._go(OutgoingState.CALLING, "test")
    await call.hangup(HangupCause.SHUTDOWN)
    with pytest.raises(RuntimeError, match="ended -> confirmed"):
        call._go(OutgoingState.CONFIRMED, "test")


def test_487_after_our_cancel_is_cancelled() -> None:
    assert dial_failure(487, we_cancelled=True) is DialFailure.CANCELLED


async def test_ringing_with_early_media_then_answer_learns_target_and_route_set(phone_line) -> None:
    line, peer = await phone_line()
    call = await line.dial_extension(EXT, CallerId("+441632960123", "Jane Doe"))
    invite = await next_request(peer.recv, "INVITE")
    assert str(invite.uri) == f"sip:{EXT}@127.0.0.1:{peer.port}"  # the registered contact
    assert invite.from_addr.uri.user == "+441632960123" and invite.from_addr.display_name == "Jane Doe"
    assert f"m=audio {call.audio.local_port} RTP/AVP 0 8 101".encode() in invite.body
    assert b"a=rtpmap:101 telephone-event/8000" in invite.body and b"a=sendrecv" in invite.body
    assert call.state is OutgoingState.CALLING

    peer.send(reply(invite, 100))
    peer.send(reply(invite, 180, body=answer_sdp(41000)))
    async with asyncio.timeout(WAIT_S):
        await call.wait_state(OutgoingState.EARLY)
    record_route = (("Record-Route", f"<sip:127.0.0.1:{peer.port};lr>, <sip:edge.invalid;lr;ftag=x>"),)
    ok = reply(invite, 200, contact=f"<sip:{EXT}@127.0.0.1:{peer.port};ob>", body=answer_sdp(41002, pts="0 101"),
               extra=record_route)
    peer.send(ok)
    async with asyncio.timeout(WAIT_S):
        await call.wait_answered()
    assert call.state is OutgoingState.CONFIRMED
    ack = await next_request(peer.recv, "ACK")
    assert str(ack.uri) == f"sip:{EXT}@127.0.0.1:{peer.port};ob"  # remote target: the 2xx Contact
    assert ack.headers.get_all("Route") == ["<sip:edge.invalid;lr;ftag=x>", f"<sip:127.0.0.1:{peer.port};lr>"]
    assert ack.cseq.number == invite.cseq.number and ack.to_addr.tag == "ph1"
    assert call._neg.codec == "PCMU" and call._neg.remote_port == 41002  # the 2xx answer replaced the early one

    peer.send(ok)  # a retransmitted 2xx gets the same ACK again
    again = await next_request(peer.recv, "ACK")
    assert again.branch == ack.branch

    assert line.find_dialog(invite.call_id, call.local_tag, "ph1") is call
    assert line.find_dialog(invite.call_id, "ph1", call.local_tag) is call
    assert line.find_dialog(invite.call_id, "ph1", "other") is None


async def test_busy_is_dial_failed_and_acked(phone_line) -> None:
    line, peer = await phone_line()
    call = await line.dial_extension(EXT)
    invite = await next_request(peer.recv, "INVITE")
    peer.send(reply(invite, 486))
    ack = await next_request(peer.recv, "ACK")
    assert ack.branch == invite.branch and ack.cseq.number == invite.cseq.number
    with pytest.raises(DialFailed) as failed:
        async with asyncio.timeout(WAIT_S):
            await call.wait_answered()
    assert failed.value.reason is DialFailure.BUSY and "486" in failed.value.detail
    assert await call.wait_ended() is HangupCause.REJECTED
    assert line.active_calls == 0


async def test_hangup_before_provisional_waits_for_it_then_cancels(phone_line) -> None:
    line, peer = await phone_line()
    call = await line.dial_extension(EXT)
    invite = await next_request(peer.recv, "INVITE")
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    assert not any(key[1] == "CANCEL" for key in line._ua._client)  # §9.1: no CANCEL before a 1xx
    with pytest.raises(DialFailed) as failed:
        await call.wait_answered()
    assert failed.value.reason is DialFailure.CANCELLED
    assert await call.wait_ended() is HangupCause.CANCELLED

    peer.send(reply(invite, 180))
    cancel = await next_request(peer.recv, "CANCEL")
    assert cancel.branch == invite.branch and cancel.cseq.number == invite.cseq.number
    assert str(cancel.uri) == str(invite.uri) and cancel.from_addr.tag == invite.from_addr.tag
    peer.send(reply(cancel, 200))
    peer.send(reply(invite, 487))
    ack = await next_request(peer.recv, "ACK")
    assert ack.cseq.number == invite.cseq.number and ack.cseq.method == "ACK"


async def test_answer_crossing_our_cancel_is_acked_then_byed(phone_line) -> None:
    line, peer = await phone_line()
    call = await line.dial_extension(EXT)
    invite = await next_request(peer.recv, "INVITE")
    peer.send(reply(invite, 180))
    await call.wait_state(OutgoingState.PROCEEDING)
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    await next_request(peer.recv, "CANCEL")
    peer.send(reply(invite, 200, contact=f"<sip:{EXT}@127.0.0.1:{peer.port}>", body=answer_sdp(41000)))
    ack = await next_request(peer.recv, "ACK")
    bye = await next_request(peer.recv, "BYE")
    assert ack.to_addr.tag == bye.to_addr.tag == "ph1" and bye.call_id == invite.call_id


async def test_second_fork_answering_is_acked_and_hung_up(phone_line) -> None:
    line, peer = await phone_line()
    call, invite = await _answered(line, peer)
    peer.send(reply(invite, 200, to_tag="fork2", contact=f"<sip:{EXT}@127.0.0.1:{peer.port}>", body=answer_sdp(41000)))
    ack = await next_request(peer.recv, "ACK")
    bye = await next_request(peer.recv, "BYE")
    assert ack.to_addr.tag == bye.to_addr.tag == "fork2"
    assert call.state is OutgoingState.CONFIRMED and call.remote_tag == "ph1"  # the first answer keeps the call


async def test_unusable_sdp_answer_is_hung_up_as_error(phone_line) -> None:
    line, peer = await phone_line()
    call = await line.dial_extension(EXT)
    invite = await next_request(peer.recv, "INVITE")
    g729 = b"v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n"
    peer.send(reply(invite, 200, contact=f"<sip:{EXT}@127.0.0.1:{peer.port}>", body=g729))
    await next_request(peer.recv, "ACK")
    await next_request(peer.recv, "BYE")
    with pytest.raises(DialFailed) as failed:
        await call.wait_answered()
    assert failed.value.reason is DialFailure.ERROR and "SDP" in failed.value.detail
    assert await call.wait_ended() is HangupCause.ERROR


async def test_hangup_after_answer_sends_bye_and_far_end_bye_ends_call(phone_line) -> None:
    line, peer = await phone_line()
    call, invite = await _answered(line, peer)
    await call.hangup(HangupCause.AGENT_HUNG_UP)
    bye = await next_request(peer.recv, "BYE")
    assert bye.cseq.number == invite.cseq.number + 1 and bye.from_addr.tag == call.local_tag
    assert await call.wait_ended() is HangupCause.AGENT_HUNG_UP

    call2, invite2 = await _answered(line, peer)
    peer.send(in_dialog(invite2, "BYE", 1, peer.port))
    ok = await peer.expect(200)
    assert ok.cseq.method == "BYE"
    async with asyncio.timeout(WAIT_S):
        assert await call2.wait_ended() is HangupCause.FAR_END_HUNG_UP
    assert line.active_calls == 0


async def test_far_end_puts_us_on_hold_with_reinvite(phone_line) -> None:
    line, peer = await phone_line()
    call, invite = await _answered(line, peer)
    reinvite = in_dialog(invite, "INVITE", 2, peer.port, body=answer_sdp(41000, direction="sendonly"))
    peer.send(reinvite)
    assert (await peer.expect(100)).cseq.method == "INVITE"
    ok = await peer.expect(200)
    assert ok.cseq.method == "INVITE" and b"a=recvonly" in ok.body
    assert call._neg.direction is Direction.RECVONLY and call._rtp._sending is False  # held: we send nothing
    ack = in_dialog(invite, "ACK", 2, peer.port)
    peer.send(ack)
    peer.send(in_dialog(invite, "UPDATE", 3, peer.port, body=answer_sdp(41000)))
    ok = await peer.expect(200)
    assert ok.cseq.method == "UPDATE" and b"a=sendrecv" in ok.body
    assert call._neg.direction is Direction.SENDRECV and call._rtp._sending is True

    peer.send(in_dialog(invite, "INVITE", 4, peer.port))  # no offer: ours comes in the 200, theirs in the ACK
    await peer.expect(100)
    ok = await peer.expect(200)
    assert f"m=audio {call.audio.local_port} RTP/AVP 0 8 101".encode() in ok.body
    peer.send(in_dialog(invite, "ACK", 4, peer.port, body=answer_sdp(41004, pts="8 101", direction="recvonly")))
    peer.send(in_dialog(invite, "OPTIONS", 5, peer.port))  # barrier: answered after the ACK was handled
    assert (await peer.expect(200)).cseq.method == "OPTIONS"
    assert call._neg.remote_port == 41004
    assert call._neg.codec == "PCMA" and call._neg.direction is Direction.SENDONLY


async def test_refer_without_callback_is_declined_with_callback_accepted(phone_line) -> None:
    line, peer = await phone_line()
    call, invite = await _answered(line, peer)
    refer_to = (f"Refer-To: <sip:202@127.0.0.1?Replaces=abc%40pbx%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>",
                "Referred-By: <sip:201@127.0.0.1>")
    peer.send(in_dialog(invite, "REFER", 2, peer.port, extra=refer_to))
    assert (await peer.expect(603)).cseq.method == "REFER"

    got: list = []
    release = asyncio.Event()

    async def transfer(request) -> bool:
        got.append(request)
        await release.wait()
        return True

    call.on_refer(transfer)
    peer.send(in_dialog(invite, "REFER", 3, peer.port, extra=refer_to))
    assert (await peer.expect(202)).cseq.method == "REFER"
    trying = await next_request(peer.recv, "NOTIFY")
    # the dialog's second REFER (the first was declined): its NOTIFYs name it (RFC 3515 §2.4.6)
    assert trying.body == b"SIP/2.0 100 Trying\r\n" and trying.headers.get("Event") == "refer;id=3"
    assert trying.headers.get("Subscription-State").startswith("active")
    peer.send(reply(trying, 200, to_tag=""))
    release.set()
    done = await next_request(peer.recv, "NOTIFY")
    assert done.body == b"SIP/2.0 200 OK\r\n"
    assert done.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert done.cseq.number == trying.cseq.number + 1
    assert done.headers.get("Event") == "refer;id=3"
    peer.send(reply(done, 200, to_tag=""))
    assert got[0].target_user == "202" and got[0].target_uri == "sip:202@127.0.0.1"
    assert got[0].replaces == ("abc@pbx", "t1", "f1") and got[0].referred_by == "sip:201@127.0.0.1"


async def test_timer_b_without_any_response_is_unreachable(phone_line, monkeypatch) -> None:
    monkeypatch.setattr(transaction, "TIMEOUT_64T1", 1.0)
    line, peer = await phone_line()
    call = await line.dial_extension(EXT)
    with pytest.raises(DialFailed) as failed:
        async with asyncio.timeout(WAIT_S):
            await call.wait_answered()
    assert failed.value.reason is DialFailure.UNREACHABLE


async def test_timer_b_after_ringing_is_no_answer(phone_line, monkeypatch) -> None:
    monkeypatch.setattr(transaction, "TIMEOUT_64T1", 1.0)
    line, peer = await phone_line()
    call = await line.dial_extension(EXT)
    invite = await next_request(peer.recv, "INVITE")
    peer.send(reply(invite, 180))
    with pytest.raises(DialFailed) as failed:
        async with asyncio.timeout(WAIT_S):
            await call.wait_answered()
    assert failed.value.reason is DialFailure.NO_ANSWER


async def test_unregistered_extension_and_missing_trunk_are_line_down(phone_line) -> None:
    line, _ = await phone_line()
    with pytest.raises(DialFailed) as failed:
        await line.dial_extension("299")
    assert failed.value.reason is DialFailure.LINE_DOWN and failed.value.detail == "extension 299 is not registered"
    with pytest.raises(DialFailed) as failed:
        await line.dial_trunk("+15550001111")
    assert failed.value.reason is DialFailure.LINE_DOWN


async def test_phone_behind_nat_is_rung_at_its_source_address_with_its_contact_as_uri() -> None:
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, tcp=False,
                                 users=((EXT, "pw-201"),), auth_algorithms=("MD5",)), _no_calls)
    await line.start()
    peer = await SipPeer(("127.0.0.1", line.udp_port)).open()
    try:
        await register(peer.send, peer.recv, line.udp_port, peer.port, contact_hostport="10.11.12.13:5062")
        call = await line.dial_extension(EXT)
        invite = await next_request(peer.recv, "INVITE")  # arrived at the socket that registered
        assert str(invite.uri) == f"sip:{EXT}@10.11.12.13:5062"
        peer.send(reply(invite, 200, contact=f"<sip:{EXT}@10.11.12.13:5062>", body=answer_sdp(41000)))
        ack = await next_request(peer.recv, "ACK")  # the private Contact is the target, not the address
        assert str(ack.uri) == f"sip:{EXT}@10.11.12.13:5062"
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        bye = await next_request(peer.recv, "BYE")
        assert str(bye.uri) == f"sip:{EXT}@10.11.12.13:5062"
    finally:
        peer.close()
        await line.stop()


async def test_extension_registered_over_tcp_is_rung_over_that_connection() -> None:
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, users=((EXT, "pw-201"),),
                                 auth_algorithms=("MD5",)), _no_calls)
    await line.start()
    phone = await TcpPhone().open(line.tcp_port)
    try:
        await register(phone.send, phone.recv, line.tcp_port, phone.port, transport="TCP")
        call = await line.dial_extension(EXT, CallerId("+441632960999"))
        invite = await next_request(phone.recv, "INVITE")
        assert invite.via.transport == "TCP" and invite.from_addr.uri.user == "+441632960999"
        assert str(invite.uri) == f"sip:{EXT}@127.0.0.1:{phone.port};transport=tcp"
        assert invite.headers.get("Contact").endswith(";transport=tcp>")
        phone.send(reply(invite, 200, contact=f"<sip:{EXT}@127.0.0.1:{phone.port};transport=tcp>",
                         body=answer_sdp(41000)))
        async with asyncio.timeout(WAIT_S):
            await call.wait_answered()
        ack = await next_request(phone.recv, "ACK")
        assert ack.via.transport == "TCP"
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        bye = await next_request(phone.recv, "BYE")
        phone.send(reply(bye, 200, to_tag=""))
        # the phone's connection goes away (closed on our side here: the effect is immediate)
        line._transports.stream_connection("tcp", ("127.0.0.1", phone.port)).close()
        with pytest.raises(DialFailed) as failed:
            await line.dial_extension(EXT)
        assert failed.value.reason is DialFailure.LINE_DOWN and "connection is closed" in failed.value.detail
    finally:
        await phone.close()
        await line.stop()


async def test_extension_registered_over_tls_is_rung_over_that_connection(tmp_path) -> None:
    from drivers.sip.tls import CERT_FILE
    from tests.drivers.sip.test_line_tls import TlsPeer

    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, tcp=False, tls=True, tls_port=0,
                                 tls_dir=str(tmp_path / "tls"), users=((EXT, "pw-201"),),
                                 auth_algorithms=("MD5",)), _no_calls)
    await line.start()
    phone = await TlsPeer.connect(line.tls_port, tmp_path / "tls" / CERT_FILE)
    try:
        await register(phone.send, phone.recv, line.tls_port, phone.port, transport="TLS")
        call = await line.dial_extension(EXT)
        invite = await next_request(phone.recv, "INVITE")
        assert invite.via.transport == "TLS" and invite.headers.get("Contact").endswith(";transport=tls>")
        assert str(invite.uri) == f"sip:{EXT}@127.0.0.1:{phone.port};transport=tls"
        phone.send(reply(invite, 486))
        ack = await next_request(phone.recv, "ACK")
        assert ack.cseq.number == invite.cseq.number
        with pytest.raises(DialFailed):
            await call.wait_answered()
    finally:
        phone.writer.close()
        await line.stop()


class _RtpSink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: asyncio.Queue[tuple[bytes, tuple]] = asyncio.Queue(maxsize=500)

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.packets.full():
            self.packets.put_nowait((data, addr))


async def test_dtmf_both_ways_with_rfc4733(phone_line) -> None:
    from media.rfc4733 import encode_event

    line, peer = await phone_line()
    loop = asyncio.get_running_loop()
    sink = _RtpSink()
    rtp, _ = await loop.create_datagram_endpoint(lambda: sink, local_addr=("127.0.0.1", 0))
    rtp_port = rtp.get_extra_info("sockname")[1]
    try:
        call = await line.dial_extension(EXT)
        digits: list[str] = []
        got_digit = asyncio.Event()
        call.on_dtmf(lambda d: (digits.append(d), got_digit.set()))
        invite = await next_request(peer.recv, "INVITE")
        peer.send(reply(invite, 200, contact=f"<sip:{EXT}@127.0.0.1:{peer.port}>", body=answer_sdp(rtp_port)))
        async with asyncio.timeout(WAIT_S):
            await call.wait_answered()
            assert await call.send_dtmf("5") is True
            events = []
            while not events:
                data, addr = await sink.packets.get()
                if data[1] & 0x7F == 101:
                    events.append(data)
        assert events[0][12] == 5 and addr == ("127.0.0.1", call.audio.local_port)
        # the phone sends "#" (event 11) the RFC 4733 way: the digit reaches our callback once
        for seq, end in enumerate((False, True, True)):
            header = bytes([0x80, 101 | (0x80 if seq == 0 else 0)]) + (1000 + seq).to_bytes(2, "big") \
                + (5000).to_bytes(4, "big") + (0x1234).to_bytes(4, "big")
            rtp.sendto(header + encode_event("#", end=end, duration=160 * (seq + 1)), addr)
        async with asyncio.timeout(WAIT_S):
            await got_digit.wait()
        assert digits == ["#"]
    finally:
        rtp.close()
