"""What every TUI screen shares: the latest site, the clock and the client."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import on
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input

from appliance.api import schema as s

if TYPE_CHECKING:
    from tui.app import BranchlineApp

RECORD_SAVE_GRACE_S = 1.0  # the box announces a call's end just before it stores the record: look again after this


class SiteScreen(Screen[None]):
    """A screen that shows (part of) the site; ``show_site`` runs on every change.

    Screens start with their main table focused so the number keys switch screens;
    escape leaves a field. While a field has the focus it takes the printable keys (the
    app's bindings are not priority bindings, so Textual lets the Input consume them and
    drops them from the footer): digits are typed, not screen switches, and the footer
    offers "esc Leave field" instead of "q Quit".
    """

    HELP = ""  # one paragraph for the help overlay
    BINDINGS = [Binding("escape", "leave_field", "Leave field")]

    @property
    def admin_app(self) -> "BranchlineApp":
        return self.app  # type: ignore[return-value]

    @property
    def client(self) -> Any:
        return self.admin_app.client

    @property
    def clock(self) -> Any:
        return self.admin_app.clock

    def on_mount(self) -> None:
        if not self.admin_app.blink:
            for inp in self.query(Input):
                inp.cursor_blink = False
        self.action_leave_field()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "leave_field":  # shown (and bound) only while a field has the focus
            return isinstance(self.focused, Input)
        return super().check_action(action, parameters)

    def action_leave_field(self) -> None:
        """Focus the screen's main view (its first table or log), away from any input."""
        main = next(iter(self.query("DataTable, RichLog")), None)
        if main is not None:
            main.focus()

    def on_screen_resume(self) -> None:
        if self.admin_app.site is not None:
            self.show_site(self.admin_app.site)

    def show_site(self, site: s.SiteSnapshot) -> None:
        """Override: redraw from ``site``."""

    def records_changed(self) -> None:
        """Override: stored records may have changed (a call ended, or a fresh snapshot after a reconnect)."""


class StoredListScreen(SiteScreen):
    """A screen listing stored records from a search (calls, recordings), not from the live site.

    The list is searched again, with the filters as typed, whenever the screen is shown again
    (switching back to it, or closing a dialog over it), when a call ends, and on enter in a
    search field; the table keeps the selected row when it is still listed.
    """

    _settle: Timer | None = None

    def search(self) -> None:
        """Override: run the screen's search (a worker) and fill its table."""

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.search()

    def on_screen_resume(self) -> None:
        self.search()

    def records_changed(self) -> None:
        self.search()
        if self._settle is not None:
            self._settle.stop()
        self._settle = self.set_timer(RECORD_SAVE_GRACE_S, self.search, name="records-settle")
