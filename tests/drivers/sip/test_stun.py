"""STUN Binding keepalives (RFC 5626 §4.4.1) on the SIP UDP port: the codec against the RFC 5769
test vectors, and a running SipLine answering them without taking them for malformed SIP."""
from __future__ import annotations

import struct

import pytest

from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.stun import binding_response, is_stun, xor_mapped_address
from tests.drivers.sip.peer import SipPeer, new_branch, new_call_id

# RFC 5769 §2: the transaction ID of its sample request and responses
RFC5769_TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
COOKIE = bytes.fromhex("2112a442")


def binding_request(tid: bytes, attributes: bytes = b"", msg_type: int = 0x0001) -> bytes:
    return struct.pack("!HH", msg_type, len(attributes)) + COOKIE + tid + attributes


def test_xor_mapped_address_matches_rfc5769_ipv4_sample_response() -> None:
    # RFC 5769 §2.2, 192.0.2.1 port 32853: type 0x0020 length 8, family 1, xor'd port a147, xor'd address e112a643
    assert xor_mapped_address(("192.0.2.1", 32853), RFC5769_TID) == bytes.fromhex("00200008" "0001a147" "e112a643")


def test_xor_mapped_address_matches_rfc5769_ipv6_sample_response() -> None:
    # RFC 5769 §2.3, 2001:db8:1234:5678:11:2233:4455:6677 port 32853: the address is xor'd with cookie + transaction ID
    assert xor_mapped_address(("2001:db8:1234:5678:11:2233:4455:6677", 32853), RFC5769_TID) == bytes.fromhex(
        "00200014" "0002a147" "0113a9fa" "a5d3f179" "bc25f4b5" "bed2b9d9")


def test_binding_request_gets_a_success_response_with_the_same_transaction_id() -> None:
    request = binding_request(RFC5769_TID)
    assert len(request) == 20
    expected = bytes.fromhex(
        "0101" "000c"  # Binding Success Response, 12 bytes of attributes
        "2112a442" "b7e7a701bc34d686fa87dfae"  # magic cookie, the request's transaction ID
        "00200008" "0001a147" "e112a643")  # XOR-MAPPED-ADDRESS 192.0.2.1:32853
    assert binding_response(request, ("192.0.2.1", 32853)) == expected
    software = struct.pack("!HH", 0x8022, 3) + b"abc\x00"  # SOFTWARE "abc", padded: not read, still answered
    assert binding_response(binding_request(RFC5769_TID, software), ("192.0.2.1", 32853)) == expected


@pytest.mark.parametrize("data", [
    b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\r\n",  # SIP
    b"\r\n\r\n",  # RFC 5626 CRLF keepalive
    binding_request(RFC5769_TID)[:19],  # truncated header
    binding_request(RFC5769_TID) + b"\x00\x00\x00\x00",  # length field says 0, 4 bytes follow
    struct.pack("!HH", 1, 0) + b"\x00\x00\x00\x00" + RFC5769_TID,  # no magic cookie (RFC 3489 style)
    b"\x80" + binding_request(RFC5769_TID)[1:],  # first two bits not zero (an RTP-like packet)
])
def test_what_is_not_stun(data: bytes) -> None:
    assert not is_stun(data) and binding_response(data, ("192.0.2.1", 5060)) is None


def test_only_a_binding_request_is_answered() -> None:
    assert is_stun(binding_request(RFC5769_TID, msg_type=0x0011))  # Binding Indication: a keepalive, no answer
    assert binding_response(binding_request(RFC5769_TID, msg_type=0x0011), ("192.0.2.1", 5060)) is None
    assert binding_response(binding_request(RFC5769_TID, msg_type=0x0101), ("192.0.2.1", 5060)) is None


async def _no_calls(call) -> None:
    raise AssertionError("no INVITE expected")


async def test_line_answers_stun_on_its_sip_port_without_counting_it_as_malformed() -> None:
    # one failure would ban the source: a STUN keepalive taken for bad SIP would cut the phone off
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, users=(("201", "pw"),),
                                 ban_after_failures=1), _no_calls)
    await line.start()
    phone = await SipPeer(("127.0.0.1", line.udp_port)).open()
    try:
        for n in range(12):
            tid = bytes([n]) * 12
            phone.send(binding_request(tid))
            answer = await phone.recv_raw()
            port = phone.port ^ 0x2112
            assert answer == (bytes.fromhex("0101000c2112a442") + tid + bytes.fromhex("00200008") +
                              struct.pack("!BBH", 0, 1, port) + bytes(a ^ b for a, b in zip((127, 0, 0, 1), COOKIE)))
            assert phone.last_sender == ("127.0.0.1", line.udp_port)
        phone.send(binding_request(RFC5769_TID, msg_type=0x0011))  # an indication: no answer...
        options = await phone.recv_after(phone.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
        assert options.status == 200  # ...so the next thing back is this; and the phone is not banned
        assert line.statistics().rejected_messages == 0
        stats = line.guard_statistics()
        assert stats.failures == 0 and stats.bans_total == 0
        phone.send(b"\x00\x01garbage that is not STUN\r\n\r\n")  # binary that is not STUN is still refused
        await phone.recv_raw()
        assert line.statistics().rejected_messages == 1
    finally:
        phone.close()
        await line.stop()
