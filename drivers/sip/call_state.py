"""The states of an inbound SIP call and the final status we refuse it with, by hang-up cause."""
from __future__ import annotations

from enum import StrEnum

from appliance.lines import HangupCause


class CallState(StrEnum):
    RINGING = "ringing"  # INVITE received, 100 sent
    EARLY = "early"  # 18x sent (with SDP: early media flowing)
    ANSWERED = "answered"  # 200 sent, waiting for the ACK
    CONFIRMED = "confirmed"  # ACK received
    ENDED = "ended"


ALLOWED: dict[CallState, frozenset[CallState]] = {
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
