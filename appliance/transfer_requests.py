"""What agents ask of a call's transfer, what they are told, and what the transfer waits for.

Frozen messages only; ``appliance.transfer`` acts on them inside the call's task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from appliance.lines import OutboundCall

if TYPE_CHECKING:
    from appliance.acd.router import QueuedCall


class TransferError(Exception):
    """A transfer request refused; the message is shown to the agent."""


# --- where to ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ToAgent:
    agent_id: str


@dataclass(frozen=True, slots=True)
class ToQueue:
    queue_id: str


@dataclass(frozen=True, slots=True)
class ToNumber:
    number: str


Target = ToAgent | ToQueue | ToNumber


def parse_target(doc: object) -> Target:
    """The console's ``to`` object: {"agent": id} | {"queue": id} | {"number": "+44..."}."""
    if isinstance(doc, dict):
        for key, kind in (("agent", ToAgent), ("queue", ToQueue), ("number", ToNumber)):
            value = doc.get(key)
            if isinstance(value, str) and value.strip():
                return kind(value.strip())
    raise TransferError("say where to transfer: an agent, a queue or a number")


def target_for_user(user: str, agents: dict[str, str], queues: set[str]) -> Target | None:
    """A desk phone's transfer target (the Refer-To user): an agent's id, an agent's desk phone
    extension (``agents``: agent id -> extension), a queue id, or else a number to dial."""
    user = user.strip()
    if user in agents:
        return ToAgent(user)
    by_phone = [agent for agent, ext in agents.items() if ext and ext == user]
    if by_phone:
        return ToAgent(by_phone[0])
    if user in queues:
        return ToQueue(user)
    digits = user.replace("-", "").replace(" ", "")
    if digits and all(c.isdigit() or c in "+*#" for c in digits):
        return ToNumber(digits)
    return None


# --- requests from the console (the requesting agent first) -------------------------------------
@dataclass(frozen=True, slots=True)
class BlindTransfer:
    agent_id: str
    target: Target


@dataclass(frozen=True, slots=True)
class Consult:
    agent_id: str
    to_agent: str


@dataclass(frozen=True, slots=True)
class CompleteTransfer:
    agent_id: str


@dataclass(frozen=True, slots=True)
class CancelConsult:
    agent_id: str


@dataclass(frozen=True, slots=True)
class Retrieve:
    agent_id: str


TransferRequest = BlindTransfer | Consult | CompleteTransfer | CancelConsult | Retrieve


# --- what happened to an offer or a dial (posted by callbacks into the call's task) -------------
@dataclass(frozen=True, slots=True)
class OfferAnswered:
    offer: QueuedCall
    agent_id: str


@dataclass(frozen=True, slots=True)
class OfferUnanswered:
    offer: QueuedCall
    reason: str


@dataclass(frozen=True, slots=True)
class DialAnswered:
    out: OutboundCall


@dataclass(frozen=True, slots=True)
class DialNotAnswered:
    reason: str


@dataclass(frozen=True, slots=True)
class TransferNotice:
    """Published on the ``calls`` topic for one agent's console."""

    call_id: str
    agent_id: str  # who is told
    state: str  # a Phase value, or "completed" | "cancelled" | "failed" | "transferred"
    role: str  # "from" (the transferring agent) | "to" (the consulted agent)
    peer: str | None  # the other agent's name, the queue or the number
    caller: str | None
    message: str



class TransferOps(Protocol):
    """What the agent console calls (``CallCenter`` implements it); each raises TransferError."""

    def transfer(self, agent_id: str, call_id: str | None, target: Target) -> None: ...
    def consult(self, agent_id: str, call_id: str | None, to_agent: str) -> None: ...
    def complete_transfer(self, agent_id: str, call_id: str | None) -> None: ...
    def cancel_consult(self, agent_id: str, call_id: str | None) -> None: ...
    def retrieve(self, agent_id: str, call_id: str | None) -> None: ...
    def transfer_shown(self, agent_id: str) -> TransferNotice | None: ...
