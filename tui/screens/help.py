"""The help overlay: global keys, this screen's keys and what the screen is for."""
from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, screen_help: str, screens: tuple[tuple[str, str, str, Any], ...], keys: list[tuple[str, str]] | None = None) -> None:
        super().__init__()
        self._screen_help = screen_help
        self._screens = screens
        self._keys = keys or []

    def compose(self) -> ComposeResult:
        lines = ["[b]Screens[/b]"]
        lines += [f"  [b]{key}[/b]  {title}" for key, _, title, _ in self._screens]
        lines += ["", "[b]Everywhere[/b]", "  [b]?[/b]  this help      [b]ctrl+p[/b]  command palette",
                  "  [b]tab[/b]  next field    [b]q[/b]  quit (the box keeps running)"]
        if self._keys:
            lines += ["", "[b]On this screen[/b]"] + [f"  [b]{k}[/b]  {d}" for k, d in self._keys]
        if self._screen_help:
            lines += ["", self._screen_help]
        lines += ["", "[dim]escape closes this help[/dim]"]
        with VerticalScroll(id="help-box"):
            yield Static("\n".join(lines), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "Help"
