"""The analog line's state machine. Pure code: inputs carry ``now``, outputs are events.

    idle --RING--> ringing --answer--> answering --CONNECT--> voice --> hanging up --> idle
      \\--dial--> dialing --VCON/OK--> voice                 (ringing --rings stop--> idle)

Caller ID (modems.md B.4, B.5): UK-style blocks arrive *before* the first RING and
are held while idle; US-style blocks arrive *between* the first and second RING.
The call is offered once per ring sequence: at the first RING when caller ID is
already there, else when a caller-ID block completes (a raw line, or formatted tags
followed by ``CID_SETTLE_S`` of quiet), at the second RING, or after ``CID_WAIT_S``.

During the call, far-end departure is detected from ``<DLE>b`` (busy/reorder),
``<DLE>d`` (dial tone), ``<DLE>l`` (loop current break) at once, and from silence:
``<DLE>s`` (no voice energy at all) gives ``no_voice_grace_s`` for a confirming tone,
``<DLE>q`` (quiet after voice, and Lucent's ``<DLE>s``) arms ``long_silence_s``;
either is disarmed by voice (``<DLE>v``, DTMF, or received audio above
``SPEECH_RMS``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from drivers.voicemodem.callerid import (
    CallerIdError,
    CallerIdReport,
    FormattedCallerId,
    decode_raw,
    is_raw_message,
    parse_tag_line,
)
from drivers.voicemodem.dle import DleEvent, VoiceEvent

log = logging.getLogger(__name__)

CID_SETTLE_S = 0.4  # tag lines of one block arrive within a few ms; 0.4 s of quiet = block done
CID_WAIT_S = 5.0  # US CID comes ~2.5 s after RING 1 and before RING 2 (6 s cadence)
CID_MAX_AGE_S = 10.0  # a UK-style block belongs to a RING within a few seconds of it
RING_ABANDON_S = 8.0  # US cadence is a RING every 6 s (UK 3 s): 8 s without one = caller gave up
NO_VOICE_GRACE_S = 5.0  # after <DLE>s, wait this long for busy/dial tone before giving up anyway
LONG_SILENCE_S = 30.0  # after <DLE>q: the caller may just be listening; 30 s of nothing = gone
SPEECH_RMS = 300  # received RMS above this (about -40 dBFS) counts as someone there


class LineState(StrEnum):
    IDLE = "idle"
    RINGING = "ringing"
    ANSWERING = "answering"
    VOICE = "voice"
    HANGING_UP = "hanging up"
    DIALING = "dialing"


_ALLOWED: dict[LineState, frozenset[LineState]] = {
    LineState.IDLE: frozenset({LineState.RINGING, LineState.DIALING}),
    LineState.RINGING: frozenset({LineState.ANSWERING, LineState.IDLE, LineState.HANGING_UP}),
    LineState.ANSWERING: frozenset({LineState.VOICE, LineState.HANGING_UP, LineState.IDLE}),
    LineState.VOICE: frozenset({LineState.HANGING_UP, LineState.IDLE}),
    LineState.HANGING_UP: frozenset({LineState.IDLE}),
    LineState.DIALING: frozenset({LineState.VOICE, LineState.HANGING_UP, LineState.IDLE}),
}


class InvalidTransition(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class CallOffered:
    caller: CallerIdReport | None  # None: no caller ID arrived (or the line has none)


@dataclass(frozen=True, slots=True)
class CallAbandoned:
    rings: int


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    digit: str


@dataclass(frozen=True, slots=True)
class FarEndGone:
    reason: str  # "busy tone", "dial tone", "loop current break", "silence", "stream ended"


@dataclass(frozen=True, slots=True)
class Notice:
    """Worth one log line, changes nothing (underrun, handset lifted, unknown DLE code ...)."""

    text: str


MachineEvent = CallOffered | CallAbandoned | DtmfReceived | FarEndGone | Notice

_GONE = {
    VoiceEvent.BUSY: "busy tone",
    VoiceEvent.DIAL_TONE: "dial tone",
    VoiceEvent.LOOP_BREAK: "loop current break",
}


class LineMachine:
    def __init__(
        self,
        *,
        name: str = "analog",
        silence_after_speech_is_s: bool = False,
        no_voice_grace_s: float = NO_VOICE_GRACE_S,
        long_silence_s: float = LONG_SILENCE_S,
        ring_abandon_s: float = RING_ABANDON_S,
        cid_wait_s: float = CID_WAIT_S,
        cid_settle_s: float = CID_SETTLE_S,
    ) -> None:
        self.name = name
        self.state = LineState.IDLE
        self._lucent_s = silence_after_speech_is_s
        self._no_voice_grace_s = no_voice_grace_s
        self._long_silence_s = long_silence_s
        self._ring_abandon_s = ring_abandon_s
        self._cid_wait_s = cid_wait_s
        self._cid_settle_s = cid_settle_s
        self._block = FormattedCallerId()
        self._block_at = 0.0
        self._cid: CallerIdReport | None = None
        self._cid_at = 0.0
        self._rings = 0
        self._offered = False
        self._last_ring = 0.0
        self._offer_deadline: float | None = None
        self._silence_deadline: float | None = None
        self._gone = False

    # ---- transitions ---------------------------------------------------------------
    def transition(self, new: LineState, why: str) -> None:
        if new is self.state:
            return
        if new not in _ALLOWED[self.state]:
            raise InvalidTransition(f"{self.name}: {self.state} -> {new} ({why})")
        log.debug("%s: %s -> %s (%s)", self.name, self.state, new, why)
        self.state = new
        self._offer_deadline = None  # only RINGING waits for caller ID, and it never re-enters itself
        if new is LineState.IDLE:
            self._reset_call()
        elif new in (LineState.VOICE, LineState.DIALING):
            self._silence_deadline = None
            self._gone = False
            self.counts = {}

    def _reset_call(self) -> None:
        self._rings = 0
        self._offered = False
        self._offer_deadline = None
        self._silence_deadline = None
        self._cid = None
        self._block = FormattedCallerId()
        self._gone = False
        self.counts: dict[VoiceEvent, int] = {}  # voice events reported once per call, then counted

    @property
    def caller(self) -> CallerIdReport | None:
        return self._cid

    @property
    def next_deadline(self) -> float | None:
        times = [t for t in (self._offer_deadline, self._silence_deadline, self._abandon_at(), self._settle_at())
                 if t is not None]
        return min(times) if times else None

    def _abandon_at(self) -> float | None:
        return self._last_ring + self._ring_abandon_s if self.state is LineState.RINGING else None

    def _settle_at(self) -> float | None:
        if self._block.empty or self.state is not LineState.RINGING or self._offered:
            return None
        return self._block_at + self._cid_settle_s

    # ---- command-mode text (RING, caller ID) ---------------------------------------------
    def on_line(self, text: str, now: float) -> list[MachineEvent]:
        if text == "RING":
            return self._on_ring(now)
        tag = parse_tag_line(text)
        if tag is not None:
            self._block.add(*tag)
            self._block_at = now
            return []
        if is_raw_message(text):
            try:
                self._set_cid(decode_raw(text), now)
            except CallerIdError:  # is_raw_message said yes; decode_raw agrees by construction
                return [Notice(f"undecodable caller-ID line {text!r}")]
            out: list[MachineEvent] = []
            if self._cid is not None and not self._cid.trusted:
                out.append(Notice(f"caller ID not trusted: {self._cid.problem}"))
            if self.state is LineState.RINGING and not self._offered:
                out += self._offer()
            return out
        if text.startswith(("DRON", "DROF")):
            return []
        return [Notice(f"unexpected line {text!r} while {self.state}")]

    def _set_cid(self, report: CallerIdReport, now: float) -> None:
        self._cid = report
        self._cid_at = now
        self._block = FormattedCallerId()

    def _close_block(self) -> None:
        if not self._block.empty:
            self._set_cid(self._block.report(), self._block_at)

    def _on_ring(self, now: float) -> list[MachineEvent]:
        if self.state is LineState.IDLE:
            self._close_block()
            if self._cid is not None and now - self._cid_at > CID_MAX_AGE_S:
                self._cid = None  # a stale block from an earlier, unanswered call
            self.transition(LineState.RINGING, "RING")
            self._rings = 1
            self._last_ring = now
            if self._cid is not None:
                return self._offer()
            self._offer_deadline = now + self._cid_wait_s
            return []
        if self.state is LineState.RINGING:
            self._rings += 1
            self._last_ring = now
            if not self._offered:
                self._close_block()
                return self._offer()
        return []

    def _offer(self) -> list[MachineEvent]:
        self._offered = True
        self._offer_deadline = None
        return [CallOffered(self._cid)]

    # ---- timers --------------------------------------------------------------------------
    def on_timer(self, now: float) -> list[MachineEvent]:
        out: list[MachineEvent] = []
        if self.state is LineState.RINGING:
            settle = self._settle_at()
            if settle is not None and now >= settle:
                self._close_block()
                out += self._offer()
            if self._offer_deadline is not None and now >= self._offer_deadline and not self._offered:
                self._close_block()  # a block still arriving is better than none
                out += self._offer()
            abandon = self._abandon_at()
            if abandon is not None and now >= abandon:
                rings = self._rings
                self.transition(LineState.IDLE, f"no RING for {self._ring_abandon_s:.1f}s")
                out.append(CallAbandoned(rings))
        elif self.state is LineState.VOICE:
            if self._silence_deadline is not None and now >= self._silence_deadline:
                self._silence_deadline = None
                out += self._far_end_gone("silence")
        return out

    # ---- voice data state ----------------------------------------------------------------
    def on_voice_event(self, event: DleEvent, now: float) -> list[MachineEvent]:
        kind = event.kind
        if kind is VoiceEvent.DTMF:
            self._silence_deadline = None
            return [DtmfReceived(event.code)]
        if self.state is not LineState.VOICE:
            return self._notice_once(kind, f"{kind} ({event.code!r}) while {self.state}")
        reason = _GONE.get(kind)
        if reason is not None:
            return self._far_end_gone(reason)
        if kind is VoiceEvent.SILENCE and not self._lucent_s:
            self._arm_silence(now + self._no_voice_grace_s)
            return []
        if kind in (VoiceEvent.SILENCE, VoiceEvent.QUIET):
            self._arm_silence(now + self._long_silence_s)
            return []
        if kind is VoiceEvent.VOICE:
            self._silence_deadline = None
            return []
        if kind is VoiceEvent.END_OF_STREAM:
            return self._far_end_gone("stream ended")
        if kind in (VoiceEvent.TIMING_MARK, VoiceEvent.XON, VoiceEvent.XOFF, VoiceEvent.RING):
            return []
        return self._notice_once(kind, f"{kind} (<DLE>{event.code!r})")

    def _notice_once(self, kind: VoiceEvent, text: str) -> list[MachineEvent]:
        """One log line per kind per call (underruns can arrive every few ms); the rest are counted."""
        count = self.counts.get(kind, 0) + 1
        self.counts[kind] = count
        return [Notice(text + " (further ones are counted)")] if count == 1 else []

    def _arm_silence(self, deadline: float) -> None:
        if self._silence_deadline is None or deadline < self._silence_deadline:
            self._silence_deadline = deadline

    def on_audio_level(self, rms: int) -> None:
        """Received audio energy; speech disarms the silence watch."""
        if rms > SPEECH_RMS:
            self._silence_deadline = None

    def _far_end_gone(self, reason: str) -> list[MachineEvent]:
        if self._gone:
            return []
        self._gone = True
        self._silence_deadline = None
        return [FarEndGone(reason)]
