"""The ACD: one queue per config entry, longest-idle-agent routing, offers and wrap-up.

Transfers use the same offer machinery: a *directed* offer (``offer_directed``) rings one
named agent (RESERVED, ring timeout, reject) without entering any queue; a call moved
back to a queue is enqueued with ``priority`` so it waits ahead of new calls.

All state changes happen synchronously on the event loop thread; timers (ring timeout,
wrap-up) are loop timers owned here. Call tasks wait on the future of their
``QueuedCall``, which resolves with the agent id that answered.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from appliance.acd.agent import Agent, AgentSnapshot, AgentState, InvalidTransition
from appliance.acd.events import AcdEvent, AgentChanged, HistoryItem, OfferEnded, OfferMade, QueueChanged
from appliance.lines import CallerId

log = logging.getLogger(__name__)

REOFFER_AFTER_DECLINE_S = 10.0  # when every ready agent has declined a call, offer it round again after this


class AcdError(Exception):
    """A request the ACD refuses; the message is shown to the agent."""


@dataclass(eq=False)
class QueuedCall:
    call_id: str
    queue_id: str
    caller: CallerId
    line_id: str
    enqueued_at: float
    answered: asyncio.Future[str] = field(repr=False, default=None)  # type: ignore[assignment]
    offer_changed: asyncio.Event = field(repr=False, default_factory=asyncio.Event)  # set on every offer start/end
    offered_to: str | None = None
    offered_at: float | None = None
    first_offered_at: float | None = None
    offers: list[str] = field(default_factory=list)
    declined: set[str] = field(default_factory=set)
    declined_at: float = 0.0  # when the last agent declined (rejected or let it ring out)
    customer_id: str | None = None
    customer_name: str | None = None
    history: tuple[HistoryItem, ...] = ()
    priority: int = 0  # transferred calls (1) wait ahead of new calls (0); FIFO within a priority
    target: str | None = None  # directed offer: rings only this agent and never enters a queue
    kind: str = "call"  # "call" | "transfer" | "consult" (shown with the offer)
    from_agent: str | None = None  # the agent transferring or consulting
    end_reason: str | None = None  # why a directed offer ended unanswered ("rejected", "timeout", ...)
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class Acd:
    def __init__(
        self,
        *,
        agents: list[tuple[str, str, tuple[str, ...]]],
        queues: list[str],
        ring_timeout_s: float,
        wrapup_s: float,
        pause_on_missed_offer: bool,
        publish: Callable[[AcdEvent], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._publish = publish
        self.ring_timeout_s = ring_timeout_s
        self.wrapup_s = wrapup_s
        self.pause_on_missed_offer = pause_on_missed_offer
        now = clock()
        self._agents: dict[str, Agent] = {a: Agent(a, n, q, now) for a, n, q in agents}
        self._queues: dict[str, list[QueuedCall]] = {q: [] for q in queues}
        self._wrapup_timers: dict[str, asyncio.TimerHandle] = {}
        self._redispatch: asyncio.TimerHandle | None = None  # a cooled-down call's next round (one at a time)
        self._pause_after_wrapup: dict[str, str] = {}
        self._wrapup_done: dict[str, Callable[[str | None], None]] = {}
        self._directed: dict[str, QueuedCall] = {}  # call id -> directed offer ringing its target

    # --- agents ------------------------------------------------------------------------
    def snapshot(self, agent_id: str) -> AgentSnapshot:
        return self._agent(agent_id).snapshot()

    def agents(self) -> list[AgentSnapshot]:
        return [a.snapshot() for a in self._agents.values()]

    def add_agent(self, agent_id: str, name: str, queues: tuple[str, ...]) -> None:
        if agent_id in self._agents:
            agent = self._agents[agent_id]
            agent.name, agent.queues = name, queues
        else:
            self._agents[agent_id] = Agent(agent_id, name, queues, self._clock())
        self._emit_agent(self._agents[agent_id])

    def remove_agent(self, agent_id: str) -> None:
        if agent_id in self._agents:
            self.logout(agent_id)
            del self._agents[agent_id]

    def add_queue(self, queue_id: str) -> None:
        """A queue created live (by the site admin); agents join it through their config."""
        self._queues.setdefault(queue_id, [])
        self._emit_queue(queue_id)

    def login(self, agent_id: str) -> None:
        agent = self._agent(agent_id)
        if agent.state is AgentState.LOGGED_OUT:
            self._move(agent, AgentState.PAUSED, reason="logged in")

    def set_available(self, agent_id: str) -> None:
        agent = self._agent(agent_id)
        if agent.state is AgentState.AVAILABLE:
            return
        if agent.state is AgentState.WRAP_UP:
            raise AcdError("finish wrap-up first")
        if agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
            raise AcdError("you are on a call")
        self._move(agent, AgentState.AVAILABLE)
        self._dispatch()

    def pause(self, agent_id: str, reason: str) -> None:
        agent = self._agent(agent_id)
        reason = reason.strip() or "break"
        if agent.state in (AgentState.ON_CALL, AgentState.WRAP_UP):
            self._pause_after_wrapup[agent_id] = reason  # applied when wrap-up ends
            return
        offered = agent.state is AgentState.RESERVED
        if offered:
            self._end_offer_for_agent(agent, "rejected")
        self._move(agent, AgentState.PAUSED, reason=reason)
        if offered:
            self._dispatch()  # the caller goes to the next available agent now, as after a reject

    def logout(self, agent_id: str) -> None:
        agent = self._agent(agent_id)
        if agent.state is AgentState.ON_CALL:
            raise AcdError("hang up before logging out")
        offered = agent.state is AgentState.RESERVED
        if offered:
            self._end_offer_for_agent(agent, "logged out")
        self._cancel_wrapup_timer(agent_id)
        if agent.state is not AgentState.LOGGED_OUT:
            self._move(agent, AgentState.LOGGED_OUT)
        if offered:
            self._dispatch()  # the caller goes to the next available agent now

    # --- calls ---------------------------------------------------------------------------
    def enqueue(self, call: QueuedCall) -> None:
        if call.queue_id not in self._queues:
            raise AcdError(f"unknown queue {call.queue_id}")
        call.answered = asyncio.get_running_loop().create_future()
        calls = self._queues[call.queue_id]
        at = next((i for i, c in enumerate(calls) if c.priority < call.priority), len(calls))
        calls.insert(at, call)
        self._emit_queue(call.queue_id)
        self._dispatch()

    def offer_directed(self, call: QueuedCall) -> None:
        """Ring ``call.target`` only (transfer or consult). The agent must be available.

        ``call.answered`` resolves with the agent id, or is cancelled when the offer ends
        unanswered (``call.end_reason`` says why: rejected, timeout, logged out, withdrawn).
        """
        if call.target is None:
            raise AcdError("a directed offer needs a target agent")
        agent = self._agent(call.target)
        if agent.state is not AgentState.AVAILABLE:
            raise AcdError(f"{agent.name} is not available ({agent.state})")
        if call.call_id in self._directed or self._find(call.call_id) is not None:
            raise AcdError(f"call {call.call_id} is already being offered")
        call.answered = asyncio.get_running_loop().create_future()
        self._directed[call.call_id] = call
        self._offer(call, agent)

    def withdraw(self, call_id: str) -> QueuedCall | None:
        """The caller left (or the box gave up): remove the call and end any offer at once."""
        call = self._find(call_id)
        if call is None:
            return None
        directed = self._directed.pop(call_id, None) is not None
        if not directed:
            self._queues[call.queue_id].remove(call)
        if call.offered_to is not None:
            agent = self._agents.get(call.offered_to)
            self._clear_offer(call, "caller hung up")
            if agent is not None and agent.state is AgentState.RESERVED:
                idle_since = agent.idle_since
                self._move(agent, AgentState.AVAILABLE)
                agent.idle_since = idle_since  # the agent keeps its place in the idle order
        if not call.answered.done():
            call.end_reason = call.end_reason or "withdrawn"
            call.answered.cancel()
        if not directed:
            self._emit_queue(call.queue_id)
        self._dispatch()
        return call

    def accept(self, agent_id: str, call_id: str) -> QueuedCall:
        agent = self._agent(agent_id)
        call = self._find(call_id)
        if call is None or call.offered_to != agent_id or agent.state is not AgentState.RESERVED:
            raise AcdError("this call is no longer offered to you")
        self._clear_offer(call, "answered")
        directed = self._directed.pop(call_id, None) is not None
        if not directed:
            self._queues[call.queue_id].remove(call)
        self._move(agent, AgentState.ON_CALL)
        agent.call_id = call_id
        if call.kind != "consult":  # a consult counts only if it becomes a transfer (take_over)
            agent.calls_handled += 1
        self._emit_agent(agent)
        call.answered.set_result(agent_id)
        if not directed:
            self._emit_queue(call.queue_id)
        return call

    def take_over(self, agent_id: str, call_id: str) -> None:
        """An attended transfer completed: the consulted agent now handles the call (counted once)."""
        agent = self._agent(agent_id)
        if agent.state is not AgentState.ON_CALL or agent.call_id != call_id:
            raise AcdError(f"{agent.name} is no longer on the consult")
        agent.calls_handled += 1
        self._emit_agent(agent)

    def consult_ended(self, agent_id: str, call_id: str) -> None:
        """A consult that did not become a transfer: the consulted agent is free again (no wrap-up)."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.state is not AgentState.ON_CALL or agent.call_id != call_id:
            return
        reason = self._pause_after_wrapup.pop(agent_id, None)
        if reason:
            self._move(agent, AgentState.AVAILABLE)
            self._move(agent, AgentState.PAUSED, reason=reason)
        else:
            self._move(agent, AgentState.AVAILABLE)
            self._dispatch()

    def reject(self, agent_id: str, call_id: str) -> None:
        agent = self._agent(agent_id)
        call = self._find(call_id)
        if call is None or call.offered_to != agent_id:
            raise AcdError("this call is no longer offered to you")
        self._end_offer_for_agent(agent, "rejected")
        self._move(agent, AgentState.AVAILABLE)
        self._dispatch()

    def call_ended(self, agent_id: str, call_id: str, *, on_wrapup_done: Callable[[str | None], None]) -> None:
        """The agent's call ended: start the timed wrap-up."""
        agent = self._agent(agent_id)
        if agent.state is not AgentState.ON_CALL or agent.call_id != call_id:
            return
        self._move(agent, AgentState.WRAP_UP)
        agent.call_id = call_id
        agent.wrapup_deadline = self._clock() + self.wrapup_s
        self._emit_agent(agent)
        self._wrapup_done[agent_id] = on_wrapup_done
        handle = asyncio.get_running_loop().call_later(self.wrapup_s, self.end_wrapup, agent_id, None)
        self._wrapup_timers[agent_id] = handle

    def end_wrapup(self, agent_id: str, disposition: str | None) -> None:
        agent = self._agent(agent_id)
        if agent.state is not AgentState.WRAP_UP:
            raise AcdError("you are not in wrap-up")
        self._cancel_wrapup_timer(agent_id)
        done = self._wrapup_done.pop(agent_id, None)
        if done is not None:
            done(disposition)
        reason = self._pause_after_wrapup.pop(agent_id, None)
        if reason:
            self._move(agent, AgentState.PAUSED, reason=reason)
        else:
            self._move(agent, AgentState.AVAILABLE)
            self._dispatch()

    def start_outbound(self, agent_id: str, call_id: str) -> None:
        """The agent places a call (click-to-dial): available or paused -> on call. A paused agent
        returns to the same pause after the wrap-up."""
        agent = self._agent(agent_id)
        if agent.state not in (AgentState.AVAILABLE, AgentState.PAUSED):
            raise AcdError({AgentState.RESERVED: "answer or reject the call that is ringing first",
                            AgentState.ON_CALL: "you are on a call",
                            AgentState.WRAP_UP: "finish wrap-up first",
                            AgentState.LOGGED_OUT: "log in first"}.get(agent.state, "you cannot dial now"))
        if agent.state is AgentState.PAUSED:
            self._pause_after_wrapup[agent_id] = agent.pause_reason or "break"
        self._move(agent, AgentState.ON_CALL)
        agent.call_id = call_id
        agent.calls_handled += 1
        self._emit_agent(agent)

    def waiting(self, queue_id: str) -> list[QueuedCall]:
        return list(self._queues.get(queue_id, ()))

    def close(self) -> None:
        if self._redispatch is not None:
            self._redispatch.cancel()
            self._redispatch = None
        for call in [c for q in self._queues.values() for c in q] + list(self._directed.values()):
            if call._timer:
                call._timer.cancel()
        for handle in self._wrapup_timers.values():
            handle.cancel()

    # --- routing ---------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for queue_id, calls in self._queues.items():
            for call in calls:
                if call.offered_to is not None:
                    continue
                ready = [a for a in self._agents.values() if a.state is AgentState.AVAILABLE and queue_id in a.queues]
                if not ready:
                    break  # FIFO: later calls in this queue wait behind this one
                agent = self._pick_agent(call, ready)
                if agent is None:
                    continue  # every ready agent just declined this call: the next caller may go first
                self._offer(call, agent)

    def _dispatch_later(self, wait: float) -> None:
        """One pending re-dispatch at a time, at the earliest time any cooled-down call is due."""
        loop = asyncio.get_running_loop()
        due = loop.time() + wait
        if self._redispatch is not None and self._redispatch.when() <= due:
            return
        if self._redispatch is not None:
            self._redispatch.cancel()
        self._redispatch = loop.call_at(due, self._redispatched)

    def _redispatched(self) -> None:
        self._redispatch = None
        self._dispatch()

    def _pick_agent(self, call: QueuedCall, ready: list[Agent]) -> Agent | None:
        fresh = [a for a in ready if a.agent_id not in call.declined]
        if not fresh:  # everyone has declined once: a new round, but not at once (the same agent
            wait = call.declined_at + REOFFER_AFTER_DECLINE_S - self._clock()  # would get it straight back)
            if wait > 0:
                self._dispatch_later(wait)
                return None
            call.declined.clear()
            fresh = ready
        return min(fresh, key=lambda a: (a.idle_since or 0.0, a.agent_id))

    def _offer(self, call: QueuedCall, agent: Agent) -> None:
        now = self._clock()
        self._move(agent, AgentState.RESERVED)
        agent.call_id = call.call_id
        call.offered_to = agent.agent_id
        call.offered_at = now
        call.first_offered_at = call.first_offered_at or now
        call.offers.append(agent.agent_id)
        call.offer_changed.set()
        call._timer = asyncio.get_running_loop().call_later(self.ring_timeout_s, self._ring_timeout, call.call_id, agent.agent_id)
        log.info("offer call %s (%s) to agent %s", call.call_id, call.caller.number or "withheld", agent.agent_id)
        self._emit_agent(agent)
        self._publish(
            OfferMade(
                call_id=call.call_id,
                agent_id=agent.agent_id,
                queue_id=call.queue_id,
                caller_number=call.caller.number,
                caller_name=call.caller.name,
                line_id=call.line_id,
                enqueued_at=call.enqueued_at,
                offered_at=now,
                ring_timeout_s=self.ring_timeout_s,
                customer_id=call.customer_id,
                customer_name=call.customer_name,
                history=call.history,
                kind=call.kind,
                from_agent=call.from_agent,
                from_agent_name=self._agents[call.from_agent].name if call.from_agent in self._agents else None,
            )
        )

    def _ring_timeout(self, call_id: str, agent_id: str) -> None:
        call = self._find(call_id)
        agent = self._agents.get(agent_id)
        if call is None or agent is None or call.offered_to != agent_id:
            return
        log.info("agent %s did not answer call %s within %.0fs; moving on", agent_id, call_id, self.ring_timeout_s)
        self._end_offer_for_agent(agent, "timeout")
        if self.pause_on_missed_offer:
            self._move(agent, AgentState.PAUSED, reason="missed offer")
        else:
            self._move(agent, AgentState.AVAILABLE)
        self._dispatch()

    def _end_offer_for_agent(self, agent: Agent, reason: str) -> None:
        call = self._find(agent.call_id) if agent.call_id else None
        if call is not None and call.offered_to == agent.agent_id:
            call.declined.add(agent.agent_id)
            call.declined_at = self._clock()
            self._clear_offer(call, reason)

    def _clear_offer(self, call: QueuedCall, reason: str) -> None:
        if call._timer is not None:
            call._timer.cancel()
            call._timer = None
        agent_id, call.offered_to = call.offered_to, None
        call.offer_changed.set()
        if agent_id is not None:
            self._publish(OfferEnded(call.call_id, agent_id, reason))
        if reason != "answered" and self._directed.pop(call.call_id, None) is not None:
            call.end_reason = reason  # a directed offer rings once: its owner decides what comes next
            if not call.answered.done():
                call.answered.cancel()

    # --- helpers ------------------------------------------------------------------------------
    def _agent(self, agent_id: str) -> Agent:
        try:
            return self._agents[agent_id]
        except KeyError:
            raise AcdError(f"unknown agent {agent_id}") from None

    def _find(self, call_id: str | None) -> QueuedCall | None:
        if call_id in self._directed:
            return self._directed[call_id]
        for calls in self._queues.values():
            for call in calls:
                if call.call_id == call_id:
                    return call
        return None

    def _move(self, agent: Agent, dst: AgentState, *, reason: str | None = None) -> None:
        try:
            src = agent.move(dst, self._clock(), reason=reason)
        except InvalidTransition as exc:
            raise AcdError(str(exc)) from None
        log.info("agent %s: %s -> %s%s", agent.agent_id, src, dst, f" ({reason})" if reason else "")
        self._emit_agent(agent)

    def _cancel_wrapup_timer(self, agent_id: str) -> None:
        handle = self._wrapup_timers.pop(agent_id, None)
        if handle is not None:
            handle.cancel()

    def _emit_agent(self, agent: Agent) -> None:
        self._publish(AgentChanged(agent.snapshot()))

    def _emit_queue(self, queue_id: str) -> None:
        calls = self._queues[queue_id]
        self._publish(QueueChanged(queue_id, len(calls), calls[0].enqueued_at if calls else None))
