"""SIP over TCP/TLS limits: per-source caps, first-message and stall deadlines, batched refusal
warnings and 413 for an oversized body. Real sockets on 127.0.0.1; the deadlines are shortened."""
from __future__ import annotations

import asyncio
import logging
import ssl

import pytest

from drivers.sip import transport as sip_transport
from drivers.sip.errors import FramingError
from drivers.sip.message import MAX_MESSAGE_BYTES, SipRequest, SipResponse, parse_message, response_bytes
from drivers.sip.stream_limits import GuardedFramer, StreamAdmission
from drivers.sip.tls import generate_self_signed, server_context
from drivers.sip.transport import SipTransports
from tests.drivers.sip.test_line_tls import TlsPeer

WAIT_S = 5.0  # loopback answers in ms; generous for a loaded CI box
HOG = "127.0.0.12"  # the host opening too many connections (any 127/8 address is loopback on Linux)


def request(method: str = "OPTIONS", *, call_id: str = "c1@test", body_length: int = 0) -> bytes:
    return (f"{method} sip:line@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-{call_id}\r\n"
            f"From: <sip:phone@127.0.0.1>;tag=ft\r\nTo: <sip:line@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 7 {method}\r\nMax-Forwards: 70\r\nContent-Length: {body_length}\r\n\r\n").encode()


def answer_requests(data: bytes, conn, stream: bool) -> None:
    msg = parse_message(data, stream=stream)
    if isinstance(msg, SipRequest):
        conn.send(response_bytes(msg, 200, to_tag="line"))


class Client(TlsPeer):
    """A plain TCP (or TLS) connection to the transports, from a chosen source address."""

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1", **tls) -> Client:
        async with asyncio.timeout(WAIT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0), **tls)
        return cls(reader, writer, port)

    async def options_answered(self) -> bool:
        self.send(request())
        return (await self.recv()).status == 200

    async def until_closed(self) -> bytes:
        """All the line sends until it closes the connection."""
        chunks = []
        async with asyncio.timeout(WAIT_S):
            try:
                while chunk := await self.reader.read(65536):
                    chunks.append(chunk)
            except (ConnectionError, ssl.SSLError):
                pass
        return b"".join(chunks)


@pytest.fixture
async def transports():
    started: list[SipTransports] = []
    clients: list[Client] = []

    async def start(**kw) -> SipTransports:
        t = SipTransports("127.0.0.1", 0, answer_requests, **kw)
        await t.start()
        started.append(t)
        return t

    async def connect(port: int, source: str = "127.0.0.1", **tls) -> Client:
        client = await Client.open(port, source, **tls)
        clients.append(client)
        return client

    yield start, connect
    for client in clients:
        await client.close()
    for t in started:
        await t.close()


def tls_client(cafile) -> dict:
    """``open_connection`` arguments for a TLS client that verifies the line's self-signed certificate."""
    return {"ssl": ssl.create_default_context(cafile=str(cafile)), "server_hostname": "127.0.0.1"}


def refusals(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == sip_transport.__name__ and "refused" in r.getMessage()]


# ---- per-source cap and batched refusal warnings ------------------------------------------------
def test_admission_caps_each_source_and_the_total() -> None:
    gate = StreamAdmission(max_total=4, max_per_source=2, report_interval_s=10.0)
    assert gate.admit("10.0.0.1", 0.0) and gate.admit("10.0.0.1", 0.0)
    assert not gate.admit("10.0.0.1", 0.0)  # its own cap
    assert gate.admit("10.0.0.2", 0.0) and gate.admit("10.0.0.3", 0.0)
    assert not gate.admit("10.0.0.4", 0.0)  # every slot taken
    gate.release("10.0.0.1")
    assert gate.admit("10.0.0.4", 0.0)
    assert gate.refused_total == 2


def test_refusals_are_summed_up_once_per_interval() -> None:
    gate = StreamAdmission(max_total=3, max_per_source=1, report_interval_s=10.0)
    assert gate.take_report(0.0) is None
    assert gate.admit("192.0.2.9", 0.0) and not gate.admit("192.0.2.9", 0.0)
    assert gate.report_due_in(0.0) == 0.0
    first = gate.take_report(0.0)
    assert first is not None and first.startswith("refused 1 connection: 1 from 192.0.2.9, over the limit of 1 ")
    assert "block it in the firewall" in first
    for i in range(340):
        gate.admit("192.0.2.9", 1.0 + i / 100)
    for source in ("198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"):
        gate.admit(source, 4.0)  # two fit, three find every slot taken
    assert gate.report_due_in(4.0) == 6.0
    summary = gate.take_report(10.0)
    assert summary is not None and summary.startswith("refused 343 connections in the last 10 s: 340 from 192.0.2.9")
    assert "3 from 3 sources because all 3 connection slots were in use" in summary
    assert gate.take_report(20.0) is None  # nothing new


