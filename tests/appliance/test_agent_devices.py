"""Agents taking queue calls on a registered SIP desk phone, driven through the real ACD."""
from __future__ import annotations

import asyncio
import logging

import pytest

from appliance.acd.agent import AgentState
from appliance.acd.events import AgentChanged
from appliance.acd.router import Acd, QueuedCall
from appliance.agent_devices import PHONE_DOWN_PAUSE, AgentDevices, Device, DeviceError
from appliance.hub import Hub, Subscription
from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause
from drivers.sip import qualify
from drivers.sip.line import SipLine, SipLineConfig
from drivers.sip.message import response_bytes
from tests.appliance.test_outbound import FakeCall, FakeLeg
from tests.drivers.sip.outgoing_peer import reply
from tests.drivers.sip.peer import SipPeer
from tests.drivers.sip.test_line_security import USERS
from tests.drivers.sip.test_qualify import answer, barrier, next_options, sign_in

WAIT_S = 5.0


class FakePhoneLine:
    def __init__(self) -> None:
        self.registered: set[str] = set()
        self.unreachable: set[str] = set()  # registered, but no longer answering the line's OPTIONS
        self.calls: list[FakeCall] = []
        self.rung = asyncio.Event()

    def bindings(self, extension: str) -> tuple:
        return ("contact",) if extension in self.registered else ()

    def reachable(self, extension: str) -> bool | None:
        if extension not in self.registered:
            return None
        return extension not in self.unreachable

    async def dial_extension(self, extension: str, caller: CallerId | None = None) -> FakeCall:
        call = FakeCall(f"ext{extension}", extension, caller)
        self.calls.append(call)
        self.rung.set()
        return call


class Browser:
    def __init__(self) -> None:
        self.leg = FakeLeg()

    def media_for(self, agent_id: str):  # noqa: ANN201
        return self.leg

    async def wait_reconnected(self, agent_id, old, timeout):  # noqa: ANN001, ANN201
        return None


async def setup(ring: float = 5.0):  # noqa: ANN201
    hub = Hub()
    acd = Acd(agents=[("alice", "Alice", ("q",)), ("bob", "Bob", ("q",))], queues=["q"], ring_timeout_s=ring,
              wrapup_s=30, pause_on_missed_offer=False, publish=hub.topic("acd").publish)
    phone = FakePhoneLine()
    devices = AgentDevices(acd, hub.topic("acd"), Browser(), lambda: phone, {"alice": "201", "bob": ""}.get)
    hung_up: list[str] = []
    hung_up_event = asyncio.Event()

    def on_hangup(agent_id: str) -> bool:
        hung_up.append(agent_id)
        hung_up_event.set()
        return True

    devices.on_phone_hangup = on_hangup
    devices.hung_up_event = hung_up_event  # type: ignore[attr-defined]  # for the tests below
    devices.start()
    return hub, acd, phone, devices, hung_up


async def wait_state(hub_sub, agent: str, state: AgentState) -> None:  # noqa: ANN001
    async with asyncio.timeout(WAIT_S):
        async for ev in hub_sub:
            if isinstance(ev, AgentChanged) and ev.agent.agent_id == agent and ev.agent.state is state:
                return


async def rung(phone: FakePhoneLine, count: int) -> FakeCall:
    async with asyncio.timeout(WAIT_S):
        while len(phone.calls) < count:
            phone.rung.clear()
            await phone.rung.wait()
    return phone.calls[count - 1]


def offer_c1(hub: Hub, acd: Acd, devices: AgentDevices) -> Subscription:
    """Alice on her desk phone, then bob on the console, go available (alice has been idle
    longest, so her phone is rung first) and call c1 arrives. Returns the ACD events from then on."""
    devices.set_device("alice", "phone")
    for a in ("alice", "bob"):
        acd.login(a)
        acd.set_available(a)
    sub = hub.topic("acd").subscribe(maxsize=256)
    acd.enqueue(QueuedCall("c1", "q", CallerId("+447700900123"), "sip", enqueued_at=0.0))
    return sub


async def test_switching_to_the_phone_needs_a_configured_and_registered_extension() -> None:
    hub, acd, phone, devices, _ = await setup()
    with pytest.raises(DeviceError, match="no desk phone is configured"):
        devices.set_device("bob", "phone")
    with pytest.raises(DeviceError, match=r"extension 201\) is not registered"):
        devices.set_device("alice", "phone")
    with pytest.raises(DeviceError, match="unknown device"):
        devices.set_device("alice", "fax")
    phone.registered.add("201")
    assert devices.set_device("alice", "phone") is Device.PHONE
    assert devices.ready_problem("alice") is None
    phone.registered.clear()
    assert "not registered" in devices.ready_problem("alice")
    await devices.stop()


