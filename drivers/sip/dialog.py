"""Requests we send inside a dialog, either side (RFC 3261 §12), and the far end's re-offers.

A dialog is built once, from the INVITE we received (UAS: ``DialogRequests.uas``) or from
the 2xx answering the INVITE we sent (UAC: ``DialogRequests.uac``). The remote target is the
peer's Contact; the route set is the Record-Route of the INVITE (UAS) or of the 2xx,
reversed (UAC, §12.1.2). Over UDP a request goes to the first hop's address when it is
numeric with a port, else back where the dialog's messages came from; always back there
when the INVITE we answer came from elsewhere than its top Via says (a phone behind NAT,
RFC 3581: its Contact and Via name a private address the box cannot reach). CSeq counts up from
a random start (UAS) or from the INVITE's (UAC). ``reinvite`` runs one re-INVITE client
transaction and ACKs its 2xx. ``read_offer`` reads the far end's offer in an INVITE, re-INVITE
or UPDATE, and ``answer_reoffer`` answers a re-INVITE or UPDATE, for either kind of call.
"""
from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from drivers.sip.body import UnsupportedBody, sdp_of_request
from drivers.sip.errors import SdpError, SipSyntaxError
from drivers.sip.headers import Headers
from drivers.sip.message import SipRequest, SipResponse, parse_message, serialize_request
from drivers.sip.sdes import is_secure
from drivers.sip.sdp import Negotiated, SessionDescription, negotiate, parse_sdp
from drivers.sip.session_timer import SessionIntervalTooSmall, SessionTimer, session_timer_for
from drivers.sip.transport import Connection
from drivers.sip.uri import is_digits, parse_name_addr
from drivers.sip.useragent import ServerTransaction, UserAgent, new_branch

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutRequest:
    data: bytes
    request: SipRequest
    branch: str
    conn: Connection


def _next_hop_conn(conn: Connection, target: str, routes: list[str]) -> Connection:
    """UDP: aim at the first route (or the target) when it is a numeric host with a port."""
    try:
        hop = parse_name_addr(routes[0]).uri if routes else parse_name_addr(f"<{target}>").uri
    except SipSyntaxError:
        return conn  # an unusable Contact/Route: answer back where the dialog came from
    if hop.port and is_digits(hop.host.replace(".", "")):
        return conn.redirect((hop.host, hop.port))
    return conn


def behind_nat(request: SipRequest, conn: Connection) -> bool:
    """The request came from another address than its top Via's sent-by (we would add received/rport)."""
    via = request.via
    port = via.port or (5061 if via.transport == "TLS" else 5060)
    return (via.host.strip("[]"), port) != (conn.peer[0], conn.peer[1])


