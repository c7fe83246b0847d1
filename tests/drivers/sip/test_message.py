"""SIP parser/serializer: valid forms, and a torture set of malformed requests with their answers."""
from __future__ import annotations

import pytest

from drivers.sip.errors import FramingError, SipParseError
from drivers.sip.headers import Headers, canonical_name, split_list
from drivers.sip.message import (
    SipRequest,
    SipResponse,
    StreamFramer,
    error_response,
    parse_message,
    response_bytes,
    stamp_via,
)
from drivers.sip.uri import parse_name_addr, parse_uri


def msg(*lines: str, body: str = "") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


BASE = [
    "INVITE sip:100@example.com SIP/2.0",
    "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds",
    "Max-Forwards: 70",
    "To: <sip:100@example.com>",
    "From: Alice <sip:alice@example.org>;tag=1928301774",
    "Call-ID: a84b4c76e66710",
    "CSeq: 314159 INVITE",
    "Contact: <sip:alice@10.0.0.1>",
]


def test_parse_request_fields() -> None:
    m = parse_message(msg(*BASE, "Content-Type: application/sdp", "Content-Length: 4", body="v=0\n"))
    assert isinstance(m, SipRequest)
    assert m.method == "INVITE"
    assert str(m.uri) == "sip:100@example.com"
    assert m.branch == "z9hG4bK776asdhds"
    assert m.via.sent_by == "10.0.0.1:5060"
    assert m.from_addr.tag == "1928301774"
    assert m.from_addr.display_name == "Alice"
    assert m.to_addr.tag is None
    assert (m.cseq.number, m.cseq.method) == (314159, "INVITE")
    assert m.body == b"v=0\n"


def test_compact_forms_case_and_folding() -> None:
    data = msg(
        "OPTIONS sip:x@h SIP/2.0",
        "v: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/TCP h2:5070;branch=z9hG4bK2",
        "VIA: SIP/2.0/UDP h3;branch=z9hG4bK3",
        "f: <sip:a@b>;tag=1",
        "t: <sip:x@h>",
        "i: abc@host",
        "cseq: 7",
        "  OPTIONS",
        "Subject: first",
        "\tsecond",
        "l: 0",
    )
    m = parse_message(data)
    assert [v.host for v in m.vias] == ["h1", "h2", "h3"]
    assert m.vias[1].port == 5070 and m.vias[1].transport == "TCP"
    assert m.call_id == "abc@host"
    assert str(m.cseq) == "7 OPTIONS"
    assert m.headers.get("subject") == "first second"
    assert m.headers.get("s") == "first second"
    assert canonical_name("call-id") == "Call-ID" and canonical_name("WWW-AUTHENTICATE") == "WWW-Authenticate"


def test_lf_only_lines_and_body_trimmed_to_content_length() -> None:
    data = ("\n".join(BASE).replace("CSeq: 314159 INVITE", "CSeq: 1 INVITE") + "\nContent-Length: 3\n\nabcdef").encode()
    m = parse_message(data)
    assert m.body == b"abc"


def test_missing_content_length_on_udp_takes_rest_and_on_stream_means_empty() -> None:
    data = msg(*BASE, body="v=0\r\n")
    assert parse_message(data).body == b"v=0\r\n"
    assert parse_message(data, stream=True).body == b""


def test_parse_response() -> None:
    data = msg("SIP/2.0 180 Ringing", *BASE[1:], "Content-Length: 0")
    m = parse_message(data)
    assert isinstance(m, SipResponse)
    assert (m.status, m.reason) == (180, "Ringing")


