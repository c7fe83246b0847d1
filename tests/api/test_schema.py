from __future__ import annotations

import json

import pytest

from appliance.api import schema as s


def _site() -> s.SiteSnapshot:
    return s.SiteSnapshot(
        at=1.5,
        box=s.BoxInfo("b1", 42, 1.0, "http://127.0.0.1:1/", 5060, None, "/etc/branchline.toml"),
        agents=(s.AgentView("alice", "Alice", "available", 2.0, ("support",)),),
        queues=(s.QueueView("support", "Support", waiting=1, longest_wait_since=3.0, offered_today=4, answered_today=3,
                            answered_in_sl_today=2, dispositions=("resolved",)),),
        calls=(s.CallView("c1", "sip", "sip", "+441", None, "support", "queued", 3.0, 2.5),),
        lines=(s.LineView("gsm0", "gsm", "up", signal=17, signal_history=(s.SignalSample(1.0, 12), s.SignalSample(2.0, 17)),
                          capabilities=("reset",)),),
        alarms=(s.AlarmView("store", "disk_low", "recordings", "100 MB free", 9.0),),
    )


def test_snapshot_round_trips_through_json() -> None:
    site = _site()
    wire = json.loads(json.dumps(s.encode(site)))
    assert wire["v"] == 1 and wire["type"] == "snapshot"
    assert wire["lines"][0]["signal_history"] == [{"at": 1.0, "signal": 12}, {"at": 2.0, "signal": 17}]
    back = s.decode(wire)
    assert back == site
    assert back.queues[0].service_level == 0.5


@pytest.mark.parametrize("message", [
    s.AgentChanged(s.AgentView("a", "A", "paused", 1.0, pause_reason="lunch")),
    s.AgentRemoved("a"),
    s.LineRemoved("gsm:/dev/ttyUSB2"),
    s.QueueRemoved("q"),
    s.AlarmsChanged(()),
    s.PutAgent("carol", "Carol", ("support", "sales"), "secret-123", True),
    s.LineCommand("gsm0", "ussd", text="*100#"),
    s.CallQuery(date_from="2026-06-01", number="7700"),
    s.PasswordResult(True, "reset", "abcDEF123"),
    s.CallDetail(None),
    s.LogEntry(3, 1.0, "INFO", 20, "appliance.acd", "agent alice: paused -> available"),
])
def test_every_message_kind_round_trips(message: object) -> None:
    assert s.decode(json.loads(json.dumps(s.encode(message)))) == message


def test_integers_are_accepted_for_floats_but_not_bools_for_ints() -> None:
    doc = {"v": 1, "type": "put_queue", "queue_id": "q", "name": "Q", "ringback_s": 3}
    assert s.decode(doc).ringback_s == 3.0
    with pytest.raises(s.SchemaError, match=r"calls\[0\]\.since: expected a number"):
        s.decode({**s.encode(_site()), "calls": [{**s.encode(_site())["calls"][0], "since": "soon"}]})
    with pytest.raises(s.SchemaError, match="expected int"):
        s.decode({"v": 1, "type": "log", "seq": True, "at": 1.0, "level": "INFO", "levelno": 20, "logger": "x", "message": "m"})


@pytest.mark.parametrize("doc, error", [
    ({"v": 2, "type": "snapshot"}, "unsupported message version 2"),
    ({"type": "snapshot"}, "unsupported message version None"),
    ({"v": 1, "type": "reboot"}, "unknown message type 'reboot'"),
    ({"v": 1, "type": "delete_agent"}, "missing field.*agent_id"),
    ({"v": 1, "type": "delete_agent", "agent_id": "a", "force": True}, "unknown field.*force"),
    ({"v": 1, "type": "put_agent", "agent_id": "a", "name": "A", "queues": "support"}, "queues: expected a list"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_messages_are_refused_with_a_clear_reason(doc: object, error: str) -> None:
    with pytest.raises(s.SchemaError, match=error):
        s.decode(doc)


def test_decode_checks_the_expected_type() -> None:
    with pytest.raises(s.SchemaError, match="expected delete_agent, got 'agent_removed'"):
        s.decode(s.encode(s.AgentRemoved("a")), s.DeleteAgent)


def test_only_api_messages_can_be_encoded() -> None:
    with pytest.raises(s.SchemaError, match="not an API message"):
        s.encode(s.SignalSample(1.0, 3))