async def test_a_registered_phone_that_stopped_answering_cannot_take_calls() -> None:
    _, _, phone, devices, _ = await setup()
    phone.registered.add("201")
    phone.unreachable.add("201")
    with pytest.raises(DeviceError, match=r"extension 201\) is not reachable: it is registered but does not answer"):
        devices.set_device("alice", "phone")
    phone.unreachable.clear()
    assert devices.set_device("alice", "phone") is Device.PHONE
    phone.unreachable.add("201")  # it goes away while the agent is on the phone: not ready (no offers to it)
    assert "not reachable" in devices.ready_problem("alice")
    phone.unreachable.clear()
    assert devices.ready_problem("alice") is None
    await devices.stop()


async def test_phone_problem_follows_the_real_sip_line_qualify(monkeypatch) -> None:
    monkeypatch.setattr(qualify, "QUALIFY_TIMEOUT_S", 0.3)

    async def no_calls(call) -> None:
        raise AssertionError("no INVITE expected")

    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, users=USERS, qualify_s=0.5), no_calls)
    await line.start()
    desk = await SipPeer(("127.0.0.1", line.udp_port)).open()
    acd = Acd(agents=[("alice", "Alice", ("q",))], queues=["q"], ring_timeout_s=5, wrapup_s=30,
              pause_on_missed_offer=False, publish=Hub().topic("acd").publish)
    devices = AgentDevices(acd, Hub().topic("acd"), Browser(), lambda: line, {"alice": "201"}.get)
    try:
        assert "not registered" in devices.phone_problem("alice")
        await sign_in(desk)
        assert devices.phone_problem("alice") is None  # registered, not asked yet
        answer(desk, await next_options(desk))
        await barrier(desk)
        assert devices.phone_problem("alice") is None
        await next_options(desk)  # the phone goes silent...
        await next_options(desk)  # ...and this one is only sent once the previous one was given up
        assert "not reachable" in devices.phone_problem("alice")
        answer(desk, await next_options(desk))
        await barrier(desk)
        assert devices.phone_problem("alice") is None
    finally:
        desk.close()
        await line.stop()


async def test_offer_rings_the_phone_and_picking_up_answers_then_the_box_hangs_up() -> None:
    hub, acd, phone, devices, hung_up = await setup()
    phone.registered.add("201")
    devices.set_device("alice", "phone")
    acd.login("alice")
    acd.set_available("alice")
    sub = hub.topic("acd").subscribe(maxsize=256)
    acd.enqueue(QueuedCall("c1", "q", CallerId("+447700900123", "Jo"), "sip", enqueued_at=0.0))
    ring = await rung(phone, 1)
    assert ring.called == "201" and ring.caller.number == "+447700900123"
    assert devices.media_for("alice") is None  # not picked up yet
    ring.outcome.set_result(None)  # the agent picks up
    await wait_state(sub, "alice", AgentState.ON_CALL)
    assert devices.media_for("alice") is ring.audio
    acd.call_ended("alice", "c1", on_wrapup_done=lambda d: None)  # the caller hung up
    async with asyncio.timeout(WAIT_S):
        await ring.wait_ended()
    assert ring.hangups == [HangupCause.CALLER_HUNG_UP] and not hung_up
    await devices.stop()


async def test_declining_on_the_phone_rejects_the_offer_and_it_moves_on() -> None:
    hub, acd, phone, devices, _ = await setup()
    phone.registered.add("201")
    sub = offer_c1(hub, acd, devices)
    first = acd.snapshot("alice").state is AgentState.RESERVED
    if not first:  # bob was longer idle: let him reject so that alice's phone rings
        acd.reject("bob", "c1")
    ring = await rung(phone, 1)
    ring.outcome.set_result(DialFailure.BUSY)  # "decline" on the phone: 486
    await wait_state(sub, "bob", AgentState.RESERVED) if first else await wait_state(sub, "alice", AgentState.AVAILABLE)
    assert acd.snapshot("alice").state is AgentState.AVAILABLE
    await devices.stop()


