"""The dial plan and the agents' outbound call flow, with scripted lines and an in-memory store."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.acd.agent import AgentState
from appliance.acd.router import Acd
from appliance.call_events import CallUpdate, LiveState
from appliance.config import ConfigError, parse_config
from appliance.dialplan import DEFAULT_RULES, DialPlan, DialPlanError, normalise, parse_rules
from appliance.hub import Hub
from appliance.lines import CallerId, DialFailed, DialFailure, HangupCause, LineKind
from appliance.outbound import OutboundCalls, OutboundError
from appliance.records import CallOutcome
from media.frames import FRAME_BYTES

WAIT_S = 5.0


class FakeLeg:
    def __init__(self, fill: bytes = b"\x00\x00") -> None:
        self.written: list[bytes] = []
        self.got_audio = asyncio.Event()  # set once a few frames have arrived
        self.frame = (fill * (FRAME_BYTES // len(fill)))[:FRAME_BYTES]

    def read_frame_nowait(self) -> bytes | None:
        return self.frame

    def write_frame(self, pcm: bytes) -> None:
        self.written.append(pcm)
        if len(self.written) >= 5:
            self.got_audio.set()


class FakeCall:
    kind = LineKind.GSM

    def __init__(self, line_id: str, number: str, caller: CallerId | None) -> None:
        self.call_id = f"{line_id}-{number}"
        self.line_id = line_id
        self.called = number
        self.caller = caller
        self.audio = FakeLeg(b"\x10\x00")
        self.outcome: asyncio.Future[DialFailure | None] = asyncio.get_running_loop().create_future()
        self.ended: asyncio.Future[HangupCause] = asyncio.get_running_loop().create_future()
        self.hangups: list[HangupCause] = []

    async def wait_answered(self) -> None:
        failure = await asyncio.shield(self.outcome)
        if failure is not None:
            raise DialFailed(failure, "scripted")

    async def hangup(self, cause: HangupCause) -> None:
        self.hangups.append(cause)
        if not self.outcome.done():
            self.outcome.set_result(DialFailure.CANCELLED)
        if not self.ended.done():
            self.ended.set_result(cause)

    async def wait_ended(self) -> HangupCause:
        return await asyncio.shield(self.ended)

    def on_dtmf(self, callback) -> None:  # noqa: ANN001
        pass

    async def send_dtmf(self, digit: str) -> bool:
        return True


@dataclass
class FakeLine:
    line_id: str
    refuse: DialFailure | None = None
    calls: list[FakeCall] = field(default_factory=list)
    dialled: asyncio.Event = field(default_factory=asyncio.Event)

    async def dial(self, number: str, caller: CallerId | None = None) -> FakeCall:
        if self.refuse is not None:
            raise DialFailed(self.refuse, f"{self.line_id} refuses")
        call = FakeCall(self.line_id, number, caller)
        self.calls.append(call)
        self.dialled.set()
        return call


class MemoryStore:
    def __init__(self, root: Path) -> None:
        self.calls: dict[str, object] = {}
        self.saved = asyncio.Condition()
        self.root = root

    async def save_call(self, rec) -> str:  # noqa: ANN001
        async with self.saved:
            self.calls[rec.call_id] = rec
            self.saved.notify_all()
        return rec.call_id

    async def customer_by_phone(self, number: str):  # noqa: ANN201
        return None

    async def upsert_customer(self, customer_id=None, *, name=None, phones=()):  # noqa: ANN001, ANN201
        @dataclass
        class C:
            customer_id: str
            name: str | None
        return C("cust-1", name)

    async def interactions_for_customer(self, customer_id: str, limit: int | None = None) -> list:
        return []

    def recordings_dir(self) -> Path:
        return self.root

    def recordings_allowed(self) -> bool:
        return True

    def recording_sink_factory(self):  # noqa: ANN201
        from media.recorder import FileSink
        return FileSink

    async def wait_for(self, pred):  # noqa: ANN001, ANN201
        async with asyncio.timeout(WAIT_S):
            async with self.saved:
                await self.saved.wait_for(lambda: any(pred(r) for r in self.calls.values()))
        return next(r for r in self.calls.values() if pred(r))


class AgentAudio:
    def __init__(self) -> None:
        self.leg = FakeLeg(b"\x20\x00")

    async def connect_for_outbound(self, agent_id: str, number: str) -> FakeLeg:
        return self.leg


# --- the dial plan ---------------------------------------------------------------------------------
def test_rules_validate_with_clear_messages() -> None:
    assert parse_rules([]) == DEFAULT_RULES
    rules = parse_rules([{"pattern": r"0[1-9]\d+", "via": "gsm", "name": "national"},
                         {"pattern": r"\+.*", "via": ["trunk", "gsm:1"], "strip": 0}])
    assert rules[0].via == ("gsm",) and rules[1].via == ("trunk", "gsm:1")
    with pytest.raises(DialPlanError, match="not a valid regular expression"):
        parse_rules([{"pattern": "(", "via": "gsm"}])
    with pytest.raises(DialPlanError, match="neither trunk, gsm, analog"):
        parse_rules([{"pattern": ".*", "via": "carrier-pigeon"}])
    with pytest.raises(DialPlanError, match="unknown key"):
        parse_rules([{"pattern": ".*", "line": "gsm"}])
    with pytest.raises(ConfigError, match=r"\[\[dial_plan\]\] rule 1"):
        parse_config({"dial_plan": [{"pattern": "[", "via": "gsm"}]})
    with pytest.raises(ConfigError, match="not a \\[sip\\] users extension"):
        parse_config({"agents": [{"id": "a", "password": "pw-long-enough", "phone": "201"}]})


def test_normalise_removes_separators_and_refuses_letters() -> None:
    assert normalise("+44 (20) 7946-0000") == "+442079460000"
    # the trunk prefix written in brackets after the country code is not dialled
    assert normalise("+44 (0)20 7946 0018") == "+442079460018"
    assert normalise("+41 (0) 44 668 18 00") == "+41446681800"
    assert normalise("+353 (0)1 234 5678") == "+35312345678"
    assert normalise("(020) 7946 0018") == "02079460018"  # a national number keeps its 0
    for code in ("*21*07700900111#", "*#06#", "#31#07700900111", "*67 0123"):  # GSM/network service codes
        with pytest.raises(DialFailed, match="service code"):
            normalise(code)
    with pytest.raises(DialFailed) as err:
        normalise("call me")
    assert err.value.reason is DialFailure.REJECTED


async def test_plan_picks_the_rule_and_skips_lines_that_are_down() -> None:
    gsm_down = FakeLine("gsm:1", refuse=DialFailure.LINE_DOWN)
    gsm_ok = FakeLine("gsm:2")
    analog = FakeLine("analog:0")
    lines = {"gsm:1": gsm_down, "gsm:2": gsm_ok, "analog:0": analog}
    plan = DialPlan(parse_rules([{"pattern": r"9(\d+)", "via": "analog", "strip": 1},
                                 {"pattern": r"0\d+", "via": ["gsm", "analog"], "prepend": "+44", "strip": 1}]),
                    lambda: lines)
    call = await plan.dial("020 7946 0000")
    assert call.line_id == "gsm:2" and call.called == "+442079460000"
    call = await plan.dial("9123")
    assert call.line_id == "analog:0" and call.called == "123"
    with pytest.raises(DialFailed, match="no dial plan rule matches"):
        await plan.dial("+1555")
    analog.refuse = DialFailure.LINE_BUSY
    with pytest.raises(DialFailed) as err:
        await plan.dial("9123")
    assert err.value.reason is DialFailure.LINE_DOWN and "analog:0" in err.value.detail
    busy = FakeLine("gsm:3", refuse=DialFailure.BUSY)  # a real answer is not retried elsewhere
    lines = {"gsm:3": busy, "analog:0": FakeLine("analog:0")}
    with pytest.raises(DialFailed) as err:
        await plan.dial("0123")
    assert err.value.reason is DialFailure.BUSY


# --- the outbound call flow -------------------------------------------------------------------------
def make(tmp_path: Path, lines: dict) -> tuple[Acd, OutboundCalls, MemoryStore, Hub]:
    hub = Hub()
    acd = Acd(agents=[("alice", "Alice", ("q",))], queues=["q"], ring_timeout_s=5, wrapup_s=30,
              pause_on_missed_offer=True, publish=hub.topic("acd").publish)
    store = MemoryStore(tmp_path)
    out = OutboundCalls(acd=acd, store=store, calls_topic=hub.topic("calls"), dial_plan=DialPlan(DEFAULT_RULES, lambda: lines),
                        agent_audio=AgentAudio(), agent_name=lambda a: a.title(), recording=True, country="GB")
    acd.login("alice")
    acd.set_available("alice")
    return acd, out, store, hub


async def next_update(sub, state: LiveState) -> CallUpdate:  # noqa: ANN001
    async with asyncio.timeout(WAIT_S):
        async for ev in sub:
            if isinstance(ev, CallUpdate) and ev.call.state is state:
                return ev


async def test_answered_outbound_call_is_bridged_recorded_and_wrapped_up(tmp_path: Path) -> None:
    line = FakeLine("gsm:1")
    acd, out, store, hub = make(tmp_path, {"gsm:1": line})
    sub = hub.topic("calls").subscribe(maxsize=64)
    call_id = out.dial("alice", "07700 900123")
    assert acd.snapshot("alice").state is AgentState.ON_CALL
    await next_update(sub, LiveState.DIALING)
    async with asyncio.timeout(WAIT_S):
        await line.dialled.wait()
    far = line.calls[0]
    assert far.called == "07700900123"
    far.outcome.set_result(None)  # the customer answers
    update = await next_update(sub, LiveState.ON_CALL)
    assert update.call.direction == "outbound" and update.call.line_id == "gsm:1" and update.call.recording
    async with asyncio.timeout(WAIT_S):  # the agent's audio reaches the customer through the bridge
        await far.audio.got_audio.wait()
    assert far.audio.written[-1] == AgentAudio().leg.frame
    far.ended.set_result(HangupCause.CALLER_HUNG_UP)  # the customer hangs up
    rec = await store.wait_for(lambda r: r.call_id == call_id)
    assert rec.direction == "outbound" and rec.outcome is CallOutcome.ANSWERED
    assert rec.to_number == "07700900123" and rec.agent_id == "alice" and rec.customer_id == "cust-1"
    assert rec.hangup_cause == HangupCause.FAR_END_HUNG_UP and rec.talk_s is not None and rec.talk_s > 0
    assert rec.recording_path and (tmp_path / rec.recording_path).stat().st_size > 44
    assert acd.snapshot("alice").state is AgentState.WRAP_UP
    acd.end_wrapup("alice", "resolved")
    final = await store.wait_for(lambda r: r.call_id == call_id and r.disposition == "resolved")
    assert final.wrapup_s is not None
    assert acd.snapshot("alice").state is AgentState.AVAILABLE


async def test_busy_number_leaves_a_failed_record_and_a_wrap_up(tmp_path: Path) -> None:
    line = FakeLine("gsm:1")
    acd, out, store, hub = make(tmp_path, {"gsm:1": line})
    call_id = out.dial("alice", "+447700900123")
    async with asyncio.timeout(WAIT_S):
        await line.dialled.wait()
    line.calls[0].outcome.set_result(DialFailure.BUSY)
    rec = await store.wait_for(lambda r: r.call_id == call_id)
    assert rec.outcome is CallOutcome.FAILED and rec.hangup_cause == "busy" and rec.answered_at is None
    assert acd.snapshot("alice").state is AgentState.WRAP_UP


async def test_agent_hangs_up_while_ringing_cancels_the_call(tmp_path: Path) -> None:
    line = FakeLine("gsm:1")
    acd, out, store, hub = make(tmp_path, {"gsm:1": line})
    call_id = out.dial("alice", "+447700900123")
    async with asyncio.timeout(WAIT_S):
        await line.dialled.wait()
    assert out.agent_hangup("alice")
    rec = await store.wait_for(lambda r: r.call_id == call_id)
    assert rec.outcome is CallOutcome.FAILED and rec.hangup_cause == "cancelled"
    assert line.calls[0].hangups, "the ringing call was not cancelled on the line"


async def test_refusals_are_immediate_and_leave_the_agent_as_it_was(tmp_path: Path) -> None:
    acd, out, store, hub = make(tmp_path, {"gsm:1": FakeLine("gsm:1")})
    with pytest.raises(OutboundError, match="not a number"):
        out.dial("alice", "abc")
    assert acd.snapshot("alice").state is AgentState.AVAILABLE
    acd.pause("alice", "lunch")
    call_id = out.dial("alice", "+447700900123")  # a paused agent may call out, and is paused again after
    with pytest.raises(OutboundError, match="on a call"):
        out.dial("alice", "+447700900124")
    assert out.agent_hangup("alice")
    await store.wait_for(lambda r: r.call_id == call_id)
    acd.end_wrapup("alice", None)
    snap = acd.snapshot("alice")
    assert snap.state is AgentState.PAUSED and snap.pause_reason == "lunch"


async def test_no_usable_line_is_recorded_with_the_reason(tmp_path: Path) -> None:
    acd, out, store, hub = make(tmp_path, {"gsm:1": FakeLine("gsm:1", refuse=DialFailure.LINE_DOWN)})
    call_id = out.dial("alice", "+447700900123")
    rec = await store.wait_for(lambda r: r.call_id == call_id)
    assert rec.outcome is CallOutcome.FAILED and rec.hangup_cause == "line down"
