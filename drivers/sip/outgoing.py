"""One outgoing SIP call: the ``appliance.lines.OutboundCall`` of the SIP line (we are the UAC).

``start()`` binds RTP and sends the INVITE with our offer (PCMU, PCMA, telephone-event).
Responses drive an explicit state machine: a provisional moves CALLING to PROCEEDING, an
18x with SDP to EARLY (early media flows), a 2xx to CONFIRMED (every 2xx is ACKed, its
Contact becomes the remote target, its Record-Route reversed the route set). A non-2xx
final ends the call with a ``DialFailed``; a 401/407 is answered once with the digest
credentials given, a 422 once with its Min-SE. ``hangup()`` while ringing sends CANCEL (only
once a provisional came, §9.1) and BYE once answered. ``hold()``/``resume()`` and session
refreshes (RFC 4028, when the 2xx set a timer) go through ``ReOffers`` like an inbound call's;
the far end's BYE, re-INVITE/UPDATE (hold) and REFER are served through the same dialog code.
"""
from __future__ import annotations

import asyncio
import logging
import random
import uuid
from enum import StrEnum
from typing import Callable

from appliance.lines import DialFailed, DialFailure, HangupCause, LineKind
from drivers.sip.body import sdp_in
from drivers.sip.dialog import DialogRequests, answer_reoffer, read_offer
from drivers.sip.errors import SdpError, SipSyntaxError
from drivers.sip.inband import InbandDtmfLeg
from drivers.sip.message import SipRequest, SipResponse
from drivers.sip.reoffer import SUPPORTED, ReOffers
from drivers.sip.sdp import Direction, Negotiated, build_answer, build_offer, parse_answer
from drivers.sip.session_timer import session_timer_granted
from drivers.sip.transfer import ReferCallback, ReferServer
from drivers.sip.uac import FAILURE_CAUSE, Destination, InviteRequests, Sent, dial_failure
from drivers.sip.useragent import ALLOW, ServerTransaction, UserAgent
from media.rtp import RtpSession

log = logging.getLogger(__name__)


class OutgoingState(StrEnum):
    CALLING = "calling"  # INVITE sent, nothing heard back yet
    PROCEEDING = "proceeding"  # a provisional (100/180/183) arrived
    EARLY = "early"  # an 18x carried the answer SDP: early media flows
    CONFIRMED = "confirmed"  # 2xx received and ACKed
    ENDED = "ended"


_ALLOWED: dict[OutgoingState, frozenset[OutgoingState]] = {
    OutgoingState.CALLING: frozenset({OutgoingState.PROCEEDING, OutgoingState.EARLY, OutgoingState.CONFIRMED,
                                      OutgoingState.ENDED}),
    OutgoingState.PROCEEDING: frozenset({OutgoingState.EARLY, OutgoingState.CONFIRMED, OutgoingState.ENDED}),
    OutgoingState.EARLY: frozenset({OutgoingState.CONFIRMED, OutgoingState.ENDED}),
    OutgoingState.CONFIRMED: frozenset({OutgoingState.ENDED}),
    OutgoingState.ENDED: frozenset(),
}


