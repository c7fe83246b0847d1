"""Our own offers inside an established dialog, for a call of either kind (RFC 3261 §14.1, RFC 4028).

``ReOffers.offer(direction)`` sends a re-INVITE with our media in ``direction`` (hold:
sendonly, resume: sendrecv, refresh: whatever we offered last), ACKs its 2xx, hands the
answer to the call and re-arms the session timer. A 491 (glare) is retried once after a
random wait: 2.1..4 s when we own the Call-ID (we sent the dialog's INVITE), else 0..2 s.
While ours is pending a crossing re-INVITE/UPDATE from the far end gets 491
(``refuse_crossing``). One timer per call: as the refresher a re-INVITE at half the
session interval, otherwise a BYE (``HangupCause.TIMEOUT``) when no refresh came in time.
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Awaitable, Callable

from appliance.lines import HangupCause
from drivers.sip.body import sdp_in
from drivers.sip.dialog import DialogRequests
from drivers.sip.errors import SdpError
from drivers.sip.sdp import Direction, Negotiated, negotiate, parse_sdp
from drivers.sip.session_timer import SessionTimer, session_timer_granted
from drivers.sip.useragent import ALLOW, ServerTransaction, UserAgent

log = logging.getLogger(__name__)

GLARE_RETRY_MAX_S = 2.0  # §14.1: not the Call-ID owner, so retry a 491'd re-INVITE after 0..2 s
GLARE_OWNER_RETRY_S = (2.1, 4.0)  # §14.1: the Call-ID owner retries after 2.1..4 s
REINVITE_WAIT_S = 40.0  # Timer B (32 s) reports a silent peer first; this only bounds a bug
SUPPORTED = "timer, replaces"


class ReOffers:
    """One call's own re-INVITEs and its session timer.

    The call supplies: ``ready()`` (the dialog is confirmed and may carry a re-INVITE),
    ``dialog()``, ``body(direction)`` (our SDP offer, a new o= version each time),
    ``answered(neg)`` (a 2xx came; ``neg`` is its usable SDP answer or None), ``hangup(cause)``
    and ``spawn(coro, name)`` (runs a coroutine in the call's own task set).
    """

    def __init__(self, ua: UserAgent, label: str, *, contact: str, call_id_owner: bool,
                 ready: Callable[[], bool], dialog: Callable[[], DialogRequests | None],
                 body: Callable[[Direction], bytes], answered: Callable[[Negotiated | None], None],
                 hangup: Callable[[HangupCause], Awaitable[None]], spawn: Callable[..., None],
                 timer: SessionTimer | None = None, secure: bool = False) -> None:
        self._ua = ua
        self._secure = secure  # the dialog's signalling is TLS: SDES keys in answers may be used
        self._label = label
        self._contact = contact
        self._owner = call_id_owner
        self._ready = ready
        self._dialog = dialog
        self._body = body
        self._answered = answered
        self._hangup = hangup
        self._spawn = spawn
        self.timer = timer
        self.pending = False  # our re-INVITE is out: a crossing one gets 491 (glare)
        self.direction = Direction.SENDRECV  # what we offer: SENDONLY while we hold the far end
        self._handle: asyncio.TimerHandle | None = None
        self.closed = False  # the call ended: see close()

    def refuse_crossing(self, txn: ServerTransaction, offer_in_200: bool = False) -> bool:
        """§14.2 glare: both sides offered at once (our re-INVITE is out, or the offer in our 200 to
        their offerless re-INVITE awaits its ACK). True when ``txn`` was answered 491."""
        crossing = self.pending or offer_in_200
        if crossing:
            txn.respond(491, extra=(("Retry-After", "1"),))
        return crossing

    def _glare_wait(self) -> float:
        return random.uniform(*GLARE_OWNER_RETRY_S) if self._owner else random.uniform(0.0, GLARE_RETRY_MAX_S)

    async def offer(self, direction: Direction, why: str) -> bool:
        """Re-INVITE with our media in ``direction``; True once accepted, False if refused or not possible."""
        for attempt in range(2):  # one retry after 491
            if not self._ready() or self.pending:
                return False
            status = await self._send(direction)
            if status is None or 200 <= status < 300:
                if status is not None:
                    log.info("SIP call %s: %s accepted, we offer %s", self._label, why, direction.value)
                return status is not None
            if status != 491 or attempt:
                log.info("SIP call %s: %s refused with %d", self._label, why, status)
                return False
            await asyncio.sleep(self._glare_wait())
        return False

    async def _send(self, direction: Direction) -> int | None:
        """One re-INVITE; returns the final status (None: no answer, and the call is hung up)."""
        dialog = self._dialog()
        assert dialog is not None  # ready() said the dialog is confirmed
        extra = (("Contact", self._contact), ("Allow", ALLOW), ("Supported", SUPPORTED),
                 ("Content-Type", "application/sdp"))
        if self.timer is not None:  # §7.4: named from this transaction's view, we are its UAC
            who = "uac" if self.timer.we_refresh else "uas"
            extra += (("Session-Expires", f"{self.timer.interval};refresher={who}"),)
        self.pending = True
        try:
            response = await dialog.reinvite(self._ua, extra=extra, body=self._body(direction),
                                             wait_s=REINVITE_WAIT_S)
        finally:
            self.pending = False
        if self.closed:  # the call ended (a BYE crossed our re-INVITE): nothing to apply or re-arm
            return None
        if response is None:
            log.warning("SIP call %s: re-INVITE unanswered; hanging up", self._label)
            await self._hangup(HangupCause.TIMEOUT)
            return None
        if 200 <= response.status < 300:
            self.direction = direction
            try:
                answer = negotiate(parse_sdp(sdp), self._secure) if (sdp := sdp_in(response)) else None
            except SdpError:
                answer = None
            self._answered(answer)
            self.timer = session_timer_granted(response) or self.timer
            self.arm()
        return response.status

    # ---- session timer (RFC 4028) ----------------------------------------------------------
    def arm(self) -> None:
        """(Re)start the session interval: after our INVITE's or re-INVITE's 2xx, or an accepted refresh."""
        self.cancel()
        timer = self.timer
        if timer is None or self.closed:
            return
        loop = asyncio.get_running_loop()
        if timer.we_refresh:
            self._handle = loop.call_later(timer.refresh_after, self._refresh)
        else:
            self._handle = loop.call_later(timer.expire_after, self._expired)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def close(self) -> None:
        """The call has ended: no timer runs again and late answers are ignored."""
        self.closed = True
        self.cancel()

    def _refresh(self) -> None:
        self._handle = None
        if self._ready():
            self._spawn(self.offer(self.direction, "session refresh"), "sip-refresh")

    def _expired(self) -> None:
        self._handle = None
        if self.closed:
            return
        log.warning("SIP call %s: session timer expired without a refresh; hanging up", self._label)
        self._spawn(self._hangup(HangupCause.TIMEOUT), "sip-session-expired")
