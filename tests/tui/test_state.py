from __future__ import annotations

from dataclasses import replace

from appliance.api import schema as s
from tui.state import apply
from tui.widgets.signal import bar_count, dbm

BOX = s.BoxInfo("b", 1, 0.0, "", None, None, "")
SITE = s.SiteSnapshot(
    at=0.0, box=BOX,
    agents=(s.AgentView("alice", "Alice", "available", 1.0), s.AgentView("bob", "Bob", "paused", 1.0)),
    queues=(s.QueueView("support", "Support"), s.QueueView("sales", "Sales")),
    calls=(s.CallView("c1", "sip", "sip", "+1", None, "support", "queued", 1.0, 1.0),),
    lines=(s.LineView("sip", "sip", "up"),),
    alarms=(),
)


def test_deltas_before_the_first_snapshot_are_ignored() -> None:
    assert apply(None, s.AgentRemoved("alice")) is None
    assert apply(None, SITE) is SITE


def test_agents_are_replaced_added_and_removed_by_id() -> None:
    site = apply(SITE, s.AgentChanged(s.AgentView("alice", "Alice", "on_call", 2.0)))
    assert [(a.agent_id, a.state) for a in site.agents] == [("alice", "on_call"), ("bob", "paused")]
    site = apply(site, s.AgentChanged(s.AgentView("aaron", "Aaron", "logged_out", 3.0)))
    assert [a.agent_id for a in site.agents] == ["aaron", "alice", "bob"]
    assert [a.agent_id for a in apply(site, s.AgentRemoved("alice")).agents] == ["aaron", "bob"]


def test_ended_calls_leave_the_live_list() -> None:
    on_call = replace(SITE.calls[0], state="on_call", since=5.0)
    site = apply(SITE, s.CallChanged(on_call))
    assert site.calls == (on_call,)
    assert apply(site, s.CallChanged(replace(on_call, state="ended"))).calls == ()


def test_queues_keep_their_configured_order() -> None:
    site = apply(SITE, s.QueueChanged(s.QueueView("support", "Support", waiting=2)))
    assert [(q.queue_id, q.waiting) for q in site.queues] == [("support", 2), ("sales", 0)]
    site = apply(site, s.QueueChanged(s.QueueView("billing", "Billing")))
    assert [q.queue_id for q in apply(site, s.QueueRemoved("sales")).queues] == ["support", "billing"]


def test_lines_and_alarms() -> None:
    site = apply(SITE, s.LineChanged(s.LineView("gsm0", "gsm", "down", detail="modem lost")))
    assert [ln.line_id for ln in site.lines] == ["gsm0", "sip"]
    assert [ln.line_id for ln in apply(site, s.LineRemoved("sip")).lines] == ["gsm0"]
    alarm = s.AlarmView("line", "line_down", "gsm0", "modem lost", 1.0)
    assert apply(site, s.AlarmsChanged((alarm,))).alarms == (alarm,)


def test_signal_bars_follow_the_csq_scale() -> None:
    assert [bar_count(v) for v in (None, 99, 0, 1, 2, 9, 10, 14, 15, 19, 20, 31, 32)] == \
        [None, None, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, None]
    assert dbm(18) == "-77 dBm" and dbm(99) == "-"
