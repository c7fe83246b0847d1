"""SDP offer parsing, codec negotiation, hold detection and the answer we build."""
from __future__ import annotations

import pytest

from drivers.sip.errors import SdpError
from drivers.sip.sdp import Direction, build_answer, negotiate, parse_sdp


def sdp(*media_lines: str, session: tuple[str, ...] = (), conn: str = "c=IN IP4 192.0.2.10") -> bytes:
    lines = ["v=0", "o=- 1 1 IN IP4 192.0.2.10", "s=-", conn, "t=0 0", *session, *media_lines]
    return ("\r\n".join(lines) + "\r\n").encode()


SIPP_OFFER = sdp("m=audio 6000 RTP/AVP 8 101", "a=rtpmap:8 PCMA/8000",
                 "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-11,16")


def test_sipp_offer_negotiates_pcma_and_dtmf() -> None:
    neg = negotiate(parse_sdp(SIPP_OFFER))
    assert (neg.remote_host, neg.remote_port) == ("192.0.2.10", 6000)
    assert (neg.codec, neg.payload_type, neg.dtmf_payload_type) == ("PCMA", 8, 101)
    assert neg.direction is Direction.SENDRECV and not neg.on_hold


def test_prefers_offer_order_and_skips_unsupported() -> None:
    neg = negotiate(parse_sdp(sdp("m=audio 7000 RTP/AVP 18 0 8 96", "a=rtpmap:96 telephone-event/8000")))
    assert (neg.codec, neg.payload_type, neg.dtmf_payload_type) == ("PCMU", 0, 96)
    neg = negotiate(parse_sdp(sdp("m=audio 7000 RTP/AVP 8 0")))
    assert neg.codec == "PCMA" and neg.dtmf_payload_type is None


def test_dynamic_pt_mapped_to_pcmu_by_rtpmap() -> None:
    neg = negotiate(parse_sdp(sdp("m=audio 7000 RTP/AVP 97", "a=rtpmap:97 PCMU/8000")))
    assert (neg.codec, neg.payload_type) == ("PCMU", 97)


def test_media_level_connection_wins() -> None:
    neg = negotiate(parse_sdp(sdp("m=audio 7000 RTP/AVP 0", "c=IN IP4 198.51.100.7")))
    assert neg.remote_host == "198.51.100.7"


@pytest.mark.parametrize(
    "session,media_attr,conn,expected",
    [
        ((), "a=sendonly", "c=IN IP4 192.0.2.10", Direction.RECVONLY),
        (("a=sendonly",), None, "c=IN IP4 192.0.2.10", Direction.RECVONLY),
        ((), "a=inactive", "c=IN IP4 192.0.2.10", Direction.INACTIVE),
        ((), "a=recvonly", "c=IN IP4 192.0.2.10", Direction.SENDONLY),
        ((), None, "c=IN IP4 0.0.0.0", Direction.RECVONLY),
        ((), "a=inactive", "c=IN IP4 0.0.0.0", Direction.INACTIVE),
    ],
)
def test_hold_detection(session, media_attr, conn, expected) -> None:
    media = ["m=audio 7000 RTP/AVP 0"] + ([media_attr] if media_attr else [])
    offer = parse_sdp(sdp(*media, session=session, conn=conn))
    neg = negotiate(offer)
    assert neg.direction is expected
    answer = build_answer(offer, neg, "203.0.113.5", 12000, 42).decode()
    assert f"a={expected.value}" in answer


def test_answer_contents_and_rejected_streams() -> None:
    offer = parse_sdp(sdp("m=video 9000 RTP/AVP 96", "m=audio 6000 RTP/AVP 8 101",
                          "a=rtpmap:101 telephone-event/8000"))
    neg = negotiate(offer)
    lines = build_answer(offer, neg, "203.0.113.5", 12000, 42).decode().split("\r\n")
    assert lines[:5] == ["v=0", "o=branchline 42 1 IN IP4 203.0.113.5", "s=branchline",
                         "c=IN IP4 203.0.113.5", "t=0 0"]
    assert "m=video 0 RTP/AVP 96" in lines
    assert "m=audio 12000 RTP/AVP 8 101" in lines
    for expected in ("a=rtpmap:8 PCMA/8000", "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16",
                     "a=ptime:20", "a=sendrecv"):
        assert expected in lines
    assert lines.index("m=video 0 RTP/AVP 96") < lines.index("m=audio 12000 RTP/AVP 8 101")


@pytest.mark.parametrize(
    "body,status",
    [
        (b"this is not sdp", 400),
        (b"v=0\r\nm=audio 1 RTP/AVP 0\r\n", 400),  # no o= line
        (sdp("m=audio x RTP/AVP 0"), 400),
        (sdp("m=audio 6000 RTP/AVP 0", conn="c=IN IP4"), 400),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n", 400),  # no c=
        (sdp("m=audio 6000 RTP/AVP 18 9"), 488),
        (sdp("m=video 6000 RTP/AVP 0"), 488),
        (sdp("m=audio 0 RTP/AVP 0"), 488),
        (b"\xff\xfe", 400),
    ],
)
def test_bad_offers(body: bytes, status: int) -> None:
    with pytest.raises(SdpError) as info:
        negotiate(parse_sdp(body))
    assert info.value.status == status


@pytest.mark.parametrize("conn,ip_version,reason", [
    ("c=IN IP4 pbx.example.com", None, "is not an IP address"),
    ("c=IN IP6 2001:db8::5", 4, "is IPv6 but the box's RTP is IPv4"),
    ("c=IN IP4 192.0.2.10", 6, "is IPv4 but the box's RTP is IPv6"),
])
def test_media_addresses_we_cannot_send_to_are_refused(conn: str, ip_version, reason: str) -> None:
    with pytest.raises(SdpError) as refused:
        negotiate(parse_sdp(sdp("m=audio 7000 RTP/AVP 0", conn=conn)), ip_version=ip_version)
    assert refused.value.status == 488 and reason in refused.value.detail


def test_an_ipv6_hold_address_is_still_a_hold_for_an_ipv4_box() -> None:
    neg = negotiate(parse_sdp(sdp("m=audio 7000 RTP/AVP 0", conn="c=IN IP6 ::")), ip_version=4)
    assert neg.on_hold