def test_display_name_cannot_spoof_identity() -> None:
    na = parse_name_addr('"Bob <sip:evil@x>" <sip:bob@host>;tag=9')
    assert str(na.uri) == "sip:bob@host"
    assert na.display_name == "Bob <sip:evil@x>"
    assert na.tag == "9"
    assert str(parse_name_addr('"a \\"q\\" b" <sip:c@d>').uri) == "sip:c@d"
    assert parse_name_addr('"a \\"q\\" b" <sip:c@d>').display_name == 'a "q" b'
    # addr-spec form: the parameters belong to the header
    plain = parse_name_addr("sip:bob@host;tag=55")
    assert plain.tag == "55" and str(plain.uri) == "sip:bob@host"
    assert parse_name_addr("Bob Smith <sip:bob@h>").display_name == "Bob Smith"


def test_uri_parsing() -> None:
    u = parse_uri("sips:user:pw@[::1]:5061;transport=tcp;lr?subject=x")
    assert (u.scheme, u.user, u.host, u.port) == ("sips", "user", "::1", 5061)
    assert u.param("transport") == "tcp" and u.param("lr") is None
    assert parse_uri("tel:+441234567;phone-context=x").user == "+441234567"


def test_split_list_respects_quotes_and_brackets() -> None:
    assert split_list('"a, b" <sip:x@y;p=1,2>, <sip:z@w>') == ['"a, b" <sip:x@y;p=1,2>', "<sip:z@w>"]


def test_serialize_response_round_trips() -> None:
    req = parse_message(msg(*BASE, "Content-Length: 0"))
    data = response_bytes(req, 200, to_tag="abc", extra=(("Contact", "<sip:me@1.2.3.4>"),), body=b"v=0\r\n")
    back = parse_message(data)
    assert isinstance(back, SipResponse)
    assert back.status == 200 and back.reason == "OK"
    assert back.to_addr.tag == "abc"
    assert back.from_addr.tag == "1928301774"
    assert back.branch == req.branch and back.cseq == req.cseq
    assert back.body == b"v=0\r\n"
    assert back.headers.get("Content-Length") == "5"


def _replace(lines: list[str], prefix: str, new: str | None) -> list[str]:
    out = []
    for line in lines:
        if line.startswith(prefix):
            if new is not None:
                out.append(new)
        else:
            out.append(line)
    return out


# (name, raw message, expected status)
TORTURE = [
    ("bad cseq number", msg(*_replace(BASE, "CSeq", "CSeq: abc INVITE")), 400),
    ("cseq method mismatch", msg(*_replace(BASE, "CSeq", "CSeq: 1 BYE")), 400),
    ("cseq too big", msg(*_replace(BASE, "CSeq", "CSeq: 4294967296 INVITE")), 400),
    ("unknown version", msg(*_replace(BASE, "INVITE sip", "INVITE sip:100@example.com SIP/7.0")), 505),
    ("unsupported uri scheme", msg(*_replace(BASE, "INVITE sip", "INVITE http://example.com/ SIP/2.0")), 416),
    ("content-length larger than body", msg(*BASE, "Content-Length: 50", body="v=0\r\n"), 400),
    ("content-length not a number", msg(*BASE, "Content-Length: ten"), 400),
    ("negative content-length", msg(*BASE, "Content-Length: -1"), 400),
    ("missing call-id", msg(*_replace(BASE, "Call-ID", None)), 400),
    ("missing via", msg(*_replace(BASE, "Via", None)), 400),
    ("missing from", msg(*_replace(BASE, "From", None)), 400),
    ("garbage via", msg(*_replace(BASE, "Via", "Via: nonsense")), 400),
    ("unterminated display name", msg(*_replace(BASE, "From", 'From: "Bob <sip:b@h>;tag=1')), 400),
    ("header line without colon", msg(*BASE, "this is not a header"), 400),
    ("request line with two tokens", msg(*_replace(BASE, "INVITE sip", "INVITE sip:100@example.com")), 400),
    ("bad max-forwards", msg(*_replace(BASE, "Max-Forwards", "Max-Forwards: many")), 400),
    ("space in request uri", msg(*_replace(BASE, "INVITE sip", "INVITE sip:a b@h SIP/2.0")), 400),
    ("bad via port", msg(*_replace(BASE, "Via", "Via: SIP/2.0/UDP h:99999;branch=z9hG4bK1")), 400),
]


