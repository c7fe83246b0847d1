"""Lines: details of each line, its signal history, line commands (enable, reset, test SMS, USSD),
and the outbound dial plan with a "test a number" field."""
from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import ContentSwitcher, DataTable, Footer, Header, Input, Static
from textual_plotext import PlotextPlot

from appliance.api import schema as s
from tui.screens.base import SiteScreen
from tui.screens.forms import Field, FormScreen
from tui.widgets.signal import dbm, signal_bars
from tui.widgets.tables import SiteTable, fill, selected_key, state_text

LINE_COLUMNS = ("Line", "Kind", "State", "Sig")
MIN_LINE_CELLS = 6  # a line id shortened further than this ("gsm:…9") no longer tells lines apart
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


def shorten_id(line_id: str, cells: int) -> str:
    """``line_id`` in at most ``cells`` characters, keeping its kind and the end that tells lines
    apart: "gsm:356938035643809" -> "gsm:…5643809"."""
    if len(line_id) <= cells:
        return line_id
    if cells < 3:
        return line_id[:cells]
    colon = line_id.find(":") + 1
    head = line_id[:colon] if 0 < colon <= (cells - 1) // 2 else line_id[:(cells - 1) // 2]
    return f"{head}…{line_id[len(line_id) - (cells - 1 - len(head)):]}"


def fit_line_columns(cells: list[tuple[str, str, str, str]], width: int, padding: int = 1) -> tuple[tuple[str, ...], int]:
    """The columns of the lines table, and the most characters a line id may take, so that the
    rows (line id, kind, state, signal bars) fit ``width`` cells without cutting State or Sig.

    Everything fits: all columns, ids whole. Otherwise Kind goes first (the id starts with the
    kind: "gsm:...", "analog:0"), then line ids are shortened in the middle.
    """
    need = [max([len(label)] + [len(row[i]) for row in cells]) + 2 * padding for i, label in enumerate(LINE_COLUMNS)]
    line, kind, state, sig = need
    if width <= 0 or line + kind + state + sig <= width:
        return LINE_COLUMNS, line - 2 * padding
    without_kind = tuple(c for c in LINE_COLUMNS if c != "Kind")
    return without_kind, max(MIN_LINE_CELLS, min(line, width - state - sig) - 2 * padding)


class LinesTable(SiteTable):
    """The lines table; tells its screen when its width changes so the columns are fitted again."""

    class Resized(Message):
        pass

    def on_resize(self, event: events.Resize) -> None:
        self.post_message(self.Resized())


def rule_rewrite(rule: s.DialRuleView) -> str:
    parts = ([f"strip {rule.strip}"] if rule.strip else []) + ([f"prepend {rule.prepend}"] if rule.prepend else [])
    return ", ".join(parts) or "-"


def route_text(result: s.RouteResult) -> str:
    """The answer to "test a number": the matching rule, what is dialled, and the lines tried in order."""
    if not result.ok:
        head = f"[b]{escape(result.number)}[/b]: " if result.number else ""
        return f"{head}[red]{escape(result.message)}[/red]"
    rule = result.rule
    name = f" ({escape(rule.name)})" if rule and rule.name else ""
    rows = [
        f"[b]Number[/b]   {escape(result.number)}",
        f"[b]Rule[/b]     {result.rule_no}{name}: {escape(rule.pattern) if rule else '-'}",
        f"[b]Dials[/b]    {escape(result.dialled)}",
        "[b]Lines[/b]    tried in order (skips down/busy)",
    ]
    width = max((len(line.line_id) for line in result.lines), default=0)
    for i, line in enumerate(result.lines, 1):
        style = "green" if line.state == "up" else "red" if line.state in ("down", "not configured") else "yellow"
        detail = f" [dim]({escape(line.detail)})[/dim]" if line.detail and line.detail != line.state else ""
        rows.append(f"  {i}. {escape(line.line_id.ljust(width))}  [{style}]{escape(line.state)}[/{style}]{detail}")
    if not result.lines:
        rows.append("  [red]none[/red]")
    return "\n".join(rows)