class DialogRequests:
    """Builds our requests in one dialog: From/To/Call-ID/CSeq/Route and the remote target."""

    def __init__(self, *, call_id: str, local: str, remote: str, target: str, routes: list[str],
                 conn: Connection, contact: str, cseq: int, follow_next_hop: bool = True) -> None:
        """``follow_next_hop=False``: keep sending over ``conn`` (a phone behind NAT is reached at the
        address it registered from, not at the private address in its Contact)."""
        self.call_id = call_id
        self._local = local  # our From value, with our tag
        self._remote = remote  # their To value, with their tag
        self.target = target
        self.routes = list(routes)
        self.conn = _next_hop_conn(conn, target, self.routes) if follow_next_hop else conn
        self._contact = contact
        self.cseq = cseq
        self.remote_cseq: int | None = None  # the far end's last in-dialog CSeq (§12.2.2)

    @classmethod
    def uas(cls, invite: SipRequest, conn: Connection, local_tag: str, contact: str) -> "DialogRequests":
        """The dialog of an INVITE we received and answer with ``local_tag``."""
        target = str(invite.from_addr.uri)
        try:
            value = invite.headers.get("Contact")
            if value:
                target = str(parse_name_addr(value).uri)
        except SipSyntaxError:
            pass  # an unusable Contact: requests go back where the INVITE came from
        dialog = cls(call_id=invite.call_id, local=f"{invite.headers.get('To')};tag={local_tag}",
                   remote=invite.headers.get("From") or "", target=target,
                   routes=invite.headers.get_all("Record-Route"), conn=conn, contact=contact,
                   cseq=random.randint(1, 10000), follow_next_hop=not behind_nat(invite, conn))
        dialog.remote_cseq = invite.cseq.number
        return dialog

    @classmethod
    def uac(cls, invite: SipRequest, response: SipResponse, conn: Connection, contact: str, *,
            follow_next_hop: bool = True) -> "DialogRequests":
        """The dialog a 2xx to our ``invite`` creates (§12.1.2). ``SipSyntaxError``: no usable Contact."""
        value = response.headers.get("Contact")
        if not value:
            raise SipSyntaxError("2xx without Contact")
        target = str(parse_name_addr(value).uri)
        return cls(call_id=invite.call_id, local=invite.headers.get("From") or "",
                   remote=response.headers.get("To") or "", target=target,
                   routes=list(reversed(response.headers.get_all("Record-Route"))), conn=conn,
                   contact=contact, cseq=invite.cseq.number, follow_next_hop=follow_next_hop)

    def in_order(self, request: SipRequest) -> bool:
        """§12.2.2: a request with a lower CSeq than the far end's last is out of order (500);
        otherwise its CSeq becomes the last."""
        number = request.cseq.number
        if self.remote_cseq is not None and number < self.remote_cseq:
            return False
        self.remote_cseq = number
        return True

    def _hostport(self) -> str:
        return self._contact.strip("<>").split("@", 1)[-1].split(";")[0].rstrip(">")

    def build(self, method: str, *, extra: tuple[tuple[str, str], ...] = (), body: bytes = b"",
              cseq: int | None = None) -> OutRequest:
        """A new in-dialog request. ``cseq`` given (ACK): that number, no increment."""
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        branch = new_branch()
        transport = getattr(self.conn, "transport", "TCP" if self.conn.reliable else "UDP")
        items = [
            ("Via", f"SIP/2.0/{transport} {self._hostport()};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", self._local),
            ("To", self._remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        items += [("Route", r) for r in self.routes]
        items += list(extra)
        data = serialize_request(method, self.target, Headers(items), body)
        request = parse_message(data)
        assert isinstance(request, SipRequest)
        return OutRequest(data, request, branch, self.conn)

    def send(self, ua: UserAgent, method: str, *, extra: tuple[tuple[str, str], ...] = (), body: bytes = b"",
             on_final=None) -> OutRequest:
        """Build and send a non-INVITE request (BYE, NOTIFY) through a client transaction."""
        out = self.build(method, extra=extra, body=body)
        ua.send_request(out.data, out.branch, method, out.conn, on_final)
        return out

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


@dataclass(frozen=True, slots=True)
class IncomingOffer:
    """An INVITE/re-INVITE/UPDATE we can accept: its SDP offer (None: none in it) and session timer."""

    offer: SessionDescription | None
    negotiated: Negotiated | None
    timer: SessionTimer | None


def read_offer(txn: ServerTransaction, *, ip_version: int | None = None, to_tag: str | None = None) -> IncomingOffer | None:
    """Read the far end's offer in an INVITE (``to_tag``: ours for a new dialog), re-INVITE or
    UPDATE; when it cannot be accepted answer it (400, 415, 422, 488), log why and return None.
    ``ip_version``: our RTP socket's, when known (``sdp.negotiate``)."""
    request = txn.request
    try:
        timer = session_timer_for(request)
        sdp = sdp_of_request(request)  # SDP, or the SDP part of a SIP-I multipart body
        offer = parse_sdp(sdp) if sdp else None
        neg = negotiate(offer, is_secure(txn.conn), ip_version) if offer is not None else None
    except SessionIntervalTooSmall as exc:
        txn.respond(422, to_tag=to_tag, extra=(("Min-SE", str(exc.min_se)),))
        return None
    except SipSyntaxError as exc:
        txn.respond(400, reason=f"Bad Request ({str(exc)[:60]})", to_tag=to_tag)
        return None
    except SdpError as exc:
        log.warning("SIP: %s from %s refused with %d: %s", request.method, request.from_addr.uri, exc.status,
                    exc.detail)
        txn.respond(exc.status, to_tag=to_tag)
        return None
    except UnsupportedBody as exc:
        log.info("SIP: %s from %s refused with 415: %s", request.method, request.from_addr.uri, exc.detail)
        txn.respond(415, to_tag=to_tag, extra=exc.headers)
        return None
    return IncomingOffer(offer, neg, timer)


def answer_reoffer(ua: UserAgent, txn: ServerTransaction, extra: tuple[tuple[str, str], ...], body: bytes,
                   retransmitter):
    """Send the 200 to a re-INVITE/UPDATE. A re-INVITE's 2xx is re-sent until its ACK: the
    previous retransmitter (if any) is stopped and the new one returned (UPDATE: unchanged).
    An UPDATE without an offer (a session refresh) gets no SDP back (RFC 3311 §5.2)."""
    if txn.request.method != "INVITE":
        if not txn.request.body:
            extra, body = tuple(h for h in extra if h[0].lower() != "content-type"), b""
        txn.respond(200, extra=extra, body=body)
        return retransmitter
    data = txn.respond(200, extra=extra, body=body)
    if retransmitter is not None:
        ua.ack_2xx(retransmitter)
    if data is None:
        return None
    return ua.start_2xx(data, txn.conn, lambda: None)
