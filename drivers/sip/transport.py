"""Thin asyncio UDP, TCP and TLS transports for SIP. No protocol logic lives here.

Each received message is handed to ``on_message(data, conn, stream)`` with a
``Connection`` that sends back over the receiving socket/connection. One bad
message never kills a transport: exceptions from the handler are logged and the
transport keeps serving. Works under uvloop (no transport type assertions).
"""
from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Callable, Protocol

from drivers.sip.errors import FramingError
from drivers.sip.message import StreamFramer

log = logging.getLogger(__name__)

TCP_IDLE_TIMEOUT_S = 300.0  # close TCP connections silent this long (peers re-connect on demand)
MAX_TCP_CONNECTIONS = 256  # bound on concurrent inbound TCP connections
TCP_WRITE_BUFFER_LIMIT = 256 * 1024  # a peer not reading this much is dropped
TLS_IDLE_TIMEOUT_S = 300.0  # as TCP: phones keep TLS alive with CRLF pings or re-REGISTER well within this
MAX_TLS_CONNECTIONS = 256  # bound on concurrent inbound TLS connections (each costs ~50 kB of SSL state)
TLS_HANDSHAKE_TIMEOUT_S = 10.0  # a real client finishes the handshake in ms; this frees slots held by stallers


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


class TcpConnection(asyncio.Protocol):
    """One inbound TCP (or TLS: the SSL layer sits below) connection: frames the stream by Content-Length."""

    def __init__(self, on_message: OnMessage, registry: set["TcpConnection"], *, transport: str = "TCP",
                 max_connections: int = MAX_TCP_CONNECTIONS, idle_timeout_s: float = TCP_IDLE_TIMEOUT_S) -> None:
        self._on_message = on_message
        self._registry = registry
        self._framer = StreamFramer()
        self._transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._max = max_connections
        self._idle_s = idle_timeout_s
        self.peer: tuple[str, int] = ("", 0)
        self.reliable = True
        self.transport = transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = (peer[0], peer[1])
        if len(self._registry) >= self._max:
            log.warning("SIP/%s: refusing %s:%s, %d connections open", self.transport, *self.peer,
                        len(self._registry))
            transport.close()
            return
        self._registry.add(self)
        self._touch()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(self._idle_s, self._idle_close)

    def _idle_close(self) -> None:
        log.debug("SIP/%s %s:%s: idle for %.0f s; closing", self.transport, *self.peer, self._idle_s)
        self.close()

    def data_received(self, data: bytes) -> None:
        self._touch()
        try:
            messages = self._framer.feed(data)
        except FramingError as exc:
            log.warning("SIP/%s %s:%s: %s; closing the connection", self.transport, self.peer[0], self.peer[1], exc)
            self.close()
            return
        if self._framer.pings:
            self._framer.pings = 0
            self.send(b"\r\n")  # RFC 5626 pong: the phone's NAT binding stays open
        for message in messages:
            try:
                self._on_message(message, self, True)
            except Exception:
                log.exception("SIP/%s: unexpected error handling a message from %s:%s", self.transport, *self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

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
        self._tcp_conns: set[TcpConnection] = set()
        self._tls_conns: set[TcpConnection] = set()
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
                return TcpConnection(self._on_message, self._tcp_conns)

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
            return TcpConnection(self._on_message, self._tls_conns, transport="TLS",
                                 max_connections=MAX_TLS_CONNECTIONS, idle_timeout_s=TLS_IDLE_TIMEOUT_S)

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
        conns = self._tls_conns if transport.upper() == "TLS" else self._tcp_conns
        for conn in conns:
            if conn.peer == peer and conn.is_open:
                return conn
        return None

    async def close(self) -> None:
        for server, conns in ((self._server, self._tcp_conns), (self._tls_server, self._tls_conns)):
            if server is not None:
                server.close()
                for conn in list(conns):
                    conn.close()
                await server.wait_closed()
        self._server = self._tls_server = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
