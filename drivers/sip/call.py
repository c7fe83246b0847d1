"""One inbound SIP call: the ``appliance.lines.InboundCall`` the SIP line hands over.

The call is the UAS side of one dialog. Its state machine is explicit; the line
feeds it CANCEL/ACK/BYE/re-INVITE and it answers through its INVITE server
transaction, a 2xx retransmitter and BYE client transactions.
"""
from __future__ import annotations

import asyncio
import logging
import random
import uuid
from enum import StrEnum
from typing import TYPE_CHECKING, Callable

from appliance.lines import CallerId, CallGone, HangupCause, LineKind
from drivers.sip.errors import SdpError
from drivers.sip.headers import Headers
from drivers.sip.message import SipRequest, serialize_request
from drivers.sip.sdp import Negotiated, SessionDescription, build_answer, negotiate, parse_sdp
from drivers.sip.uri import is_digits, parse_name_addr
from drivers.sip.useragent import ServerTransaction, UserAgent, new_branch, new_tag
from media.rtp import RtpSession

if TYPE_CHECKING:
    from drivers.sip.transport import Connection

log = logging.getLogger(__name__)


class CallState(StrEnum):
    RINGING = "ringing"  # INVITE received, 100 sent
    EARLY = "early"  # 183 with SDP sent, early media flowing
    ANSWERED = "answered"  # 200 sent, waiting for the ACK
    CONFIRMED = "confirmed"  # ACK received
    ENDED = "ended"


_ALLOWED: dict[CallState, frozenset[CallState]] = {
    CallState.RINGING: frozenset({CallState.EARLY, CallState.ANSWERED, CallState.ENDED}),
    CallState.EARLY: frozenset({CallState.ANSWERED, CallState.ENDED}),
    CallState.ANSWERED: frozenset({CallState.CONFIRMED, CallState.ENDED}),
    CallState.CONFIRMED: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}

# Final response we send when we end a call before answering it.
REJECT_STATUS = {
    HangupCause.NO_AGENT: 480,
    HangupCause.SHUTDOWN: 503,
    HangupCause.REJECTED: 603,
    HangupCause.TIMEOUT: 480,
    HangupCause.ERROR: 500,
}
DEFAULT_REJECT_STATUS = 480


def caller_id_of(request: SipRequest) -> CallerId:
    """From the From identity (the URI), never from display-name text."""
    uri = request.from_addr.uri
    name = request.from_addr.display_name
    privacy = {p.strip() for p in (request.headers.get("Privacy") or "").lower().split(";")}
    user = uri.user
    if user is None or user.lower() == "anonymous" or uri.host == "anonymous.invalid" or privacy & {"id", "user"}:
        return CallerId(None, None, "withheld")
    return CallerId(user.split(";")[0], name)


