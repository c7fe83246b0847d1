"""The agent state machine: explicit states and the transitions allowed between them."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RESERVED = "reserved"  # an offer is ringing at the agent
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


_ALLOWED: dict[AgentState, frozenset[AgentState]] = {
    AgentState.LOGGED_OUT: frozenset({AgentState.AVAILABLE, AgentState.PAUSED}),
    # AVAILABLE/PAUSED -> ON_CALL: the agent places an outbound call (click-to-dial)
    AgentState.AVAILABLE: frozenset({AgentState.RESERVED, AgentState.ON_CALL, AgentState.PAUSED, AgentState.LOGGED_OUT}),
    AgentState.RESERVED: frozenset({AgentState.ON_CALL, AgentState.AVAILABLE, AgentState.PAUSED, AgentState.LOGGED_OUT}),
    # ON_CALL -> AVAILABLE: a consult that did not become a transfer (the agent only helped a colleague)
    AgentState.ON_CALL: frozenset({AgentState.WRAP_UP, AgentState.AVAILABLE, AgentState.LOGGED_OUT}),
    AgentState.WRAP_UP: frozenset({AgentState.AVAILABLE, AgentState.PAUSED, AgentState.LOGGED_OUT}),
    AgentState.PAUSED: frozenset({AgentState.AVAILABLE, AgentState.ON_CALL, AgentState.LOGGED_OUT}),
}


class InvalidTransition(Exception):
    def __init__(self, agent_id: str, src: AgentState, dst: AgentState) -> None:
        super().__init__(f"agent {agent_id} cannot go from {src} to {dst}")
        self.src, self.dst = src, dst


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    agent_id: str
    name: str
    state: AgentState
    since: float  # wall clock of the last state change
    idle_since: float | None  # when the agent last became available (longest-idle routing)
    pause_reason: str | None = None
    call_id: str | None = None  # the call on offer, on call, or in wrap-up
    wrapup_deadline: float | None = None
    queues: tuple[str, ...] = ()
    calls_handled: int = 0


class Agent:
    """One agent's live state; owned by the ACD, published as ``AgentSnapshot``."""

    def __init__(self, agent_id: str, name: str, queues: tuple[str, ...], now: float) -> None:
        self.agent_id = agent_id
        self.name = name
        self.queues = queues
        self.state = AgentState.LOGGED_OUT
        self.since = now
        self.idle_since: float | None = None
        self.pause_reason: str | None = None
        self.call_id: str | None = None
        self.wrapup_deadline: float | None = None
        self.calls_handled = 0

    def move(self, dst: AgentState, now: float, *, reason: str | None = None) -> AgentState:
        src = self.state
        if dst not in _ALLOWED[src]:
            raise InvalidTransition(self.agent_id, src, dst)
        self.state = dst
        self.since = now
        self.pause_reason = reason if dst is AgentState.PAUSED else None
        if dst is AgentState.AVAILABLE:
            self.idle_since = now
        if dst in (AgentState.AVAILABLE, AgentState.PAUSED, AgentState.LOGGED_OUT):
            self.call_id = None
            self.wrapup_deadline = None
        return src

    def snapshot(self) -> AgentSnapshot:
        return AgentSnapshot(
            agent_id=self.agent_id,
            name=self.name,
            state=self.state,
            since=self.since,
            idle_since=self.idle_since,
            pause_reason=self.pause_reason,
            call_id=self.call_id,
            wrapup_deadline=self.wrapup_deadline,
            queues=self.queues,
            calls_handled=self.calls_handled,
        )
