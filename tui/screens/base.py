"""What every TUI screen shares: the latest site, the clock and the client."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen
from textual.widgets import Input

from appliance.api import schema as s

if TYPE_CHECKING:
    from tui.app import BranchlineApp


class SiteScreen(Screen[None]):
    """A screen that shows (part of) the site; ``show_site`` runs on every change."""

    HELP = ""  # one paragraph for the help overlay

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

    def on_screen_resume(self) -> None:
        if self.admin_app.site is not None:
            self.show_site(self.admin_app.site)

    def show_site(self, site: s.SiteSnapshot) -> None:
        """Override: redraw from ``site``."""
