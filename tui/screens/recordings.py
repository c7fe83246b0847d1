"""Recordings: find them, export one to a file, delete one (confirmed, with a reason for the audit).

One row per recording *file*: a call transferred between agents keeps one recording across
its parts (segment records), so its parts are listed together on one row.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input

from appliance.api import schema as s
from tui.call_format import record_number, record_party
from tui.clock import duration
from tui.screens.base import StoredListScreen
from tui.screens.forms import Field, FormScreen
from tui.widgets.tables import SiteTable, fill, selected_key


def size_text(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.0f} kB"


@dataclass(frozen=True, slots=True)
class RecordingRow:
    """One recording file and the call parts (segment records) it covers, first part first."""

    key: str  # the call id that export and delete use: the first part listed with this file
    file: s.RecordingView  # its size and encryption; ``at`` is when the first part was answered
    parts: tuple[s.CallRecordView, ...]  # empty when the box no longer lists the record itself

    @property
    def call_id(self) -> str:
        first = self.parts[0] if self.parts else None
        return (first.parent_call_id or first.call_id) if first else self.key

    @property
    def number(self) -> str:
        """The customer's number as the calls screen words it: the number dialled for an outbound call."""
        if self.parts:
            return record_number(self.parts[0])
        return self.file.from_number or "withheld"

    @property
    def agents(self) -> str:
        """Who talked on the recording, part by part: "alice", "alice → bob"."""
        if not self.parts:
            return self.file.agent_id or "-"
        return " → ".join(p.agent_id or record_party(p) for p in self.parts)

    @property
    def seconds(self) -> float | None:
        """The recording's length: only the part that stopped the recorder has it."""
        lengths = [p.recording_s for p in self.parts if p.recording_s is not None]
        return lengths[-1] if lengths else self.file.seconds


def recording_rows(files: tuple[s.RecordingView, ...], calls: tuple[s.CallRecordView, ...]) -> list[RecordingRow]:
    """Group the box's recordings (one per call record) by file, in the order the box listed them."""
    by_id = {c.call_id: c for c in calls}
    groups: dict[str, list[s.RecordingView]] = {}
    for f in files:
        groups.setdefault(f.path or f.call_id, []).append(f)
    rows = []
    for group in groups.values():
        parts = sorted((by_id[f.call_id] for f in group if f.call_id in by_id), key=lambda c: c.segment)
        first = parts[0].call_id if parts else group[0].call_id
        earliest = min(group, key=lambda f: f.at)
        rows.append(RecordingRow(first, earliest, tuple(parts)))
    return rows


class RecordingsScreen(StoredListScreen):
    HELP = ("Search recordings by date (YYYY-MM-DD) and number (the caller's, or the number dialled for an "
            "outbound call); enter searches, escape leaves the field. The list is searched again when you "
            "come back to this screen and when a call ends. A call transferred between agents has one "
            "recording: one row lists its agents in order (alice → bob). x exports the selected recording "
            "to a file on the box (decrypted when the box encrypts recordings); d deletes it after you "
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
        table.add_columns("When", "Call", "Number", "Agents", "Length", "Size")
        self.search()

    def action_focus_search(self) -> None:
        self.query_one("#r-from", Input).focus()

    @work(exclusive=True, exit_on_error=False, group="rec-search")
    async def search(self) -> None:
        v = {n: self.query_one(f"#r-{n}", Input).value.strip() for n in ("from", "to", "number")}
        q = s.CallQuery(date_from=v["from"] or None, date_to=v["to"] or None, number=v["number"] or None)
        try:  # the files (size, encryption) and their call records (direction, number, parts)
            found, calls = await asyncio.gather(self.client.recordings(q),
                                                self.client.search_calls(replace(q, with_recording=True)))
        except Exception as exc:
            self.notify(str(exc), title="Search", severity="error")
            return
        c = self.clock
        fill(self.query_one("#rec-table", DataTable),
             [(r.key, (c.date_time(r.file.at), r.call_id, r.number, r.agents, duration(r.seconds),
                       size_text(r.file.size) + (" enc" if r.file.encrypted else "")))
              for r in recording_rows(found.recordings, calls.calls)], empty="no recordings")

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
