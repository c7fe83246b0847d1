"""Attended transfer from a desk phone: routing of the phone's own consult call, the consult's
life (ringback, answer, refusals, the phone hanging up) and REFER with Replaces, with fakes
for the call center and the SIP line, the real ACD and the real ``AgentDevices``."""
from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from appliance import desk_consult
from appliance.acd.agent import AgentState
from appliance.acd.router import Acd, QueuedCall
from appliance.agent_devices import AgentDevices
from appliance.desk_consult import DeskConsult, Route, RouteKind, decide
from appliance.hub import Hub
from appliance.lines import CallerId, HangupCause, LineKind
from appliance.transfer import Phase
from appliance.transfer_requests import CancelConsult, TransferError
from tests.appliance.test_agent_devices import Browser, FakePhoneLine, rung, wait_state
from tests.appliance.test_outbound import FakeLeg

WAIT_S = 5.0
PHONE = ("192.0.2.10", 5062)  # where extension 201 registered from
EXTENSIONS = {"alice": "201", "bob": "202", "carol": ""}


def binding(source: tuple[str, int] = PHONE, transport: str = "udp") -> SimpleNamespace:
    return SimpleNamespace(source=source, transport=transport)


def route(from_user: str | None = "201", source: tuple[str, int] | None = PHONE, transport: str = "udp",
          called: str | None = "bob", on_call: bool = True) -> Route:
    return decide(from_user, source, transport, called, extensions=EXTENSIONS,
                  bindings=lambda ext: (binding(),) if ext == "201" else (),
                  on_phone_call=lambda agent: on_call and agent == "alice")


@pytest.mark.parametrize(("kw", "expected"), [
    ({}, Route(RouteKind.CONSULT, "alice", "bob")),  # registered, from its address, on a call, to an agent id
    ({"called": "202"}, Route(RouteKind.CONSULT, "alice", "bob")),  # ... to an agent's extension
    ({"source": ("192.0.2.10", 5099)}, desk_consult.CUSTOMER),  # From says 201, another port: spoofed
    ({"source": ("198.51.100.7", 5062)}, desk_consult.CUSTOMER),  # ... another host
    ({"transport": "tcp"}, desk_consult.CUSTOMER),  # registered over UDP, INVITE over TCP
    ({"from_user": "203"}, desk_consult.CUSTOMER),  # not an agent's extension
    ({"from_user": "+447700900123"}, desk_consult.CUSTOMER),  # an ordinary caller
    ({"source": None}, desk_consult.CUSTOMER),  # a line without source addresses (modem)
    ({"on_call": False}, desk_consult.CUSTOMER),  # the agent has no call to transfer: a normal call
    ({"called": "support"}, Route(RouteKind.REFUSE, "alice", None, 404, "Not Found")),  # no such colleague
    ({"called": "201"}, Route(RouteKind.REFUSE, "alice", "alice", 403, "Forbidden")),  # herself
])
def test_routing_decision_table(kw: dict, expected: Route) -> None:
    assert route(**kw) == expected


def test_an_unregistered_extension_is_a_customer() -> None:
    got = decide("201", PHONE, "udp", "bob", extensions=EXTENSIONS, bindings=lambda ext: (),
                 on_phone_call=lambda agent: True)
    assert got == desk_consult.CUSTOMER


class ConsultCall:
    """The phone's INVITE to the box (what drivers.sip.call.SipCall offers the router)."""

    kind = LineKind.SIP

    def __init__(self, called: str, source: tuple[str, int] = PHONE, from_user: str = "201") -> None:
        self.call_id = f"d2-{called}"
        self.line_id = "sip"
        self.caller = CallerId(from_user)
        self.called = called
        self.source, self.transport = source, "udp"
        self.audio = FakeLeg(b"\x30\x00")
        self.progressed = asyncio.Event()
        self.answered = asyncio.Event()
        self.rejected: tuple[int, str | None] | None = None
        self.hangups: list[HangupCause] = []
        self._ended: asyncio.Future[HangupCause] = asyncio.get_running_loop().create_future()

    @property
    def ended(self) -> bool:
        return self._ended.done()

    async def progress(self) -> None:
        self.progressed.set()

    async def answer(self) -> None:
        self.answered.set()

    async def reject(self, status: int, reason: str | None = None) -> None:
        self.rejected = (status, reason)
        self._end(HangupCause.REJECTED)

    async def hangup(self, cause: HangupCause) -> None:
        self.hangups.append(cause)
        self._end(cause)

    def phone_hangs_up(self) -> None:
        self._end(HangupCause.CALLER_HUNG_UP)

    def _end(self, cause: HangupCause) -> None:
        if not self._ended.done():
            self._ended.set_result(cause)

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self._ended)

    def on_dtmf(self, callback) -> None:  # noqa: ANN001
        pass


