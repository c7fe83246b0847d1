"""Hand-written torture messages (RFC 4475 style): each has its expected answer, at the parser and on the wire.

Expected status None means the message is valid and must be accepted (the identity
assertions then check we understood it the way the RFC says).
"""
from __future__ import annotations

import itertools

import pytest

from drivers.sip.errors import SipParseError
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.message import SipRequest, SipResponse, error_response, parse_message
from tests.drivers.sip.peer import SipPeer

WAIT_S = 3.0
_branches = itertools.count(1)


def opts(*lines: str, start: str = "OPTIONS sip:100@example.com SIP/2.0", body: bytes = b"",
         sep: str = "\r\n") -> bytes:
    """An OPTIONS request from defaults, overridden/extended by ``lines`` ("Name: value"; "-Name" drops)."""
    base = {
        "Via": f"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKtorture{next(_branches)}",
        "Max-Forwards": "70",
        "To": "<sip:100@example.com>",
        "From": '"Alice" <sip:alice@example.org>;tag=1928301774',
        "Call-ID": f"torture-call-{next(_branches)}",
        "CSeq": "1 OPTIONS",
    }
    extra: list[str] = []
    for line in lines:
        if line.startswith("-"):
            base.pop(line[1:], None)
            continue
        name, colon, value = line.partition(":")
        if colon and name in base:
            base[name] = value.strip()
        else:
            extra.append(line)
    head = [start, *(f"{k}: {v}" for k, v in base.items()), *extra]
    return (sep.join(head) + sep + sep).encode("latin-1") + body


