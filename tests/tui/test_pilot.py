"""The TUI driven with Textual's Pilot against a real running box, through the real socket."""
from __future__ import annotations

import asyncio
import logging

import aiohttp
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable, Input, RichLog

from appliance.api.client import SocketClient
from tests.api.running_box import RunningBox
from tests.api.seed import publish_lines, seed_calls
from tests.tui.conftest import FrozenClock, wait_until
from tui.app import BranchlineApp
from tui.screens.calls import CallDetailScreen
from tui.screens.forms import ConfirmScreen, FormScreen, MessageScreen
from tui.screens.help import HelpScreen


class RecordingApp(BranchlineApp):
    """The real app, remembering the notifications it showed."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.notes: list[tuple[str, str]] = []

    def notify(self, message, *, title="", severity="information", **kwargs) -> None:
        self.notes.append((str(message), str(severity)))
        super().notify(message, title=title, severity=severity, **kwargs)


def make_app(rb: RunningBox) -> RecordingApp:
    return RecordingApp(SocketClient(rb.run_dir), clock=FrozenClock(), blink=False)


def rows(app: BranchlineApp, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def login_status(rb: RunningBox, agent_id: str, password: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{rb.box.endpoints.web_url}api/login", json={"agent_id": agent_id, "password": password}) as r:
            return r.status


async def connected(pilot, app: BranchlineApp) -> None:
    await wait_until(pilot, lambda: app.site is not None)


async def test_agent_created_in_the_tui_can_log_in_to_the_console_at_once(running_box: RunningBox) -> None:
    app = make_app(running_box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("3", "n")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press(*"dana", "tab", *"Dana Scully", "tab", *"dana-pass-1", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen))
        assert ("agent dana created", "information") in app.notes
        await wait_until(pilot, lambda: any(r[0] == "dana" for r in rows(app, "agents-table")))
        dana = next(r for r in rows(app, "agents-table") if r[0] == "dana")
        assert dana[1:] == ["Dana Scully", "logged out", "1:23", "support", "0", "browser"]
        assert await login_status(running_box, "dana", "dana-pass-1") == 200


async def test_invalid_agent_form_stays_open_with_the_box_answer(running_box: RunningBox) -> None:
    app = make_app(running_box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("3", "n")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press(*"eve", "tab", *"Eve", "tab", *"short", "enter")
        message = app.screen.query_one("#form-message")
        await wait_until(pilot, lambda: "at least 8 characters" in str(message.render()))
        assert isinstance(app.screen, FormScreen)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen))
    assert running_box.box.agent_config("eve") is None


async def test_password_reset_and_delete_from_the_tui(running_box: RunningBox) -> None:
    app = make_app(running_box)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot, app)
        await pilot.press("3")
        await wait_until(pilot, lambda: rows(app, "agents-table")[0][0] == "alice")
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageScreen))
        text = str(app.screen.query_one("#message-text").render())
        password = text.split("\n")[2].strip()
        assert await login_status(running_box, "alice", password) == 200
        assert await login_status(running_box, "alice", "alice-secret") == 401
        await pilot.press("escape", "down", "x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: [r[0] for r in rows(app, "agents-table")] == ["alice"])
        assert ("agent bob deleted", "information") in app.notes
    assert running_box.box.agent_config("bob") is None


async def test_queue_members_from_the_tui(running_box: RunningBox) -> None:
    app = make_app(running_box)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot, app)
        await pilot.press("3", "tab", "down", "m")  # the queues table, second queue (sales)
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press("space", "ctrl+s")  # the choice list has the focus: alice on; save
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen))
        assert ("members of sales: alice, bob", "information") in app.notes
        await wait_until(pilot, lambda: rows(app, "queues-table")[1][2] == "2")
    assert running_box.box.agent_config("alice").queues == ("support", "sales")


async def test_dashboard_follows_the_box_live(running_box: RunningBox) -> None:
    app = make_app(running_box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        assert rows(app, "dash-agents") == [["Alice Martin", "logged out", "1:23"], ["Bob Okafor", "logged out", "1:23"]]
        await running_box.acall(lambda: (running_box.box.acd.login("bob"), running_box.box.acd.set_available("bob")))
        await wait_until(pilot, lambda: rows(app, "dash-agents")[0] == ["Bob Okafor", "available", "1:23"])
        await publish_lines(running_box)
        await wait_until(pilot, lambda: len(rows(app, "dash-lines")) == 3)
        assert rows(app, "dash-lines")[1][:2] == ["gsm0", "up"]
        assert rows(app, "dash-lines")[1][2] == "▂▄▆·"
        assert rows(app, "dash-alarms") == [["12:34:56", "line", "analog0: no dial tone on the line"]]


async def test_line_commands_report_what_the_line_cannot_do(running_box: RunningBox) -> None:
    app = make_app(running_box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("2", "u")
        await wait_until(pilot, lambda: ("ussd is not available on line sip", "error") in app.notes)
        await pilot.press("r")
        await wait_until(pilot, lambda: ("reset is not available on line sip", "error") in app.notes)


async def test_call_search_and_record_detail(running_box: RunningBox) -> None:
    await asyncio.to_thread(seed_calls, running_box)
    app = make_app(running_box)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot, app)
        await pilot.press("4")
        await wait_until(pilot, lambda: len(rows(app, "calls-table")) == 3)
        app.screen.query_one("#q-number", Input).focus()
        await pilot.press(*"900002", "enter")
        await wait_until(pilot, lambda: len(rows(app, "calls-table")) == 1)
        assert rows(app, "calls-table")[0][1:4] == ["in", "+447700900002", "abandoned"]
        assert rows(app, "calls-table")[0][6] == "support"
        app.screen.query_one("#q-number", Input).value = ""
        app.screen.query_one("#q-agent", Input).focus()
        await pilot.press(*"alice", "enter", "escape")
        await wait_until(pilot, lambda: len(rows(app, "calls-table")) == 1 and rows(app, "calls-table")[0][4] == "Alice Martin")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, CallDetailScreen))
        text = str(app.screen.query_one("Static").render())
        assert "resolved" in text and "c-0001" in text and "2026/06/01/c-0001.wav" in text


async def test_recording_delete_needs_confirmation_and_a_reason(running_box: RunningBox) -> None:
    await asyncio.to_thread(seed_calls, running_box)
    wav = running_box.box.store.recordings_dir() / "2026/06/01/c-0001.wav"
    app = make_app(running_box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("5")
        await wait_until(pilot, lambda: rows(app, "rec-table")[0][1] == "c-0001")
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
        await pilot.press("enter")  # no reason given
        await wait_until(pilot, lambda: "give a reason" in str(app.screen.query_one("#form-message").render()))
        assert wav.exists()
        await pilot.press(*"caller asked", "enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen))
        await wait_until(pilot, lambda: rows(app, "rec-table")[0][0] == "no recordings")
    assert not wav.exists()


async def test_logs_screen_tails_and_filters(running_box: RunningBox) -> None:
    app = make_app(running_box)
    log = logging.getLogger("tests.tui.component")
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot, app)
        await pilot.press("6")
        view = app.screen.query_one("#log-view", RichLog)
        await running_box.acall(lambda: (log.warning("modem gsm0 lost"), logging.getLogger("other").warning("noise")))
        await wait_until(pilot, lambda: len(app.screen.entries) >= 2 and any("modem gsm0 lost" in e.message for e in app.screen.entries))
        app.screen.query_one("#log-component", Input).value = "tests.tui"
        await wait_until(pilot, lambda: len(view.lines) == 1)
        assert "WARNING tests.tui.component: modem gsm0 lost" in view.lines[0].text


async def test_help_overlay_and_command_palette(running_box: RunningBox) -> None:
    app = make_app(running_box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert "Agents and queues" in str(app.screen.query_one("#help-text").render())
        await pilot.press("escape", "ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"Recordings")
        await wait_until(pilot, lambda: app.screen.query_one(CommandList).option_count > 0)  # a hit is listed
        await pilot.press("enter")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "RecordingsScreen")


async def test_the_tui_says_when_the_box_goes_away_and_follows_it_back(tmp_path) -> None:
    rb = RunningBox(tmp_path).start()
    app = make_app(rb)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await connected(pilot, app)
            assert app.sub_title == "branch test-branch"
            await asyncio.to_thread(rb.stop)
            await wait_until(pilot, lambda: app.sub_title.startswith("DISCONNECTED"))
            assert not app.connected
            assert any(severity == "error" for _, severity in app.notes)
            rb = await asyncio.to_thread(RunningBox(tmp_path).start)  # restarted: new socket, new token
            await wait_until(pilot, lambda: app.connected, timeout=20)
            assert app.sub_title == "branch test-branch"
            await pilot.press("3")
            await wait_until(pilot, lambda: [r[0] for r in rows(app, "agents-table")] == ["alice", "bob"])
    finally:
        rb.stop()


async def test_ussd_balance_and_test_sms_on_the_simulated_gsm_line(tmp_path) -> None:
    from tests.api.running_box import CONFIG

    (tmp_path / "branchline.toml").write_text(CONFIG.replace("gsm = false", "gsm = true"))
    rb = RunningBox(tmp_path).start()
    try:
        app = make_app(rb)
        async with app.run_test(size=(80, 24)) as pilot:
            await connected(pilot, app)
            await pilot.press("2")
            await wait_until(pilot, lambda: any(ln.kind == "gsm" and ln.state == "up" for ln in app.site.lines), timeout=30)
            assert rows(app, "lines-table")[0][0].startswith("gsm:")
            # select the GSM line as the admin would: while the modem was renamed gsm:<port> ->
            # gsm:<IMEI> the cursor may have followed another row
            app.screen.query_one("#lines-table", DataTable).move_cursor(row=0, animate=False)
            await pilot.pause()
            await pilot.press("u")
            await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
            await pilot.press("enter")  # the form offers *100#
            try:
                await wait_until(pilot, lambda: any("Balance" in m for m, _ in app.notes), timeout=30)
            except TimeoutError:
                raise AssertionError(f"no balance; notes {app.notes}, screen {app.screen}, {app.site.lines}") from None
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
            await pilot.press(*"+447700900123", "enter")
            await wait_until(pilot, lambda: any(m.startswith("test sms done on gsm:") for m, _ in app.notes), timeout=30)
    finally:
        rb.stop()


async def test_recording_export_from_the_tui(running_box: RunningBox, tmp_path) -> None:
    await asyncio.to_thread(seed_calls, running_box)
    src = running_box.box.store.recordings_dir() / "2026/06/01/c-0001.wav"
    dest = tmp_path / "exported.wav"
    app = make_app(running_box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("5")
        await wait_until(pilot, lambda: rows(app, "rec-table")[0][1] == "c-0001")
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
        path_input = app.screen.query_one("#f-path", Input)
        assert path_input.value == "/tmp/c-0001.wav"
        path_input.value = str(dest)
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, FormScreen))
        assert (f"recording exported to {dest}", "information") in app.notes
    assert dest.read_bytes() == src.read_bytes()


async def test_sms_conversation_from_the_calls_screen(running_box: RunningBox) -> None:
    from appliance.storage import Channel

    store = running_box.box.store
    await running_box.acall(lambda: store.add_message(Channel.SMS, "in", "+447700900001", "Is my order shipped?"))
    app = make_app(running_box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("4", "m")
        assert ("type a phone number in the number field first", "warning") in app.notes
        app.screen.query_one("#q-number", Input).value = "+447700900001"
        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, MessageScreen))
        assert "<- Is my order shipped?" in str(app.screen.query_one("#message-text").render())