async def test_one_source_cannot_take_every_slot(transports, monkeypatch) -> None:
    monkeypatch.setattr(sip_transport, "MAX_CONNECTIONS_PER_SOURCE", 3)
    start, connect = transports
    line = await start()
    hogs = [await connect(line.tcp_port, HOG) for _ in range(3)]
    for hog in hogs:
        assert await hog.options_answered()
    extra = await connect(line.tcp_port, HOG)
    assert await extra.until_closed() == b""  # refused: the source already holds its 3
    other = await connect(line.tcp_port)
    assert await other.options_answered()  # another address still gets in
    hogs[0].send(b"X" * (MAX_MESSAGE_BYTES + 1))  # unframeable: the line closes it and frees the slot
    assert await hogs[0].until_closed() == b""
    again = await connect(line.tcp_port, HOG)
    assert await again.options_answered()


async def test_refusals_give_one_warning_then_a_summary(transports, monkeypatch, caplog) -> None:
    caplog.set_level(logging.WARNING, logger=sip_transport.__name__)
    monkeypatch.setattr(sip_transport, "MAX_CONNECTIONS_PER_SOURCE", 1)
    monkeypatch.setattr(sip_transport, "REFUSAL_LOG_INTERVAL_S", 3600.0)  # the summary comes at close
    start, connect = transports
    line = await start()
    assert await (await connect(line.tcp_port, HOG)).options_answered()
    for _ in range(12):
        assert await (await connect(line.tcp_port, HOG)).until_closed() == b""
    assert len(refusals(caplog)) == 1  # the first one at once, the other 11 wait for the interval
    assert "refused 1 connection: 1 from 127.0.0.12" in refusals(caplog)[0]
    await line.close()
    [_, summary] = refusals(caplog)
    assert summary.startswith("SIP/TCP: refused 11 connections in the last 1 s: 11 from 127.0.0.12, over the limit")


async def test_refusal_summary_follows_after_the_interval(transports, monkeypatch) -> None:
    monkeypatch.setattr(sip_transport, "MAX_TCP_CONNECTIONS", 1)
    monkeypatch.setattr(sip_transport, "REFUSAL_LOG_INTERVAL_S", 0.3)
    records: asyncio.Queue[logging.LogRecord] = asyncio.Queue(maxsize=10)
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.put_nowait  # type: ignore[method-assign]  # logged on the loop's thread
    logger = logging.getLogger(sip_transport.__name__)
    logger.addHandler(handler)
    try:
        start, connect = transports
        line = await start()
        assert await (await connect(line.tcp_port)).options_answered()
        for _ in range(2):
            assert await (await connect(line.tcp_port, HOG)).until_closed() == b""
        async with asyncio.timeout(WAIT_S):
            first, second = await records.get(), await records.get()
    finally:
        logger.removeHandler(handler)
    assert "all 1 connection slots were in use" in first.getMessage()
    assert second.getMessage().startswith("SIP/TCP: refused 1 connection in the last 1 s: 1 from 1 source")
    assert second.created - first.created >= 0.25  # not before the interval (record clocks are wall time)


# ---- deadlines ---------------------------------------------------------------------------------
async def test_silent_connection_is_closed_after_the_first_message_timeout(transports, monkeypatch) -> None:
    monkeypatch.setattr(sip_transport, "FIRST_MESSAGE_TIMEOUT_S", 0.2)
    start, connect = transports
    line = await start()
    silent = await connect(line.tcp_port)
    assert await silent.until_closed() == b""
    half = await connect(line.tcp_port)
    half.send(request()[:40])
    assert await half.until_closed() == b""


async def test_stalled_message_after_a_good_one_is_closed(transports, monkeypatch) -> None:
    monkeypatch.setattr(sip_transport, "INCOMPLETE_MESSAGE_TIMEOUT_S", 0.2)
    start, connect = transports
    line = await start()
    phone = await connect(line.tcp_port)
    assert await phone.options_answered()
    phone.send(request(call_id="c2@test")[:70])  # half a header, never finished
    assert await phone.until_closed() == b""