def raw(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1")


# (id, bytes, expected status or None for "accepted", optional check on the parsed request)
TORTURE: list[tuple[str, bytes, int | None]] = [
    # folding and compact forms
    ("folded via accepted", opts("Via: SIP/2.0/UDP 10.0.0.1:5060\r\n  ;branch=z9hG4bKfold1"), None),
    ("folded subject with tab accepted", opts("Subject: first part\r\n\tsecond part"), None),
    ("continuation before any header", raw("OPTIONS sip:100@example.com SIP/2.0\n  folded-at-start\n"
                                           "Via: SIP/2.0/UDP h;branch=z9hG4bK1\n\n"), 400),
    ("all compact forms accepted", raw("OPTIONS sip:100@example.com SIP/2.0\nv: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKc1\n"
                                       "f: <sip:a@b>;tag=x\nt: <sip:100@example.com>\ni: compact-1\n"
                                       "CSeq: 1 OPTIONS\nm: <sip:a@10.0.0.1>\nl: 0\n\n"), None),
    ("compact content-length beyond body", opts("l: 40", body=b"short"), 400),
    ("compact via garbage", raw("OPTIONS sip:100@example.com SIP/2.0\nv: garbage\nf: <sip:a@b>;tag=x\n"
                                "t: <sip:100@example.com>\ni: c2\nCSeq: 1 OPTIONS\n\n"), 400),
    ("compact call-id missing", raw("OPTIONS sip:100@example.com SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bKc3\n"
                                    "f: <sip:a@b>;tag=x\nt: <sip:100@example.com>\nCSeq: 1 OPTIONS\n\n"), 400),
    ("mixed-case header names accepted", opts("cAlL-iD: mixed-case-1", "-Call-ID"), None),
    ("lf-only line ends accepted", opts(sep="\n"), None),
    # escaped URIs
    ("escaped user in request-uri accepted", opts(start="OPTIONS sip:%61lice@example.com SIP/2.0"), None),
    ("escaped @ in user accepted", opts(start="OPTIONS sip:a%40b@example.com SIP/2.0"), None),
    ("escaped space in user accepted", opts(start="OPTIONS sip:a%20b@example.com SIP/2.0"), None),
    ("raw space inside request-uri", opts(start="OPTIONS sip:a b@example.com SIP/2.0"), 400),
    ("unterminated ipv6 host", opts(start="OPTIONS sip:100@[::1 SIP/2.0"), 400),
    ("port zero in request-uri", opts(start="OPTIONS sip:100@example.com:0 SIP/2.0"), 400),
    ("sips scheme accepted", opts(start="OPTIONS sips:100@example.com SIP/2.0"), None),
    # display names
    ("quoted display name containing <uri> accepted",
     opts('From: "Bob <sip:evil@x>" <sip:bob@host>;tag=1'), None),
    ("escaped quote in display name accepted", opts('From: "Bob \\"<sip:evil@x>\\"" <sip:bob@host>;tag=1'), None),
    ("unquoted display name with two uris", opts("From: Bob <sip:evil@x> <sip:bob@host>;tag=1"), 400),
    ("unterminated <uri> in from", opts("From: Bob <sip:bob@host;tag=1"), 400),
    ("garbage after > in to", opts("To: <sip:100@example.com> junk"), 400),
    ("missing to", opts("-To"), 400),
    # CSeq
    ("cseq without method", opts("CSeq: 1"), 400),
    ("negative cseq", opts("CSeq: -1 OPTIONS"), 400),
    ("cseq method in other case", opts("CSeq: 1 options"), 400),
    ("cseq method of another request", opts("CSeq: 1 INVITE"), 400),
    ("cseq above 2**31", opts("CSeq: 2147483648 OPTIONS"), 400),
    # Content-Length
    ("conflicting content-lengths", opts("Content-Length: 0", "Content-Length: 5", body=b"hello"), 400),
    ("hexadecimal content-length", opts("Content-Length: 0x10"), 400),
    ("huge content-length", opts("Content-Length: 99999999999"), 400),
    ("content-length with spaces accepted", opts("Content-Length:    5  ", body=b"hello"), None),
    # version and scheme
    ("unknown version", opts(start="OPTIONS sip:100@example.com SIP/3.0"), 505),
    ("lower-case version accepted (7.1)", opts(start="OPTIONS sip:100@example.com sip/2.0"), None),
    ("http version", opts(start="OPTIONS sip:100@example.com HTTP/1.1"), 400),
    ("tel request-uri", opts(start="OPTIONS tel:+15551234 SIP/2.0"), 416),
    ("mailto request-uri", opts(start="OPTIONS mailto:a@example.com SIP/2.0"), 416),
    ("unknown scheme in from", opts("From: <im:alice@example.org>;tag=1"), 400),
    # bytes: invalid UTF-8, controls, sizes
    ("latin-1 display name accepted", opts('From: "M\xfcller" <sip:mueller@example.org>;tag=1'), None),
    ("invalid utf-8 in method", opts(start="OPT\xffONS sip:100@example.com SIP/2.0"), 400),
    ("nul byte in call-id", opts("Call-ID: abc\x00def"), 400),
    ("escape character in subject", opts("Subject: \x1b[2Jhello"), 400),
    ("huge header line", opts("Subject: " + "x" * 9000), 400),
    ("huge folded header", opts("Subject: start" + "\r\n " + "y" * 5000 + "\r\n " + "z" * 5000), 400),
    ("too many header lines", opts(*[f"X-Pad-{i}: {i}" for i in range(300)]), 400),
    ("bad method characters", opts(start="OP@TIONS sip:100@example.com SIP/2.0"), 400),
    ("max-forwards above 255", opts("Max-Forwards: 256"), 400),
    ("header name with a space", opts("Sub ject: hello"), 400),
    ("via without branch accepted (rfc 2543)", opts("Via: SIP/2.0/UDP 10.0.0.1:5060"), None),
]

IDS = [t[0] for t in TORTURE]


def test_torture_set_is_big_enough() -> None:
    assert len(TORTURE) >= 30
    assert sum(1 for t in TORTURE if t[2] is not None) >= 30  # at least 30 refusals


@pytest.mark.parametrize("name,data,status", TORTURE, ids=IDS)
def test_parser_gives_expected_status(name: str, data: bytes, status: int | None) -> None:
    if status is None:
        request = parse_message(data)
        assert isinstance(request, SipRequest) and request.method == "OPTIONS"
        return
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.status == status, info.value
    answer = error_response(info.value, "t1", "Branchline")
    assert answer is not None and answer.startswith(f"SIP/2.0 {status} ".encode())


def test_accepted_messages_are_understood_as_the_rfc_says() -> None:
    by_name = {t[0]: t[1] for t in TORTURE}
    assert parse_message(by_name["folded via accepted"]).branch == "z9hG4bKfold1"
    assert parse_message(by_name["escaped user in request-uri accepted"]).uri.user == "alice"
    assert parse_message(by_name["escaped @ in user accepted"]).uri.user == "a@b"
    spoof = parse_message(by_name["quoted display name containing <uri> accepted"])
    assert str(spoof.from_addr.uri) == "sip:bob@host" and spoof.from_addr.display_name == "Bob <sip:evil@x>"
    quoted = parse_message(by_name["escaped quote in display name accepted"])
    assert str(quoted.from_addr.uri) == "sip:bob@host"
    assert parse_message(by_name["content-length with spaces accepted"]).body == b"hello"
    assert parse_message(by_name["all compact forms accepted"]).call_id == "compact-1"
    assert parse_message(by_name["latin-1 display name accepted"]).from_addr.uri.user == "mueller"


@pytest.fixture
async def open_line():
    # trusted: this test sends 40 malformed messages from one source on purpose (bans are tested elsewhere)
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None,
                                 trusted_networks=("127.0.0.1/32",)), _never_called)
    await line.start()
    peer = await SipPeer(("127.0.0.1", line.udp_port)).open()
    yield line, peer
    peer.close()
    await line.stop()


async def _never_called(call) -> None:
    raise AssertionError("no torture message is an INVITE")


async def test_every_torture_message_is_answered_on_the_wire(open_line) -> None:
    line, peer = open_line
    for name, data, status in TORTURE:
        peer.send(data)
        answer = await peer.recv_raw(WAIT_S)
        first = answer.split(b"\r\n", 1)[0].decode()
        assert first.startswith(f"SIP/2.0 {status or 200} "), f"{name}: got {first!r}"
        if status is None:  # a fresh transaction, answered for this very request
            sent, got = parse_message(data), parse_message(answer)
            assert isinstance(got, SipResponse) and got.call_id == sent.call_id, name
    assert line.statistics().rejected_messages == sum(1 for t in TORTURE if t[2] is not None)
    # and the line still serves normal requests
    peer.send(opts("Call-ID: after-torture"))
    assert (await peer.expect(200)).call_id == "after-torture"