@pytest.mark.parametrize("name,data,status", TORTURE, ids=[t[0] for t in TORTURE])
def test_torture_set_gets_status_and_answerable_response(name: str, data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    err = info.value
    assert err.status == status
    answer = error_response(err, "tag1", "Branchline")
    assert answer is not None
    first = answer.split(b"\r\n", 1)[0]
    assert first.startswith(f"SIP/2.0 {status} ".encode())
    if "Call-ID" in (err.headers or Headers()):
        assert b"Call-ID: a84b4c76e66710" in answer
    if err.headers is not None and err.headers.get("Via") and name != "garbage via":
        assert b"branch=z9hG4bK" in answer


def test_error_response_keeps_parseable_cseq_only() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(msg(*_replace(BASE, "CSeq", "CSeq: abc INVITE")))
    answer = error_response(info.value, "t", "Branchline")
    assert b"CSeq:" not in answer
    assert b"To: <sip:100@example.com>;tag=t" in answer


def test_garbage_datagram_is_400_without_crash() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(b"\x00\xff\xfegarbage\r\n\r\n")
    assert info.value.status == 400


def test_bad_response_is_not_answered() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(msg("SIP/2.0 abc Nope", *BASE[1:]))
    assert error_response(info.value, "t", "x") is None


def test_stream_framer_whole_and_byte_at_a_time() -> None:
    one = msg(*BASE, "Content-Length: 5", body="v=0\r\n")
    two = ("\n".join(BASE) + "\nl: 2\n\nhi").encode()
    stream = b"\r\n\r\n" + one + two  # leading keep-alive CRLFs
    assert StreamFramer().feed(stream) == [one, two]
    framer = StreamFramer()
    got: list[bytes] = []
    for b in stream:
        got += framer.feed(bytes([b]))
    assert got == [one, two]
    assert parse_message(got[1], stream=True).body == b"hi"


def test_stream_framer_refuses_unusable_length_and_oversize() -> None:
    with pytest.raises(FramingError):
        StreamFramer().feed(msg(*BASE, "Content-Length: x"))
    with pytest.raises(FramingError):
        StreamFramer(max_bytes=100).feed(b"A" * 200)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_parse_errors(data: bytes) -> None:
    try:
        parse_message(data)
    except SipParseError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=8))
def test_mutated_request_only_raises_parse_errors(pos: int, junk: bytes) -> None:
    base = msg(*BASE, "Content-Length: 0")
    data = base[:pos] + junk + base[pos + len(junk):]
    try:
        result = parse_message(data)
    except SipParseError as err:
        assert err.status in (400, 416, 505)
        error_response(err, "t", "Branchline")
    else:
        assert isinstance(result, (SipRequest, SipResponse))


@pytest.mark.parametrize("via,source,expected", [
    ("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa;rport", ("203.0.113.7", 40123),
     "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa;rport=40123;received=203.0.113.7"),
    ("SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKa", ("192.0.2.10", 5060),  # asked: received even if equal
     "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa;rport=5060;received=192.0.2.10"),
    ("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa", ("203.0.113.7", 5060),  # §18.2.1: sent-by differs
     "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;received=203.0.113.7"),
    ("SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKa", ("127.0.0.1", 40000),  # same host: untouched
     "SIP/2.0/TCP 127.0.0.1:5070;branch=z9hG4bKa"),
    ("SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bKa;rport;received=1.2.3.4", ("2001:db8::9", 5062),
     "SIP/2.0/UDP [2001:db8::5]:5060;branch=z9hG4bKa;rport=5062;received=2001:db8::9"),
])
def test_our_responses_stamp_the_top_via_with_what_we_saw(via: str, source, expected: str) -> None:
    assert stamp_via(via, source) == expected
