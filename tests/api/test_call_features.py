"""The local API shows the new call features: outbound calls (live and stored), transfer
segments, agents' devices and desk-phone extensions, and the dial plan with "test a number"."""
from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest

from appliance.api import schema as s
from appliance.api.client import SocketClient
from appliance.call_events import CallUpdate, LiveCallSnapshot, LiveState
from appliance.lines import DialFailure
from appliance.records import CallOutcome, CallRecord
from tests.api.running_box import RunningBox
from tests.api.scripted import SCRIPTED_LINE, connect_agent, install_line

EVENT_TIMEOUT_S = 10.0  # the box publishes within ms; generous for a loaded 2-core machine
T0 = 1_780_300_000.0


async def _next(stream, kind: type, pred=lambda ev: True):
    async with asyncio.timeout(EVENT_TIMEOUT_S):
        async for ev in stream:
            if isinstance(ev, kind) and pred(ev):
                return ev
    raise AssertionError("stream ended")


def _call(call_id: str):
    return lambda ev: ev.call.call_id == call_id


async def _wrapped_up(rb: RunningBox, stream, agent_id: str) -> None:
    """Wait for the agent's wrap-up (the record is stored just before it) and end it."""
    await _next(stream, s.AgentChanged, lambda ev: ev.agent.agent_id == agent_id and ev.agent.state == "wrap_up")
    await rb.acall(lambda: rb.box.acd.end_wrapup(agent_id, None))


async def test_outbound_call_is_live_as_dialing_then_on_call_and_stored_with_its_line(box: RunningBox) -> None:
    line = install_line(box)
    connect_agent(box, "alice")
    async with SocketClient(box.run_dir) as client:
        stream = client.events()
        await anext(stream)
        call_id = await box.acall(lambda: box.box.outbound.dial("alice", "07700 900123"))
        first = await _next(stream, s.CallChanged, _call(call_id))
        assert (first.call.direction, first.call.state, first.call.caller_number, first.call.agent_id) == \
            ("outbound", "dialing", "07700900123", "alice")
        ringing = await _next(stream, s.CallChanged, lambda ev: ev.call.call_id == call_id and ev.call.line_id)
        assert (ringing.call.state, ringing.call.line_id, ringing.call.agent_name) == ("dialing", SCRIPTED_LINE, "Alice Martin")
        live = next(c for c in (await client.snapshot()).calls if c.call_id == call_id)
        assert (live.direction, live.state, live.line_id) == ("outbound", "dialing", SCRIPTED_LINE)
        assert box.call(lambda: line.calls[0].called) == "+447700900123"  # the rule's strip 1 + prepend +44
        await box.acall(lambda: line.calls[0].answer())
        assert (await _next(stream, s.CallChanged, _call(call_id))).call.state == "on_call"
        await box.acall(lambda: line.calls[0].far_end_hangs_up())
        ended = await _next(stream, s.CallChanged, _call(call_id))
        assert (ended.call.state, ended.call.hangup_cause) == ("ended", "far end hung up")
        await _wrapped_up(box, stream, "alice")
        found = await client.search_calls(s.CallQuery(number="900123"))
        await stream.aclose()
    assert len(found.calls) == 1
    rec = found.calls[0]
    assert (rec.call_id, rec.direction, rec.to_number, rec.line_id, rec.outcome, rec.hangup_cause, rec.agent_id) == \
        (call_id, "outbound", "07700900123", SCRIPTED_LINE, "answered", "far end hung up", "alice")
    assert rec.talk_s is not None and rec.talk_s >= 0.0


async def test_unanswered_outbound_calls_are_stored_with_why(box: RunningBox) -> None:
    line = install_line(box)
    connect_agent(box, "alice")
    async with SocketClient(box.run_dir) as client:
        stream = client.events()
        await anext(stream)
        busy_id = await box.acall(lambda: box.box.outbound.dial("alice", "07700900555"))
        await _next(stream, s.CallChanged, lambda ev: ev.call.call_id == busy_id and ev.call.line_id == SCRIPTED_LINE)
        await box.acall(lambda: line.calls[0].fail(DialFailure.BUSY))
        await _wrapped_up(box, stream, "alice")
        # no trunk on this box: "anything else" has no line that can dial
        down_id = await box.acall(lambda: box.box.outbound.dial("alice", "+33 1 23 45 67 89"))
        ended = await _next(stream, s.CallChanged, lambda ev: ev.call.call_id == down_id and ev.call.state == "ended")
        assert ended.call.hangup_cause == "line down"
        await _wrapped_up(box, stream, "alice")
        found = {c.call_id: c for c in (await client.search_calls(s.CallQuery(agent_id="alice"))).calls}
        await stream.aclose()
    busy, down = found[busy_id], found[down_id]
    assert (busy.direction, busy.to_number, busy.outcome, busy.hangup_cause, busy.line_id) == \
        ("outbound", "07700900555", "failed", "busy", SCRIPTED_LINE)
    assert (down.direction, down.to_number, down.outcome, down.hangup_cause, down.line_id) == \
        ("outbound", "+33123456789", "failed", "line down", "")


