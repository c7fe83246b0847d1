"""Frozen records that the domain hands to storage. Storage owns their document layout."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class CallOutcome(StrEnum):
    ANSWERED = "answered"  # an agent talked to the caller
    ABANDONED = "abandoned"  # caller hung up while queued or while an agent was being offered the call
    NO_AGENT = "no_agent"  # the box gave up (no agent logged in, queue timeout)
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
    customer_id: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
