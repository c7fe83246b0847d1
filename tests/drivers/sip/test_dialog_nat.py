"""In-dialog requests of an inbound call when the phone is behind NAT: its Contact and Via name a
private address, the INVITE came from elsewhere, so BYE/re-INVITE go back where it came from."""
from __future__ import annotations

import asyncio

from appliance.lines import HangupCause
from drivers.sip.dialog import DialogRequests, behind_nat
from drivers.sip.message import SipRequest, parse_message, response_bytes
from tests.drivers.sip.peer import new_branch, new_call_id, offer_sdp
from tests.drivers.sip.test_line_udp import make_line  # noqa: F401 (fixture)

WAIT_S = 3.0
PRIVATE = "192.168.1.20:5060"


class FakeConn:
    reliable = False
    transport = "UDP"

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer

    def send(self, data: bytes) -> None:
        raise AssertionError("not sent in these tests")

    def redirect(self, peer: tuple[str, int]) -> "FakeConn":
        return FakeConn(peer)


def _invite(via_hostport: str, contact_hostport: str) -> SipRequest:
    text = (f"INVITE sip:100@198.51.100.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {via_hostport};branch={new_branch()};rport\r\n"
            f"From: <sip:201@example.net>;tag=a1\r\nTo: <sip:100@198.51.100.1>\r\n"
            f"Call-ID: {new_call_id()}\r\nCSeq: 1 INVITE\r\nContact: <sip:201@{contact_hostport}>\r\n"
            f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    request = parse_message(text.encode())
    assert isinstance(request, SipRequest)
    return request


def test_phone_behind_nat_is_reached_where_its_invite_came_from() -> None:
    source = FakeConn(("203.0.113.7", 40001))  # the NAT's public mapping
    invite = _invite(PRIVATE, PRIVATE)
    assert behind_nat(invite, source)
    dialog = DialogRequests.uas(invite, source, "t1", "<sip:branchline@198.51.100.1:5060>")
    bye = dialog.build("BYE")
    assert bye.conn.peer == ("203.0.113.7", 40001)  # not 192.168.1.20:5060
    assert str(bye.request.uri) == f"sip:201@{PRIVATE}"  # the Request-URI is still its Contact (§12.2.1.1)


def test_phone_not_behind_nat_is_reached_at_its_contact() -> None:
    source = FakeConn(("198.51.100.9", 5060))
    invite = _invite("198.51.100.9", "198.51.100.9:5070")  # no port in Via: 5060 (§18.2.1)
    assert not behind_nat(invite, source)
    dialog = DialogRequests.uas(invite, source, "t1", "<sip:branchline@198.51.100.1:5060>")
    assert dialog.build("BYE").conn.peer == ("198.51.100.9", 5070)


async def test_bye_and_hold_reach_a_natted_caller_through_the_line(make_line) -> None:
    line, handler, peer = await make_line()
    call_id = new_call_id()
    invite = peer.request("INVITE", branch=new_branch(), call_id=call_id, body=offer_sdp(40000))
    invite = invite.replace(f"127.0.0.1:{peer.port};branch", f"{PRIVATE};branch")
    invite = invite.replace(f"Contact: <sip:peer@127.0.0.1:{peer.port}>", f"Contact: <sip:peer@{PRIVATE}>")
    peer.send(invite)
    await peer.expect(100)
    call = await handler.next_call()
    await call.answer()
    ok = await peer.expect(200)
    peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag))

    hold = asyncio.ensure_future(call.hold())
    reinvite = await peer.recv()  # at our socket, not at 192.168.1.20:5060
    assert isinstance(reinvite, SipRequest) and reinvite.method == "INVITE"
    assert str(reinvite.uri) == f"sip:peer@{PRIVATE}"
    peer.send(response_bytes(reinvite, 200, extra=(("Contact", f"<sip:peer@{PRIVATE}>"),
                                                   ("Content-Type", "application/sdp")),
                             body=offer_sdp(40000, direction="recvonly").encode()))
    async with asyncio.timeout(WAIT_S):
        assert await hold is True

    ack = await peer.recv()
    assert isinstance(ack, SipRequest) and ack.method == "ACK"

    await call.hangup(HangupCause.AGENT_HUNG_UP)
    bye = await peer.recv()
    assert isinstance(bye, SipRequest) and bye.method == "BYE" and bye.call_id == call_id
    peer.send(response_bytes(bye, 200))
