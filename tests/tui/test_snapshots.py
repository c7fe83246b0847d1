"""Screenshots of every screen at 80x24 and 120x40, against a real box holding fixed data.

Times are frozen (FrozenClock) and the data has fixed ids and timestamps, so the SVGs are
stable. Update them after an intended change with ``pytest tests/tui --snapshot-update``.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, RichLog

from appliance.api.client import SocketClient
from tests.api.running_box import CONFIG, RunningBox
from tests.api.scripted import DIAL_PLAN
from tests.api.seed import CALLS, FEATURE_CALLS, seed_calls, seed_feature_calls, seed_lines
from tests.tui.conftest import FrozenClock
from tui.app import BranchlineApp

SIZES = [(80, 24), (120, 40)]
READY_TIMEOUT_S = 15.0
MODE_KEYS = {"lines": "2", "dialplan": "2", "agents": "3", "calls": "4", "recordings": "5", "logs": "6", "sync": "7", "help": "7"}


@pytest.fixture(scope="module")
def seeded_box(tmp_path_factory: pytest.TempPathFactory):
    root = Path(tmp_path_factory.mktemp("snapbox"))
    (root / "branchline.toml").write_text(CONFIG + DIAL_PLAN)
    rb = RunningBox(root).start()
    try:
        seed_calls(rb)
        seed_feature_calls(rb)
        seed_lines(rb)
        log = logging.getLogger("tests.tui.snap")
        rb.call(lambda: (log.warning("modem gsm0: signal dropped to 5"), log.error("analog0: no dial tone on the line")))
        yield rb
    finally:
        rb.stop()


def _rows(pilot: Pilot, table_id: str) -> int:
    return pilot.app.screen.query_one(f"#{table_id}", DataTable).row_count


async def _until(pilot: Pilot, cond) -> None:
    async with asyncio.timeout(READY_TIMEOUT_S):
        while not cond():
            await pilot.pause()


def _settled(pilot: Pilot) -> bool:
    """Every table has laid out its new rows (DataTable sizes its columns on idle)."""
    return all(not t._require_update_dimensions for t in pilot.app.screen.query(DataTable))


def ready(mode: str):
    async def run_before(pilot: Pilot) -> None:
        app = pilot.app
        await _until(pilot, lambda: app.site is not None and len(app.site.lines) == 3)
        if mode in MODE_KEYS:
            await pilot.press(MODE_KEYS[mode])
        screen = app.screen
        if mode == "dashboard":
            await _until(pilot, lambda: _rows(pilot, "dash-lines") == 3)
        elif mode == "lines":
            await _until(pilot, lambda: _rows(pilot, "lines-table") == 3)
            await pilot.press("down")  # gsm0, with its signal history
        elif mode == "dialplan":
            await pilot.press("p")
            await _until(pilot, lambda: _rows(pilot, "dp-rules") == 2)
            await pilot.press(*"07700", "space", *"900123", "enter")
            await _until(pilot, lambda: screen.route_result is not None)
        elif mode == "agents":
            await _until(pilot, lambda: _rows(pilot, "agents-table") == 2)
        elif mode == "calls":
            await _until(pilot, lambda: _rows(pilot, "calls-table") == len(CALLS) + len(FEATURE_CALLS))
        elif mode == "recordings":
            await _until(pilot, lambda: _rows(pilot, "rec-table") == 1 and str(screen.query_one("#rec-table", DataTable).get_row_at(0)[1]) == "c-0001")
        elif mode == "logs":
            await _until(pilot, lambda: len(screen.entries) >= 2)
            screen.query_one("#log-component", Input).value = "tests.tui.snap"
            await _until(pilot, lambda: len(screen.query_one("#log-view", RichLog).lines) == 2)
        await _until(pilot, lambda: _settled(pilot))
        if mode == "help":
            await pilot.press("question_mark")
        await pilot.pause()

    return run_before


def make_app(rb: RunningBox) -> BranchlineApp:
    return BranchlineApp(SocketClient(rb.run_dir), clock=FrozenClock(), blink=False)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode", ["dashboard", "lines", "dialplan", "agents", "calls", "recordings", "logs", "sync", "help"])
def test_screen(snap_compare, seeded_box: RunningBox, mode: str, size: tuple[int, int]) -> None:
    assert snap_compare(make_app(seeded_box), terminal_size=size, run_before=ready(mode))


def test_lines_wide(snap_compare, seeded_box: RunningBox) -> None:
    """The lines table grows with a wide terminal (the admin's 160-column window) instead of staying 34 wide."""
    assert snap_compare(make_app(seeded_box), terminal_size=(160, 40), run_before=ready("lines"))
