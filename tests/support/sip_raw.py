"""A tiny raw-UDP SIP caller for box-level tests: exact bytes out, parsed status lines in."""
from __future__ import annotations

import asyncio
import re
import secrets

SDP_PCMU = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)


class _Proto(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(256)

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.queue.full():
            self.queue.put_nowait(data)


class RawCaller:
    """One dialog's worth of hand-built requests from a UDP socket on 127.0.0.1."""

    def __init__(self, box_port: int, *, user: str = "+441632960001", service: str = "support") -> None:
        self.box_port = box_port
        self.user = user
        self.service = service
        self.call_id = secrets.token_hex(8) + "@127.0.0.1"
        self.tag = secrets.token_hex(4)
        self.branch = "z9hG4bK" + secrets.token_hex(6)
        self.transport: asyncio.DatagramTransport | None = None
        self.proto = _Proto()
        self.port = 0

    async def open(self) -> "RawCaller":
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self.proto, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", self.box_port))

    def _headers(self, method: str, cseq: int, branch: str, extra: str = "") -> str:
        return (
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
            f"From: \"Test Caller\" <sip:{self.user}@127.0.0.1:{self.port}>;tag={self.tag}\r\n"
            f"To: <sip:{self.service}@127.0.0.1:{self.box_port}>{extra}\r\n"
            f"Call-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n"
        )

    def invite_bytes(self, rtp_port: int = 40000) -> bytes:
        sdp = SDP_PCMU.format(port=rtp_port)
        return (
            f"INVITE sip:{self.service}@127.0.0.1:{self.box_port} SIP/2.0\r\n"
            + self._headers("INVITE", 1, self.branch)
            + f"Contact: <sip:{self.user}@127.0.0.1:{self.port}>\r\nContent-Type: application/sdp\r\n"
            + f"Content-Length: {len(sdp)}\r\n\r\n{sdp}"
        ).encode()

    def cancel_bytes(self) -> bytes:
        return (
            f"CANCEL sip:{self.service}@127.0.0.1:{self.box_port} SIP/2.0\r\n"
            + self._headers("CANCEL", 1, self.branch)
            + "Content-Length: 0\r\n\r\n"
        ).encode()

    def ack_bytes(self, to_tag: str) -> bytes:
        return (
            f"ACK sip:{self.service}@127.0.0.1:{self.box_port} SIP/2.0\r\n"
            + self._headers("ACK", 1, self.branch, f";tag={to_tag}")
            + "Content-Length: 0\r\n\r\n"
        ).encode()

    async def expect(self, status: int, method: str | None, timeout: float = 5.0) -> str:
        """Wait for a response with this status and CSeq method (None: any, or no CSeq)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = (await self.proto.queue.get()).decode(errors="replace")
                m = re.match(r"SIP/2\.0 (\d{3})", msg)
                cseq = re.search(r"(?im)^CSeq:\s*\S+\s+(\w+)", msg)
                if m and int(m.group(1)) == status and (method is None or (cseq and cseq.group(1) == method)):
                    return msg

    async def expect_request(self, method: str, timeout: float = 10.0) -> str:
        """Wait for a request of this method from the box; answers it 200 OK."""
        async with asyncio.timeout(timeout):
            while True:
                msg = (await self.proto.queue.get()).decode(errors="replace")
                if msg.startswith(method + " "):
                    head = msg.split("\r\n\r\n", 1)[0].split("\r\n")
                    keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq", "v", "f", "t", "i")]
                    self.send(("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n").encode())
                    return msg


def to_tag(msg: str) -> str:
    m = re.search(r"(?im)^(?:To|t):.*;tag=([^;\s]+)", msg)
    assert m, msg
    return m.group(1)
