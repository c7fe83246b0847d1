"""One inbound SIP call: the ``appliance.lines.InboundCall`` the SIP line hands over.

The call is the UAS side of one dialog. Its state machine is explicit; the line
feeds it CANCEL/ACK/BYE/re-INVITE and it answers through its INVITE server
transaction, a 2xx retransmitter and BYE client transactions.

An INVITE without SDP (a "late offer", as some PBXs and trunks send) is accepted:
our 200 carries the offer, the caller's ACK the answer (RFC 3261 §13.2.1), and the
provisional responses carry no SDP, so there is no early media on such a call.
A caller that requires 100rel gets reliable provisionals (drivers.sip.prack).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import uuid
from typing import Callable

from appliance.lines import CallGone, HangupCause, LineKind
from drivers.sip.body import answer_in
from drivers.sip.call_state import ALLOWED, DEFAULT_REJECT_STATUS, REJECT_STATUS, CallState
from drivers.sip.dialog import DialogRequests, answer_reoffer, read_offer
from drivers.sip.errors import SdpError
from drivers.sip.identity import caller_id_of, replaces_of
from drivers.sip.inband import InbandDtmfLeg
from drivers.sip.message import SipRequest
from drivers.sip.prack import ReliableProvisional, requires_100rel
from drivers.sip.reoffer import SUPPORTED, ReOffers
from drivers.sip.sdes import local_key_for, srtp_keys
from drivers.sip.sdp import Direction, Negotiated, SessionDescription, build_answer, build_offer
from drivers.sip.session_timer import SessionTimer
from drivers.sip.transfer import ReferCallback, ReferServer
from drivers.sip.useragent import ALLOW, ServerTransaction, UserAgent, new_tag
from media.rtp import RtpSession

log = logging.getLogger(__name__)

ACK_WAIT_S = 32.0  # 64*T1: after that the 2xx retransmitter gives up and the call ends anyway


class SipCall:
    kind = LineKind.SIP

    def __init__(
        self,
        *,
        ua: UserAgent,
        txn: ServerTransaction,
        offer: SessionDescription | None,
        negotiated: Negotiated | None,
        rtp: RtpSession,
        local_ip: str,
        contact: str,
        line_id: str,
        on_end: Callable[["SipCall"], None],
        progress_status: int = 180,
        session_timer: SessionTimer | None = None,
    ) -> None:
        invite = txn.request
        self.call_id = uuid.uuid4().hex
        self.line_id = line_id
        self.caller = caller_id_of(invite)
        self.called = invite.uri.user or invite.to_addr.uri.user
        # where the INVITE came from (a desk phone's consult call is checked against its registration)
        self.source: tuple[str, int] = txn.conn.peer
        self.transport: str = getattr(txn.conn, "transport", "TCP" if txn.conn.reliable else "UDP").lower()
        self.audio = InbandDtmfLeg(rtp, self.call_id)  # what the bridge reads/writes; plays in-band DTMF when needed
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
        self._local_sdp = b""  # our answer, or (late offer) our offer until the ACK answers it
        self._offer_in_200 = False  # our 200 to an offerless re-INVITE offered: the ACK answers
        self._srtp_key: bytes | None = None  # our SRTP master key + salt (SDES over TLS)
        self._retransmitter = None
        self._bye_pending = False
        self._dialog = DialogRequests.uas(invite, txn.conn, self.local_tag, contact)
        self.replaces = replaces_of(invite)  # INVITE with Replaces (RFC 3891): the dialog it takes over
        self._side_tasks: set[asyncio.Task] = set()  # session refresh / expiry work
        self._confirmed = asyncio.Event()  # set by the ACK of our 200
        self._ended: asyncio.Future[HangupCause] = asyncio.get_running_loop().create_future()
        self._refer = ReferServer(ua, self.call_id, self._spawn)
        self._offers = ReOffers(ua, self.call_id, contact=contact, call_id_owner=False,
                                ready=lambda: self.state is CallState.CONFIRMED, dialog=lambda: self._dialog,
                                body=self._reoffer_body, answered=self._reoffer_answered, hangup=self.hangup,
                                spawn=self._spawn, timer=session_timer, secure=self.transport == "tls")
        # the caller requires 100rel: our 18x are resent until PRACKed (None: plain 18x)
        self._reliable = ReliableProvisional(txn, self.call_id, self._no_prack) if requires_100rel(txn) else None
        txn.owner = self

    # ---- helpers --------------------------------------------------------------
    @property
    def dialog(self) -> DialogRequests:
        return self._dialog

    @property
    def dialog_key(self) -> tuple[str, str, str]:
        return (self.sip_call_id, self.local_tag, self.remote_tag)

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    def _go(self, new: CallState, why: str) -> None:
        if new not in ALLOWED[self.state]:
            raise RuntimeError(f"call {self.call_id}: {self.state} -> {new} not allowed")
        log.debug("SIP call %s: %s -> %s (%s)", self.call_id, self.state, new, why)
        self.state = new

    def _end(self, cause: HangupCause) -> None:
        if self.state is CallState.ENDED:
            return
        self._go(CallState.ENDED, cause.value)
        self._confirmed.set()  # a hold() waiting for the ACK gives up now
        self._offers.close()
        if self._reliable is not None:
            self._reliable.close()
        self._rtp.close()
        if not self._ended.done():
            self._ended.set_result(cause)
        s = self._rtp.statistics()
        log.info("SIP call %s from %s ended: %s (rtp in=%d out=%d bad-src=%d bad-pt=%d malformed=%d dtmf=%d)",
                 self.call_id, self.caller.number, cause.value, s.received, s.sent,
                 s.dropped_source, s.dropped_pt, s.malformed, s.dtmf)
        if not self._bye_pending:  # else the dialog stays reachable until the ACK lets us send BYE
            self._on_end(self)

    @property
    def late_offer(self) -> bool:
        """True while the INVITE came without SDP and the ACK has not answered our offer yet."""
        return self._neg is None

    def _apply_media(self) -> None:
        neg, offer = self._neg, self._offer
        assert neg is not None and offer is not None
        self._srtp_key = local_key_for(neg.crypto, self._srtp_key)  # one key per call (SDES)
        self._rtp.configure(neg.remote_host, neg.remote_port, neg.codec, neg.payload_type,
                            neg.dtmf_payload_type, send=neg.direction.value in ("sendrecv", "sendonly"),
                            srtp=srtp_keys(neg.crypto, self._srtp_key))
        self._local_sdp = build_answer(offer, neg, self._local_ip, self._rtp.local_port,
                                       self._session_id, self._sdp_version, self._srtp_key)

    def media_ready(self) -> None:
        """Called once the RTP socket is bound: build the answer (or our late offer), start receiving."""
        if self.late_offer:
            self._local_sdp = build_offer(self._local_ip, self._rtp.local_port, self._session_id,
                                          self._sdp_version)
        else:
            self._apply_media()

    def _sdp_extra(self, final: bool = False) -> tuple[tuple[str, str], ...]:
        extra: tuple[tuple[str, str], ...] = (
            ("Contact", self._contact), ("Allow", ALLOW), ("Supported", SUPPORTED))
        if final or not self.late_offer:  # (a late-offer call has no SDP to put in a provisional)
            extra += (("Content-Type", "application/sdp"),)
        if final and self._offers.timer is not None:
            extra += self._offers.timer.response_headers()
        return extra

    # ---- InboundCall --------------------------------------------------------------
    async def progress(self) -> None:
        if self.state is CallState.ENDED:
            raise CallGone(self.call_id)
        if self.state is CallState.RINGING:
            # Default 180 Ringing with SDP carries our ringback as early media. It is accepted by
            # every UA (SIPp's built-in uac scenarios abort on an unexpected 183), and a phone that
            # ignores early media in a 180 simply plays its own ringback. 183 is configurable.
            status = self._progress_status
            body = b"" if self.late_offer else self._local_sdp
            if self._reliable is None:
                self._txn.respond(status, to_tag=self.local_tag, extra=self._sdp_extra(), body=body)
            elif self.late_offer:  # a reliable 18x would have to carry our offer: the 200 will
                return
            else:
                self._reliable.send(status, to_tag=self.local_tag, extra=self._sdp_extra(), body=body)
            self._go(CallState.EARLY, f"{status} sent" + (" with early media" if body else ""))

    async def answer(self) -> None:
        if self.state is CallState.ENDED:
            raise CallGone(self.call_id)
        if self.state in (CallState.ANSWERED, CallState.CONFIRMED):
            return
        if self._reliable is not None:  # RFC 3262 §3: no 200 before the PRACK of an 18x with SDP
            await self._reliable.wait_acked()  # (bounded: 64*T1, then the call ends)
            if self.state is CallState.ENDED:
                raise CallGone(self.call_id)
        data = self._txn.respond(200, to_tag=self.local_tag, extra=self._sdp_extra(final=True),
                                 body=self._local_sdp)
        if data is None:
            raise CallGone(self.call_id)
        self._go(CallState.ANSWERED, "200 sent")
        if self._reliable is not None:
            self._reliable.close()
        self._retransmitter = self._ua.start_2xx(data, self._txn.conn, self._ack_timeout)
        self._offers.arm()

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

    async def reject(self, status: int, reason: str | None = None) -> None:
        """Refuse the call before answering it with a final ``status`` (4xx-6xx) of our choice."""
        if self.state not in (CallState.RINGING, CallState.EARLY):
            return
        self._txn.respond(status, reason=reason, to_tag=self.local_tag)
        self._end(HangupCause.REJECTED)

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self._ended)

    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        self.audio.on_dtmf(callback)

    async def send_dtmf(self, digit: str, duration_ms: int = 100) -> bool:
        """Send a digit to the caller: RFC 4733 when the caller negotiated telephone-event, else
        in-band tones in the audio. False when the call is down, we may not send (held by the
        caller) or a digit is still playing. ``ValueError`` for a character that is not a key."""
        if self.state is CallState.ENDED or self._neg is None:
            return False
        return await self.audio.send_digit(digit, duration_ms, self._neg)

    # ---- events from the line ------------------------------------------------------
    def on_cancel(self) -> None:
        if self.state in (CallState.RINGING, CallState.EARLY):
            self._txn.respond(487, to_tag=self.local_tag)
            self._end(HangupCause.CANCELLED)
        # after the 200 a CANCEL has no effect (§9.2)

    def on_ack(self, ack: SipRequest) -> None:
        if self._retransmitter is not None:
            self._ua.ack_2xx(self._retransmitter)
        if self.state is CallState.ANSWERED:
            if self.late_offer and not self._take_late_answer(ack):
                return
            self._go(CallState.CONFIRMED, "ACK")
            self._confirmed.set()
        elif self._offer_in_200 and self.state is CallState.CONFIRMED:
            self._offer_in_200 = False
            self._take_reoffer_answer(ack)
        if self._bye_pending:
            self._bye_pending = False
            self._send_bye()
            self._on_end(self)

    def _take_late_answer(self, ack: SipRequest) -> bool:
        """The ACK's answer to the offer in our 200. Without a usable one the session cannot
        exist: we end the call with a BYE (RFC 3261 §13.2.1, §14.1)."""
        try:
            self._offer, self._neg = answer_in(ack)
        except SdpError as exc:
            log.warning("SIP call %s from %s: INVITE without SDP and %s; ending the call with BYE. "
                        "Check the caller's media settings (it must answer our PCMU/PCMA offer in the ACK).",
                        self.call_id, self.caller.number, exc.detail)
            self._send_bye()
            self._end(HangupCause.ERROR)
            return False
        self._apply_media()
        log.info("SIP call %s: late offer answered in the ACK, %s", self.call_id, self._neg.codec)
        return True

    def _take_reoffer_answer(self, ack: SipRequest) -> None:
        """The ACK's answer to the offer in our 200 to an offerless re-INVITE (§14.2). An unusable
        one would have us BYE (§14.1); keeping the media we had is kinder to the caller."""
        try:
            self._offer, self._neg = answer_in(ack)
        except SdpError as exc:
            log.warning("SIP call %s: unusable answer in the ACK of a re-INVITE (%s); media unchanged",
                        self.call_id, exc.detail)
            return
        self._apply_media()
        log.info("SIP call %s: re-INVITE answered in the ACK, we are now %s", self.call_id,
                 self._neg.direction.value)

    def on_bye(self, txn: ServerTransaction) -> None:
        txn.respond(200)
        if self._retransmitter is not None:
            self._ua.ack_2xx(self._retransmitter)  # stop re-sending the 2xx
        if self._bye_pending:  # we had hung up, waiting for the ACK: the caller was faster
            self._bye_pending = False
            self._on_end(self)
        self._end(HangupCause.CALLER_HUNG_UP)

    def on_reinvite(self, txn: ServerTransaction) -> None:
        """Re-INVITE or UPDATE from the caller (hold/resume, new address, session refresh)."""
        request = txn.request
        is_update = request.method == "UPDATE"
        if self.state is not CallState.CONFIRMED and not (
                is_update and self.state is CallState.ANSWERED and not self.late_offer):
            txn.respond(491 if self.state is CallState.ANSWERED else 481)  # (an offer of ours is pending)
            return
        if self._offers.refuse_crossing(txn, self._offer_in_200):
            return
        reoffer = read_offer(txn)
        if reoffer is None:
            return
        if reoffer.timer is not None:
            self._offers.timer = reoffer.timer
        if reoffer.offer is not None and reoffer.negotiated is not None:
            self._offer, self._neg = reoffer.offer, reoffer.negotiated
            self._sdp_version += 1
            self._apply_media()
        self._offer_in_200 = reoffer.offer is None and request.method == "INVITE"  # our SDP then offers
        self._retransmitter = answer_reoffer(self._ua, txn, self._sdp_extra(final=True), self._local_sdp,
                                             self._retransmitter)
        self._offers.arm()  # any accepted refresh restarts the session interval
        log.info("SIP call %s: %s from the caller, we are now %s", self.call_id, request.method,
                 self._neg.direction.value)

    def on_refer(self, callback: ReferCallback) -> None:
        """Accept transfers (REFER) from the caller: ``callback`` decides and reports success."""
        self._refer.callback = callback

    def on_prack(self, txn: ServerTransaction) -> None:
        if self._reliable is None:
            txn.respond(481, reason="No Matching Provisional Response")
        else:
            self._reliable.on_prack(txn)

    def _no_prack(self) -> None:
        if self.state in (CallState.RINGING, CallState.EARLY):
            self._txn.respond(500, reason="No PRACK Received", to_tag=self.local_tag)
            self._end(HangupCause.TIMEOUT)

    def refer_received(self, txn: ServerTransaction) -> None:
        if self.state not in (CallState.ANSWERED, CallState.CONFIRMED):
            txn.respond(481 if self.state is CallState.ENDED else 491)
            return
        self._refer.serve(txn, self._dialog, self._contact)

    # ---- our re-INVITEs: hold, resume, session refresh -------------------------------
    async def hold(self) -> bool:
        """Put the caller on hold (our SDP sendonly: we may keep sending music). False if refused."""
        return await self._reoffer(Direction.SENDONLY, "hold")

    async def resume(self) -> bool:
        return await self._reoffer(Direction.SENDRECV, "resume")

    async def _reoffer(self, direction: Direction, why: str) -> bool:
        if self.state is CallState.ANSWERED:  # §14.1: no new INVITE before the ACK of the first
            try:
                async with asyncio.timeout(ACK_WAIT_S):
                    await self._confirmed.wait()
            except TimeoutError:
                return False
        return await self._offers.offer(direction, why)

    def _reoffer_body(self, direction: Direction) -> bytes:
        """Our re-offer: the media we answered with, in ``direction``."""
        self._sdp_version += 1
        assert self._offer is not None and self._neg is not None  # (re-offers wait for the ACK)
        return build_answer(self._offer, dataclasses.replace(self._neg, direction=direction), self._local_ip,
                            self._rtp.local_port, self._session_id, self._sdp_version, self._srtp_key)

    def _reoffer_answered(self, answer: Negotiated | None) -> None:
        if answer is not None:
            self._neg = answer  # mirrors their answer: an "inactive" answer stops our sending too
            self._apply_media()

    def _spawn(self, coro, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}-{self.call_id}")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_task_done)

    def _side_task_done(self, task: asyncio.Task) -> None:
        self._side_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("SIP call %s: %s failed: %r", self.call_id, task.get_name(), task.exception())

    def _ack_timeout(self) -> None:
        log.warning("SIP call %s: no ACK for our 200 within 32 s; sending BYE", self.call_id)
        self._send_bye()
        if self._bye_pending:
            self._bye_pending = False
            self._on_end(self)
        self._end(HangupCause.TIMEOUT)

    def _send_bye(self) -> None:
        out = self._dialog.build("BYE")
        self._ua.send_request(out.data, out.branch, "BYE", out.conn, self._bye_result)

    def _bye_result(self, status: int) -> None:
        if status >= 300:
            log.info("SIP call %s: our BYE got %d", self.call_id, status)
