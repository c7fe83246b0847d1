"""The agent's Hold/Resume and keypad, through the real CallCenter, bridge and stored record layout
(the harness of test_transfer.py), and CallerHold's line signalling on its own."""
from __future__ import annotations

import asyncio

import pytest

from appliance.call_controls import CallerHold, CallerKeys, ControlError
from appliance.transfer_requests import ToAgent
from media.bridge import Bridge
from tests.appliance.test_transfer import WAIT_S, Caller, FakeLeg, Site, consulting, site  # noqa: F401  (site: fixture)


class HoldingCaller(Caller):
    """A SIP-like caller: its line can be told about hold and can send keys."""

    def __init__(self, call_id: str) -> None:
        super().__init__(call_id)
        self.line_states: list[str] = []
        self.keys: list[str] = []
        self.signalled = asyncio.Event()

    async def hold(self) -> bool:
        self.line_states.append("held")
        self.signalled.set()
        return True

    async def resume(self) -> bool:
        self.line_states.append("resumed")
        self.signalled.set()
        return True

    async def send_dtmf(self, digit: str) -> bool:
        self.keys.append(digit)
        return True


async def holding_call(site: Site, call_id: str = "h1") -> HoldingCaller:
    site.available("alice")
    call = HoldingCaller(call_id)
    site.tasks.append(asyncio.create_task(site.center.handle_inbound(call), name=f"test-call:{call_id}"))
    await site.answered_by(call, "alice")
    return call


def live(site: Site, call_id: str):  # type: ignore[no-untyped-def]
    return next(c for c in site.center.live_calls() if c.call_id == call_id)


async def line_reaches(call: HoldingCaller, states: list[str]) -> None:
    async with asyncio.timeout(WAIT_S):
        while call.line_states != states:
            call.signalled.clear()
            await call.signalled.wait()


async def test_hold_plays_music_tells_the_line_and_is_counted_in_the_record(site: Site) -> None:
    call = await holding_call(site)
    conv = site.center.conversation("h1")
    assert site.center.agent_hold("alice", True)
    await site.until(lambda: live(site, "h1").on_hold, "on_hold published")
    assert conv.bridge.on_hold and conv.bridge.agent is site.audio.legs["alice"]  # the agent stays connected
    await line_reaches(call, ["held"])
    music = conv.bridge._hold  # what the caller hears now is the queue's music, not alice
    assert music is not None
    assert site.center.agent_hold("alice", False)
    await site.until(lambda: not live(site, "h1").on_hold, "resume published")
    await call.audio.hears(site.audio.legs["alice"].frame)  # alice's voice reaches the caller again
    await line_reaches(call, ["held", "resumed"])
    assert site.center.agent_hold("alice", True)  # a second hold, left on until the caller leaves
    await site.until(lambda: live(site, "h1").on_hold, "second hold")
    call.leaves()
    rec = await site.record("h1")
    assert rec.holds == 2 and rec.hold_s is not None and 0.0 <= rec.hold_s <= rec.talk_s


async def test_hold_is_refused_during_a_transfer_and_ends_when_a_transfer_takes_the_caller(site: Site) -> None:
    call = await holding_call(site)
    assert site.center.agent_hold("alice", True)
    await line_reaches(call, ["held"])
    site.available("bob")
    site.center.transfer("alice", "h1", ToAgent("bob"))
    await site.until(lambda: site.offers("bob") != [], "bob offered")
    assert not site.center.agent_hold("alice", True)  # alice has no call now
    seg1 = await site.record("h1")
    assert seg1.holds == 1 and seg1.hold_s is not None
    site.acd.accept("bob", "h1-2")
    await site.until(lambda: site.bridged(call) is site.audio.legs["bob"], "bob bridged")
    await line_reaches(call, ["held", "resumed"])  # connected to bob: the line is resumed
    assert not live(site, "h1").on_hold
    await call.audio.hears(site.audio.legs["bob"].frame)
    call.leaves()
    seg2 = await site.record("h1-2")
    assert seg2.holds == 0 and seg2.hold_s is None


async def test_keys_reach_the_callers_line_in_order(site: Site) -> None:
    call = await holding_call(site)
    assert live(site, "h1").keys  # the console shows its keypad for this line
    assert await site.center.agent_keys("alice", "12#")
    assert call.keys == ["1", "2", "#"]
    with pytest.raises(ControlError):
        await site.center.agent_keys("alice", "12x")
    assert not await site.center.agent_keys("bob", "1")  # bob has no call
    call.leaves()
    site.available("bob")
    plain = await site.arrive("k2")  # a line that cannot send keys (an analog modem's inbound call)
    await site.answered_by(plain, "bob")
    assert not live(site, "k2").keys
    with pytest.raises(ControlError, match="cannot send keys"):
        await site.center.agent_keys("bob", "1")
    plain.leaves()


