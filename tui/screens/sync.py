"""Sync and updates: neither is part of this box yet, and the screen says so."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from tui.screens.base import SiteScreen

TEXT = """[b]Cloud sync[/b]: not configured.
This box does not send its records anywhere yet. Call records, messages and recordings
stay on this box (see Calls and Recordings). When cloud sync is added, its queue,
last success and errors will be shown here.

[b]Software updates[/b]: not configured.
This box has no update channel yet; it runs the version it was installed with.
"""


class SyncScreen(SiteScreen):
    HELP = "Cloud sync and software updates are not built into this box yet; this screen says so plainly."

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with VerticalScroll(id="sync-box"):
            yield Static(TEXT, id="sync-text")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#sync-box").border_title = "Sync and updates"
