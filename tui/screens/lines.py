"""Lines: details of each line, its signal history, and line commands (enable, reset, test SMS, USSD)."""
from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from appliance.api import schema as s
from tui.screens.base import SiteScreen
from tui.screens.forms import Field, FormScreen
from tui.widgets.signal import dbm, signal_bars
from tui.widgets.tables import SiteTable, fill, selected_key, state_text

ACTION_LABELS = {"enable": "enable", "disable": "disable", "reset": "reset", "test_sms": "test SMS", "ussd": "USSD"}


def line_details(line: s.LineView, clock: Any) -> str:
    rows = [
        ("Line", line.line_id), ("Kind", line.kind), ("State", line.state), ("Detail", line.detail or "-"),
        ("Signal", f"{line.signal} ({dbm(line.signal)})" if line.signal is not None else "-"),
        ("Operator", line.operator or "-"), ("Registration", line.registration or "-"), ("SIM", line.sim or "-"),
        ("IMEI", line.imei or "-"), ("ICCID", line.iccid or "-"), ("Model", line.model or "-"),
        ("Firmware", line.firmware or "-"), ("Port", line.port or "-"), ("Calls now", str(line.calls)),
        ("Updated", clock.time_of_day(line.updated)),
        ("Commands", ", ".join(ACTION_LABELS[c] for c in line.capabilities if c in ACTION_LABELS) or "none offered by this driver"),
    ]
    return "\n".join(f"[b]{k:<13}[/b]{v}" for k, v in rows)


class LinesScreen(SiteScreen):
    HELP = ("Lines shows what each line driver reports. Commands go to the line's driver; a line whose "
            "driver does not offer a command says so.")
    BINDINGS = [
        Binding("e", "line('enable')", "Enable"),
        Binding("d", "line('disable')", "Disable"),
        Binding("r", "line('reset')", "Reset"),
        Binding("s", "sms", "Test SMS"),
        Binding("u", "ussd", "USSD"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="lines-body"):
            yield SiteTable(id="lines-table", cursor_type="row")
            with Vertical(id="lines-side"):
                with VerticalScroll(id="line-detail-box"):
                    yield Static("", id="line-detail")
                yield PlotextPlot(id="line-plot")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#lines-table", DataTable)
        table.border_title = "Lines"
        table.add_columns("Line", "Kind", "State", "Sig")
        self.query_one("#line-detail-box").border_title = "Details"
        self.query_one("#line-plot").border_title = "Signal history"
        if self.admin_app.site is not None:
            self.show_site(self.admin_app.site)

    def show_site(self, site: s.SiteSnapshot) -> None:
        table = self.query_one("#lines-table", DataTable)
        fill(table, [(ln.line_id, (ln.line_id, ln.kind, state_text(ln.state), signal_bars(ln.signal) if ln.kind == "gsm" else ""))
                     for ln in site.lines], empty="no lines")
        self._show_selected()

    def _selected(self) -> s.LineView | None:
        site = self.admin_app.site
        key = selected_key(self.query_one("#lines-table", DataTable))
        return next((ln for ln in site.lines if ln.line_id == key), None) if site else None

    @on(DataTable.RowHighlighted)
    def _show_selected(self) -> None:
        line = self._selected()
        detail = self.query_one("#line-detail", Static)
        plot = self.query_one("#line-plot", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        if line is None:
            detail.update("No line selected.")
            plot.refresh()
            return
        detail.update(line_details(line, self.clock))
        plt.title("signal (0-31)" if line.signal_history else "no signal samples yet")
        plt.ylim(0, 31)
        if line.signal_history:
            t0 = line.signal_history[0].at
            plt.plot([(p.at - t0) / 60.0 for p in line.signal_history], [p.signal for p in line.signal_history], marker="braille")
            plt.xlabel("minutes")
        plot.refresh()

    def _command_target(self, action: str) -> s.LineView | None:
        """The selected line when it offers ``action``; otherwise the box is asked and says why not."""
        line = self._selected()
        if line is None:
            self.notify("select a line first", severity="warning")
            return None
        if action not in line.capabilities:
            self._send(s.LineCommand(line.line_id, action))
            return None
        return line

    def action_line(self, action: str) -> None:
        line = self._selected()
        if line is None:
            self.notify("select a line first", severity="warning")
            return
        self._send(s.LineCommand(line.line_id, action))

    def action_sms(self) -> None:
        line = self._command_target("test_sms")
        if line is None:
            return

        async def submit(v: dict[str, Any]) -> s.CommandResult:
            return await self.client.line_command(s.LineCommand(line.line_id, "test_sms", number=v["number"].strip(), text=v["text"]))

        self.app.push_screen(FormScreen(f"Test SMS from {line.line_id}", [
            Field("number", "Send to"), Field("text", "Text", "Branchline test message")], submit, blink=self.admin_app.blink,
            save_label="Send"), self._done)

    def action_ussd(self) -> None:
        line = self._command_target("ussd")
        if line is None:
            return

        async def submit(v: dict[str, Any]) -> s.CommandResult:
            return await self.client.line_command(s.LineCommand(line.line_id, "ussd", text=v["code"].strip()))

        self.app.push_screen(FormScreen(f"USSD on {line.line_id}", [Field("code", "Code", "*100#")], submit,
                                        blink=self.admin_app.blink, save_label="Send"), self._done)

    def _done(self, result: Any) -> None:
        if result is not None:
            self.notify(result.message, title="Line")

    @work(exit_on_error=False, group="line-command")
    async def _send(self, cmd: s.LineCommand) -> None:
        try:
            result = await self.client.line_command(cmd)
        except Exception as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(result.message, title="Line", severity="information" if result.ok else "error")