class Line(FakePhoneLine):
    """The SIP line: registrations with their source, and dialogs by (Call-ID, tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.dialogs: dict[tuple[str, str, str], object] = {}

    def bindings(self, extension: str) -> tuple:
        return (binding(),) if extension in self.registered else ()

    def find_dialog(self, call_id: str, tag_a: str, tag_b: str) -> object | None:
        return self.dialogs.get((call_id, tag_a, tag_b)) or self.dialogs.get((call_id, tag_b, tag_a))


class Calls:
    """The call center seen by the router: alice's conversation on call c1 and its transfer phase."""

    def __init__(self, acd) -> None:  # noqa: ANN001
        self.acd = acd
        self.conv = SimpleNamespace(owner="alice", transfers=SimpleNamespace(phase=Phase.TALKING), posted=[])
        self.conv.post = self.conv.posted.append
        self.requests: list[str] = []
        self.customers: list[object] = []
        self.defer_offer = False  # True: the test plays the call's task and makes the offer itself
        self.pending = ("", "")

    def live_calls(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(call_id="c1", agent_id=self.conv.owner)]

    def conversation(self, call_id: str) -> SimpleNamespace | None:
        return self.conv if call_id == "c1" else None

    async def handle_inbound(self, call) -> None:  # noqa: ANN001
        self.customers.append(call)

    def _phase(self, *allowed: Phase) -> None:
        if self.conv.transfers.phase not in allowed:
            raise TransferError(f"not in {self.conv.transfers.phase}")

    def consult(self, agent_id: str, call_id: str | None, to_agent: str) -> None:
        self._phase(Phase.TALKING)
        if self.acd.snapshot(to_agent).state is not AgentState.AVAILABLE:
            raise TransferError(f"{to_agent} is not available")
        self.requests.append(f"consult {to_agent}")
        self.pending = (agent_id, to_agent)
        if not self.defer_offer:
            self.make_offer()

    def make_offer(self) -> None:
        """What the call's task does with the consult request, a moment after it was posted."""
        agent_id, to_agent = self.pending
        self.conv.transfers.phase = Phase.CONSULT_RINGING
        self.acd.offer_directed(QueuedCall("c1-2", "q", CallerId("+447700900123"), "sip", enqueued_at=0.0,
                                           target=to_agent, kind="consult", from_agent=agent_id))

    def complete_transfer(self, agent_id: str, call_id: str | None) -> None:
        self._phase(Phase.CONSULTING)
        self.requests.append("complete")
        self.conv.transfers.phase = Phase.TALKING
        self.acd.take_over("bob", "c1-2")
        self.conv.owner = "bob"
        self.acd.call_ended("alice", "c1", on_wrapup_done=lambda d: None)  # alice's segment ends

    def cancel_consult(self, agent_id: str, call_id: str | None) -> None:
        self._phase(Phase.CONSULT_RINGING, Phase.CONSULTING)
        self.requests.append("cancel")
        self.conv.transfers.phase = Phase.TALKING
        self.acd.withdraw("c1-2")

    def retrieve(self, agent_id: str, call_id: str | None) -> None:
        self.requests.append("retrieve")
        self.conv.transfers.phase = Phase.TALKING


async def on_a_desk_phone_call():  # noqa: ANN201
    """alice on the queue call c1 on her desk phone (D1); bob available on the console."""
    hub = Hub()
    acd = Acd(agents=[("alice", "Alice", ("q",)), ("bob", "Bob", ("q",))], queues=["q"], ring_timeout_s=5.0,
              wrapup_s=30, pause_on_missed_offer=False, publish=hub.topic("acd").publish)
    line = Line()
    line.registered.add("201")
    devices = AgentDevices(acd, hub.topic("acd"), Browser(), lambda: line, {"alice": "201", "bob": ""}.get)
    hung_up: list[str] = []
    devices.on_phone_hangup = lambda agent_id: hung_up.append(agent_id) is None
    devices.start()
    devices.set_device("alice", "phone")
    sub = hub.topic("acd").subscribe(maxsize=256)
    for agent in ("alice", "bob"):
        acd.login(agent)
    acd.set_available("alice")
    acd.enqueue(QueuedCall("c1", "q", CallerId("+447700900123"), "sip", enqueued_at=0.0))
    d1 = await rung(line, 1)
    d1.on_refer = lambda callback: setattr(d1, "refer", callback)  # what OutgoingSipCall offers
    d1.outcome.set_result(None)  # the phone picks up
    await wait_state(sub, "alice", AgentState.ON_CALL)
    acd.set_available("bob")
    calls = Calls(acd)
    router = DeskConsult(calls, devices, acd, hub.topic("acd"), lambda: line,
                         lambda: {"alice": "201", "bob": ""}, "gb")
    devices.on_phone_replaces = router.complete_from_phone
    return SimpleNamespace(hub=hub, acd=acd, line=line, devices=devices, hung_up=hung_up, sub=sub, d1=d1,
                           calls=calls, router=router)


