"""Logs: a live tail of the box's log, filtered by level and component."""
from __future__ import annotations

import asyncio
from collections import deque

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Input, RichLog, Select

from appliance.api import schema as s
from appliance.api.client import ApiUnavailable
from tui.screens.base import SiteScreen

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # as the main event stream: a restarting box is back within seconds
KEEP = 2000  # lines kept for re-filtering; the box's own ring holds the same amount
LEVEL_STYLES = {"DEBUG": "dim", "INFO": "", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red"}


class LogsScreen(SiteScreen):
    HELP = ("A live tail of the box's log. Choose the lowest level to show; type part of a component "
            "name (e.g. appliance.acd or drivers.sip) to show only its lines.")

    def __init__(self) -> None:
        super().__init__()
        self.entries: deque[s.LogEntry] = deque(maxlen=KEEP)

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="log-filters", classes="filters"):
            yield Select([(lvl, lvl) for lvl in LEVELS], value="INFO", allow_blank=False, id="log-level")
            yield Input(placeholder="component (e.g. appliance.acd)", id="log-component")
        yield RichLog(id="log-view", wrap=False, max_lines=KEEP, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#log-view").border_title = "Log"
        self.follow_logs("INFO")

    @on(Select.Changed, "#log-level")
    def _level(self, event: Select.Changed) -> None:
        self.entries.clear()
        self.query_one("#log-view", RichLog).clear()
        self.follow_logs(str(event.value))

    @on(Input.Changed, "#log-component")
    def _component(self) -> None:
        view = self.query_one("#log-view", RichLog)
        view.clear()
        for entry in self.entries:
            self._write(view, entry)

    def _matches(self, entry: s.LogEntry) -> bool:
        wanted = self.query_one("#log-component", Input).value.strip()
        return not wanted or wanted in entry.logger

    def _write(self, view: RichLog, entry: s.LogEntry) -> None:
        if not self._matches(entry):
            return
        line = Text(f"{self.clock.time_of_day(entry.at)} ")
        line.append(f"{entry.level:<7} ", style=LEVEL_STYLES.get(entry.level, ""))
        line.append(f"{entry.logger}: ", style="cyan")
        line.append(entry.message)
        view.write(line)

    @work(exclusive=True, exit_on_error=False, group="log-follow")
    async def follow_logs(self, level: str) -> None:
        """Tail the box's log; after an interruption start again from the box's recent ring."""
        view = self.query_one("#log-view", RichLog)
        attempt = 0
        while True:
            fresh = True
            try:
                async for entry in self.client.logs(level):
                    if fresh and attempt:  # reconnected: the ring is sent again, so redraw from it
                        self.entries.clear()
                        view.clear()
                    fresh, attempt = False, 0
                    self.entries.append(entry)
                    self._write(view, entry)
            except ApiUnavailable as exc:
                if attempt == 0:
                    view.write(Text(f"log stream interrupted: {exc}; retrying", style="red"))
            await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
            attempt += 1