SEGMENTS = (
    CallRecord(call_id="t-1", line_id="sip", line_kind="sip", direction="inbound", from_number="+447700900042",
               from_name=None, to_number="support", queue="support", outcome=CallOutcome.ANSWERED,
               hangup_cause="agent hung up", arrived_at=T0, enqueued_at=T0 + 1, answered_at=T0 + 5, ended_at=T0 + 65,
               talk_s=60.0, agent_id="alice", agent_name="Alice Martin", transfer="attended", transferred_to="bob",
               parent_call_id="t-1"),
    CallRecord(call_id="t-1-2", line_id="sip", line_kind="sip", direction="inbound", from_number="+447700900042",
               from_name=None, to_number="support", queue="support", outcome=CallOutcome.ANSWERED,
               hangup_cause="caller hung up", arrived_at=T0, answered_at=T0 + 65, ended_at=T0 + 125, talk_s=60.0,
               agent_id="bob", agent_name="Bob Okafor", segment=2, transferred_from="alice", parent_call_id="t-1"),
    CallRecord(call_id="later", line_id="sip", line_kind="sip", direction="inbound", from_number="+447700900099",
               from_name=None, to_number="support", queue="support", outcome=CallOutcome.ABANDONED,
               hangup_cause="caller hung up", arrived_at=T0 + 600),
)


async def test_transferred_call_segments_are_grouped_and_linked(box: RunningBox) -> None:
    for rec in reversed(SEGMENTS):  # stored out of order: the API orders them
        await box.acall(lambda rec=rec: box.box.store.save_call(rec))
    async with SocketClient(box.run_dir) as client:
        listed = await client.search_calls(s.CallQuery())
        first = await client.get_call("t-1")
        second = await client.get_call("t-1-2")
        alone = await client.get_call("later")
        by_bob = await client.search_calls(s.CallQuery(agent_id="bob"))
    assert [(c.call_id, c.segment) for c in listed.calls] == [("later", 1), ("t-1", 1), ("t-1-2", 2)]
    one, two = listed.calls[1], listed.calls[2]
    assert (one.transfer, one.transferred_to, one.transferred_from, one.parent_call_id) == ("attended", "bob", None, "t-1")
    assert (two.transfer, two.transferred_to, two.transferred_from, two.parent_call_id) == ("", None, "alice", "t-1")
    assert [seg.call_id for seg in first.segments] == ["t-1", "t-1-2"]
    assert second.segments == first.segments and second.call.agent_id == "bob"
    assert alone.segments == ()
    assert [c.call_id for c in by_bob.calls] == ["t-1-2"]


async def test_live_call_view_follows_the_current_agent_segment_and_transfer(box: RunningBox) -> None:
    """What the call centre publishes during an attended transfer reaches the API as it is."""
    def snap(**kw) -> LiveCallSnapshot:
        base = dict(call_id="live-1", line_id="sip", line_kind="sip", caller_number="+447700900042", caller_name=None,
                    queue_id="support", state=LiveState.ON_CALL, since=T0, arrived_at=T0, agent_id="alice",
                    agent_name="Alice Martin")
        return LiveCallSnapshot(**{**base, **kw})

    async with SocketClient(box.run_dir) as client:
        stream = client.events()
        await anext(stream)
        topic = box.box.hub.topic("calls")
        await box.acall(lambda: topic.publish(CallUpdate(snap(transfer="consulting"))))
        consulting = (await _next(stream, s.CallChanged, _call("live-1"))).call
        await box.acall(lambda: topic.publish(CallUpdate(snap(agent_id="bob", agent_name="Bob Okafor", segment=2))))
        taken_over = (await _next(stream, s.CallChanged, _call("live-1"))).call
        await box.acall(lambda: topic.publish(CallUpdate(snap(agent_id="bob", agent_name="Bob Okafor", segment=2,
                                                              state=LiveState.ENDED))))
        await _next(stream, s.CallChanged, _call("live-1"))
        await stream.aclose()
    assert (consulting.direction, consulting.agent_id, consulting.segment, consulting.transfer) == \
        ("inbound", "alice", 1, "consulting")
    assert (taken_over.agent_name, taken_over.segment, taken_over.transfer) == ("Bob Okafor", 2, None)


async def test_agent_device_and_desk_phone_extension(box: RunningBox, tmp_path: Path) -> None:
    async with SocketClient(box.run_dir) as client:
        site = await client.snapshot()
        assert site.box.extensions == ("201", "202")
        alice = next(a for a in site.agents if a.agent_id == "alice")
        assert (alice.device, alice.phone, alice.phone_problem) == ("browser", "", None)
        stream = client.events()
        await anext(stream)
        assert (await client.put_agent(s.PutAgent("alice", "Alice Martin", ("support",), phone="201"))).ok
        ev = await _next(stream, s.AgentChanged, lambda e: e.agent.agent_id == "alice" and e.agent.phone == "201")
        assert ev.agent.device == "browser" and "not registered" in (ev.agent.phone_problem or "")
        refused = await client.put_agent(s.PutAgent("bob", "Bob Okafor", ("support",), phone="299"))
        assert not refused.ok and refused.message == \
            "extension 299 is not a desk phone of this box ([sip] users: 201, 202)"
        kept = await client.put_agent(s.PutAgent("alice", "Alice M.", ("support",)))  # phone None: unchanged
        assert kept.ok
        await stream.aclose()
    doc = tomllib.loads(box.config_path.read_text())
    assert {a["id"]: a.get("phone") for a in doc["agents"]} == {"alice": "201", "bob": None}
    assert box.box.agent_config("alice").phone == "201"
    async with SocketClient(box.run_dir) as client:
        assert (await client.put_agent(s.PutAgent("alice", "Alice M.", ("support",), phone=""))).ok
        alice = next(a for a in (await client.snapshot()).agents if a.agent_id == "alice")
    assert (alice.phone, alice.phone_problem) == ("", None)


