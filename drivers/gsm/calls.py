"""Voice call state machine for one modem, pure code (no asyncio, no serial).

``CallMachine.handle(item)`` takes typed URC items (drivers.gsm.urc) and host actions
(``Answered``, ``Dialled``, ``LocalHangup``, ``RingTimeout``, ``Lost``) and returns
effects for the shell to carry out. Vendor differences come from the profile:
Huawei's ``^ORIG/^CONF/^CONN/^CEND``, SIMCom's ``VOICE CALL: BEGIN/END``, 3GPP
``NO CARRIER``/``BUSY``/``+CLCC``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from appliance.lines import CallerId, HangupCause
from drivers.gsm.profiles import AudioStart, ModemProfile
from drivers.gsm.urc import CallEnd, CallProgress, ClccLine, Clip, Ring

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


@dataclass(frozen=True, slots=True)
class Progress:
    state: CallState


Effect = Offer | CallerUpdate | Connected | EnableAudio | Ended | Progress


def caller_from_clip(clip: Clip) -> CallerId:
    if clip.validity == 1:
        return CallerId(None, clip.alpha, "withheld")
    if clip.validity == 2 or not clip.number:
        return CallerId(None, clip.alpha, "unavailable")
    return CallerId(clip.number, clip.alpha, "available")


_END_CAUSE_TEXT = {16: "normal clearing", 17: "user busy", 19: "no answer", 21: "call rejected", 31: "normal, unspecified"}


class CallMachine:
    def __init__(self, profile: ModemProfile) -> None:
        self.profile = profile
        self.state = CallState.IDLE
        self.inbound = False
        self.caller: CallerId | None = None
        self.index: int | None = None
        self._offered = False

    def _go(self, new: CallState, why: str) -> None:
        if new not in _ALLOWED[self.state]:
            raise InvalidTransition(f"{self.state} -> {new} ({why})")
        log.debug("call %s -> %s (%s)", self.state, new, why)
        self.state = new

    def _end(self, cause: HangupCause, detail: str, duration: int | None = None) -> list[Effect]:
        answered = self.state is CallState.ACTIVE
        self._go(CallState.IDLE, detail)
        self.caller, self.index, self._offered, self.inbound = None, None, False, False
        return [Ended(cause, detail, duration, answered)]

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
        if isinstance(item, ClccLine):
            if item.stat == 3 and s is CallState.DIALING:
                self._go(CallState.ALERTING, "+CLCC alerting")
                return [Progress(CallState.ALERTING)]
            if item.stat == 0 and s in (CallState.DIALING, CallState.ALERTING):
                self._go(CallState.ACTIVE, "+CLCC active")
                audio: list[Effect] = [EnableAudio()] if self.profile.audio_start is AudioStart.ON_ANSWER else []
                return [Connected(), Progress(CallState.ACTIVE), *audio]
            if item.stat == 6 and s is not CallState.IDLE:
                return self._end(self._remote_cause(), "+CLCC released")
            return []
        if isinstance(item, CallEnd):
            if s is CallState.IDLE:
                return []
            return self._end(self._cause_for(item), self._detail(item), item.duration_s)
        if isinstance(item, LocalHangup):
            return [] if s is CallState.IDLE else self._end(item.cause, "local hang-up")
        if isinstance(item, RingTimeout):
            return self._end(HangupCause.CANCELLED, "caller gave up") if s is CallState.RINGING else []
        if isinstance(item, Lost):
            detail = "modem lost" if item.cause is HangupCause.LINE_LOST else str(item.cause)
            return [] if s is CallState.IDLE else self._end(item.cause, detail)
        return []

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
