"""Thin asyncio UDP, TCP and TLS transports for SIP. No protocol logic lives here.

Each received message is handed to ``on_message(data, conn, stream)`` with a
``Connection`` that sends back over the receiving socket/connection. One bad
message never kills a transport: exceptions from the handler are logged and the
transport keeps serving. Works under uvloop (no transport type assertions).

Inbound TCP/TLS connections are bounded (``drivers.sip.stream_limits`` decides, this
module runs the timers): a cap overall and per source address, refusals summed up in
one WARNING per ``REFUSAL_LOG_INTERVAL_S``, a deadline for the first message and for
finishing a started one, and a 413 before closing on a body over the size limit.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Callable, Protocol

from drivers.sip.errors import FramingError
from drivers.sip.stream_limits import GuardedFramer, StreamAdmission

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT_S = 300.0  # close TCP connections silent this long (peers re-connect on demand)
MAX_TCP_CONNECTIONS = 256  # bound on concurrent inbound TCP connections
TCP_WRITE_BUFFER_LIMIT = 256 * 1024  # a peer not reading this much is dropped
TLS_IDLE_TIMEOUT_S = 300.0  # as TCP: phones keep TLS alive with CRLF pings or re-REGISTER well within this
MAX_TLS_CONNECTIONS = 256  # bound on concurrent inbound TLS connections (each costs ~50 kB of SSL state)
TLS_HANDSHAKE_TIMEOUT_S = 10.0  # a real client finishes the handshake in ms; this frees slots held by stallers
MAX_CONNECTIONS_PER_SOURCE = 32  # per source address and transport: a phone needs 1; one host cannot take every slot
FIRST_MESSAGE_TIMEOUT_S = 30.0  # a phone sends its REGISTER/INVITE at once; a silent connection only holds a slot
INCOMPLETE_MESSAGE_TIMEOUT_S = 30.0  # a started message must be whole by then (a 64 kB message takes ms to arrive)
REFUSAL_LOG_INTERVAL_S = 10.0  # refused connections are summed up in one WARNING per interval, not one each
TOO_LARGE_LINGER_S = 2.0  # after a 413, the rest of the body is read and dropped this long, so that closing
#                           does not reset the connection before the peer has read the answer


class Connection(Protocol):
    reliable: bool
    peer: tuple[str, int]
    transport: str  # for Via: "UDP", "TCP" or "TLS"

    def send(self, data: bytes) -> None: ...

    def redirect(self, peer: tuple[str, int]) -> "Connection": ...


OnMessage = Callable[[bytes, Connection, bool], None]


def route_source_ip(peer_ip: str) -> str:
    """The local address the kernel would use to reach ``peer_ip`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in peer_ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((peer_ip, 9))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


class UdpConnection:
    __slots__ = ("_transport", "peer", "reliable")
    transport = "UDP"

    def __init__(self, transport: asyncio.DatagramTransport, peer: tuple[str, int]) -> None:
        self._transport = transport
        self.peer = peer
        self.reliable = False

    def send(self, data: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.sendto(data, self.peer)

    def redirect(self, peer: tuple[str, int]) -> "UdpConnection":
        return UdpConnection(self._transport, peer)

    def __repr__(self) -> str:
        return f"udp:{self.peer[0]}:{self.peer[1]}"


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if self.transport is None or not data.strip(b"\r\n\0 "):
            return  # keep-alive (CRLF) or empty datagram
        try:
            self._on_message(data, UdpConnection(self.transport, (addr[0], addr[1])), False)
        except Exception:  # a bug in the handler must not stop the socket
            log.exception("SIP/UDP: unexpected error handling a datagram from %s:%s", addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP/UDP: socket error %s", exc)


class _StreamPool:
    """The open inbound connections of one stream transport (TCP or TLS), and who may add one."""

    def __init__(self, name: str, max_connections: int, idle_timeout_s: float) -> None:
        self.name = name
        self.idle_timeout_s = idle_timeout_s
        self.conns: set[TcpConnection] = set()
        self._admission = StreamAdmission(max_connections, MAX_CONNECTIONS_PER_SOURCE, REFUSAL_LOG_INTERVAL_S)
        self._report_timer: asyncio.TimerHandle | None = None

    def add(self, conn: TcpConnection) -> bool:
        """Admit ``conn`` or refuse it (the caller closes it); refusals are reported in batches."""
        loop = asyncio.get_running_loop()
        if self._admission.admit(conn.peer[0], loop.time()):
            self.conns.add(conn)
            return True
        due_in = self._admission.report_due_in(loop.time())
        if due_in <= 0:
            self._report_refusals()
        elif self._report_timer is None:
            self._report_timer = loop.call_later(due_in, self._report_refusals)
        return False

    def discard(self, conn: TcpConnection) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self._admission.release(conn.peer[0])

    def _report_refusals(self) -> None:
        self._report_timer = None
        text = self._admission.take_report(asyncio.get_running_loop().time())
        if text is not None:
            log.warning("SIP/%s: %s", self.name, text)

    def find(self, peer: tuple[str, int]) -> TcpConnection | None:
        for conn in self.conns:
            if conn.peer == peer and conn.is_open:
                return conn
        return None

    def close_all(self) -> None:
        if self._report_timer is not None:  # say what was refused before going away
            self._report_timer.cancel()
            self._report_refusals()
        for conn in list(self.conns):
            conn.close()


class TcpConnection(asyncio.Protocol):
    """One inbound TCP (or TLS: the SSL layer sits below) connection: frames the stream by Content-Length.

    Besides the idle timeout, a connection must deliver its first whole message within
    ``FIRST_MESSAGE_TIMEOUT_S`` and finish any message it has started within
    ``INCOMPLETE_MESSAGE_TIMEOUT_S`` (the deadline runs from the first byte; more bytes do not
    extend it). Keep-alive CRLFs are not messages: they keep a registered phone's connection open.
    """

    def __init__(self, on_message: OnMessage, pool: _StreamPool) -> None:
        self._on_message = on_message
        self._pool = pool
        self._framer = GuardedFramer()
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None  # first message, incomplete message, or linger
        self._lingering = False  # answered 413: reading only to drop the rest of the body
        self.peer: tuple[str, int] = ("", 0)
        self.reliable = True
        self.transport = pool.name

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = (peer[0], peer[1])
        if not self._pool.add(self):
            transport.close()
            return
        self._touch()
        self._set_deadline(FIRST_MESSAGE_TIMEOUT_S, "no complete SIP message since connecting")

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self._pool.idle_timeout_s, self._idle_close)

    def _idle_close(self) -> None:
        log.debug("SIP/%s %s:%s: idle for %.0f s; closing", self.transport, *self.peer, self._pool.idle_timeout_s)
        self.close()

    def _set_deadline(self, delay_s: float, why: str | None) -> None:
        """Close the connection in ``delay_s`` unless cleared first; ``why`` (if any) is logged."""
        self._clear_deadline()
        self._deadline = asyncio.get_running_loop().call_later(delay_s, self._deadline_passed, why, delay_s)

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self, why: str | None, delay_s: float) -> None:
        self._deadline = None
        if why is not None:
            log.debug("SIP/%s %s:%s: %s after %.0f s; closing", self.transport, *self.peer, why, delay_s)
        self.close()

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a refused body
        self._touch()
        try:
            messages = self._framer.feed(data)
        except FramingError as exc:
            self._framing_failed(exc)
            return
        if self._framer.pings:
            self._framer.pings = 0
            self.send(b"\r\n")  # RFC 5626 pong: the phone's NAT binding stays open
        if messages:
            self._clear_deadline()
        if self._deadline is None and self._framer.mid_message:
            self._set_deadline(INCOMPLETE_MESSAGE_TIMEOUT_S, "a SIP message still incomplete")
        for message in messages:
            try:
                self._on_message(message, self, True)
            except Exception:
                log.exception("SIP/%s: unexpected error handling a message from %s:%s", self.transport, *self.peer)

    def _framing_failed(self, exc: FramingError) -> None:
        answer = self._framer.too_large_answer()
        log.warning("SIP/%s %s:%s: %s; %sclosing the connection", self.transport, self.peer[0], self.peer[1], exc,
                    "answered 413, " if answer else "")
        if answer is None:
            self.close()
            return
        self.send(answer)
        self._lingering = True
        t = self._transport
        if t is not None and t.can_write_eof():
            t.write_eof()  # TCP: the peer sees the end right after the 413
        self._set_deadline(TOO_LARGE_LINGER_S, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._clear_deadline()

    def send(self, data: bytes) -> None:
        t = self._transport
        if t is None or t.is_closing():
            return
        if t.get_write_buffer_size() > TCP_WRITE_BUFFER_LIMIT:
            log.warning("SIP/%s %s:%s: peer is not reading; closing", self.transport, *self.peer)
            self.close()
            return
        t.write(data)

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def redirect(self, peer: tuple[str, int]) -> "TcpConnection":
        return self  # a stream answers over itself

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def __repr__(self) -> str:
        return f"{self.transport.lower()}:{self.peer[0]}:{self.peer[1]}"


class SipTransports:
    """Binds SIP over UDP and TCP on one host/port (port 0: an ephemeral port), and TLS when given a context."""

    def __init__(self, host: str, port: int, on_message: OnMessage, *, tcp: bool = True,
                 tls_context: ssl.SSLContext | None = None, tls_port: int = 5061) -> None:
        self._host = host
        self._port = port
        self._on_message = on_message
        self._want_tcp = tcp
        self._tls_context = tls_context
        self._tls_port_wanted = tls_port
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._tls_server: asyncio.Server | None = None
        self._tcp = _StreamPool("TCP", MAX_TCP_CONNECTIONS, TCP_IDLE_TIMEOUT_S)
        self._tls = _StreamPool("TLS", MAX_TLS_CONNECTIONS, TLS_IDLE_TIMEOUT_S)
        self.udp_port = 0
        self.tcp_port = 0
        self.tls_port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self._on_message), local_addr=(self._host, self._port)
        )
        self._udp = transport
        self.udp_port = transport.get_extra_info("sockname")[1]
        if self._want_tcp:
            def factory() -> TcpConnection:
                return TcpConnection(self._on_message, self._tcp)

            try:  # same port number as UDP when possible
                self._server = await loop.create_server(factory, self._host, self.udp_port)
            except OSError:
                if self._port:
                    raise
                self._server = await loop.create_server(factory, self._host, 0)
            self.tcp_port = self._server.sockets[0].getsockname()[1]
        if self._tls_context is not None:
            await self._start_tls(loop)
        log.info("SIP listening on %s udp:%d tcp:%s tls:%s", self._host, self.udp_port, self.tcp_port or "off",
                 self.tls_port or "off")

    async def _start_tls(self, loop: asyncio.AbstractEventLoop) -> None:
        def factory() -> TcpConnection:
            return TcpConnection(self._on_message, self._tls)

        try:
            self._tls_server = await loop.create_server(factory, self._host, self._tls_port_wanted,
                                                        ssl=self._tls_context,
                                                        ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S)
        except OSError:
            if self._udp is not None:  # do not leave UDP/TCP bound behind a failed start
                await self.close()
            raise
        self.tls_port = self._tls_server.sockets[0].getsockname()[1]

    def udp_connection(self, peer: tuple[str, int]) -> UdpConnection | None:
        return UdpConnection(self._udp, peer) if self._udp is not None else None

    def stream_connection(self, transport: str, peer: tuple[str, int]) -> TcpConnection | None:
        """The open inbound TCP/TLS connection from ``peer`` (a registered phone), or None."""
        return (self._tls if transport.upper() == "TLS" else self._tcp).find(peer)

    async def close(self) -> None:
        for server, pool in ((self._server, self._tcp), (self._tls_server, self._tls)):
            if server is not None:
                server.close()
                pool.close_all()
                await server.wait_closed()
        self._server = self._tls_server = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
