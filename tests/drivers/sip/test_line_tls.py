"""SIP over TLS: a running SipLine on 127.0.0.1 driven by raw Python ``ssl`` clients."""
from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import pytest

from appliance.lines import HangupCause
from drivers.sip import transport as sip_transport
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.message import SipRequest, SipResponse, StreamFramer, parse_message, response_bytes
from drivers.sip.tls import CERT_FILE, KEY_FILE, TlsSetupError, generate_self_signed
from tests.drivers.sip.peer import SipPeer, new_branch, new_call_id, offer_sdp

WAIT_S = 5.0  # loopback TLS handshakes and answers take ms; generous for a loaded 2-core box


class TlsPeer:
    """One TLS connection to the line; requests are built like ``SipPeer``'s, with a TLS Via."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line_port: int) -> None:
        self.reader, self.writer = reader, writer
        self.port = writer.get_extra_info("sockname")[1]
        self._builder = SipPeer(("127.0.0.1", line_port))
        self._builder.port = self.port
        self._framer = StreamFramer()
        self._pending: list[bytes] = []

    @classmethod
    async def connect(cls, port: int, cafile: Path) -> "TlsPeer":
        context = ssl.create_default_context(cafile=str(cafile))  # verifies chain and the 127.0.0.1 SAN
        async with asyncio.timeout(WAIT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                           server_hostname="127.0.0.1")
        return cls(reader, writer, port)

    def request(self, method: str, **kw) -> bytes:
        text = self._builder.request(method, **kw)
        text = text.replace("SIP/2.0/UDP", "SIP/2.0/TLS").replace(f"{self.port}>", f"{self.port};transport=tls>")
        return text.encode()

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self) -> SipRequest | SipResponse:
        async with asyncio.timeout(WAIT_S):
            while not self._pending:
                data = await self.reader.read(65536)
                assert data, "the line closed the TLS connection"
                self._pending += self._framer.feed(data)
        return parse_message(self._pending.pop(0), stream=True)

    async def expect(self, status: int) -> SipResponse:
        msg = await self.recv()
        assert isinstance(msg, SipResponse) and msg.status == status, msg
        return msg

    async def closed_by_line(self) -> bool:
        async with asyncio.timeout(WAIT_S):
            try:
                while await self.reader.read(65536):
                    pass
            except (ConnectionError, ssl.SSLError):
                pass
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


class Handler:
    def __init__(self) -> None:
        self.arrived: asyncio.Queue = asyncio.Queue(maxsize=8)

    async def __call__(self, call) -> None:
        self.arrived.put_nowait(call)
        await call.wait_ended()

    async def next_call(self):
        async with asyncio.timeout(WAIT_S):
            return await self.arrived.get()


@pytest.fixture
async def tls_line(tmp_path):
    lines: list[SipLine] = []

    async def factory(**overrides) -> tuple[SipLine, Handler]:
        config = dict(host="127.0.0.1", port=0, rtp_port_range=None, tls=True, tls_port=0,
                      tls_dir=str(tmp_path / "tls"))
        config.update(overrides)
        handler = Handler()
        line = SipLine(SipLineConfig(**config), handler)
        await line.start()
        lines.append(line)
        return line, handler

    yield factory
    for line in lines:
        await line.stop()


async def test_self_signed_pair_is_generated_once_and_reused(tls_line, tmp_path) -> None:
    line, _ = await tls_line()
    cert, key = tmp_path / "tls" / CERT_FILE, tmp_path / "tls" / KEY_FILE
    first = cert.read_bytes()
    assert line.tls_port not in (0, line.udp_port, line.tcp_port)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    await line.stop()
    again, _ = await tls_line()
    assert cert.read_bytes() == first  # reused: phones that pinned it keep trusting the box
    peer = await TlsPeer.connect(again.tls_port, cert)
    try:
        peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
        assert (await peer.expect(200)).headers.get("Via").startswith("SIP/2.0/TLS")
    finally:
        await peer.close()


async def test_options_lf_only_and_invite_answered_on_the_same_connection(tls_line, tmp_path) -> None:
    line, handler = await tls_line()
    peer = await TlsPeer.connect(line.tls_port, tmp_path / "tls" / CERT_FILE)
    try:
        options = peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id())
        peer.send(b"\r\n\r\n" + options.replace(b"\r\n", b"\n"))  # keep-alive ping, then LF-only lines
        assert await peer.reader.readexactly(2) == b"\r\n"  # the pong
        assert "INVITE" in (await peer.expect(200)).headers.get("Allow")

        call_id = new_call_id()
        peer.send(peer.request("INVITE", branch=new_branch(), call_id=call_id, body=offer_sdp(40000)))
        await peer.expect(100)
        call = await handler.next_call()
        await call.answer()
        ok = await peer.expect(200)
        assert ok.headers.get("Contact").endswith(f":{line.tls_port};transport=tls>")
        assert b"m=audio " in ok.body
        peer.send(peer.request("ACK", branch=new_branch(), call_id=call_id, to_tag=ok.to_addr.tag))
        await call.hangup(HangupCause.AGENT_HUNG_UP)
        bye = await peer.recv()  # our BYE comes back over the caller's TLS connection
        assert isinstance(bye, SipRequest) and bye.method == "BYE"
        assert bye.headers.get("Via").startswith("SIP/2.0/TLS ")
        assert str(bye.uri).endswith(";transport=tls")  # the caller's Contact
        peer.send(response_bytes(bye, 200))
        assert await call.wait_ended() is HangupCause.AGENT_HUNG_UP
    finally:
        await peer.close()


async def test_garbage_closes_only_that_connection(tls_line, tmp_path) -> None:
    line, _ = await tls_line()
    cafile = tmp_path / "tls" / CERT_FILE
    good = await TlsPeer.connect(line.tls_port, cafile)
    bad = await TlsPeer.connect(line.tls_port, cafile)
    try:
        bad.send(b"HELLO there\r\n\r\n")  # parses as no SIP message at all: 400, connection stays
        async with asyncio.timeout(WAIT_S):
            assert (await bad.reader.readuntil(b"\r\n\r\n")).startswith(b"SIP/2.0 400 ")
        bad.send(b"\x16\x03" + bytes(range(256)) * 300)  # no end of headers within 64 kB: unframeable
        assert await bad.closed_by_line()
        plain_reader, plain_writer = await asyncio.open_connection("127.0.0.1", line.tls_port)
        plain_writer.write(b"OPTIONS sip:x SIP/2.0\r\n\r\n")  # not TLS at all: the handshake fails
        async with asyncio.timeout(WAIT_S):
            assert await plain_reader.read() == b""
        plain_writer.close()
        good.send(good.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
        assert (await good.expect(200)).status == 200
    finally:
        await good.close()
        await bad.close()


async def test_connection_limit_and_idle_timeout(tls_line, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sip_transport, "MAX_TLS_CONNECTIONS", 2)
    monkeypatch.setattr(sip_transport, "TLS_IDLE_TIMEOUT_S", 0.3)
    line, _ = await tls_line()
    cafile = tmp_path / "tls" / CERT_FILE
    first = await TlsPeer.connect(line.tls_port, cafile)
    second = await TlsPeer.connect(line.tls_port, cafile)
    try:
        first.send(first.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
        await first.expect(200)
        second.send(second.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
        await second.expect(200)
        try:  # the third is refused right after its handshake (or during it)
            third = await TlsPeer.connect(line.tls_port, cafile)
        except (ConnectionError, ssl.SSLError):
            pass
        else:
            assert await third.closed_by_line()
            await third.close()
        assert await first.closed_by_line()  # then both go idle and are closed
        assert await second.closed_by_line()
        fresh = await TlsPeer.connect(line.tls_port, cafile)  # slots are free again
        fresh.send(fresh.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
        await fresh.expect(200)
        await fresh.close()
    finally:
        await first.close()
        await second.close()


async def test_configured_pair_is_used_and_a_bad_pair_refuses_to_start(tls_line, tmp_path) -> None:
    own = generate_self_signed(tmp_path / "own", ("127.0.0.1",))
    line, _ = await tls_line(tls_cert=str(own.cert), tls_key=str(own.key), tls_dir="")
    peer = await TlsPeer.connect(line.tls_port, own.cert)  # verifies against the operator's certificate
    await peer.close()
    assert not (tmp_path / "tls").exists()
    other = generate_self_signed(tmp_path / "other")
    with pytest.raises(TlsSetupError, match="cannot load"):
        await tls_line(tls_cert=str(own.cert), tls_key=str(other.key))
    with pytest.raises(TlsSetupError, match="both"):
        await tls_line(tls_cert=str(own.cert), tls_key="")


async def _tls_under_uvloop(folder: Path) -> None:
    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, tls=True, tls_port=0,
                                 tls_dir=str(folder)), Handler())
    await line.start()
    try:
        peer = await TlsPeer.connect(line.tls_port, folder / CERT_FILE)
        peer.send(peer.request("OPTIONS", branch=new_branch(), call_id=new_call_id()).replace(b"\r\n", b"\n"))
        await peer.expect(200)
        await peer.close()
    finally:
        await line.stop()


def test_tls_under_uvloop(tmp_path) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert isinstance(runner.get_loop(), uvloop.Loop)
        runner.run(_tls_under_uvloop(tmp_path / "tls"))
