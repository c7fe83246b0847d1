"""Live-call snapshots published on the hub topic ``calls``."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LiveState(StrEnum):
    ARRIVING = "arriving"
    IVR = "ivr"  # the caller is in a menu (``LiveCallSnapshot.menu`` says which); no queue yet
    QUEUED = "queued"
    OFFERED = "offered"
    DIALING = "dialing"  # an agent's outbound call is ringing
    ON_CALL = "on_call"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class LiveCallSnapshot:
    call_id: str
    line_id: str
    line_kind: str
    caller_number: str | None
    caller_name: str | None
    queue_id: str | None
    state: LiveState
    since: float  # wall clock of the last state change
    arrived_at: float
    agent_id: str | None = None
    agent_name: str | None = None
    hangup_cause: str | None = None
    recording: bool = False
    segment: int = 1  # which party segment the call is in (2 after the first transfer, ...)
    transfer: str | None = None  # transfer phase while one is in progress ("consulting", ...), else None
    direction: str = "inbound"  # "inbound" | "outbound"
    on_hold: bool = False  # the agent put the caller on hold
    keys: bool = True  # the customer's line can be sent DTMF (the console shows its keypad)
    menu: str | None = None  # the IVR menu the caller is in (state "ivr"), else None


@dataclass(frozen=True, slots=True)
class CallUpdate:
    call: LiveCallSnapshot
