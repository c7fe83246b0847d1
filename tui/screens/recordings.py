"""Recordings: find them, export one to a file, delete one (confirmed, with a reason for the audit)."""
from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input

from appliance.api import schema as s
from tui.clock import duration
from tui.screens.base import SiteScreen
from tui.screens.forms import Field, FormScreen
from tui.widgets.tables import SiteTable, fill, selected_key


def size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} kB"


class RecordingsScreen(SiteScreen):
    HELP = ("Search recordings by date (YYYY-MM-DD) and number. x exports the selected recording to a "
            "file on the box (decrypted when the box encrypts recordings); d deletes it after you "
            "confirm and give a reason, which the box keeps in its audit trail.")
    BINDINGS = [
        Binding("x", "export", "Export"),
        Binding("d,delete", "delete", "Delete"),
        Binding("ctrl+f", "focus_search", "Search"),
    ]

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="rec-filters", classes="filters"):
            yield Input(placeholder="from date", id="r-from")
            yield Input(placeholder="to date", id="r-to")
            yield Input(placeholder="number", id="r-number")
        yield SiteTable(id="rec-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one("#rec-table", DataTable)
        table.border_title = "Recordings (x export, d delete)"
        table.add_columns("When", "Call", "From", "Agent", "Length", "Size")
        self.search()

    def action_focus_search(self) -> None:
        self.query_one("#r-from", Input).focus()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.search()

    @work(exclusive=True, exit_on_error=False, group="rec-search")
    async def search(self) -> None:
        v = {n: self.query_one(f"#r-{n}", Input).value.strip() for n in ("from", "to", "number")}
        q = s.CallQuery(date_from=v["from"] or None, date_to=v["to"] or None, number=v["number"] or None)
        try:
            found = await self.client.recordings(q)
        except Exception as exc:
            self.notify(str(exc), title="Search", severity="error")
            return
        c = self.clock
        fill(self.query_one("#rec-table", DataTable),
             [(r.call_id, (c.date_time(r.at), r.call_id, r.from_number or "withheld", r.agent_id or "-",
                           duration(r.seconds), size_text(r.size) + (" enc" if r.encrypted else "")))
              for r in found.recordings], empty="no recordings")

    def _selected(self) -> str | None:
        key = selected_key(self.query_one("#rec-table", DataTable))
        if key is None:
            self.notify("select a recording first", severity="warning")
        return key

    def action_export(self) -> None:
        call_id = self._selected()
        if call_id is None:
            return
        client = self.client

        async def submit(v: dict[str, Any]) -> s.CommandResult:
            return await client.export_recording(call_id, v["path"].strip())

        self.app.push_screen(FormScreen(f"Export recording of {call_id}", [
            Field("path", "Save as (a path on the box)", f"/tmp/{call_id}.wav")], submit, blink=self.admin_app.blink,
            save_label="Export"), self._done)

    def action_delete(self) -> None:
        call_id = self._selected()
        if call_id is None:
            return
        client = self.client

        async def submit(v: dict[str, Any]) -> s.CommandResult:
            return await client.delete_recording(call_id, v["reason"])

        self.app.push_screen(FormScreen(f"Delete the recording of {call_id}? This cannot be undone.", [
            Field("reason", "Reason (kept in the audit trail)")], submit, blink=self.admin_app.blink,
            save_label="Delete"), self._deleted)

    def _done(self, result: Any) -> None:
        if result is not None:
            self.notify(result.message, title="Recordings")

    def _deleted(self, result: Any) -> None:
        self._done(result)
        if result is not None:
            self.search()
