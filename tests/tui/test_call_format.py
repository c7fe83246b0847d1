"""How the TUI words calls: pure functions over the API's views."""
from __future__ import annotations

from dataclasses import replace

from appliance.api import schema as s
from tui.call_format import live_number, live_state, live_transfer, record_number, record_outcome, record_party, record_transfer
from tui.screens.agents import device_text
from tui.state import apply
from tests.tui.test_state import SITE

REC = s.CallRecordView("c1", "gsm:1", "outbound", None, None, "07700900555", None, "failed", "no answer", 1.0)


def test_outbound_records_show_the_number_dialled_and_why_they_failed() -> None:
    assert record_number(REC) == "07700900555"
    assert record_outcome(REC).plain == "no answer"
    assert record_outcome(replace(REC, outcome="answered", hangup_cause="agent hung up")).plain == "answered"
    inbound = replace(REC, direction="inbound", from_number="+44", outcome="abandoned", hangup_cause="caller hung up")
    assert (record_number(inbound), record_outcome(inbound).plain) == ("+44", "abandoned")
    assert record_number(replace(inbound, from_number=None)) == "withheld"


def test_transfer_segments_say_where_the_caller_came_from_and_went() -> None:
    assert record_transfer(REC) == "-"
    assert record_transfer(replace(REC, transfer="attended", transferred_to="bob")) == "→ bob (attended)"
    assert record_transfer(replace(REC, transferred_from="alice")) == "from alice"
    assert record_transfer(replace(REC, transferred_from="alice", transfer="blind", transferred_to="sales")) == \
        "from alice · → sales (blind)"
    external = replace(REC, outcome="answered", segment=2, to_number="+33123", transferred_from="bob")
    assert record_party(external) == "+33123"  # an external party, not an agent
    assert record_party(replace(external, agent_id="carol", agent_name="Carol")) == "Carol"


def test_live_calls_show_the_transfer_in_progress_and_follow_the_agent() -> None:
    call = SITE.calls[0]
    assert (live_number(call), live_transfer(call)) == ("+1", "-")
    moved = replace(call, state="on_call", agent_id="bob", agent_name="Bob", segment=2, transfer="consult_ringing")
    assert live_transfer(moved) == "part 2 · consult ringing"
    assert live_transfer(replace(call, state="on_call", on_hold=True)) == "on hold"
    site = apply(SITE, s.CallChanged(moved))
    assert [(c.agent_name, c.segment) for c in site.calls] == [("Bob", 2)]
    dialing = s.CallView("o1", "", "", "07700900123", None, None, "dialing", 2.0, 2.0, "alice", "Alice", direction="outbound")
    assert [c.call_id for c in apply(site, s.CallChanged(dialing)).calls] == ["c1", "o1"]


def test_agent_device_text() -> None:
    a = s.AgentView("alice", "Alice", "available", 1.0)
    assert device_text(a).plain == "browser"
    assert device_text(replace(a, phone="201", phone_problem="not registered")).plain == "browser (phone 201: not registered)"
    unreachable = "your desk phone (extension 201) is not reachable: it is registered but does not answer"
    assert device_text(replace(a, phone="201", phone_problem=unreachable)).plain == "browser (phone 201: not reachable)"
    assert device_text(replace(a, phone="201", device="phone")).plain == "desk phone 201 (registered)"
    assert device_text(replace(a, device="phone")).plain == "desk phone (none set)"


def test_a_caller_in_a_menu_shows_the_menu_beside_the_state() -> None:
    call = s.CallView("c1", "sip", "sip", "+44", None, None, "ivr", 1.0, 1.0, menu="main")
    assert live_state(call).plain == "ivr main"
    assert live_state(replace(call, state="queued", queue_id="sales", menu=None)).plain == "queued"
    assert record_outcome(replace(REC, direction="inbound", outcome="menu_ended", hangup_cause="menu hung up")).plain