class LinesScreen(SiteScreen):
    HELP = ("Lines shows what each line driver reports. Commands go to the line's driver; a line whose "
            "driver does not offer a command says so. p shows the outbound dial plan instead of the line "
            "details: its rules in order (the first that matches a number wins) and a field to test a "
            "number: it shows the rule that matches, the number the line is asked to dial and the lines "
            "that would be tried, in order, with their state now. Nothing is dialled. p puts you in the "
            "number field, where every key is typed (digits do not switch screens); escape goes back to the "
            "lines table, and p from there goes back to the line details.")
    BINDINGS = [
        Binding("e", "line('enable')", "Enable"),
        Binding("d", "line('disable')", "Disable"),
        Binding("r", "line('reset')", "Reset"),
        Binding("s", "sms", "Test SMS"),
        Binding("u", "ussd", "USSD"),
        Binding("p", "dial_plan", "Dial plan"),
    ]
    route_result: s.RouteResult | None = None  # the last "test a number" answer shown

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="lines-body"):
            yield LinesTable(id="lines-table", cursor_type="row")
            with ContentSwitcher(initial="lines-side", id="lines-switch"):
                with Vertical(id="lines-side"):
                    with VerticalScroll(id="line-detail-box"):
                        yield Static("", id="line-detail")
                    yield PlotextPlot(id="line-plot")
                with Vertical(id="dialplan-side"):
                    yield SiteTable(id="dp-rules", cursor_type="row")
                    yield Input(placeholder="a number as an agent would dial it", id="dp-number")
                    with VerticalScroll(id="dp-result-box"):
                        yield Static("Nothing is dialled: the box only says which rule and lines it would use.",
                                     id="dp-result")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#lines-table", DataTable)
        table.border_title = "Lines"
        table.add_columns(*LINE_COLUMNS)
        self.query_one("#line-detail-box").border_title = "Details"
        self.query_one("#line-plot").border_title = "Signal history"
        rules = self.query_one("#dp-rules", DataTable)
        rules.border_title = "Dial plan (p: back to line details)"
        rules.add_columns("#", "Name", "Pattern", "Via", "Rewrite")
        self.query_one("#dp-number").border_title = "Test a number (enter)"
        self.query_one("#dp-result-box").border_title = "Route"
        if self.admin_app.site is not None:
            self.show_site(self.admin_app.site)

    def show_site(self, site: s.SiteSnapshot) -> None:
        table = self.query_one("#lines-table", DataTable)
        cells = [(ln.line_id, ln.kind, state_text(ln.state), signal_bars(ln.signal) if ln.kind == "gsm" else "")
                 for ln in site.lines]
        columns, id_cells = fit_line_columns([(i, k, st.plain, sig) for i, k, st, sig in cells],
                                             table.scrollable_content_region.width, table.cell_padding)
        selected = None
        if tuple(str(c.label) for c in table.columns.values()) != columns:  # Kind dropped or back
            selected = selected_key(table)
            table.clear(columns=True)
            table.add_columns(*columns)
            table._shown_rows = None  # type: ignore[attr-defined]  # new columns: fill all rows again
        fill(table, [(line_id, (shorten_id(line_id, id_cells), *((kind,) if "Kind" in columns else ()), state, sig))
                     for line_id, kind, state, sig in cells], empty="no lines")
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected), animate=False)
        self._show_selected()

    @on(LinesTable.Resized)
    def _fit_columns(self) -> None:
        if self.admin_app.site is not None:
            self.show_site(self.admin_app.site)

    def _selected(self) -> s.LineView | None:
        site = self.admin_app.site
        key = selected_key(self.query_one("#lines-table", DataTable))
        return next((ln for ln in site.lines if ln.line_id == key), None) if site else None

    @on(DataTable.RowHighlighted, "#lines-table")
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

    # --- dial plan ---------------------------------------------------------------------------
    def action_dial_plan(self) -> None:
        switcher = self.query_one("#lines-switch", ContentSwitcher)
        if switcher.current == "dialplan-side":
            switcher.current = "lines-side"
            self.action_leave_field()
            return
        switcher.current = "dialplan-side"
        self.query_one("#dp-number", Input).focus()
        self._load_dial_plan()

    @work(exclusive=True, exit_on_error=False, group="dial-plan")
    async def _load_dial_plan(self) -> None:
        table = self.query_one("#dp-rules", DataTable)
        try:
            plan = await self.client.dial_plan()
        except Exception as exc:
            self.notify(str(exc), title="Dial plan", severity="error")
            return
        fill(table, [(str(i), (str(i), r.name or "-", r.pattern, ", ".join(r.via), rule_rewrite(r)))
                     for i, r in enumerate(plan.rules, 1)], empty="no rules")
        table.border_subtitle = f"lines that can dial: {', '.join(plan.lines) or 'none'}"

    @on(Input.Submitted, "#dp-number")
    def _test_number(self, event: Input.Submitted) -> None:
        self._route(event.value.strip())

    @work(exclusive=True, exit_on_error=False, group="dial-plan-test")
    async def _route(self, number: str) -> None:
        result_view = self.query_one("#dp-result", Static)
        if not number:
            result_view.update("Type a number first.")
            return
        try:
            result = await self.client.route(number)
        except Exception as exc:
            self.notify(str(exc), title="Dial plan", severity="error")
            return
        self.route_result = result
        result_view.update(route_text(result))
        if result.rule_no:
            self.query_one("#dp-rules", DataTable).move_cursor(row=result.rule_no - 1, animate=False)

    @work(exit_on_error=False, group="line-command")
    async def _send(self, cmd: s.LineCommand) -> None:
        try:
            result = await self.client.line_command(cmd)
        except Exception as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(result.message, title="Line", severity="information" if result.ok else "error")