async def test_ring_timeout_cancels_the_phone_and_handset_down_ends_the_call(monkeypatch) -> None:  # noqa: ANN001
    from appliance.acd import router

    monkeypatch.setattr(router, "REOFFER_AFTER_DECLINE_S", 0.2)  # the second round comes sooner
    hub, acd, phone, devices, hung_up = await setup(ring=0.3)
    phone.registered.add("201")
    devices.set_device("alice", "phone")
    acd.login("alice")
    acd.set_available("alice")
    acd.enqueue(QueuedCall("c1", "q", CallerId("+447700900123"), "sip", enqueued_at=0.0))
    ring = await rung(phone, 1)
    async with asyncio.timeout(WAIT_S):
        assert await ring.wait_ended() is HangupCause.CANCELLED  # the ACD's ring timeout ended the offer
    sub = hub.topic("acd").subscribe(maxsize=256)
    second = await rung(phone, 2)  # pause_on_missed_offer is off: the call is offered to alice again
    second.outcome.set_result(None)
    await wait_state(sub, "alice", AgentState.ON_CALL)
    second.ended.set_result(HangupCause.CALLER_HUNG_UP)  # the agent puts the handset down
    async with asyncio.timeout(WAIT_S):
        await devices.hung_up_event.wait()
    assert hung_up == ["alice"]
    await devices.stop()


def test_desk_phone_transfer_targets() -> None:
    from appliance.transfer_requests import ToAgent, ToNumber, ToQueue, target_for_user

    agents = {"alice": "201", "bob": "202", "carol": ""}
    assert target_for_user("bob", agents, {"support"}) == ToAgent("bob")
    assert target_for_user("202", agents, {"support"}) == ToAgent("bob")  # an agent's desk phone extension
    assert target_for_user("support", agents, {"support"}) == ToQueue("support")
    assert target_for_user("+44 20 7946 0000", agents, {"support"}) == ToNumber("+442079460000")
    assert target_for_user("nobody", agents, {"support"}) is None


async def test_refer_from_the_phone_is_a_blind_transfer_and_the_phone_hangs_up_itself() -> None:
    from drivers.sip.refer import ReferRequest

    hub, acd, phone, devices, hung_up = await setup()
    phone.registered.add("201")
    devices.set_device("alice", "phone")
    acd.login("alice")
    acd.set_available("alice")
    refer_callbacks = []
    transfers: list[tuple[str, str]] = []
    devices.on_phone_transfer = lambda agent, user: transfers.append((agent, user)) or user == "bob"
    sub = hub.topic("acd").subscribe(maxsize=256)
    acd.enqueue(QueuedCall("c1", "q", CallerId("+447700900123"), "sip", enqueued_at=0.0))
    ring = await rung(phone, 1)
    ring.on_refer = refer_callbacks.append  # type: ignore[attr-defined]  # what OutgoingSipCall offers
    ring.outcome.set_result(None)
    await wait_state(sub, "alice", AgentState.ON_CALL)
    (refer,) = refer_callbacks
    assert await refer(ReferRequest("sip:x@box", "x", ("a", "b", "c"), None)) is False  # attended: declined
    assert await refer(ReferRequest("sip:nobody@box", "nobody", None, None)) is False
    assert await refer(ReferRequest("sip:bob@box", "bob", None, None)) is True
    assert transfers == [("alice", "nobody"), ("alice", "bob")]
    acd.call_ended("alice", "c1", on_wrapup_done=lambda d: None)  # the transfer ended alice's segment
    ring.ended.set_result(HangupCause.CALLER_HUNG_UP)  # the phone sends its own BYE after the NOTIFY
    async with asyncio.timeout(WAIT_S):
        await ring.wait_ended()
    await wait_state(sub, "alice", AgentState.WRAP_UP)
    assert ring.hangups == [] and hung_up == []  # no crossing BYE, and not taken as the agent hanging up
    await devices.stop()


async def test_the_phones_hold_key_holds_the_customer_until_it_resumes() -> None:
    from appliance.call_controls import ControlError

    hub, acd, phone, devices, hung_up = await setup()
    phone.registered.add("201")
    devices.set_device("alice", "phone")
    acd.login("alice")
    acd.set_available("alice")
    holds: list[tuple[str, bool]] = []

    def on_hold(agent_id: str, held: bool) -> bool:
        holds.append((agent_id, held))
        if len(holds) == 3:
            raise ControlError("the caller is with the transfer now")  # refused: logged, not raised
        return True

    devices.on_phone_hold = on_hold
    sub = hub.topic("acd").subscribe(maxsize=256)
    acd.enqueue(QueuedCall("c1", "q", CallerId("+447700900123"), "sip", enqueued_at=0.0))
    ring = await rung(phone, 1)
    ring.on_far_hold = None  # type: ignore[attr-defined]  # what OutgoingSipCall offers
    ring.outcome.set_result(None)
    await wait_state(sub, "alice", AgentState.ON_CALL)
    assert ring.on_far_hold is not None  # type: ignore[attr-defined]
    ring.on_far_hold(True)  # type: ignore[attr-defined]  # the phone's re-INVITE a=sendonly
    ring.on_far_hold(False)  # type: ignore[attr-defined]
    ring.on_far_hold(True)  # type: ignore[attr-defined]
    assert holds == [("alice", True), ("alice", False), ("alice", True)]
    ring.ended.set_result(HangupCause.CALLER_HUNG_UP)  # the handset goes down: an agent hang-up
    async with asyncio.timeout(WAIT_S):
        await devices.hung_up_event.wait()  # type: ignore[attr-defined]
    assert hung_up == ["alice"]
    await devices.stop()


