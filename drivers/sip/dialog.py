"""Requests we send inside an inbound dialog (BYE, re-INVITE, its ACK), RFC 3261 §12.2.1.1.

The remote target is the caller's Contact, the route set the INVITE's Record-Route; over
UDP the request goes to the first hop's address when it is numeric, else back to where
the INVITE came from. Our From is the INVITE's To with our tag, CSeq counts up from a
random start. ``reinvite`` runs one re-INVITE client transaction and ACKs its 2xx.
"""
from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from drivers.sip.errors import SipSyntaxError
from drivers.sip.headers import Headers
from drivers.sip.message import SipRequest, SipResponse, parse_message, serialize_request
from drivers.sip.transport import Connection
from drivers.sip.uri import is_digits, parse_name_addr
from drivers.sip.useragent import UserAgent, new_branch


@dataclass(frozen=True, slots=True)
class OutRequest:
    data: bytes
    request: SipRequest
    branch: str
    conn: Connection


class DialogRequests:
    def __init__(self, invite: SipRequest, conn: Connection, local_tag: str, contact: str) -> None:
        self._invite = invite
        self._local_tag = local_tag
        self._contact = contact
        self.cseq = random.randint(1, 10000)
        self._routes = invite.headers.get_all("Record-Route")
        self.target = str(invite.from_addr.uri)
        self.conn = conn
        contact_value = invite.headers.get("Contact")
        try:
            if contact_value:
                target_uri = parse_name_addr(contact_value).uri
                self.target = str(target_uri)
                next_hop = parse_name_addr(self._routes[0]).uri if self._routes else target_uri
                if next_hop.port and is_digits(next_hop.host.replace(".", "")):
                    self.conn = conn.redirect((next_hop.host, next_hop.port))
        except SipSyntaxError:
            pass  # an unusable Contact: answer back where the INVITE came from

    def _hostport(self) -> str:
        return self._contact.strip("<>").split("@", 1)[-1].split(";")[0]

    def build(self, method: str, *, extra: tuple[tuple[str, str], ...] = (), body: bytes = b"",
              cseq: int | None = None) -> OutRequest:
        """A new in-dialog request. ``cseq`` given (ACK): that number, no increment."""
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        branch = new_branch()
        transport = getattr(self.conn, "transport", "TCP" if self.conn.reliable else "UDP")
        invite = self._invite
        items = [
            ("Via", f"SIP/2.0/{transport} {self._hostport()};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{invite.headers.get('To')};tag={self._local_tag}"),
            ("To", invite.headers.get("From") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        items += [("Route", r) for r in self._routes]
        items += list(extra)
        data = serialize_request(method, self.target, Headers(items), body)
        request = parse_message(data)
        assert isinstance(request, SipRequest)
        return OutRequest(data, request, branch, self.conn)

    async def reinvite(self, ua: UserAgent, *, extra: tuple[tuple[str, str], ...], body: bytes,
                       wait_s: float) -> SipResponse | None:
        """Send a re-INVITE; return its final response (every 2xx is ACKed), None when unanswered."""
        out = self.build("INVITE", extra=extra, body=body)
        final: asyncio.Future[SipResponse | None] = asyncio.get_running_loop().create_future()

        def on_response(response: SipResponse | None) -> None:
            if response is not None and response.status < 200:
                return
            if response is not None and response.status < 300:  # §13.2.2.4: ACK each 2xx, retransmissions too
                out.conn.send(self.build("ACK", cseq=out.request.cseq.number).data)
            if not final.done():
                final.set_result(response)

        ua.send_invite(out.request, out.data, out.conn, on_response)
        try:
            async with asyncio.timeout(wait_s):
                return await final
        except TimeoutError:
            return None
