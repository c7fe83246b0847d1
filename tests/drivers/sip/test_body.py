"""The SDP of a message body: plain SDP, SIP-I multipart (SDP + ISUP), compressed or foreign bodies."""
from __future__ import annotations

import pytest

from drivers.sip.body import UnsupportedBody, sdp_in, sdp_of_request
from drivers.sip.message import parse_message
from drivers.sip.sdp import negotiate, parse_sdp
from tests.drivers.sip.peer import new_branch, new_call_id, offer_sdp
from tests.drivers.sip.test_line_udp import make_line  # noqa: F401 (fixture)

IAM = bytes.fromhex("0100600200070301900a000302090790438632150a0890")  # an ISUP IAM as SIP-I carries it


def sip_i_body(sdp: str, handling: str = "optional", boundary: str = "unique-boundary-1") -> bytes:
    return (f"--{boundary}\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n"
            f"--{boundary}\r\nContent-Type: application/ISUP;version=itu-t92+\r\n"
            f"Content-Disposition: signal;handling={handling}\r\n\r\n").encode() + IAM + f"\r\n--{boundary}--\r\n".encode()


def invite(ctype: str, body: bytes, *extra: str) -> bytes:
    head = "\r\n".join([
        "INVITE sip:100@192.0.2.1 SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKb1",
        "From: <sip:+441632960001@192.0.2.9>;tag=a", "To: <sip:100@192.0.2.1>", "Call-ID: body-1",
        "CSeq: 1 INVITE", "Max-Forwards: 70", f"Content-Type: {ctype}", *extra, f"Content-Length: {len(body)}"])
    return head.encode() + b"\r\n\r\n" + body


SDP_TEXT = offer_sdp(40000, pts="8 101")


def test_plain_sdp_and_the_sdp_part_of_a_sip_i_body() -> None:
    assert sdp_of_request(parse_message(invite("application/sdp", SDP_TEXT.encode()))) == SDP_TEXT.encode()
    request = parse_message(invite('multipart/mixed; boundary="unique-boundary-1"', sip_i_body(SDP_TEXT)))
    sdp = sdp_of_request(request)
    assert negotiate(parse_sdp(sdp)).codec == "PCMA" and IAM not in sdp
    assert sdp_in(request) == sdp


@pytest.mark.parametrize("ctype,body,extra,header,value", [
    ("multipart/mixed;boundary=b", sip_i_body(SDP_TEXT, "required", "b"), (), "Accept", "application/sdp"),
    ("application/sdp", b"\x1f\x8b\x08\x00compressed", ("Content-Encoding: gzip",), "Accept-Encoding", "identity"),
    ("text/html", b"<html></html>", (), "Accept", "application/sdp"),
    ("multipart/mixed", b"--x\r\n\r\nv=0\r\n--x--\r\n", (), "Accept", "application/sdp"),  # no boundary
])
def test_bodies_we_cannot_read_are_415_with_what_we_accept(ctype, body, extra, header, value) -> None:
    request = parse_message(invite(ctype, body, *extra))
    with pytest.raises(UnsupportedBody) as refused:
        sdp_of_request(request)
    assert value in dict(refused.value.headers)[header]
    assert sdp_in(request) == b""  # an answer we cannot read is no answer


def test_a_multipart_body_without_sdp_is_a_late_offer() -> None:
    body = (b"--b\r\nContent-Type: application/ISUP;version=itu-t92+\r\n"
            b"Content-Disposition: signal;handling=optional\r\n\r\n" + IAM + b"\r\n--b--\r\n")
    assert sdp_of_request(parse_message(invite("multipart/mixed;boundary=b", body))) == b""


async def test_a_sip_i_trunk_call_is_answered_from_its_sdp_part(make_line) -> None:
    line, handler, peer = await make_line()
    request = peer.request("INVITE", branch=new_branch(), call_id=new_call_id(), body=SDP_TEXT)
    head = request.split("\r\n\r\n")[0]
    body = sip_i_body(SDP_TEXT)
    head = head.replace("Content-Type: application/sdp", 'Content-Type: multipart/mixed;boundary="unique-boundary-1"')
    head = head.replace(f"Content-Length: {len(SDP_TEXT)}", f"Content-Length: {len(body)}")
    peer.send(head.encode() + b"\r\n\r\n" + body)
    await peer.expect(100)
    call = await handler.next_call()
    await call.progress()
    early = await peer.expect(183)
    assert negotiate(parse_sdp(early.body)).codec == "PCMA"
    await call.reject(486)
    await peer.expect(486)


async def test_a_compressed_invite_gets_415_with_accept_encoding(make_line) -> None:
    line, handler, peer = await make_line()
    request = peer.request("INVITE", branch=new_branch(), call_id=new_call_id(), body=SDP_TEXT,
                           extra=("Content-Encoding: gzip",))
    peer.send(request)
    await peer.expect(100)
    refused = await peer.expect(415)
    assert refused.headers.get("Accept-Encoding") == "identity" and handler.calls == []


def test_a_part_without_handling_optional_is_required_and_refused() -> None:
    body = (b"--b\r\nContent-Type: application/sdp\r\n\r\n" + SDP_TEXT.encode() + b"\r\n"
            b"--b\r\nContent-Type: application/ISUP;version=itu-t92+\r\n\r\n" + IAM + b"\r\n--b--\r\n")
    with pytest.raises(UnsupportedBody, match="required application/isup part"):
        sdp_of_request(parse_message(invite("multipart/mixed;boundary=b", body)))
