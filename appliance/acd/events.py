"""Domain events the ACD publishes on the hub topic ``acd``."""
from __future__ import annotations

from dataclasses import dataclass

from appliance.acd.agent import AgentSnapshot


@dataclass(frozen=True, slots=True)
class AgentChanged:
    agent: AgentSnapshot


@dataclass(frozen=True, slots=True)
class HistoryItem:
    """One earlier contact with the caller, shown beside an offer."""

    kind: str  # "call" | "sms" | "chat"
    at: float
    summary: str


@dataclass(frozen=True, slots=True)
class OfferMade:
    call_id: str
    agent_id: str
    queue_id: str
    caller_number: str | None
    caller_name: str | None
    line_id: str
    enqueued_at: float
    offered_at: float
    ring_timeout_s: float
    customer_id: str | None = None
    customer_name: str | None = None
    history: tuple[HistoryItem, ...] = ()
    kind: str = "call"  # "call" (from a queue) | "transfer" (blind, directed) | "consult" (attended, directed)
    from_agent: str | None = None  # the agent transferring or consulting
    from_agent_name: str | None = None


@dataclass(frozen=True, slots=True)
class OfferEnded:
    call_id: str
    agent_id: str
    reason: str  # "answered" | "rejected" | "timeout" | "caller hung up" | "logged out"


@dataclass(frozen=True, slots=True)
class QueueChanged:
    queue_id: str
    waiting: int
    longest_wait_since: float | None  # wall clock enqueue time of the oldest waiting call


AcdEvent = AgentChanged | OfferMade | OfferEnded | QueueChanged
