"""A raw-socket SIP peer for tests: builds requests by hand and reads what the line sends."""
from __future__ import annotations

import asyncio
import secrets

from drivers.sip.message import SipRequest, SipResponse, parse_message

RECV_TIMEOUT_S = 3.0  # loopback answers in ms; generous for a loaded CI box


def offer_sdp(rtp_port: int, pts: str = "8 101", direction: str | None = None, ip: str = "127.0.0.1") -> str:
    lines = ["v=0", f"o=peer 1 1 IN IP4 {ip}", "s=-", f"c=IN IP4 {ip}", "t=0 0",
             f"m=audio {rtp_port} RTP/AVP {pts}", "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15"]
    if direction:
        lines.append(f"a={direction}")
    return "\r\n".join(lines) + "\r\n"


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, queue: asyncio.Queue) -> None:
        self.queue = queue
        self.last_sender: tuple[str, int] | None = None

    def datagram_received(self, data: bytes, addr) -> None:
        self.last_sender = (addr[0], addr[1])
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(data)


class SipPeer:
    """One UDP socket on 127.0.0.1 talking to the line at ``target``."""

    def __init__(self, target: tuple[str, int], local_host: str = "127.0.0.1") -> None:
        self.target = target
        self.local_host = local_host
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=200)
        self.transport: asyncio.DatagramTransport | None = None
        self._proto: _Proto | None = None
        self.port = 0
        self.from_tag = secrets.token_hex(4)

    async def open(self) -> "SipPeer":
        loop = asyncio.get_running_loop()
        self.transport, self._proto = await loop.create_datagram_endpoint(
            lambda: _Proto(self.queue), local_addr=(self.local_host, 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    @property
    def last_sender(self) -> tuple[str, int] | None:
        """Where the most recent datagram came from (the line's socket, for what it sends)."""
        return self._proto.last_sender if self._proto is not None else None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes | str) -> None:
        self.transport.sendto(data.encode() if isinstance(data, str) else data, self.target)

    async def recv_raw(self, timeout: float = RECV_TIMEOUT_S) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.queue.get()

    async def recv(self, timeout: float = RECV_TIMEOUT_S) -> SipRequest | SipResponse:
        return parse_message(await self.recv_raw(timeout))

    async def recv_after(self, data: bytes | str, timeout: float = RECV_TIMEOUT_S) -> SipResponse:
        """Send ``data`` and return the next response."""
        self.send(data)
        msg = await self.recv(timeout)
        assert isinstance(msg, SipResponse)
        return msg

    async def sync(self) -> None:
        """Until the line has handled everything sent before: it answers an OPTIONS after them."""
        self.send(self.request("OPTIONS", branch=new_branch(), call_id=new_call_id()))
        await self.expect(200)

    async def next_request(self, method: str, timeout: float = RECV_TIMEOUT_S) -> SipRequest:
        """The next ``method`` request the line sends us, skipping responses and other requests."""
        while True:
            msg = await self.recv(timeout)
            if isinstance(msg, SipRequest) and msg.method == method:
                return msg

    async def expect(self, status: int, timeout: float = RECV_TIMEOUT_S) -> SipResponse:
        msg = await self.recv(timeout)
        assert isinstance(msg, SipResponse), f"expected {status}, got request {msg.method}"
        assert msg.status == status, f"expected {status}, got {msg.status} {msg.reason}"
        return msg

    def request(self, method: str, *, branch: str, call_id: str, cseq: int = 1, to_tag: str | None = None,
                body: str = "", cseq_method: str | None = None, extra: tuple[str, ...] = (),
                from_header: str | None = None, uri: str | None = None) -> str:
        host, port = self.target
        uri = uri or f"sip:100@{host}:{port}"
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local_host}:{self.port};branch={branch}",
            from_header or f"From: \"Test\" <sip:5551234@127.0.0.1:{self.port}>;tag={self.from_tag}",
            f"To: <sip:100@{host}:{port}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {cseq_method or method}",
            f"Contact: <sip:peer@127.0.0.1:{self.port}>",
            "Max-Forwards: 70",
            *extra,
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return "\r\n".join(lines) + "\r\n\r\n" + body


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def new_call_id() -> str:
    return secrets.token_hex(8) + "@127.0.0.1"


class RtpPort(asyncio.DatagramProtocol):
    """A far end's RTP socket on 127.0.0.1: what the line sends it is queued (the oldest kept)."""

    def __init__(self, maxsize: int = 50) -> None:
        self.packets: asyncio.Queue[bytes] = asyncio.Queue(maxsize=maxsize)
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    @classmethod
    async def open(cls, maxsize: int = 50) -> "RtpPort":
        rtp = cls(maxsize)
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: rtp, local_addr=("127.0.0.1", 0))
        return rtp

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.packets.full():
            self.packets.put_nowait(data)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def next_packet(self, timeout: float = RECV_TIMEOUT_S) -> bytes:
        async with asyncio.timeout(timeout):
            return await self.packets.get()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