async def consult_rings(box, called: str = "bob") -> tuple[ConsultCall, asyncio.Task]:  # noqa: ANN001
    d2 = ConsultCall(called)
    box.line.dialogs[("d2-sip-id", "box-tag", "phone-tag")] = d2
    task = asyncio.create_task(box.router.handle_inbound(d2), name="consult-under-test")
    async with asyncio.timeout(WAIT_S):
        await d2.progressed.wait()  # 180 with early media
        await d2.audio.got_audio.wait()  # ringback frames reach the phone
    return d2, task


async def test_consult_from_the_phone_then_refer_with_replaces_completes_the_transfer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(desk_consult, "PHONE_BYE_GRACE_S", 0.05)
    box = await on_a_desk_phone_call()
    d2, task = await consult_rings(box)
    assert box.calls.requests == ["consult bob"] and box.calls.customers == []
    ring = np.frombuffer(b"".join(d2.audio.written[:50]), dtype="<i2")
    assert np.abs(ring).max() > 1000  # a ringback tone, not silence (425/400+450 Hz)
    assert box.acd.snapshot("bob").state is AgentState.RESERVED  # bob's console rings with the consult

    box.acd.accept("bob", "c1-2")
    assert box.devices.media_for("alice") is d2.audio  # what the consult bridge takes when bob answers
    box.calls.conv.transfers.phase = Phase.CONSULTING
    async with asyncio.timeout(WAIT_S):
        await d2.answered.wait()

    assert await box.d1.refer(SimpleNamespace(replaces=("other-call", "x", "y"))) is False  # names another dialog
    assert box.calls.requests == ["consult bob"]  # nothing changed: NOTIFY 503
    assert box.calls.conv.transfers.phase is Phase.CONSULTING

    assert await box.d1.refer(SimpleNamespace(replaces=("d2-sip-id", "phone-tag", "box-tag"))) is True
    assert box.calls.requests == ["consult bob", "complete"] and box.calls.conv.owner == "bob"
    await wait_state(box.sub, "alice", AgentState.WRAP_UP)
    box.d1.ended.set_result(HangupCause.CALLER_HUNG_UP)  # the phone BYEs D1 after NOTIFY 200 ...
    async with asyncio.timeout(WAIT_S):
        await task  # ... but leaves D2 up: the box ends it after the grace
    assert d2.hangups == [HangupCause.AGENT_HUNG_UP]
    assert box.d1.hangups == [] and box.hung_up == []  # no crossing BYE on D1, no "agent hung up"
    assert box.devices.media_for("alice") is None  # the consult leg is gone, D1 too
    await box.devices.stop()


async def test_the_phone_ending_both_dialogs_gets_no_bye_from_the_box() -> None:
    box = await on_a_desk_phone_call()
    d2, task = await consult_rings(box)
    box.acd.accept("bob", "c1-2")
    box.calls.conv.transfers.phase = Phase.CONSULTING
    async with asyncio.timeout(WAIT_S):
        await d2.answered.wait()
    assert await box.d1.refer(SimpleNamespace(replaces=("d2-sip-id", "box-tag", "phone-tag"))) is True
    d2.phone_hangs_up()
    box.d1.ended.set_result(HangupCause.CALLER_HUNG_UP)
    async with asyncio.timeout(WAIT_S):
        await task
    assert d2.hangups == [] and box.d1.hangups == [] and box.hung_up == []
    assert box.calls.requests == ["consult bob", "complete"]  # the BYE on D2 did not cancel anything
    await box.devices.stop()


async def test_a_declined_consult_ends_the_phone_call_with_603_and_the_agent_gets_the_caller_back() -> None:
    box = await on_a_desk_phone_call()
    d2, task = await consult_rings(box)
    box.acd.reject("bob", "c1-2")
    async with asyncio.timeout(WAIT_S):
        await task
    assert d2.rejected == (603, "Decline") and not d2.answered.is_set()
    assert box.calls.requests == ["consult bob", "retrieve"]
    assert box.devices.media_for("alice") is box.d1.audio  # the customer goes back to D1
    assert box.d1.hangups == [] and box.hung_up == []
    await box.devices.stop()


