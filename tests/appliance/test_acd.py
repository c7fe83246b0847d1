"""The ACD's routing and agent state machine, driven through its public methods."""
from __future__ import annotations

import asyncio

import pytest

from appliance.acd.agent import AgentState
from appliance.acd.events import AgentChanged, OfferEnded, OfferMade
from appliance.acd.router import Acd, AcdError, QueuedCall
from appliance.hub import Hub
from appliance.lines import CallerId

WAIT_S = 2.0


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make_acd(hub: Hub, clock: Clock, *, ring: float = 5.0, wrapup: float = 5.0, rona: bool = True) -> Acd:
    return Acd(
        agents=[("alice", "Alice", ("q",)), ("bob", "Bob", ("q",)), ("carol", "Carol", ("other",))],
        queues=["q", "other"],
        ring_timeout_s=ring,
        wrapup_s=wrapup,
        pause_on_missed_offer=rona,
        publish=hub.topic("acd").publish,
        clock=clock,
    )


def call(cid: str, t: float) -> QueuedCall:
    return QueuedCall(cid, "q", CallerId("+441234567890"), "sip", enqueued_at=t)


async def next_of(sub, kind, pred=lambda e: True):
    async with asyncio.timeout(WAIT_S):
        while True:
            ev = await sub.get()
            if isinstance(ev, kind) and pred(ev):
                return ev


def go_available(acd: Acd, clock: Clock, *agents: str) -> None:
    for a in agents:
        acd.login(a)
        clock.t += 1
        acd.set_available(a)


async def test_login_pauses_then_available() -> None:
    hub, clock = Hub(), Clock()
    acd = make_acd(hub, clock)
    assert acd.snapshot("alice").state is AgentState.LOGGED_OUT
    acd.login("alice")
    snap = acd.snapshot("alice")
    assert snap.state is AgentState.PAUSED and snap.pause_reason == "logged in"
    acd.set_available("alice")
    assert acd.snapshot("alice").state is AgentState.AVAILABLE


async def test_longest_idle_agent_gets_the_offer() -> None:
    hub, clock = Hub(), Clock()
    sub = hub.topic("acd").subscribe()
    acd = make_acd(hub, clock)
    go_available(acd, clock, "bob", "alice")  # bob has been idle longer
    acd.enqueue(call("c1", clock.t))
    offer = await next_of(sub, OfferMade)
    assert (offer.call_id, offer.agent_id, offer.caller_number) == ("c1", "bob", "+441234567890")
    assert acd.snapshot("bob").state is AgentState.RESERVED
    assert acd.snapshot("alice").state is AgentState.AVAILABLE


async def test_agent_outside_queue_never_offered() -> None:
    hub, clock = Hub(), Clock()
    acd = make_acd(hub, clock)
    go_available(acd, clock, "carol")
    acd.enqueue(call("c1", clock.t))
    assert acd.snapshot("carol").state is AgentState.AVAILABLE
    assert [c.call_id for c in acd.waiting("q")] == ["c1"]


async def test_ring_timeout_moves_offer_to_next_agent_and_pauses_the_first() -> None:
    hub, clock = Hub(), Clock()
    sub = hub.topic("acd").subscribe()
    acd = make_acd(hub, clock, ring=0.05)
    go_available(acd, clock, "alice", "bob")
    acd.enqueue(call("c1", clock.t))
    first = await next_of(sub, OfferMade)
    assert first.agent_id == "alice"
    ended = await next_of(sub, OfferEnded)
    assert (ended.agent_id, ended.reason) == ("alice", "timeout")
    second = await next_of(sub, OfferMade)
    assert second.agent_id == "bob"
    alice = acd.snapshot("alice")
    assert alice.state is AgentState.PAUSED and alice.pause_reason == "missed offer"
    acd.close()


async def test_withdraw_ends_offer_at_once_and_agent_keeps_place() -> None:
    hub, clock = Hub(), Clock()
    sub = hub.topic("acd").subscribe()
    acd = make_acd(hub, clock)
    go_available(acd, clock, "alice", "bob")
    idle_before = acd.snapshot("alice").idle_since
    qc = call("c1", clock.t)
    acd.enqueue(qc)
    await next_of(sub, OfferMade)
    clock.t += 3
    acd.withdraw("c1")
    ended = await next_of(sub, OfferEnded)
    assert (ended.call_id, ended.reason) == ("c1", "caller hung up")
    alice = acd.snapshot("alice")
    assert alice.state is AgentState.AVAILABLE and alice.idle_since == idle_before
    assert qc.answered.cancelled()
    assert acd.waiting("q") == []
    with pytest.raises(AcdError):
        acd.accept("alice", "c1")  # no zombie offer to answer


async def test_accept_wrapup_and_disposition() -> None:
    hub, clock = Hub(), Clock()
    acd = make_acd(hub, clock)
    go_available(acd, clock, "alice")
    qc = call("c1", clock.t)
    acd.enqueue(qc)
    acd.accept("alice", "c1")
    assert await asyncio.wait_for(qc.answered, WAIT_S) == "alice"
    assert acd.snapshot("alice").state is AgentState.ON_CALL
    got: list[str | None] = []
    acd.call_ended("alice", "c1", on_wrapup_done=got.append)
    snap = acd.snapshot("alice")
    assert snap.state is AgentState.WRAP_UP and snap.wrapup_deadline == clock.t + 5.0
    acd.end_wrapup("alice", "resolved")
    assert got == ["resolved"]
    assert acd.snapshot("alice").state is AgentState.AVAILABLE
    acd.close()


