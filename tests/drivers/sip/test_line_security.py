"""A running SipLine with its registrar and source guard, driven by raw sockets and by SIPp."""
from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from drivers.sip.digest import authorization, pick_challenge
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.message import SipResponse, parse_message
from tests.drivers.sip.peer import SipPeer, new_branch, new_call_id
from tests.drivers.sip.test_sipp import SCENARIO_DIR, _free_port, _run_sipp

WAIT_S = 3.0
USERS = (("201", "correct-horse-battery"), ("202", "staple-42"))


async def _no_calls(call) -> None:
    raise AssertionError("no INVITE expected")


@pytest.fixture
async def secure_line():
    lines: list[SipLine] = []
    peers: list[SipPeer] = []

    async def factory(**overrides):
        cfg = dict(host="127.0.0.1", port=0, rtp_port_range=None, users=USERS)
        cfg.update(overrides)
        line = SipLine(SipLineConfig(**cfg), _no_calls)
        await line.start()
        lines.append(line)
        return line

    async def peer(line: SipLine, local_host: str = "127.0.0.1") -> SipPeer:
        p = await SipPeer(("127.0.0.1", line.udp_port), local_host).open()
        peers.append(p)
        return p

    yield factory, peer
    for p in peers:
        p.close()
    for line in lines:
        await line.stop()


