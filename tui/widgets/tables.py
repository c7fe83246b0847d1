"""Refreshing a DataTable from fresh rows without losing the admin's place in it."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from rich.text import Text
from textual.widgets import DataTable

STATE_STYLES = {
    "up": "green", "available": "green", "on_call": "bold cyan", "reserved": "yellow", "offered": "yellow", "dialing": "yellow",
    "wrap_up": "magenta", "paused": "yellow", "queued": "yellow", "arriving": "yellow", "ivr": "yellow",
    "down": "bold red", "disabled": "dim", "logged_out": "dim", "starting": "yellow", "registering": "yellow",
    "unknown": "dim",
}


class SiteTable(DataTable):
    """A DataTable that repaints after it re-measures its columns.

    DataTable sizes auto-width columns when idle, but rows it happened to render between
    ``add_row`` and that moment stay cached at the old widths, so a busy app could show
    truncated cells until the next change. Clearing the render caches after measuring
    fixes it (seen as flaky screenshots under load with Textual 8.2.8).
    """

    async def _on_idle(self, event: Any) -> None:
        measuring = self._require_update_dimensions or bool(self._updated_cells)
        await super()._on_idle(event)
        if measuring:
            self._clear_caches()
            self.refresh()


def state_text(state: str) -> Text:
    return Text(state.replace("_", " "), style=STATE_STYLES.get(state, ""))


def fill(table: DataTable, rows: Iterable[tuple[str, Sequence[object]]], empty: str | None = None) -> None:
    """Replace all rows; keep the cursor on the same row key when it is still there."""
    if not table.columns:  # not mounted yet: the screen's on_mount fills it
        return
    rows = [(key, tuple(cells)) for key, cells in rows]
    if getattr(table, "_shown_rows", None) == (rows, empty):
        return  # nothing changed: keep the table (and its laid-out columns) as it is
    table._shown_rows = (rows, empty)  # type: ignore[attr-defined]
    selected: str | None = None
    if table.row_count and table.cursor_row >= 0:
        try:
            selected = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        except Exception:  # the cursor was past the end; nothing to keep
            selected = None
    table.clear()
    for column in table.columns.values():  # auto widths follow the rows shown now ("no calls" made Dir wide)
        if column.auto_width:
            column.content_width = column.label.cell_len
    keys = []
    for key, cells in rows:
        table.add_row(*cells, key=key)
        keys.append(key)
    if not keys and empty is not None and table.columns:
        table.add_row(Text(empty, style="dim"), *[""] * (len(table.columns) - 1), key="__empty__")
    if selected in keys:
        table.move_cursor(row=keys.index(selected), animate=False)


def selected_key(table: DataTable) -> str | None:
    if not table.row_count:
        return None
    try:
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
    except Exception:
        return None
    return None if key == "__empty__" else key
