"""A desk phone for outgoing-call tests: registers with digest over a raw UDP/TCP socket, then
plays the called party by hand (responses and in-dialog requests built from what it received)."""
from __future__ import annotations

import asyncio
import secrets

from drivers.sip.digest import authorization, pick_challenge
from drivers.sip.message import SipRequest, SipResponse, StreamFramer, parse_message, response_bytes
from tests.drivers.sip.peer import RECV_TIMEOUT_S, SipPeer, new_branch, offer_sdp

EXT = "201"
EXT_PASSWORD = "pw-201"


def register_bytes(line_port: int, local_port: int, transport: str, call_id: str, cseq: int,
                   auth: str | None = None, ext: str = EXT, contact_hostport: str | None = None) -> bytes:
    uri = f"sip:127.0.0.1:{line_port}"
    suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
    lines = [f"REGISTER {uri} SIP/2.0",
             f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch={new_branch()};rport",
             f"From: <sip:{ext}@127.0.0.1>;tag=reg{cseq}", f"To: <sip:{ext}@127.0.0.1>", f"Call-ID: {call_id}",
             f"CSeq: {cseq} REGISTER", f"Contact: <sip:{ext}@{contact_hostport or f'127.0.0.1:{local_port}'}{suffix}>", "Expires: 600",
             "Max-Forwards: 70"]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


async def register(send, recv, line_port: int, local_port: int, transport: str = "UDP",
                   contact_hostport: str | None = None) -> None:
    """REGISTER, answer the 401 with digest, expect 200. ``contact_hostport``: a Contact address
    other than the socket's (a phone behind NAT announcing its private address)."""
    call_id = secrets.token_hex(8)
    send(register_bytes(line_port, local_port, transport, call_id, 1, contact_hostport=contact_hostport))
    challenge_msg = await recv()
    assert isinstance(challenge_msg, SipResponse) and challenge_msg.status == 401
    challenge = pick_challenge(challenge_msg.headers.get_all("WWW-Authenticate"))
    assert challenge is not None
    auth = authorization(challenge, "REGISTER", f"sip:127.0.0.1:{line_port}", EXT, EXT_PASSWORD, 1)
    send(register_bytes(line_port, local_port, transport, call_id, 2, auth, contact_hostport=contact_hostport))
    ok = await recv()
    assert isinstance(ok, SipResponse) and ok.status == 200, ok


async def next_request(recv, method: str) -> SipRequest:
    while True:
        msg = await recv()
        if isinstance(msg, SipRequest) and msg.method == method:
            return msg


def answer_sdp(rtp_port: int, pts: str = "8 101", direction: str | None = None) -> bytes:
    return offer_sdp(rtp_port, pts=pts, direction=direction).encode()


def reply(invite: SipRequest, status: int, *, to_tag: str = "ph1", contact: str | None = None,
          body: bytes = b"", extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    items = extra
    if contact:
        items += (("Contact", contact),)
    if body:
        items += (("Content-Type", "application/sdp"),)
    return response_bytes(invite, status, to_tag=to_tag if status != 100 else None, extra=items, body=body)


def in_dialog(invite: SipRequest, method: str, cseq: int, local_port: int, *, to_tag: str = "ph1",
              body: bytes = b"", extra: tuple[str, ...] = (), transport: str = "UDP") -> bytes:
    """A request from the called phone inside the dialog our INVITE created."""
    lines = [f"{method} {invite.headers.get('Contact').strip('<>')} SIP/2.0",
             f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch={new_branch()};rport",
             f"From: {invite.headers.get('To')};tag={to_tag}", f"To: {invite.headers.get('From')}",
             f"Call-ID: {invite.call_id}", f"CSeq: {cseq} {method}", "Max-Forwards: 70",
             f"Contact: <sip:{EXT}@127.0.0.1:{local_port}>", *extra]
    if body:
        lines.append("Content-Type: application/sdp")
    return ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


class TcpPhone:
    """A phone on one TCP connection to the line."""

    def __init__(self) -> None:
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.framer = StreamFramer()
        self.pending: list[bytes] = []
        self.port = 0

    async def open(self, port: int) -> "TcpPhone":
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        self.port = self.writer.get_extra_info("sockname")[1]
        return self

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def recv(self, timeout: float = RECV_TIMEOUT_S) -> SipRequest | SipResponse:
        async with asyncio.timeout(timeout):
            while not self.pending:
                chunk = await self.reader.read(65536)
                assert chunk, "line closed the TCP connection"
                self.pending += self.framer.feed(chunk)
        return parse_message(self.pending.pop(0), stream=True)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except ConnectionError:
                pass


__all__ = ["SipPeer", "TcpPhone", "answer_sdp", "in_dialog", "next_request", "register", "reply", "EXT"]