async def test_a_console_reloaded_during_a_consult_is_shown_the_consult_again(site: Site) -> None:
    await consulting(site)
    shown = site.center.transfer_shown("alice"), site.center.transfer_shown("bob")
    assert [(n.state, n.role) for n in shown if n is not None] == [("consulting", "from"), ("consulting", "to")]
    site.center.complete_transfer("alice", "c1")
    await site.until(lambda: site.center.conversation("c1").owner == "bob", "bob has the caller")
    assert site.center.transfer_shown("alice") is None and site.center.transfer_shown("bob") is None


# --- CallerHold on its own ----------------------------------------------------------------------------
class SlowLine:
    """Each hold/resume takes until the test releases it: requests pile up behind the first."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def hold(self) -> bool:
        return await self._do("hold")

    async def resume(self) -> bool:
        return await self._do("resume")

    async def _do(self, what: str) -> bool:
        self.calls.append(what)
        self.started.set()
        await self.release.wait()
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_quick_hold_resume_hold_leaves_the_line_held_with_two_requests() -> None:
    line, clock = SlowLine(), Clock()
    hold = CallerHold(Bridge(FakeLeg(1), FakeLeg(2), None), line, lambda: FakeLeg(3), "test", clock=clock)
    hold.hold()
    async with asyncio.timeout(WAIT_S):
        await line.started.wait()
    clock.now += 2.0
    hold.resume()
    clock.now += 1.0
    hold.hold()
    clock.now += 4.0
    line.release.set()
    async with asyncio.timeout(WAIT_S):
        while hold._tasks:
            await asyncio.wait(list(hold._tasks))
    assert line.calls == ["hold"]  # already held when the queued requests ran: nothing more to send
    assert hold.take_fields() == {"hold_s": 6.0, "holds": 2}
    clock.now += 3.0
    assert hold.take_fields() == {"hold_s": 3.0, "holds": 1}  # still held: counted for the next segment
    await hold.close()


async def test_a_line_without_hold_gets_music_only_and_errors_are_clear() -> None:
    bridge = Bridge(FakeLeg(1), FakeLeg(2), None)
    hold = CallerHold(bridge, object(), lambda: FakeLeg(3), "test")
    with pytest.raises(ControlError, match="not on hold"):
        hold.resume()
    hold.hold()
    assert bridge.on_hold and not hold._tasks
    with pytest.raises(ControlError, match="already on hold"):
        hold.hold()
    hold.resume()
    assert not bridge.on_hold
    with pytest.raises(ControlError, match="cannot send keys"):
        await CallerKeys(object(), "test").send("1")


async def test_a_failing_line_does_not_break_hold() -> None:
    class Broken:
        async def hold(self) -> bool:
            raise OSError("modem gone")

        async def resume(self) -> bool:
            return False

    bridge = Bridge(FakeLeg(1), FakeLeg(2), None)
    hold = CallerHold(bridge, Broken(), lambda: FakeLeg(3), "test")
    hold.hold()
    async with asyncio.timeout(WAIT_S):
        await asyncio.wait(list(hold._tasks))
    assert bridge.on_hold and hold.held  # the caller hears music all the same
    await hold.close()


async def test_after_a_blind_transfer_the_first_agent_gets_no_more_updates_of_the_call(site: Site) -> None:
    from appliance.call_events import CallUpdate

    from appliance.acd.agent import AgentState
    from appliance.acd.events import AgentChanged

    call = await holding_call(site)
    site.available("bob")
    site.center.transfer("alice", "h1", ToAgent("bob"))
    await site.until(lambda: site.offers("bob") != [], "bob offered")
    site.acd.accept("bob", "h1-2")
    await site.until(lambda: site.bridged(call) is site.audio.legs["bob"], "bob bridged")
    call.leaves()
    await site.record("h1-2")
    wrap_up = next(i for i, e in enumerate(site.events) if isinstance(e, AgentChanged)
                   and e.agent.agent_id == "alice" and e.agent.state is AgentState.WRAP_UP)
    later = [e.call for e in site.events[wrap_up:] if isinstance(e, CallUpdate)]
    assert later and all(c.agent_id != "alice" for c in later)  # no ghost call panel in alice's console


async def test_keys_pressed_quickly_queue_up_instead_of_being_refused() -> None:
    class Rtp:
        """Refuses a digit while the previous one is still on the wire, as RtpSession.send_dtmf does."""

        def __init__(self) -> None:
            self.busy = False
            self.sent: list[str] = []

        async def send_dtmf(self, digit: str) -> bool:
            if self.busy:
                return False
            self.busy = True
            try:
                await asyncio.sleep(0.02)  # the event's packets being paced out
            finally:
                self.busy = False
            self.sent.append(digit)
            return True

    line = Rtp()
    async with asyncio.timeout(WAIT_S):  # four clicks, four commands, all at once
        keys = CallerKeys(line, "test")
        await asyncio.gather(*(keys.send(key) for key in "123#"))
    assert line.sent == ["1", "2", "3", "#"]