class OutgoingSipCall:
    kind = LineKind.SIP

    def __init__(self, *, ua: UserAgent, destination: Destination, rtp: RtpSession, line_id: str, called: str,
                 on_dialog: Callable[["OutgoingSipCall"], None],
                 on_end: Callable[["OutgoingSipCall"], None]) -> None:
        self.call_id = uuid.uuid4().hex
        self.line_id = line_id
        self.called = called
        self.audio = InbandDtmfLeg(rtp, self.call_id)
        self.state = OutgoingState.CALLING
        self._ua = ua
        self._dest = destination
        self._rtp = rtp
        conn = destination.conn
        hostport = destination.contact.strip("<>").split("@", 1)[-1].split(";")[0].rstrip(">")
        self._requests = InviteRequests(request_uri=destination.request_uri, from_value=destination.from_value,
                                        to_value=destination.to_value, contact=destination.contact,
                                        via_hostport=hostport, transport=getattr(conn, "transport", "UDP"),
                                        body=b"", extra=destination.extra, user_agent=ua.server_name)
        self.sip_call_id = self._requests.call_id
        self.local_tag = self._requests.local_tag
        self.remote_tag = ""
        self._on_dialog = on_dialog
        self._on_end = on_end
        self._session_id = random.getrandbits(31)
        self._sdp_version = 1
        self._neg: Negotiated | None = None
        self._local_sdp = b""
        self._dialog: DialogRequests | None = None
        self._ack: bytes | None = None
        self._provisional = False  # a 1xx came: CANCEL is allowed (§9.1)
        self._cancel_pending = False  # hung up before any 1xx: CANCEL when one comes
        self._cancelled = False
        self._retransmitter = None  # our 2xx to a re-INVITE from the far end
        self._offer_in_200 = False  # that 2xx carried our offer: the ACK brings the answer
        self.held_by_far_end = False  # their re-INVITE put us on hold (a desk phone's Hold key)
        self.on_far_hold: Callable[[bool], None] | None = None  # told when that changes
        self._failure: DialFailed | None = None
        self._settled = asyncio.Event()  # answered or failed
        self._state_changed = asyncio.Event()  # set (and replaced) on every transition
        self._ended: asyncio.Future[HangupCause] = asyncio.get_running_loop().create_future()
        self._side_tasks: set[asyncio.Task] = set()
        self._refer = ReferServer(ua, self.call_id, self._spawn)
        self._offers = ReOffers(ua, self.call_id, contact=destination.contact, call_id_owner=True,
                                ready=lambda: self.state is OutgoingState.CONFIRMED, dialog=lambda: self._dialog,
                                body=self._next_offer, answered=self._apply,
                                hangup=self.hangup, spawn=self._spawn)

    # ---- helpers ------------------------------------------------------------------------
    @property
    def dialog_key(self) -> tuple[str, str, str]:
        return (self.sip_call_id, self.local_tag, self.remote_tag)

    @property
    def ended(self) -> bool:
        return self.state is OutgoingState.ENDED

    @property
    def dialog(self) -> DialogRequests | None:
        return self._dialog

    def _go(self, new: OutgoingState, why: str) -> None:
        if new not in _ALLOWED[self.state]:
            raise RuntimeError(f"outgoing call {self.call_id}: {self.state} -> {new} not allowed")
        log.debug("SIP outgoing %s: %s -> %s (%s)", self.call_id, self.state, new, why)
        self.state = new
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    async def wait_state(self, state: OutgoingState) -> None:
        """Return once the call is in ``state`` (e.g. EARLY: the far end rings with early media).
        ``DialFailed``/return on ENDED would be ambiguous, so this simply never returns if the state
        is skipped: callers bound it with their own timeout."""
        while self.state is not state:
            await self._state_changed.wait()

    def _end(self, cause: HangupCause) -> None:
        if self.state is OutgoingState.ENDED:
            return
        self._go(OutgoingState.ENDED, cause.value)
        if self._failure is None and not self._settled.is_set():
            self._failure = DialFailed(DialFailure.ERROR, "call ended before the answer")
        self._settled.set()
        self._offers.close()
        self._rtp.close()
        if not self._ended.done():
            self._ended.set_result(cause)
        s = self._rtp.statistics()
        log.info("SIP outgoing %s to %s ended: %s (rtp in=%d out=%d bad-src=%d bad-pt=%d dtmf=%d)",
                 self.call_id, self.called, cause.value, s.received, s.sent, s.dropped_source, s.dropped_pt,
                 s.dtmf)
        self._on_end(self)

    def _fail(self, failure: DialFailure, detail: str, cause: HangupCause | None = None, *,
              no_media: bool = False) -> None:
        if self.state is OutgoingState.ENDED:
            return
        self._failure = DialFailed(failure, detail, no_media=no_media)
        log.info("SIP outgoing %s to %s failed: %s (%s)", self.call_id, self.called, failure.value, detail)
        self._end(cause or FAILURE_CAUSE[failure])

    def _apply(self, neg: Negotiated | None) -> None:
        if neg is None:  # a 2xx to our re-INVITE without a usable answer: media unchanged
            return
        self._neg = neg
        self._rtp.configure(neg.remote_host, neg.remote_port, neg.codec, neg.payload_type, neg.dtmf_payload_type,
                            send=neg.direction in (Direction.SENDRECV, Direction.SENDONLY))

    def _next_offer(self, direction: Direction = Direction.SENDRECV) -> bytes:
        self._sdp_version += 1
        return build_offer(self._dest.local_ip, self._rtp.local_port, self._session_id, self._sdp_version,
                           direction)

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}-{self.call_id}")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # ---- starting ------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind RTP and send the INVITE. ``DialFailed(ERROR)`` when no RTP port can be had."""
        try:
            await self.audio.start()
        except OSError as exc:
            self._fail(DialFailure.ERROR, f"cannot open RTP: {exc}")
            raise DialFailed(DialFailure.ERROR, f"cannot open RTP: {exc}") from None
        self._local_sdp = build_offer(self._dest.local_ip, self._rtp.local_port, self._session_id)
        self._requests.body = self._local_sdp
        log.info("SIP outgoing %s: INVITE %s via %r", self.call_id, self._dest.request_uri, self._dest.conn)
        self._send(self._requests.invite())

    def _send(self, sent: Sent) -> None:
        self._ua.send_invite(sent.request, sent.data, self._dest.conn,
                             lambda response: self._on_response(sent, response))

    # ---- responses to our INVITE -----------------------------------------------------------
    def _on_response(self, sent: Sent, response: SipResponse | None) -> None:
        current = sent is self._requests.current
        if response is None:  # Timer B
            if current:
                self._fail(DialFailure.NO_ANSWER if self._provisional else DialFailure.UNREACHABLE,
                           "no final response within 32 s (Timer B)")
            return
        status = response.status
        if 200 <= status < 300:
            self._on_2xx(sent, response)
        elif not current:
            return  # a late answer to the INVITE we re-sent with credentials
        elif status < 200:
            self._on_provisional(response)
        elif status in (401, 407, 422) and self._retry(response):
            return
        else:
            self._fail(dial_failure(status, we_cancelled=self._cancelled), f"{status} {response.reason}",
                       HangupCause.CANCELLED if self._cancelled else None)

    def _on_provisional(self, response: SipResponse) -> None:
        self._provisional = True
        if self._cancel_pending:
            self._cancel_pending = False
            self._send_cancel()
        if self.state is OutgoingState.ENDED:
            return
        if self.state is OutgoingState.CALLING:
            self._go(OutgoingState.PROCEEDING, f"{response.status} {response.reason}")
        if response.status >= 180 and self.state is OutgoingState.PROCEEDING and (sdp := sdp_in(response)):
            try:
                _, neg = parse_answer(sdp)
            except SdpError as exc:
                log.info("SIP outgoing %s: early SDP ignored: %s", self.call_id, exc.detail)
                return
            self._apply(neg)
            self._go(OutgoingState.EARLY, f"{response.status} with SDP: early media {neg.codec}")

    def _retry(self, response: SipResponse) -> bool:
        """401/407 (digest) or 422 (RFC 4028 Min-SE): send the INVITE once more if we can."""
        if self._cancelled or self.state is OutgoingState.ENDED:
            return False
        sent = self._requests.retry(response, self._dest.credentials)
        if sent is not None:
            how = "with credentials" if response.status != 422 else "with its Min-SE as Session-Expires"
            log.info("SIP outgoing %s: %d, sending the INVITE again %s", self.call_id, response.status, how)
            self._send(sent)
        return sent is not None

    def _on_2xx(self, sent: Sent, response: SipResponse) -> None:
        if self._dialog is not None:
            if response.to_addr.tag == self.remote_tag and self._ack is not None:
                self._dialog.conn.send(self._ack)  # a retransmitted 2xx: the same ACK again (§13.2.2.4)
            else:  # another fork answered too: take it down (ACK, then BYE)
                self._ack_and_bye(sent, response, "a second fork answered")
            return
        try:
            dialog = DialogRequests.uac(sent.request, response, self._dest.conn, self._dest.contact,
                                        follow_next_hop=self._dest.follow_next_hop)
        except SipSyntaxError as exc:
            log.warning("SIP outgoing %s: 2xx has no usable Contact (%s); using the Request-URI", self.call_id, exc)
            dialog = DialogRequests(call_id=self.sip_call_id, local=self._requests.from_value,
                                    remote=response.headers.get("To") or "", target=self._dest.request_uri,
                                    routes=[], conn=self._dest.conn, contact=self._dest.contact,
                                    cseq=sent.request.cseq.number)
        self._dialog = dialog
        self.remote_tag = response.to_addr.tag or ""
        ack = dialog.build("ACK", cseq=sent.request.cseq.number)
        self._ack = ack.data
        ack.conn.send(ack.data)
        if self.state is OutgoingState.ENDED:  # we had hung up (CANCEL crossed the 2xx): BYE now
            dialog.send(self._ua, "BYE")
            return
        if sdp := sdp_in(response):
            try:
                _, neg = parse_answer(sdp)
            except SdpError as exc:
                dialog.send(self._ua, "BYE")
                self._fail(DialFailure.ERROR, f"unusable SDP answer: {exc.detail}", no_media=True)
                return
            self._apply(neg)
        if self._neg is None:
            dialog.send(self._ua, "BYE")
            self._fail(DialFailure.ERROR, "answered without SDP", no_media=True)
            return
        self._go(OutgoingState.CONFIRMED, f"{response.status} {response.reason}")
        self._offers.timer = session_timer_granted(response)
        self._offers.arm()
        log.info("SIP outgoing %s to %s answered, %s", self.call_id, self.called, self._neg.codec)
        self._on_dialog(self)
        self._settled.set()

    def _ack_and_bye(self, sent: Sent, response: SipResponse, why: str) -> None:
        try:
            other = DialogRequests.uac(sent.request, response, self._dest.conn, self._dest.contact,
                                       follow_next_hop=self._dest.follow_next_hop)
        except SipSyntaxError:
            return
        ack = other.build("ACK", cseq=sent.request.cseq.number)
        ack.conn.send(ack.data)
        other.send(self._ua, "BYE")
        log.info("SIP outgoing %s: %s; ended that dialog", self.call_id, why)

    def _send_cancel(self) -> None:
        cancel = self._requests.cancel()
        self._ua.send_request(cancel.data, cancel.request.branch or "", "CANCEL", self._dest.conn)

    # ---- OutboundCall ------------------------------------------------------------------------
    async def wait_answered(self) -> None:
        await self._settled.wait()
        if self._failure is not None:
            raise DialFailed(self._failure.reason, self._failure.detail, no_media=self._failure.no_media)

    async def hangup(self, cause: HangupCause = HangupCause.AGENT_HUNG_UP) -> None:
        if self.state is OutgoingState.ENDED:
            return
        if self.state is OutgoingState.CONFIRMED:
            assert self._dialog is not None
            self._dialog.send(self._ua, "BYE")
            self._end(cause)
            return
        self._cancelled = True
        if self._provisional:
            self._send_cancel()
        else:
            self._cancel_pending = True  # §9.1: no CANCEL before a provisional response
        self._fail(DialFailure.CANCELLED, f"we hung up while ringing ({cause.value})", HangupCause.CANCELLED)

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self._ended)

    async def hold(self) -> bool:
        """Put the far end on hold (our SDP sendonly: we may keep sending music). False if refused."""
        return await self._offers.offer(Direction.SENDONLY, "hold")

    async def resume(self) -> bool:
        return await self._offers.offer(Direction.SENDRECV, "resume")

    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        self.audio.on_dtmf(callback)

    async def send_dtmf(self, digit: str, duration_ms: int = 100) -> bool:
        """RFC 4733 when the far end accepted telephone-event, else in-band tones; False when we
        cannot send now (not answered, held by the far end, a digit still playing)."""
        if self.state is not OutgoingState.CONFIRMED or self._neg is None:
            return False
        return await self.audio.send_digit(digit, duration_ms, self._neg)

    def on_refer(self, callback: ReferCallback) -> None:
        """Accept transfers (REFER) from the far end: ``callback`` decides and reports success."""
        self._refer.callback = callback

    # ---- requests from the far end, routed by the line ---------------------------------------
    def on_bye(self, txn: ServerTransaction) -> None:
        txn.respond(200)
        if self._retransmitter is not None:
            self._ua.ack_2xx(self._retransmitter)
        self._end(HangupCause.FAR_END_HUNG_UP)

    def on_ack(self, request: SipRequest) -> None:
        if self._retransmitter is not None:
            self._ua.ack_2xx(self._retransmitter)
        if self._offer_in_200 and self.state is OutgoingState.CONFIRMED and (sdp := sdp_in(request)):
            self._offer_in_200 = False
            try:
                _, neg = parse_answer(sdp)
            except SdpError as exc:  # §14.1 would have us BYE; keeping the old media is kinder
                log.warning("SIP outgoing %s: unusable answer in ACK (%s); media unchanged", self.call_id,
                            exc.detail)
                return
            self._apply(neg)

    def on_reinvite(self, txn: ServerTransaction) -> None:
        """Re-INVITE or UPDATE from the far end (hold, resume, new address)."""
        if self.state is not OutgoingState.CONFIRMED:
            txn.respond(481)
            return
        if self._offers.refuse_crossing(txn, self._offer_in_200):
            return
        reoffer = read_offer(txn)
        if reoffer is None:
            return
        if reoffer.offer is not None and reoffer.negotiated is not None:
            self._apply(reoffer.negotiated)
            if reoffer.negotiated.on_hold != self.held_by_far_end:
                self.held_by_far_end = reoffer.negotiated.on_hold
                if self.on_far_hold is not None:
                    self.on_far_hold(self.held_by_far_end)
            self._sdp_version += 1
            body = build_answer(reoffer.offer, reoffer.negotiated, self._dest.local_ip, self._rtp.local_port,
                                self._session_id, self._sdp_version)
        else:  # no offer in it (§14.2): ours goes in the 200, the answer comes in the ACK
            body = self._next_offer()
        extra = (("Contact", self._dest.contact), ("Allow", ALLOW), ("Supported", SUPPORTED),
                 ("Content-Type", "application/sdp"))
        self._offers.timer = reoffer.timer or self._offers.timer
        if self._offers.timer is not None:
            extra += self._offers.timer.response_headers()
        self._offer_in_200 = reoffer.offer is None and txn.request.method == "INVITE"
        self._retransmitter = answer_reoffer(self._ua, txn, extra, body, self._retransmitter)
        self._offers.arm()  # their refresh restarts the session interval
        log.info("SIP outgoing %s: %s from the far end, we are now %s", self.call_id, txn.request.method,
                 self._neg.direction.value if self._neg else "?")

    def refer_received(self, txn: ServerTransaction) -> None:
        if self.state is not OutgoingState.CONFIRMED or self._dialog is None:
            txn.respond(481)
            return
        self._refer.serve(txn, self._dialog, self._dest.contact)
