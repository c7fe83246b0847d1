"""Calls and messages: search stored call records by date, number and agent; open one."""
from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Header, Input, Static

from appliance.api import schema as s
from tui.call_format import direction, record_number, record_outcome, record_party, record_transfer
from tui.clock import duration
from tui.screens.base import StoredListScreen
from tui.screens.forms import MessageScreen
from tui.widgets.tables import SiteTable, fill, selected_key


def record_text(rec: s.CallRecordView, clock: Any) -> str:
    outbound = rec.direction == "outbound"
    rows = [
        ("Call", rec.call_id), ("Line", rec.line_id or "-"),
        ("Direction", "outbound (placed by the agent)" if outbound else rec.direction),
    ]
    if outbound:
        rows += [("Dialled", rec.to_number or "-")]
    else:
        rows += [("From", f"{rec.from_number or 'withheld'}{f' ({rec.from_name})' if rec.from_name else ''}"),
                 ("To", rec.to_number or "-"), ("Queue", rec.queue or "-")]
    rows += [
        ("Outcome", rec.outcome.replace("_", " ")), ("Hang-up", rec.hangup_cause or "-"),
        ("Started" if outbound else "Arrived", clock.date_time(rec.arrived_at)),
        ("Answered", clock.date_time(rec.answered_at)), ("Ended", clock.date_time(rec.ended_at)),
        ("Wait", duration(rec.wait_s)), ("Talk", duration(rec.talk_s)), ("Wrap-up", duration(rec.wrapup_s)),
        ("Agent", f"{rec.agent_name or rec.agent_id or '-'}"), ("Disposition", rec.disposition or "-"),
    ]
    if rec.holds:
        rows += [("On hold", f"{duration(rec.hold_s)} ({rec.holds} time{'s' if rec.holds > 1 else ''})")]
    if rec.segment > 1 or rec.transfer or rec.transferred_to or rec.transferred_from:
        rows += [("Segment", f"{rec.segment} of call {rec.parent_call_id or rec.call_id}"),
                 ("Transfer", record_transfer(rec))]
    if rec.ivr:
        rows += [("Menu keys", " ".join(rec.ivr))]
    if not outbound:
        rows += [("Offered to", ", ".join(rec.offers) or "-")]
    rows += [
        ("DTMF", rec.dtmf or "-"),
        ("Recording", f"{rec.recording_path} ({duration(rec.recording_s)})" if rec.recording_path else "none"),
    ]
    return "\n".join(f"[b]{k:<12}[/b]{escape(str(v))}" for k, v in rows)


def call_path_text(segments: tuple[s.CallRecordView, ...], current: str) -> str:
    """One customer call across agents: each segment, who took it, for how long, and where it went."""
    lines = []
    for seg in segments:
        mark = "  [b]<- this record[/b]" if seg.call_id == current else ""
        lines.append(f"{seg.segment:>2}. {escape(record_party(seg)):<16} {record_outcome(seg).plain:<10} "
                     f"talk {duration(seg.talk_s):<6} {escape(record_transfer(seg))}{mark}")
    return "\n".join(lines)


class CallDetailScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, detail: s.CallDetail, clock: Any) -> None:
        super().__init__()
        self._detail = detail
        self._clock = clock

    def compose(self) -> ComposeResult:
        d = self._detail
        text = record_text(d.call, self._clock) if d.call else "This call is no longer stored."
        if d.call and d.segments:
            text += ("\n\n[b]Call path[/b] (one customer call across agents, in order)\n"
                     + call_path_text(d.segments, d.call.call_id))
        if d.messages:
            text += "\n\n[b]Messages with this number[/b]\n" + "\n".join(
                f"{self._clock.date_time(m.at)} {'<-' if m.direction == 'in' else '->'} {m.body}" for m in d.messages)
        elif d.call:
            text += "\n\n[dim]No SMS or chat messages with this number.[/dim]"
        with VerticalScroll(id="message-box"):
            yield Static(text)

    def on_mount(self) -> None:
        self.query_one("#message-box").border_title = "Call record (escape closes)"


