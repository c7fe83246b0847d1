"""The Branchline site-admin app: screens, keys, and the one worker that follows the box."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import Hit, Hits, Provider

from appliance.api import schema as s
from appliance.api.client import ApiUnavailable
from tui.clock import Clock
from tui.screens.agents import AgentsScreen
from tui.screens.base import SiteScreen
from tui.screens.calls import CallsScreen
from tui.screens.dashboard import DashboardScreen
from tui.screens.help import HelpScreen
from tui.screens.lines import LinesScreen
from tui.screens.logs import LogsScreen
from tui.screens.recordings import RecordingsScreen
from tui.screens.sync import SyncScreen
from tui.state import apply

RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # then every 5 s: a restarting box is back within seconds

SCREENS_BY_KEY = (
    ("1", "dashboard", "Dashboard", DashboardScreen),
    ("2", "lines", "Lines", LinesScreen),
    ("3", "agents", "Agents and queues", AgentsScreen),
    ("4", "calls", "Calls and messages", CallsScreen),
    ("5", "recordings", "Recordings", RecordingsScreen),
    ("6", "logs", "Logs", LogsScreen),
    ("7", "sync", "Sync and updates", SyncScreen),
)


class ScreenCommands(Provider):
    """Command palette entries: every screen, help, quit."""

    async def search(self, query: str) -> Hits:
        app = self.app
        matcher = self.matcher(query)
        entries = [(f"Go to {title}", lambda m=mode: app.switch_mode(m)) for _, mode, title, _ in SCREENS_BY_KEY]
        entries.append(("Show keys (help)", app.action_help))
        for text, action in entries:
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), action, help="Branchline")


class BranchlineApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "Branchline site admin"
    MODES = {mode: cls for _, mode, _, cls in SCREENS_BY_KEY}
    COMMANDS = App.COMMANDS | {ScreenCommands}
    BINDINGS = [
        *(Binding(key, f"switch_mode('{mode}')", title.split()[0], show=False) for key, mode, title, _ in SCREENS_BY_KEY),
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+p", "command_palette", "Palette", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, client: Any, *, clock: Clock | None = None, blink: bool = True, start_mode: str = "dashboard") -> None:
        super().__init__()
        self.client = client
        self.clock = clock or Clock()
        self.blink = blink
        self.site: s.SiteSnapshot | None = None
        self.connected = False
        self.events_seen = 0
        self._start_mode = start_mode

    def on_mount(self) -> None:
        self.sub_title = "connecting..."
        self.switch_mode(self._start_mode)
        self.follow_box()

    async def on_unmount(self) -> None:
        await self.client.close()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):  # the screen's keys that work now (escape only in a field)
            screen = self.screen
            keys = [(b.key.split(",")[0], b.description) for b in getattr(screen, "BINDINGS", [])
                    if isinstance(b, Binding) and b.show and screen.check_action(b.action.split("(")[0], ()) is not False]
            self.push_screen(HelpScreen(getattr(self.screen, "HELP", ""), SCREENS_BY_KEY, keys))

    # --- the box ---------------------------------------------------------------------------
    @work(exclusive=True, exit_on_error=False, group="event-stream")
    async def follow_box(self) -> None:
        attempt = 0
        while True:
            try:
                async for event in self.client.events():
                    attempt = 0
                    self._on_event(event)
            except ApiUnavailable as exc:
                self._disconnected(str(exc))
            except Exception as exc:  # a bad message: show it and reconnect for a fresh snapshot
                self._disconnected(f"event stream error: {exc}")
            await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
            attempt += 1

    def _disconnected(self, why: str) -> None:
        if self.connected:
            self.notify(why, title="Box unreachable", severity="error")
        self.connected = False
        self.sub_title = f"DISCONNECTED: {why} (retrying)"

    def _on_event(self, event: s.Event) -> None:
        self.events_seen += 1
        site = apply(self.site, event)
        if site is None:
            return
        self.site = site
        if not self.connected:
            self.connected = True
            self.sub_title = f"branch {site.box.branch}"
        screen = self.screen
        if not isinstance(screen, SiteScreen):  # a dialog: the screen under it catches up when shown again
            return
        try:
            screen.show_site(site)
            if isinstance(event, s.SiteSnapshot) or (isinstance(event, s.CallChanged) and event.call.state == "ended"):
                screen.records_changed()  # stored lists (calls, recordings) search again
        except Exception as exc:  # a drawing bug must not drop the connection to the box
            self.log.error("cannot draw", exc)
            self.notify(f"display error: {exc}", severity="error")
