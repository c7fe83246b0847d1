"""The TUI shows the new call features against a real box, through the real socket: outbound
calls live and stored, transfer segments, agents' devices (with a real baresip desk phone) and
the dial plan's "test a number"."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.widgets import ContentSwitcher, DataTable, Input, Static

from appliance.call_events import CallUpdate, LiveCallSnapshot, LiveState
from appliance.records import CallOutcome, CallRecord
from tests.api.running_box import RunningBox
from tests.api.scripted import SCRIPTED_LINE, connect_agent, install_line
from tests.api.test_call_features import SEGMENTS, T0
from tests.tui.conftest import wait_until
from tests.tui.test_pilot import connected, make_app, rows
from tui.screens.calls import CallDetailScreen
from tui.screens.forms import FormScreen

REGISTER_TIMEOUT_S = 30.0  # baresip registers in ms; the TUI sees it at the next 5 s device poll

BUSY = CallRecord(call_id="out-1", line_id=SCRIPTED_LINE, line_kind="gsm", direction="outbound", from_number=None,
                  from_name=None, to_number="07700900555", queue=None, outcome=CallOutcome.FAILED, hangup_cause="busy",
                  arrived_at=T0 + 900, ended_at=T0 + 905, agent_id="alice", agent_name="Alice Martin")


async def test_dashboard_shows_an_outbound_call_dialing_on_its_line_then_on_call(box: RunningBox) -> None:
    line = install_line(box)
    connect_agent(box, "alice")
    app = make_app(box)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot, app)
        await box.acall(lambda: box.box.outbound.dial("alice", "07700 900123"))
        await wait_until(pilot, lambda: rows(app, "dash-calls")[0] ==
                         ["out", "07700900123", "dialing", "Alice Martin", "1:23", SCRIPTED_LINE, "-"])
        await box.acall(lambda: line.calls[0].answer())
        await wait_until(pilot, lambda: rows(app, "dash-calls")[0][:4] == ["out", "07700900123", "on call", "Alice Martin"])
        await box.acall(lambda: line.calls[0].far_end_hangs_up())
        await wait_until(pilot, lambda: rows(app, "dash-calls")[0][0] == "no calls")


async def test_dashboard_follows_a_transfer_to_the_new_agent(box: RunningBox) -> None:
    def snap(**kw) -> LiveCallSnapshot:
        base = dict(call_id="live-1", line_id="sip", line_kind="sip", caller_number="+447700900042", caller_name=None,
                    queue_id="support", state=LiveState.ON_CALL, since=T0, arrived_at=T0, agent_id="alice",
                    agent_name="Alice Martin")
        return LiveCallSnapshot(**{**base, **kw})

    topic = box.box.hub.topic("calls")
    app = make_app(box)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot, app)
        await box.acall(lambda: topic.publish(CallUpdate(snap(transfer="consult_ringing"))))
        await wait_until(pilot, lambda: rows(app, "dash-calls")[0] ==
                         ["in", "+447700900042", "on call", "Alice Martin", "1:23", "sip", "consult ringing"])
        await box.acall(lambda: topic.publish(CallUpdate(snap(agent_id="bob", agent_name="Bob Okafor", segment=2))))
        await wait_until(pilot, lambda: rows(app, "dash-calls")[0][3:] == ["Bob Okafor", "1:23", "sip", "part 2"])
        await box.acall(lambda: topic.publish(CallUpdate(snap(state=LiveState.ENDED, segment=2))))
        await wait_until(pilot, lambda: rows(app, "dash-calls")[0][0] == "no calls")


async def test_call_history_shows_outbound_outcomes_and_transfer_segments(box: RunningBox) -> None:
    for rec in (*SEGMENTS, BUSY):
        await box.acall(lambda rec=rec: box.box.store.save_call(rec))
    app = make_app(box)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot, app)
        await pilot.press("4")
        await wait_until(pilot, lambda: len(rows(app, "calls-table")) == 4)
        table = rows(app, "calls-table")
        assert [r[:8] for r in table] == [
            ["2026-06-01 12:34", "out", "07700900555", "busy", "Alice Martin", "-", "-", SCRIPTED_LINE],
            ["2026-06-01 12:34", "in", "+447700900099", "abandoned", "-", "-", "support", "sip"],
            ["2026-06-01 12:34", "in", "+447700900042", "answered", "Alice Martin", "→ bob (attended)", "support", "sip"],
            ["  └ part 2", "in", "+447700900042", "answered", "Bob Okafor", "from alice", "support", "sip"],
        ]
        app.screen.query_one("#calls-table", DataTable).move_cursor(row=3, animate=False)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, CallDetailScreen))
        text = str(app.screen.query_one(Static).render())
        assert "Call path" in text and "Segment     2 of call t-1" in text
        path = text[text.index("Call path"):].splitlines()[1:]
        assert path[0].split() == ["1.", "Alice", "Martin", "answered", "talk", "1:00", "→", "bob", "(attended)"]
        assert path[1].split() == ["2.", "Bob", "Okafor", "answered", "talk", "1:00", "from", "alice", "<-", "this", "record"]
        await pilot.press("escape")
        app.screen.query_one("#q-number", Input).value = "900555"
        app.screen.query_one("#q-number", Input).focus()
        await pilot.press("enter")  # the number dialled is searched too
        await wait_until(pilot, lambda: [r[0:4] for r in rows(app, "calls-table")] ==
                         [["2026-06-01 12:34", "out", "07700900555", "busy"]])


@pytest.mark.skipif(shutil.which("baresip") is None, reason="needs baresip")
async def test_agents_screen_sets_the_desk_phone_and_shows_its_registration(box: RunningBox, tmp_path: Path) -> None:
    from tests.e2e.test_baresip import (
        free_sip_port,
        running_baresip,
        write_baresip_config,
    )
    from tests.support.softphone import free_tcp_port, write_phone_wav

    app = make_app(box)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot, app)
        await pilot.press("3")
        await wait_until(pilot, lambda: [r[6] for r in rows(app, "agents-table")] == ["browser", "browser"])
        await pilot.press("enter")  # edit alice
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
        phone = app.screen.query_one("#f-phone", Input)
        assert phone.placeholder == "one of 201, 202"
        phone.value = "299"
        await pilot.press("ctrl+s")
        message = app.screen.query_one("#form-message")
        await wait_until(pilot, lambda: "extension 299 is not a desk phone" in str(message.render()))
        phone.value = "201"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen))
        await wait_until(pilot, lambda: rows(app, "agents-table")[0][6] == "browser (phone 201: not registered)")
        assert box.box.agent_config("alice").phone == "201"
        ctrl_port = free_tcp_port()
        conf = write_baresip_config(tmp_path / "baresip", box_port=box.box.endpoints.sip_udp,
                                    wav=write_phone_wav(tmp_path / "phone.wav"), sip_port=free_sip_port(),
                                    ctrl_port=ctrl_port)
        async with running_baresip(conf, ctrl_port):
            await wait_until(pilot, lambda: rows(app, "agents-table")[0][6] == "browser (phone 201: registered)",
                             REGISTER_TIMEOUT_S)
            await box.acall(lambda: box.box.devices.set_device("alice", "phone"))  # what the console does
            await wait_until(pilot, lambda: rows(app, "agents-table")[0][6] == "desk phone 201 (registered)",
                             REGISTER_TIMEOUT_S)
            await pilot.press("enter")  # the admin takes the desk phone away: alice is back on the browser
            await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
            app.screen.query_one("#f-phone", Input).value = ""
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: rows(app, "agents-table")[0][6] == "browser")
            assert str(box.box.devices.device("alice")) == "browser" and box.box.agent_config("alice").phone == ""


async def test_lines_screen_dial_plan_tests_a_number(box: RunningBox) -> None:
    install_line(box)
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("2", "p")
        screen = app.screen
        assert screen.query_one("#lines-switch", ContentSwitcher).current == "dialplan-side"
        await wait_until(pilot, lambda: len(rows(app, "dp-rules")) == 2)
        assert rows(app, "dp-rules") == [["1", "mobiles", r"07\d{9}", "gsm, trunk", "strip 1, prepend +44"],
                                         ["2", "anything else", ".+", "trunk", "-"]]
        await pilot.press(*"07700", "space", *"900123", "enter")
        await wait_until(pilot, lambda: screen.route_result is not None)
        text = str(screen.query_one("#dp-result", Static).render())
        assert "Rule     1 (mobiles)" in text and "Dials    +447700900123" in text
        tried = [ln.split()[:4] for ln in text.splitlines() if ln.strip()[:2] in ("1.", "2.")]
        assert tried == [["1.", SCRIPTED_LINE, "up", "(running;"], ["2.", "trunk", "not", "configured"]]
        assert screen.query_one("#dp-rules", DataTable).cursor_row == 0
        screen.query_one("#dp-number", Input).value = "+33123456789"
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.route_result.rule_no == 2)
        assert screen.query_one("#dp-rules", DataTable).cursor_row == 1
        screen.query_one("#dp-number", Input).value = "not a number"
        await pilot.press("enter")
        await wait_until(pilot, lambda: not screen.route_result.ok)
        assert "is not a number that can be dialled" in str(screen.query_one("#dp-result", Static).render())
        await pilot.press("escape", "p")  # back to the line details
        assert screen.query_one("#lines-switch", ContentSwitcher).current == "lines-side"
        assert app.focused is screen.query_one("#lines-table")