async def test_hanging_up_the_consult_call_while_it_rings_cancels_the_consult() -> None:
    box = await on_a_desk_phone_call()
    d2, task = await consult_rings(box)
    d2.phone_hangs_up()
    async with asyncio.timeout(WAIT_S):
        await task
    assert box.calls.requests == ["consult bob", "cancel"]
    assert box.acd.snapshot("bob").state is AgentState.AVAILABLE  # the consult offer was withdrawn
    assert box.devices.media_for("alice") is box.d1.audio
    await box.devices.stop()


async def test_consulting_a_busy_colleague_is_refused_with_486() -> None:
    box = await on_a_desk_phone_call()
    box.acd.pause("bob", "lunch")
    d2 = ConsultCall("bob")
    async with asyncio.timeout(WAIT_S):
        await box.router.handle_inbound(d2)
    assert d2.rejected == (486, "Busy Here") and box.calls.requests == []
    await box.devices.stop()


async def test_an_unknown_target_is_refused_and_a_spoofed_source_goes_to_the_queue() -> None:
    box = await on_a_desk_phone_call()
    nobody = ConsultCall("support")
    spoofed = ConsultCall("bob", source=("192.0.2.66", 5062))
    async with asyncio.timeout(WAIT_S):
        await box.router.handle_inbound(nobody)
        await box.router.handle_inbound(spoofed)
    assert nobody.rejected == (404, "Not Found")
    assert box.calls.customers == [spoofed] and spoofed.rejected is None
    assert box.calls.requests == []
    await box.devices.stop()


async def test_a_failed_attended_refer_leaves_d1_to_the_box() -> None:
    """The leg is marked while the transfer runs and unmarked when it fails: the end of the call
    then hangs the phone up as usual."""
    box = await on_a_desk_phone_call()

    async def refuse(agent_id: str, replaces: tuple[str, str, str]) -> bool:
        return False

    box.devices.on_phone_replaces = refuse
    assert await box.d1.refer(SimpleNamespace(replaces=("a", "b", "c"))) is False
    box.acd.call_ended("alice", "c1", on_wrapup_done=lambda d: None)  # the customer hangs up
    async with asyncio.timeout(WAIT_S):
        await box.d1.wait_ended()
    assert box.d1.hangups == [HangupCause.CALLER_HUNG_UP]  # the box hung the phone up
    await box.devices.stop()


async def answered_consult(box) -> tuple[ConsultCall, asyncio.Task]:  # noqa: ANN001
    d2, task = await consult_rings(box)
    box.acd.accept("bob", "c1-2")
    box.calls.conv.transfers.phase = Phase.CONSULTING
    async with asyncio.timeout(WAIT_S):
        await d2.answered.wait()
    return d2, task


async def test_hanging_up_the_consult_call_while_consulting_cancels_the_consult() -> None:
    box = await on_a_desk_phone_call()
    d2, task = await answered_consult(box)
    d2.phone_hangs_up()
    async with asyncio.timeout(WAIT_S):
        await task
    assert box.calls.requests == ["consult bob", "cancel"] and d2.hangups == []
    assert box.devices.media_for("alice") is box.d1.audio
    await box.devices.stop()


async def test_the_colleague_leaving_the_consult_ends_the_phone_consult_call() -> None:
    box = await on_a_desk_phone_call()
    d2, task = await answered_consult(box)
    box.calls.conv.transfers.phase = Phase.TALKING  # bob hung up: the call's task cancelled the consult ...
    box.acd.consult_ended("bob", "c1-2")  # ... and freed bob
    async with asyncio.timeout(WAIT_S):
        await task
    assert d2.hangups == [HangupCause.AGENT_HUNG_UP]  # the box BYEs the phone's consult call
    assert box.calls.requests == ["consult bob"] and box.d1.hangups == []
    await box.devices.stop()


async def test_a_phone_hanging_up_before_the_colleague_is_rung_still_cancels_the_consult() -> None:
    """The consult request is checked and queued at once but rung a moment later by the call's task;
    a checked cancel in between is refused ("no consult"), so the router queues one behind it."""
    box = await on_a_desk_phone_call()
    box.calls.defer_offer = True
    d2 = ConsultCall("bob")
    d2.phone_hangs_up()  # the phone gave up (CANCEL) as the INVITE was being routed
    async with asyncio.timeout(WAIT_S):
        await box.router.handle_inbound(d2)
    assert box.calls.requests == ["consult bob"]  # the checked cancel was refused ...
    assert box.calls.conv.posted == [CancelConsult("alice")]  # ... so it waits in the inbox behind the consult
    await box.devices.stop()