async def test_dial_plan_and_test_a_number(box: RunningBox) -> None:
    install_line(box)
    async with SocketClient(box.run_dir) as client:
        plan = await client.dial_plan()
        mobile = await client.route("07700 900123")
        other = await client.route("+33 1 23 45 67 89")
        bad = await client.route("call me")
    assert plan.rules == (s.DialRuleView(r"07\d{9}", ("gsm", "trunk"), 1, "+44", "mobiles"),
                          s.DialRuleView(".+", ("trunk",), 0, "", "anything else"))
    assert plan.lines == (SCRIPTED_LINE,)
    assert (mobile.ok, mobile.number, mobile.rule_no, mobile.dialled) == (True, "07700900123", 1, "+447700900123")
    assert mobile.lines == (s.RouteLine(SCRIPTED_LINE, "up", "running; this driver publishes no status"),
                            s.RouteLine("trunk", "not configured"))
    assert mobile.message == f"rule 1 (mobiles): dials +447700900123 on {SCRIPTED_LINE}, in that order"
    assert (other.ok, other.rule_no, other.dialled, other.lines) == \
        (True, 2, "+33123456789", (s.RouteLine("trunk", "not configured"),))
    assert other.message == "rule 2 (anything else): none of its lines (trunk) is configured on this box"
    assert not bad.ok and bad.message == "'call me' is not a number that can be dialled"


@pytest.mark.parametrize("message", [
    s.CallChanged(s.CallView("c1", "", "", "07700900123", None, None, "dialing", 1.0, 1.0, "alice", "Alice",
                             direction="outbound")),
    s.CallChanged(s.CallView("c2", "sip", "sip", "+44", None, "support", "on_call", 1.0, 1.0, "bob", "Bob", segment=2,
                             transfer="consulting")),
    s.AgentChanged(s.AgentView("a", "A", "available", 1.0, device="phone", phone="201", phone_problem=None)),
    s.PutAgent("alice", "Alice", ("support",), phone="201"),
    s.GetDialPlan(),
    s.RouteQuery("07700 900123"),
    s.DialPlanView((s.DialRuleView(r"07\d{9}", ("gsm", "trunk"), 1, "+44", "mobiles"),), ("trunk",)),
    s.RouteResult(True, "rule 1", "07700900123", 1, s.DialRuleView(".+", ("trunk",)), "07700900123",
                  (s.RouteLine("trunk", "configured"),)),
    s.RouteResult(False, "'x' is not a number that can be dialled"),
    s.CallDetail(None, (), (s.CallRecordView("t-1", "sip", "inbound", "+44", None, "support", "support", "answered",
                                             "agent hung up", 1.0, transfer="blind", transferred_to="sales",
                                             parent_call_id="t-1"),)),
])
def test_new_messages_round_trip_through_json(message) -> None:
    import json

    assert s.decode(json.loads(json.dumps(s.encode(message)))) == message


def test_a_call_view_from_a_box_without_the_new_fields_still_decodes() -> None:
    old = {"v": 1, "type": "call", "call": {"call_id": "c1", "line_id": "sip", "line_kind": "sip", "caller_number": "+44",
                                            "caller_name": None, "queue_id": "support", "state": "queued", "since": 1.0,
                                            "arrived_at": 1.0}}
    call = s.decode(old).call
    assert (call.direction, call.segment, call.transfer) == ("inbound", 1, None)


async def test_an_ip_authenticated_trunk_is_a_configured_line_of_the_dial_plan(tmp_path: Path) -> None:
    from tests.api.scripted import CONFIG, DIAL_PLAN

    trunk = 'trunk_registrar = "127.0.0.1:5999"\ntrunk_username = "branch"\ntrunk_register = false\n'
    (tmp_path / "branchline.toml").write_text(CONFIG.replace('auth_algorithms = ["MD5"]\n', f'auth_algorithms = ["MD5"]\n{trunk}')
                                              + DIAL_PLAN)
    rb = RunningBox(tmp_path).start()
    try:
        async with SocketClient(rb.run_dir) as client:
            plan = await client.dial_plan()
            other = await client.route("+33 1 23 45 67 89")
    finally:
        rb.stop()
    assert plan.lines == ("trunk",)
    assert other.lines == (s.RouteLine("trunk", "configured"),)
    assert other.message == "rule 2 (anything else): dials +33123456789 on trunk, in that order"