async def test_wrapup_timer_ends_wrapup_without_disposition() -> None:
    hub, clock = Hub(), Clock()
    acd = make_acd(hub, clock, wrapup=0.05)
    go_available(acd, clock, "alice")
    acd.enqueue(call("c1", clock.t))
    acd.accept("alice", "c1")
    got: list[str | None] = []
    sub = hub.topic("acd").subscribe()
    acd.call_ended("alice", "c1", on_wrapup_done=got.append)
    await next_of(sub, AgentChanged, lambda e: e.agent.agent_id == "alice" and e.agent.state is AgentState.AVAILABLE)
    assert got == [None]


async def test_pause_during_call_applies_after_wrapup() -> None:
    hub, clock = Hub(), Clock()
    acd = make_acd(hub, clock)
    go_available(acd, clock, "alice")
    acd.enqueue(call("c1", clock.t))
    acd.accept("alice", "c1")
    acd.pause("alice", "lunch")
    assert acd.snapshot("alice").state is AgentState.ON_CALL
    acd.call_ended("alice", "c1", on_wrapup_done=lambda d: None)
    acd.end_wrapup("alice", None)
    snap = acd.snapshot("alice")
    assert snap.state is AgentState.PAUSED and snap.pause_reason == "lunch"
    acd.close()


@pytest.mark.parametrize("leave,reason,state", [
    (lambda acd: acd.pause("alice", "desk phone failed: answered without audio"), "rejected", AgentState.PAUSED),
    (lambda acd: acd.logout("alice"), "logged out", AgentState.LOGGED_OUT),
], ids=["pause", "logout"])
async def test_leaving_while_an_offer_rings_moves_the_call_to_the_next_agent_at_once(leave, reason, state) -> None:
    hub, clock = Hub(), Clock()
    sub = hub.topic("acd").subscribe()
    acd = make_acd(hub, clock)  # ring timeout 5 s: the next offer must not wait for it
    go_available(acd, clock, "alice", "bob")
    acd.enqueue(call("c1", clock.t))
    assert (await next_of(sub, OfferMade)).agent_id == "alice"
    leave(acd)
    ended = await next_of(sub, OfferEnded)
    assert (ended.agent_id, ended.reason) == ("alice", reason)
    assert acd.snapshot("bob").state is AgentState.RESERVED and acd.snapshot("bob").call_id == "c1"
    alice = acd.snapshot("alice")
    assert alice.state is state
    if state is AgentState.PAUSED:
        assert alice.pause_reason == "desk phone failed: answered without audio"
    acd.close()


async def test_reject_offers_next_agent_not_the_same_one() -> None:
    hub, clock = Hub(), Clock()
    sub = hub.topic("acd").subscribe()
    acd = make_acd(hub, clock)
    go_available(acd, clock, "alice", "bob")
    acd.enqueue(call("c1", clock.t))
    assert (await next_of(sub, OfferMade)).agent_id == "alice"
    acd.reject("alice", "c1")
    assert (await next_of(sub, OfferMade)).agent_id == "bob"
    acd.close()


async def test_a_lone_agent_who_rejects_is_not_offered_the_same_call_straight_back(monkeypatch) -> None:  # noqa: ANN001
    from appliance.acd import router

    monkeypatch.setattr(router, "REOFFER_AFTER_DECLINE_S", 0.3)
    hub, clock = Hub(), Clock()
    sub = hub.topic("acd").subscribe()
    acd = make_acd(hub, clock)
    go_available(acd, clock, "alice")
    acd.enqueue(call("c1", clock.t))
    acd.enqueue(call("c2", clock.t + 1))
    assert (await next_of(sub, OfferMade)).call_id == "c1"
    acd.reject("alice", "c1")
    second = await next_of(sub, OfferMade)  # the next caller goes first, not c1 again
    assert (second.agent_id, second.call_id) == ("alice", "c2")
    acd.reject("alice", "c2")
    clock.t += 0.1
    assert acd.snapshot("alice").state is AgentState.AVAILABLE
    with pytest.raises(TimeoutError):  # nothing is offered within the cooldown
        async with asyncio.timeout(0.1):
            await next_of(sub, OfferMade)
    assert acd._redispatch is not None  # one pending round for both cooled-down calls, not one per pass
    clock.t += 1.0  # the cooldown has passed: a new round
    again = await next_of(sub, OfferMade)
    assert (again.agent_id, again.call_id) == ("alice", "c1")
    acd.reject("alice", "c1")
    assert acd._redispatch is not None
    acd.close()
    assert acd._redispatch is None  # nothing runs on a closed ACD


async def test_invalid_transitions_are_refused() -> None:
    hub, clock = Hub(), Clock()
    acd = make_acd(hub, clock)
    with pytest.raises(AcdError):
        acd.end_wrapup("alice", None)
    with pytest.raises(AcdError):
        acd.set_available("nobody")
    go_available(acd, clock, "alice")
    acd.enqueue(call("c1", clock.t))
    acd.accept("alice", "c1")
    with pytest.raises(AcdError):
        acd.logout("alice")
    acd.close()
