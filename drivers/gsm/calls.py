"""Voice call state machine for one modem, pure code (no asyncio, no serial).

``CallMachine.handle(item)`` takes typed URC items (drivers.gsm.urc) and host actions
(``Answered``, ``Dialled``, ``LocalHangup``, ``RingTimeout``, ``ReleaseTimeout``,
``Lost``) and returns effects for the shell to carry out. Vendor differences come from
the profile: Huawei's ``^ORIG/^CONF/^CONN/^CEND``, SIMCom's ``VOICE CALL: BEGIN/END``,
Quectel's ``^DSCI``, 3GPP ``NO CARRIER``/``BUSY``/``+CLCC``.

``^DSCI`` (and ``+CLCC``) lines name the call they describe; once the machine knows its
call's index, lines about another call (a waiting or held one) are ignored. A ``^DSCI``
release before the answer does not end the call by itself: the modem sends the final
code that says why (``BUSY``, ``NO ANSWER``, ``NO CARRIER``) right after it, and that
ends it; on the ``ReleaseSeen`` effect the shell arms a timer that sends ``ReleaseTimeout``
in case none comes.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from enum import StrEnum

from appliance.lines import CallerId, DialFailure, HangupCause
from drivers.gsm.profiles import AudioStart, ModemProfile
from drivers.gsm.urc import CallEnd, CallProgress, CallStatus, Clip, Ring

log = logging.getLogger(__name__)


class CallState(StrEnum):
    IDLE = "idle"
    RINGING = "ringing"  # incoming, not answered
    ANSWERING = "answering"  # ATA sent
    DIALING = "dialing"  # outgoing, ATD sent / ^ORIG
    ALERTING = "alerting"  # outgoing, remote rings (^CONF, +CLCC stat 3)
    ACTIVE = "active"


_ALLOWED: dict[CallState, frozenset[CallState]] = {
    CallState.IDLE: frozenset({CallState.RINGING, CallState.DIALING}),
    CallState.RINGING: frozenset({CallState.ANSWERING, CallState.ACTIVE, CallState.IDLE}),
    CallState.ANSWERING: frozenset({CallState.ACTIVE, CallState.IDLE}),
    CallState.DIALING: frozenset({CallState.ALERTING, CallState.ACTIVE, CallState.IDLE}),
    CallState.ALERTING: frozenset({CallState.ACTIVE, CallState.IDLE}),
    CallState.ACTIVE: frozenset({CallState.IDLE}),
}


class InvalidTransition(Exception):
    pass


# ---- host actions --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Answered:
    """ATA (or the profile's answer command) returned OK."""


@dataclass(frozen=True, slots=True)
class Dialled:
    number: str


@dataclass(frozen=True, slots=True)
class LocalHangup:
    cause: HangupCause


@dataclass(frozen=True, slots=True)
class RingTimeout:
    """No RING for a while and +CLCC shows no incoming call: the caller gave up."""


@dataclass(frozen=True, slots=True)
class ReleaseTimeout:
    """A ``^DSCI`` release while dialling was not followed by a final code: the call is gone."""


@dataclass(frozen=True, slots=True)
class Lost:
    """The port vanished (or the box is shutting down)."""

    cause: HangupCause = HangupCause.LINE_LOST


# ---- effects -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Offer:
    caller: CallerId


@dataclass(frozen=True, slots=True)
class CallerUpdate:
    caller: CallerId


@dataclass(frozen=True, slots=True)
class Connected:
    pass


@dataclass(frozen=True, slots=True)
class EnableAudio:
    pass


@dataclass(frozen=True, slots=True)
class Ended:
    cause: HangupCause
    detail: str
    duration_s: int | None = None
    answered: bool = False
    failure: DialFailure | None = None  # an outgoing call that ended before the answer: why


@dataclass(frozen=True, slots=True)
class Progress:
    state: CallState


@dataclass(frozen=True, slots=True)
class ReleaseSeen:
    """The modem released the call before the answer; send ``ReleaseTimeout`` if no final code follows."""


Effect = Offer | CallerUpdate | Connected | EnableAudio | Ended | Progress | ReleaseSeen


def caller_from_clip(clip: Clip) -> CallerId:
    if clip.validity == 1:
        return CallerId(None, clip.alpha, "withheld")
    if clip.validity == 2 or not clip.number:
        return CallerId(None, clip.alpha, "unavailable")
    return CallerId(clip.number, clip.alpha, "available")


_END_CAUSE_TEXT = {1: "unassigned number", 16: "normal clearing", 17: "user busy", 18: "no user responding",
                   19: "no answer", 21: "call rejected", 27: "destination out of order", 31: "normal, unspecified",
                   34: "no circuit available", 38: "network out of order", 41: "temporary failure",
                   42: "congestion"}

# 3GPP TS 24.008 cc causes seen before an answer -> why the dial failed. Causes not listed
# (network faults, barring variants) count as UNREACHABLE.
_CAUSE_FAILURE = {
    16: DialFailure.REJECTED,  # cleared before answer: the callee declined (network-dependent)
    17: DialFailure.BUSY,
    18: DialFailure.NO_ANSWER,
    19: DialFailure.NO_ANSWER,
    21: DialFailure.REJECTED,
    31: DialFailure.REJECTED,
    8: DialFailure.REJECTED,  # operator determined barring
    55: DialFailure.REJECTED,  # incoming calls barred within the CUG
    57: DialFailure.REJECTED,  # bearer capability not authorised
}
# +CME ERROR codes an ATD can fail with (modems.md A.7, A.11).
_CME_FAILURE = {3: DialFailure.REJECTED, 30: DialFailure.UNREACHABLE, 31: DialFailure.UNREACHABLE,
                11: DialFailure.LINE_DOWN, 10: DialFailure.LINE_DOWN, 13: DialFailure.LINE_DOWN}


def dial_failure(end: CallEnd) -> DialFailure:
    """Why an outgoing call ended before the answer, from the modem's own report."""
    if end.cause is not None:
        return _CAUSE_FAILURE.get(end.cause, DialFailure.UNREACHABLE)
    source = end.source.upper()
    if source == "BUSY":
        return DialFailure.BUSY
    if source == "NO ANSWER":
        return DialFailure.NO_ANSWER
    if source in ("NO CARRIER", "NO DIALTONE", "VOICE CALL: END", "HANGUP", "+CLCC RELEASED", "^DSCI RELEASED"):
        return DialFailure.UNREACHABLE  # NO DIALTONE on a GSM modem = not registered
    m = re.match(r"^\+?CME ERROR:?\s*(\d+)", source)
    if m is not None:
        return _CME_FAILURE.get(int(m.group(1)), DialFailure.ERROR)
    return DialFailure.ERROR


def dial_command(profile: ModemProfile, number: str, *, withhold: bool = False) -> str:
    """The profile's ATD line for ``number``; ``withhold`` adds the TS 27.007 CLIR modifier
    (``ATD+4477...I;``: restrict presentation for this call only)."""
    return profile.dial.format(number=number + ("I" if withhold else ""))


class CallMachine:
    def __init__(self, profile: ModemProfile) -> None:
        self.profile = profile
        self.state = CallState.IDLE
        self.inbound = False
        self.caller: CallerId | None = None
        self.index: int | None = None
        self.release_pending = False  # a ^DSCI release while dialling; the final code should follow
        self._offered = False

    def _go(self, new: CallState, why: str) -> None:
        if new not in _ALLOWED[self.state]:
            raise InvalidTransition(f"{self.state} -> {new} ({why})")
        log.debug("call %s -> %s (%s)", self.state, new, why)
        self.state = new

    @property
    def dialling(self) -> bool:
        """An outgoing call not answered yet."""
        return not self.inbound and self.state in (CallState.DIALING, CallState.ALERTING)

    def _end(self, cause: HangupCause, detail: str, duration: int | None = None,
             failure: DialFailure | None = None) -> list[Effect]:
        answered = self.state is CallState.ACTIVE
        self._go(CallState.IDLE, detail)
        self.caller, self.index, self._offered, self.inbound = None, None, False, False
        self.release_pending = False
        return [Ended(cause, detail, duration, answered, failure)]

    def handle(self, item: object) -> list[Effect]:
        s = self.state
        if isinstance(item, Ring):
            if item.kind.upper() != "VOICE":
                return []
            if s is CallState.IDLE:
                self._go(CallState.RINGING, "ring")
                self.inbound = True
            return []
        if isinstance(item, Clip):
            caller = caller_from_clip(item)
            if s is CallState.IDLE:
                self._go(CallState.RINGING, "caller id before ring")
                self.inbound = True
            if self.state is not CallState.RINGING:
                return []
            first = not self._offered
            self.caller, self._offered = caller, True
            return [Offer(caller)] if first else ([CallerUpdate(caller)] if caller != self.caller else [])
        if isinstance(item, Answered):
            if s is CallState.RINGING:
                self._go(CallState.ANSWERING, "answer sent")
                s = self.state
            if s is CallState.ANSWERING:
                if self.profile.audio_start in (AudioStart.ON_ANSWER, AudioStart.NONE):
                    self._go(CallState.ACTIVE, "answer OK")
                    return [Connected()] + ([EnableAudio()] if self.profile.audio_start is AudioStart.ON_ANSWER else [])
                return []
            return []
        if isinstance(item, Dialled):
            self._go(CallState.DIALING, f"dial {item.number}")
            self.inbound = False
            return [Progress(CallState.DIALING)]
        if isinstance(item, CallProgress):
            return self._progress(item)
        if isinstance(item, CallStatus):
            return self._status(item)
        if isinstance(item, CallEnd):
            if s is CallState.IDLE:
                return []
            failure = dial_failure(item) if self.dialling else None
            return self._end(self._cause_for(item), self._detail(item), item.duration_s, failure)
        if isinstance(item, LocalHangup):
            if s is CallState.IDLE:
                return []
            # our own give-up after a ring timeout is "no answer"; any other hang-up while it rings is a cancel
            failure = ((DialFailure.NO_ANSWER if item.cause is HangupCause.TIMEOUT else DialFailure.CANCELLED)
                       if self.dialling else None)
            return self._end(item.cause, "local hang-up", failure=failure)
        if isinstance(item, RingTimeout):
            return self._end(HangupCause.CANCELLED, "caller gave up") if s is CallState.RINGING else []
        if isinstance(item, ReleaseTimeout):
            return self._released(CallEnd("^DSCI released")) if self.release_pending and self.dialling else []
        if isinstance(item, Lost):
            detail = "modem lost" if item.cause is HangupCause.LINE_LOST else str(item.cause)
            failure = DialFailure.LINE_DOWN if self.dialling else None
            return [] if s is CallState.IDLE else self._end(item.cause, detail, failure=failure)
        return []

    def _status(self, item: CallStatus) -> list[Effect]:
        s = self.state
        if s is CallState.IDLE or (self.index is not None and item.index != self.index):
            return []  # no call of ours, or a line about another (waiting, held) call
        ours = (item.stat in (0, 2, 3) and self.dialling) or (item.stat in (0, 4) and self.inbound)
        if ours:
            self.index = item.index
        if item.stat == 3 and s is CallState.DIALING:
            self._go(CallState.ALERTING, f"{item.source} alerting")
            return [Progress(CallState.ALERTING)]
        if item.stat == 0 and s in (CallState.DIALING, CallState.ALERTING):
            self._go(CallState.ACTIVE, f"{item.source} active")
            audio: list[Effect] = [EnableAudio()] if self.profile.audio_start is AudioStart.ON_ANSWER else []
            return [Connected(), Progress(CallState.ACTIVE), *audio]
        if item.stat == 6:
            if item.source == "^DSCI" and self.dialling:
                self.release_pending = True  # BUSY / NO ANSWER / NO CARRIER follows and says why
                return [ReleaseSeen()]
            return self._released(CallEnd(f"{item.source} released"))
        return []

    def _released(self, end: CallEnd) -> list[Effect]:
        failure = dial_failure(end) if self.dialling else None
        return self._end(self._cause_for(end), end.source, failure=failure)

    def _progress(self, item: CallProgress) -> list[Effect]:
        s = self.state
        if item.index is not None:
            self.index = item.index
        if item.stage == "orig" and s is CallState.DIALING:
            return []
        if item.stage == "alerting" and s is CallState.DIALING:
            self._go(CallState.ALERTING, "^CONF")
            return [Progress(CallState.ALERTING)]
        if item.stage == "connected" and s in (CallState.RINGING, CallState.ANSWERING, CallState.DIALING, CallState.ALERTING):
            self._go(CallState.ACTIVE, "connected")
            effects: list[Effect] = [Connected(), Progress(CallState.ACTIVE)]
            if self.profile.audio_start in (AudioStart.ON_CONN, AudioStart.ON_VOICE_BEGIN):
                effects.append(EnableAudio())
            return effects
        if item.stage == "connected" and s is CallState.ACTIVE and self.profile.audio_start is AudioStart.ON_VOICE_BEGIN:
            return [EnableAudio()]  # VOICE CALL: BEGIN after ATA's OK already made us active
        return []

    def _remote_cause(self) -> HangupCause:
        if self.state is CallState.RINGING:
            return HangupCause.CANCELLED
        return HangupCause.CALLER_HUNG_UP if self.inbound else HangupCause.FAR_END_HUNG_UP

    def _cause_for(self, item: CallEnd) -> HangupCause:
        if not self.inbound and self.state in (CallState.DIALING, CallState.ALERTING):
            return HangupCause.REJECTED  # busy / no answer / rejected before connect
        return self._remote_cause()

    @staticmethod
    def _detail(item: CallEnd) -> str:
        if item.cause is not None:
            return f"{item.source} cause {item.cause} ({_END_CAUSE_TEXT.get(item.cause, 'other')})"
        return item.source
