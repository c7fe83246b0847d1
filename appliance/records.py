"""Frozen records that the domain hands to storage. Storage owns their document layout."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class CallOutcome(StrEnum):
    ANSWERED = "answered"  # an agent talked to the caller
    ABANDONED = "abandoned"  # caller hung up while queued or while an agent was being offered the call
    NO_AGENT = "no_agent"  # the box gave up (no agent logged in, queue timeout)
    MENU_ENDED = "menu_ended"  # an IVR menu ended the call ("hangup" key, or its default)
    FAILED = "failed"  # line error before answer


@dataclass(frozen=True, slots=True)
class CallRecord:
    call_id: str
    line_id: str
    line_kind: str
    direction: str  # "inbound" | "outbound"
    from_number: str | None
    from_name: str | None
    to_number: str | None
    queue: str | None
    outcome: CallOutcome
    hangup_cause: str
    # wall-clock epoch seconds; None when the call never reached that point
    arrived_at: float
    enqueued_at: float | None = None
    offered_at: float | None = None  # first offer to an agent
    answered_at: float | None = None
    ended_at: float | None = None
    wrapup_ended_at: float | None = None
    wait_s: float | None = None  # enqueue -> answer, or enqueue -> abandon
    talk_s: float | None = None  # answer -> end
    wrapup_s: float | None = None  # end -> wrap-up done
    agent_id: str | None = None
    agent_name: str | None = None
    disposition: str | None = None
    offers: tuple[str, ...] = ()  # agent ids offered in order (ring timeouts, rejects)
    recording_path: str | None = None  # relative to the recordings folder (Store.recordings_dir())
    recording_s: float | None = None
    dtmf: str = ""  # digits the caller pressed
    hold_s: float | None = None  # time the agent kept the caller on hold (part of talk_s); None: never held
    holds: int = 0  # how many times the agent put the caller on hold
    customer_id: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    # transfers: one record per agent (or external party) segment of a call
    segment: int = 1  # 1 for the first party; n > 1 has call_id f"{parent_call_id}-{n}"
    transfer: str = ""  # how this segment was handed on: "blind" | "attended" | "" (it was not)
    transferred_to: str | None = None  # agent id, queue id or number this segment handed the caller to
    transferred_from: str | None = None  # agent id that handed the caller to this segment
    parent_call_id: str | None = None  # call_id of segment 1 (segment 1 names itself; None in old records)
    ivr: tuple[str, ...] = ()  # the caller's way through the menus: "main:2", "sales:timeout", ... (empty: no menu)