def register(peer: SipPeer, user: str, *, call_id: str, cseq: int, auth: str | None = None,
             expires: int = 300) -> str:
    host, port = peer.target
    lines = [
        f"REGISTER sip:{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{peer.port};branch={new_branch()}",
        f"From: <sip:{user}@{host}>;tag={peer.from_tag}",
        f"To: <sip:{user}@{host}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@127.0.0.1:{peer.port}>",
        f"Expires: {expires}",
        "Max-Forwards: 70",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"


async def attempt(peer: SipPeer, user: str, password: str) -> tuple[SipResponse, SipResponse]:
    """Challenge, then answer it: returns (the 401, the final answer)."""
    call_id = new_call_id()
    peer.send(register(peer, user, call_id=call_id, cseq=1))
    challenge = await peer.expect(401)
    params = pick_challenge(challenge.headers.get_all("WWW-Authenticate"))
    host, port = peer.target
    auth = authorization(params, "REGISTER", f"sip:{host}:{port}", user, password, 1)
    peer.send(register(peer, user, call_id=call_id, cseq=2, auth=auth))
    return challenge, await peer.recv()


def shape(response: SipResponse) -> tuple:
    """What an enumerator can compare: status line and headers, with the random parts masked."""
    masked = []
    for name, value in response.headers:
        if name == "To":
            value = value.split(";tag=")[0]
        if name == "WWW-Authenticate":
            value = value.split("nonce=")[0] + value.split('", ', 2)[-1]
        masked.append((name, value))
    return response.status, response.reason, tuple(masked)


async def test_phone_registers_over_udp_with_sha256(secure_line) -> None:
    factory, make_peer = secure_line
    line = await factory()
    peer = await make_peer(line)
    challenge, ok = await attempt(peer, "201", "correct-horse-battery")
    assert [v.split("algorithm=")[1].split(",")[0] for v in challenge.headers.get_all("WWW-Authenticate")] == \
        ["SHA-256", "MD5"]
    assert ok.status == 200
    assert ok.headers.get("Contact") == f"<sip:201@127.0.0.1:{peer.port}>;expires=300"
    [binding] = line.bindings("201")
    assert binding.source == ("127.0.0.1", peer.port) and binding.transport == "udp"
    options = await peer.recv_after(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
    assert "REGISTER" in options.headers.get_all("Allow")


async def test_unknown_user_and_wrong_password_look_the_same(secure_line) -> None:
    factory, make_peer = secure_line
    line = await factory()
    peer = await make_peer(line)
    known_401, wrong = await attempt(peer, "201", "guess")
    unknown_401, unknown = await attempt(peer, "299", "guess")
    assert wrong.status == unknown.status == 403
    assert shape(wrong)[:2] == shape(unknown)[:2]
    assert [n for n, _ in wrong.headers] == [n for n, _ in unknown.headers]
    assert shape(known_401)[0] == shape(unknown_401)[0] == 401
    assert [n for n, _ in known_401.headers] == [n for n, _ in unknown_401.headers]
    assert [v for n, v in shape(known_401)[2] if n == "WWW-Authenticate"] == \
        [v for n, v in shape(unknown_401)[2] if n == "WWW-Authenticate"]
    assert line.bindings("201") == () and line.bindings("299") == ()


async def test_scanner_is_banned_after_ten_failures_and_logged_once(secure_line, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.sip")
    factory, make_peer = secure_line
    line = await factory()
    scanner, bystander = await make_peer(line), await make_peer(line, "127.0.0.2")
    for i in range(10):  # 10 wrong passwords, each answered (the last one bans)
        _, final = await attempt(scanner, "201", f"guess{i}")
        assert final.status == 403
    scanner.send(register(scanner, "201", call_id=new_call_id(), cseq=1))
    # the bystander's request is sent after the scanner's; once it is answered, the scanner's was processed
    answer = await bystander.recv_after(bystander.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
    assert answer.status == 200
    assert scanner.queue.empty()
    bans = [r for r in caplog.records if "banned" in r.getMessage()]
    assert len(bans) == 1 and bans[0].levelno == logging.WARNING
    assert bans[0].getMessage().startswith("SIP source 127.0.0.1 banned for 300 s after 10 failed attempts")
    stats = line.guard_statistics()
    assert stats.bans_total == 1 and stats.dropped_banned >= 1


async def test_malformed_flood_bans_but_trusted_source_is_spared(secure_line) -> None:
    factory, make_peer = secure_line
    line = await factory(ban_after_failures=5, trusted_networks=("127.0.0.2/32",))
    scanner, trusted = await make_peer(line), await make_peer(line, "127.0.0.2")
    for peer in (scanner, trusted):
        for _ in range(6):
            peer.send(b"GARBAGE sip:x SIP/2.0\r\nVia: nope\r\n\r\n")
        for _ in range(5 if peer is scanner else 6):  # the scanner's 6th is ignored: banned after 5
            assert (await peer.recv_raw()).startswith(b"SIP/2.0 400 ")
    assert scanner.queue.empty()
    stats = line.guard_statistics()
    assert stats.banned_sources == 1 and stats.dropped_banned == 1


async def test_rate_limit_drops_the_excess(secure_line) -> None:
    factory, make_peer = secure_line
    line = await factory(rate_limit_per_s=1.0, rate_limit_burst=5)
    peer = await make_peer(line)
    other = await make_peer(line, "127.0.0.2")
    for _ in range(8):
        peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
    got = [await peer.expect(200) for _ in range(5)]
    assert len(got) == 5
    # sent after the 8: once answered, all 8 were processed (another source has its own bucket)
    assert (await other.recv_after(other.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))).status == 200
    assert peer.queue.empty()
    assert line.guard_statistics().dropped_rate == 3


async def _tcp_response(reader: asyncio.StreamReader) -> SipResponse:
    async with asyncio.timeout(WAIT_S):
        head = await reader.readuntil(b"\r\n\r\n")
    response = parse_message(head, stream=True)
    assert isinstance(response, SipResponse)
    return response


async def test_phone_registers_over_tcp_and_keeps_the_connection_alive(secure_line) -> None:
    factory, _ = secure_line
    line = await factory()
    reader, writer = await asyncio.open_connection("127.0.0.1", line.tcp_port)
    local_port = writer.get_extra_info("sockname")[1]

    def register_tcp(cseq: int, auth: str | None = None) -> bytes:
        text = (f"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:{local_port};branch={new_branch()}\r\n"
                f"From: <sip:202@127.0.0.1>;tag=tcp1\r\nTo: <sip:202@127.0.0.1>\r\nCall-ID: tcp-reg-1\r\n"
                f"CSeq: {cseq} REGISTER\r\nContact: <sip:202@127.0.0.1:{local_port};transport=tcp>\r\n"
                f"Expires: 120\r\n" + (f"Authorization: {auth}\r\n" if auth else "") + "Content-Length: 0\r\n\r\n")
        return text.encode()

    try:
        writer.write(register_tcp(1))
        challenge = await _tcp_response(reader)
        assert challenge.status == 401
        params = pick_challenge(challenge.headers.get_all("WWW-Authenticate"))
        writer.write(register_tcp(2, authorization(params, "REGISTER", "sip:127.0.0.1", "202", "staple-42", 1)))
        ok = await _tcp_response(reader)
        assert ok.status == 200
        assert ok.headers.get("Contact") == f"<sip:202@127.0.0.1:{local_port};transport=tcp>;expires=120"
        [binding] = line.bindings("202")
        assert binding.transport == "tcp" and binding.source == ("127.0.0.1", local_port)
        writer.write(b"\r\n\r\n")  # RFC 5626 keep-alive ping on the registered connection
        async with asyncio.timeout(WAIT_S):
            assert await reader.readexactly(2) == b"\r\n"
    finally:
        writer.close()
        await writer.wait_closed()


sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")


@sipp
@pytest.mark.sipp
@pytest.mark.parametrize("password,scenario,bound", [
    ("correct-horse-battery", "uac_register_auth.xml", False),  # registers, then unregisters
    ("wrong", "uac_register_wrong.xml", False),
])
async def test_sipp_register_with_digest(secure_line, tmp_path: Path, caplog, password: str, scenario: str,
                                         bound: bool) -> None:
    caplog.set_level(logging.INFO, logger="drivers.sip.line")
    factory, _ = secure_line
    line = await factory(auth_algorithms=("MD5",))  # SIPp 3.6.1 refuses SHA-256 and reads only the first challenge
    rc, log = await _run_sipp(
        [f"127.0.0.1:{line.udp_port}", "-sf", str(SCENARIO_DIR / scenario), "-s", "201",
         "-au", "201", "-ap", password, "-i", "127.0.0.1", "-p", str(_free_port()), "-m", "1",
         "-nostdin", "-trace_err"], tmp_path)
    assert rc == 0, log
    assert bool(line.bindings("201")) is bound
    registered = [r.getMessage() for r in caplog.records if r.getMessage().startswith("SIP extension 201:")]
    if password == "wrong":
        assert registered == []
    else:  # registered (1 contact), then unregistered (0)
        assert [m.split(":")[1].split("(")[0].strip() for m in registered] == ["1 contact", "0 contact"]