class CallsScreen(StoredListScreen):
    HELP = ("Search the stored call records, received (in) and placed by agents (out): dates as YYYY-MM-DD "
            "(either may be empty), part of a phone number (caller or number dialled), or an agent id; enter "
            "searches, escape leaves the field (then the number keys switch screens again). The list is "
            "searched again when you come back to this screen and when a call ends. An outbound call that "
            "was not answered shows why (busy, no answer, line down). A "
            "transferred call has one row per agent, grouped under the first (└ part 2 ...), with where "
            "each part came from and went to. Enter on a result opens the record with its call path, "
            "disposition and any SMS with that number. m lists the SMS conversation with the number in "
            "the number field.")
    BINDINGS = [Binding("ctrl+f", "focus_search", "Search"), Binding("m", "messages", "Messages")]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="call-filters", classes="filters"):
            yield Input(placeholder="from date", id="q-from")
            yield Input(placeholder="to date", id="q-to")
            yield Input(placeholder="number", id="q-number")
            yield Input(placeholder="agent id", id="q-agent")
        yield SiteTable(id="calls-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#calls-table", DataTable)
        table.border_title = "Stored calls"
        table.add_columns("When", "Dir", "Number", "Outcome", "Agent", "Transfer", "Queue", "Line", "Wait", "Talk",
                          "Disposition")
        self.search()

    def action_focus_search(self) -> None:
        self.query_one("#q-from", Input).focus()

    def query_values(self) -> s.CallQuery:
        v = {name: self.query_one(f"#q-{name}", Input).value.strip() for name in ("from", "to", "number", "agent")}
        return s.CallQuery(date_from=v["from"] or None, date_to=v["to"] or None, number=v["number"] or None,
                           agent_id=v["agent"] or None)

    @work(exclusive=True, exit_on_error=False, group="calls-search")
    async def search(self) -> None:
        table = self.query_one("#calls-table", DataTable)
        try:
            found = await self.client.search_calls(self.query_values())
        except Exception as exc:
            self.notify(str(exc), title="Search", severity="error")
            return
        fill(table, [(r.call_id, self._row(r)) for r in found.calls], empty="no matching calls")
        table.border_subtitle = f"{len(found.calls)} found in {found.scanned} stored"

    def _row(self, r: s.CallRecordView) -> tuple[object, ...]:
        when = self.clock.date_time(r.arrived_at) if r.segment == 1 else f"  └ part {r.segment}"
        return (when, direction(r.direction), record_number(r), record_outcome(r), record_party(r), record_transfer(r),
                r.queue or "-", r.line_id or "-", duration(r.wait_s), duration(r.talk_s), r.disposition or "-")

    def action_messages(self) -> None:
        number = self.query_one("#q-number", Input).value.strip()
        if not number:
            self.notify("type a phone number in the number field first", severity="warning")
            return
        self._show_messages(number)

    @work(exit_on_error=False, group="calls-open")
    async def _show_messages(self, number: str) -> None:
        try:
            found = await self.client.messages(number)
        except Exception as exc:
            self.notify(str(exc), severity="error")
            return
        c = self.clock
        text = "\n".join(f"{c.date_time(m.at)} {'<-' if m.direction == 'in' else '->'} {m.body}" for m in found.messages)
        self.app.push_screen(MessageScreen(f"Messages with {number}", text or "No open conversation with this number."))

    @on(DataTable.RowSelected)
    def _open(self) -> None:
        key = selected_key(self.query_one("#calls-table", DataTable))
        if key is not None:
            self._open_call(key)

    @work(exit_on_error=False, group="calls-open")
    async def _open_call(self, call_id: str) -> None:
        try:
            detail = await self.client.get_call(call_id)
        except Exception as exc:
            self.notify(str(exc), severity="error")
            return
        self.app.push_screen(CallDetailScreen(detail, self.clock))
