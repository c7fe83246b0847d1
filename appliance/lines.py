"""What every line driver (SIP, GSM modem, analog voice modem) hands the appliance.

A driver turns its protocol into ``InboundCall`` objects and passes each one to the
``IncomingCallHandler`` it was given. From then on the appliance (ACD, bridge,
recorder) treats every line the same way. Drivers never import the ACD.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Awaitable, Callable, Protocol

from media.frames import LegAudio


class LineKind(StrEnum):
    SIP = "sip"
    GSM = "gsm"
    ANALOG = "analog"
    WEBRTC = "webrtc"


class HangupCause(StrEnum):
    CALLER_HUNG_UP = "caller hung up"  # customer side ended (BYE, CANCEL, NO CARRIER, on-hook)
    FAR_END_HUNG_UP = "far end hung up"  # busy/dial tone on an analog line after talk
    AGENT_HUNG_UP = "agent hung up"
    CANCELLED = "cancelled"  # caller gave up before the call was answered (SIP CANCEL)
    NO_AGENT = "no agent available"
    REJECTED = "rejected"
    LINE_LOST = "line lost"  # modem unplugged, transport died
    SHUTDOWN = "box shutting down"
    TIMEOUT = "timeout"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CallerId:
    number: str | None  # E.164 or national digits; None when withheld/unavailable
    name: str | None = None
    presentation: str = "available"  # "available" | "withheld" | "unavailable"


class InboundCall(Protocol):
    """One customer call arriving on a line. Owned by the appliance once handed over."""

    call_id: str  # unique, minted by the driver (SIP Call-ID may be reused by peers: do not use raw)
    line_id: str  # e.g. "sip", "gsm:356938035643809", "analog:0"
    kind: LineKind
    caller: CallerId
    called: str | None  # dialled number / request-URI user, when known
    audio: LegAudio  # valid once ``progress()`` or ``answer()`` has returned

    async def progress(self) -> None:
        """Let the caller hear our audio before answering (SIP 183 early media). May be a no-op."""

    async def answer(self) -> None:
        """Answer the call (SIP 200 OK, ATA). Raises CallGone if the caller already left."""

    async def hangup(self, cause: HangupCause) -> None:
        """End the call from our side. Idempotent; never raises for an already-ended call."""

    async def wait_ended(self) -> HangupCause:
        """Return once the call has ended, from either side, with the cause."""

    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        """Register a callback for DTMF digits received from the caller ("0"-"9", "*", "#", "A"-"D")."""


class CallGone(Exception):
    """The caller hung up or cancelled before our action could take effect."""


IncomingCallHandler = Callable[[InboundCall], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LineStatus:
    """Health of one line, published on the hub topic ``lines`` whenever it changes."""

    line_id: str
    kind: LineKind
    state: str  # "up" | "down" | "starting" | "disabled" | "registering"
    detail: str = ""  # one operator-readable line: why it is down, what it is doing
    signal: int | None = None  # GSM: 0-31 (+CSQ), None when unknown
    operator: str | None = None
    registration: str | None = None  # "home" | "roaming" | "searching" | "denied" | ...
    sim: str | None = None  # "ready" | "pin required" | "missing" | ...
    imei: str | None = None
    iccid: str | None = None
    model: str | None = None
    firmware: str | None = None
    port: str | None = None
    calls: int = 0  # calls currently on this line
    updated: float = 0.0


# --- outbound calls (click-to-dial, transfer to an external number, ringing an agent's desk phone) ---

class DialFailure(StrEnum):
    BUSY = "busy"  # SIP 486/600, GSM/analog BUSY
    NO_ANSWER = "no answer"  # nobody picked up in time (SIP 408/480, NO ANSWER, our ring timeout)
    REJECTED = "rejected"  # SIP 403/603, call barred, number refused
    UNREACHABLE = "unreachable"  # SIP 404/484/5xx, NO CARRIER before answer, no network
    LINE_DOWN = "line down"  # the line cannot dial now (modem absent, trunk not registered, phone not registered)
    LINE_BUSY = "line busy"  # the line is already on a call (a GSM modem or an analog line carries one)
    CANCELLED = "cancelled"  # we gave up before the answer (hangup() while ringing)
    ERROR = "error"


class DialFailed(Exception):
    """An outbound call did not reach the answered state; ``detail`` is one operator-readable line."""

    def __init__(self, reason: DialFailure, detail: str = "", *, no_media: bool = False) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        self.no_media = no_media  # the far end picked up but offered no audio we can use (no/bad SDP)


class OutboundCall(Protocol):
    """One call the box places on a line. Returned by ``Dialler.dial`` while it rings."""

    call_id: str  # unique, minted by the driver
    line_id: str
    kind: LineKind
    called: str  # the number (or extension) dialled
    audio: LegAudio  # valid once ``wait_answered()`` has returned

    async def wait_answered(self) -> None:
        """Return when the far end answers. Raises DialFailed (busy, no answer, ...) otherwise.
        The caller of this method bounds the wait with its own timeout and then calls hangup()."""

    async def hangup(self, cause: HangupCause) -> None:
        """Cancel while ringing, hang up once answered. Idempotent; never raises for an ended call."""

    async def wait_ended(self) -> HangupCause:
        """Return once the call has ended (after an answer, or a failed dial), with the cause."""

    def on_dtmf(self, callback: Callable[[str], None]) -> None:
        """DTMF digits received from the far end."""

    async def send_dtmf(self, digit: str) -> bool:
        """Send one digit to the far end; False when it cannot be sent now."""


class Dialler(Protocol):
    """A line that can place calls (SIP trunk, GSM modem, analog line, a registered desk phone)."""

    line_id: str

    async def dial(self, number: str, caller: CallerId | None = None) -> OutboundCall:
        """Start a call to ``number`` and return it at once, ringing. ``caller``: the identity to
        present (None: the line's default). Raises DialFailed when the line cannot dial now."""