class SipCall:
    kind = LineKind.SIP

    def __init__(
        self,
        *,
        ua: UserAgent,
        txn: ServerTransaction,
        offer: SessionDescription,
        negotiated: Negotiated,
        rtp: RtpSession,
        local_ip: str,
        contact: str,
        line_id: str,
        on_end: Callable[["SipCall"], None],
        progress_status: int = 180,
    ) -> None:
        invite = txn.request
        self.call_id = uuid.uuid4().hex
        self.line_id = line_id
        self.caller = caller_id_of(invite)
        self.called = invite.uri.user or invite.to_addr.uri.user
        self.audio = rtp
        self.state = CallState.RINGING
        self.sip_call_id = invite.call_id
        self.local_tag = new_tag()
        self.remote_tag = invite.from_addr.tag or ""
        self._ua = ua
        self._txn = txn
        self._invite = invite
        self._offer = offer
        self._neg = negotiated
        self._rtp = rtp
        self._local_ip = local_ip
        self._contact = contact
        self._on_end = on_end
        self._progress_status = progress_status
        self._sdp_version = 1
        self._session_id = random.getrandbits(31)
        self._answer_sdp = b""
        self._retransmitter = None
        self._bye_pending = False
        self._local_cseq = random.randint(1, 10000)
        self._dtmf_callbacks: list[Callable[[str], None]] = []
        self._ended: asyncio.Future[HangupCause] = asyncio.get_running_loop().create_future()
        txn.owner = self
        rtp.on_dtmf(self._deliver_dtmf)

    # ---- helpers --------------------------------------------------------------
    @property
    def dialog_key(self) -> tuple[str, str, str]:
        return (self.sip_call_id, self.local_tag, self.remote_tag)

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    def _go(self, new: CallState, why: str) -> None:
        if new not in _ALLOWED[self.state]:
            raise RuntimeError(f"call {self.call_id}: {self.state} -> {new} not allowed")
        log.debug("SIP call %s: %s -> %s (%s)", self.call_id, self.state, new, why)
        self.state = new

    def _end(self, cause: HangupCause) -> None:
        if self.state is CallState.ENDED:
            return
        self._go(CallState.ENDED, cause.value)
        self._rtp.close()
        if not self._ended.done():
            self._ended.set_result(cause)
        s = self._rtp.statistics()
        log.info("SIP call %s from %s ended: %s (rtp in=%d out=%d bad-src=%d bad-pt=%d malformed=%d dtmf=%d)",
                 self.call_id, self.caller.number, cause.value, s.received, s.sent,
                 s.dropped_source, s.dropped_pt, s.malformed, s.dtmf)
        if not self._bye_pending:  # else the dialog stays reachable until the ACK lets us send BYE
            self._on_end(self)

    def _apply_media(self) -> None:
        neg = self._neg
        self._rtp.configure(neg.remote_host, neg.remote_port, neg.codec, neg.payload_type,
                            neg.dtmf_payload_type, send=neg.direction.value in ("sendrecv", "sendonly"))
        self._answer_sdp = build_answer(self._offer, neg, self._local_ip, self._rtp.local_port,
                                        self._session_id, self._sdp_version)

    def media_ready(self) -> None:
        """Called once the RTP socket is bound: build the answer, start receiving."""
        self._apply_media()

    def _sdp_extra(self) -> tuple[tuple[str, str], ...]:
        return (("Contact", self._contact), ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS"),
                ("Content-Type", "application/sdp"))

    def _deliver_dtmf(self, digit: str) -> None:
        for callback in self._dtmf_callbacks:
            try:
                callback(digit)
            except Exception:
                log.exception("SIP call %s: DTMF callback failed", self.call_id)

    # ---- InboundCall --------------------------------------------------------------
    async def progress(self) -> None:
        if self.state is CallState.ENDED:
            raise CallGone(self.call_id)
        if self.state is CallState.RINGING:
            # Default 180 Ringing with SDP carries our ringback as early media. It is accepted by
            # every UA (SIPp's built-in uac scenarios abort on an unexpected 183), and a phone that
            # ignores early media in a 180 simply plays its own ringback. 183 is configurable.
            status = self._progress_status
            self._txn.respond(status, to_tag=self.local_tag, extra=self._sdp_extra(), body=self._answer_sdp)
            self._go(CallState.EARLY, f"{status} with early media sent")

    async def answer(self) -> None:
        if self.state is CallState.ENDED:
            raise CallGone(self.call_id)
        if self.state in (CallState.ANSWERED, CallState.CONFIRMED):
            return
        data = self._txn.respond(200, to_tag=self.local_tag, extra=self._sdp_extra(), body=self._answer_sdp)
        if data is None:
            raise CallGone(self.call_id)
        self._go(CallState.ANSWERED, "200 sent")
        self._retransmitter = self._ua.start_2xx(data, self._txn.conn, self._ack_timeout)

    async def hangup(self, cause: HangupCause) -> None:
        if self.state is CallState.ENDED:
            return
        if self.state in (CallState.RINGING, CallState.EARLY):
            status = REJECT_STATUS.get(cause, DEFAULT_REJECT_STATUS)
            self._txn.respond(status, to_tag=self.local_tag)
        elif self.state is CallState.ANSWERED and cause is not HangupCause.SHUTDOWN:
            self._bye_pending = True  # §15: no BYE before the ACK (or its timeout)
        else:  # confirmed, or shutting down (the box will not wait 32 s for an ACK)
            if self._retransmitter is not None:
                self._ua.ack_2xx(self._retransmitter)
            self._send_bye()
        self._end(cause)

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self._ended)

    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        self._dtmf_callbacks.append(callback)

    async def send_dtmf(self, digit: str, duration_ms: int = 100) -> bool:
        """Send an RFC 4733 digit to the caller (False when not negotiated / call down)."""
        if self.state is CallState.ENDED:
            return False
        return await self._rtp.send_dtmf(digit, duration_ms)

    # ---- events from the line ------------------------------------------------------
    def on_cancel(self) -> None:
        if self.state in (CallState.RINGING, CallState.EARLY):
            self._txn.respond(487, to_tag=self.local_tag)
            self._end(HangupCause.CANCELLED)
        # after the 200 a CANCEL has no effect (§9.2)

    def on_ack(self) -> None:
        if self._retransmitter is not None:
            self._ua.ack_2xx(self._retransmitter)
        if self.state is CallState.ANSWERED:
            self._go(CallState.CONFIRMED, "ACK")
        if self._bye_pending:
            self._bye_pending = False
            self._send_bye()
            self._on_end(self)

    def on_bye(self, txn: ServerTransaction) -> None:
        txn.respond(200)
        if self._retransmitter is not None:
            self._ua.ack_2xx(self._retransmitter)  # stop re-sending the 2xx
        if self._bye_pending:  # we had hung up, waiting for the ACK: the caller was faster
            self._bye_pending = False
            self._on_end(self)
        self._end(HangupCause.CALLER_HUNG_UP)

    def on_reinvite(self, txn: ServerTransaction) -> None:
        """Re-INVITE (hold/resume, new address): answer with a fresh SDP."""
        if self.state is not CallState.CONFIRMED:
            txn.respond(491 if self.state is CallState.ANSWERED else 481)
            return
        try:
            offer = parse_sdp(txn.request.body) if txn.request.body else self._offer
            neg = negotiate(offer)
        except SdpError as exc:
            txn.respond(exc.status, reason=None)
            return
        self._offer, self._neg = offer, neg
        self._sdp_version += 1
        self._apply_media()
        data = txn.respond(200, extra=self._sdp_extra(), body=self._answer_sdp)
        if self._retransmitter is not None:
            self._ua.ack_2xx(self._retransmitter)
        if data is not None:
            self._retransmitter = self._ua.start_2xx(data, txn.conn, lambda: None)
        log.info("SIP call %s: re-INVITE, we are now %s", self.call_id, neg.direction.value)

    def _ack_timeout(self) -> None:
        log.warning("SIP call %s: no ACK for our 200 within 32 s; sending BYE", self.call_id)
        self._send_bye()
        if self._bye_pending:
            self._bye_pending = False
            self._on_end(self)
        self._end(HangupCause.TIMEOUT)

    def _send_bye(self) -> None:
        invite = self._invite
        conn: Connection = self._txn.conn
        routes = invite.headers.get_all("Record-Route")
        contact = invite.headers.get("Contact")
        target = str(invite.from_addr.uri)
        try:
            if contact:
                target_uri = parse_name_addr(contact).uri
                target = str(target_uri)
                next_hop = parse_name_addr(routes[0]).uri if routes else target_uri
                if next_hop.port and is_digits(next_hop.host.replace(".", "")):
                    conn = conn.redirect((next_hop.host, next_hop.port))
        except ValueError:
            pass
        self._local_cseq += 1
        branch = new_branch()
        transport = "TCP" if conn.reliable else "UDP"
        items = [
            ("Via", f"SIP/2.0/{transport} {self._contact_hostport()};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"{invite.headers.get('To')};tag={self.local_tag}"),
            ("To", invite.headers.get("From") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{self._local_cseq} BYE"),
        ]
        items += [("Route", r) for r in routes]
        data = serialize_request("BYE", target, Headers(items))
        self._ua.send_request(data, branch, "BYE", conn, self._bye_result)

    def _contact_hostport(self) -> str:
        return self._contact.strip("<>").split("@", 1)[-1].split(";")[0]

    def _bye_result(self, status: int) -> None:
        if status >= 300:
            log.info("SIP call %s: our BYE got %d", self.call_id, status)