async def test_a_phone_that_cannot_be_rung_pauses_the_agent_and_the_caller_moves_on() -> None:
    hub, acd, phone, devices, _ = await setup(ring=30.0)
    phone.registered.add("201")

    async def dead_phone(extension: str, caller: CallerId | None = None) -> None:
        raise DialFailed(DialFailure.LINE_DOWN, "extension 201 is not reachable: no answer to OPTIONS for 5 s")

    phone.dial_extension = dead_phone  # type: ignore[method-assign]  # it stopped answering since
    sub = offer_c1(hub, acd, devices)
    await wait_state(sub, "bob", AgentState.RESERVED)  # at once, not after alice's ring timeout
    snap = acd.snapshot("alice")
    assert (snap.state, snap.pause_reason) == (AgentState.PAUSED, "desk phone not reachable")
    assert [c.call_id for c in acd.waiting("q")] == ["c1"] and acd.snapshot("bob").call_id == "c1"
    await devices.stop()


def phone_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "appliance.agent_devices" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("failure, pause", [
    (DialFailure.ERROR, "desk phone failed: scripted"),  # e.g. a 488: the phone refused every codec we offered
    (DialFailure.UNREACHABLE, PHONE_DOWN_PAUSE),  # a 404/5xx from the phone, or no response at all
])
async def test_a_phone_failing_while_it_rings_pauses_the_agent_and_the_caller_moves_on_at_once(
        failure: DialFailure, pause: str, caplog: pytest.LogCaptureFixture) -> None:
    hub, acd, phone, devices, _ = await setup(ring=30.0)  # far beyond every wait below
    phone.registered.add("201")
    sub = offer_c1(hub, acd, devices)
    ring = await rung(phone, 1)
    assert acd.snapshot("alice").state is AgentState.RESERVED
    ring.outcome.set_result(failure)
    await wait_state(sub, "bob", AgentState.RESERVED)  # the caller does not wait for alice's ring timeout
    assert acd.snapshot("bob").call_id == "c1"
    alice = acd.snapshot("alice")
    assert (alice.state, alice.pause_reason) == (AgentState.PAUSED, pause)
    (warning,) = phone_warnings(caplog)
    assert "agent alice" in warning and "desk phone 201" in warning and "scripted" in warning, warning
    await devices.stop()


async def test_a_desk_phone_answering_without_sdp_is_not_a_missed_offer(caplog: pytest.LogCaptureFixture) -> None:
    """The tester's phone: its 200 OK to the box's INVITE carries no SDP. The box ACKs and BYEs
    it; the caller goes to bob at once, alice pauses for a phone fault (not "missed offer", though
    RONA is on) and the admin reads what to fix."""

    async def no_calls(call: object) -> None:
        raise AssertionError("no INVITE expected")

    line = SipLine(SipLineConfig(host="127.0.0.1", port=0, rtp_port_range=None, users=USERS, qualify_s=0), no_calls)
    await line.start()
    desk = await SipPeer(("127.0.0.1", line.udp_port)).open()
    hub = Hub()
    acd = Acd(agents=[("alice", "Alice", ("q",)), ("bob", "Bob", ("q",))], queues=["q"], ring_timeout_s=15,
              wrapup_s=30, pause_on_missed_offer=True, publish=hub.topic("acd").publish)
    devices = AgentDevices(acd, hub.topic("acd"), Browser(), lambda: line, {"alice": "201", "bob": ""}.get)
    devices.start()
    try:
        await sign_in(desk)
        sub = offer_c1(hub, acd, devices)
        invite = await desk.next_request("INVITE")
        desk.send(reply(invite, 200, contact=f"<sip:201@127.0.0.1:{desk.port}>"))  # picked up: no SDP
        await desk.next_request("ACK")
        bye = await desk.next_request("BYE")
        desk.send(response_bytes(bye, 200))
        await wait_state(sub, "bob", AgentState.RESERVED)  # well within the 15 s ring timeout
        assert acd.snapshot("bob").call_id == "c1"
        alice = acd.snapshot("alice")
        assert (alice.state, alice.pause_reason) == (AgentState.PAUSED, "desk phone failed: answered without audio")
        (warning,) = phone_warnings(caplog)
        for part in ("agent alice", "desk phone 201", "without SDP", "PCMU or PCMA"):
            assert part in warning, warning
    finally:
        await devices.stop()
        acd.close()
        desk.close()
        await line.stop()