async def test_keepalive_pings_keep_a_phone_connected_past_the_deadlines(transports, monkeypatch) -> None:
    monkeypatch.setattr(sip_transport, "INCOMPLETE_MESSAGE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(sip_transport, "FIRST_MESSAGE_TIMEOUT_S", 0.4)
    start, connect = transports
    line = await start()
    phone = await connect(line.tcp_port)
    phone.send(b"\r\n\r\n" + request())
    async with asyncio.timeout(WAIT_S):
        assert await phone.reader.readexactly(2) == b"\r\n"  # pong
    await phone.expect(200)
    phone.send(b"\r\n\r\n")
    async with asyncio.timeout(WAIT_S):
        assert await phone.reader.readexactly(2) == b"\r\n"
    phone.send(b"\r\n")  # half a ping: not an incomplete message
    clock = await connect(line.tcp_port)  # opened later; both the phone's deadlines would pass first
    assert await clock.until_closed() == b""
    phone.send(b"\r\n" + request(call_id="c3@test"))
    async with asyncio.timeout(WAIT_S):
        assert await phone.reader.readexactly(2) == b"\r\n"
    await phone.expect(200)
    assert line.stream_connection("tcp", phone.writer.get_extra_info("sockname")[:2]) is not None


# ---- 413 for a body over the size limit -------------------------------------------------------------
def test_too_large_answer_only_for_a_readable_request() -> None:
    def answer(data: bytes) -> bytes | None:
        framer = GuardedFramer()
        with pytest.raises(FramingError):
            framer.feed(data)
        return framer.too_large_answer()

    reply = answer(request("INVITE", body_length=2_000_000))
    assert reply is not None
    msg = parse_message(reply, stream=True)
    assert isinstance(msg, SipResponse) and (msg.status, msg.reason) == (413, "Request Entity Too Large")
    assert msg.call_id == "c1@test" and str(msg.cseq) == "7 INVITE" and msg.to_addr.tag
    assert msg.via.branch == "z9hG4bK-c1@test" and msg.headers.get("Content-Length") == "0"
    assert answer(request("ACK", body_length=2_000_000)) is None  # an ACK is never answered
    response = request(body_length=2_000_000).replace(b"OPTIONS sip:line@127.0.0.1 SIP/2.0", b"SIP/2.0 200 OK")
    assert answer(response) is None  # responses are never answered
    assert answer(request(body_length=70_000).replace(b"Call-ID", b"X-Call")) is None  # no Call-ID: unanswerable
    assert answer(request().replace(b"Content-Length: 0", b"Content-Length: x")) is None  # not a size problem
    assert answer(b"A" * (MAX_MESSAGE_BYTES + 1)) is None  # no end of the header section


@pytest.mark.parametrize("body_sent", [64 * 1024, 2 * 1024 * 1024], ids=["part", "whole-2MB"])
async def test_oversized_request_over_tcp_is_answered_413(transports, body_sent) -> None:
    start, connect = transports
    line = await start()
    caller = await connect(line.tcp_port)
    caller.send(request("INVITE", body_length=2 * 1024 * 1024) + b"v" * body_sent)
    answer = await caller.until_closed()  # the 413, then the end of the stream
    msg = parse_message(answer, stream=True)
    assert isinstance(msg, SipResponse) and msg.status == 413 and msg.call_id == "c1@test"
    assert answer.endswith(b"Content-Length: 0\r\n\r\n")
    assert await (await connect(line.tcp_port)).options_answered()  # the line keeps serving


async def test_oversized_request_over_tls_is_answered_413(transports, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(sip_transport, "TOO_LARGE_LINGER_S", 0.2)  # TLS cannot half-close: the linger ends it
    files = generate_self_signed(tmp_path, ("127.0.0.1",))
    start, connect = transports
    line = await start(tls_context=server_context(files), tls_port=0)
    tls = tls_client(files.cert)
    caller = await connect(line.tls_port, **tls)
    caller.send(request("INVITE", body_length=100_000) + b"v" * 70_000)
    msg = parse_message(await caller.until_closed(), stream=True)
    assert isinstance(msg, SipResponse) and msg.status == 413
    assert await (await connect(line.tls_port, **tls)).options_answered()


async def _oversized_under_uvloop(folder) -> None:
    files = generate_self_signed(folder, ("127.0.0.1",))
    line = SipTransports("127.0.0.1", 0, answer_requests, tls_context=server_context(files), tls_port=0)
    await line.start()
    tls = tls_client(files.cert)
    try:
        for port, kw in ((line.tcp_port, {}), (line.tls_port, tls)):
            caller = await Client.open(port, **kw)
            caller.send(request("INVITE", body_length=100_000) + b"v" * 70_000)
            assert parse_message(await caller.until_closed(), stream=True).status == 413
            await caller.close()
    finally:
        await line.close()


def test_oversized_request_answered_413_under_uvloop(tmp_path, monkeypatch) -> None:
    import uvloop

    monkeypatch.setattr(sip_transport, "TOO_LARGE_LINGER_S", 0.2)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_oversized_under_uvloop(tmp_path))
