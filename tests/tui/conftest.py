from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api.running_box import RunningBox
from tests.api.scripted import box  # noqa: F401  (the features-box fixture, shared with tests/tui)
from tui.clock import Clock

FROZEN_NOW = 1_780_000_000.0  # a fixed "now" for stable screenshots


class FrozenClock(Clock):
    """Fixed now and fixed renderings of the box's timestamps, which differ on every run."""

    def now(self) -> float:
        return FROZEN_NOW

    def time_of_day(self, ts: float | None) -> str:
        return "12:34:56" if ts else "-"

    def date_time(self, ts: float | None) -> str:
        return "2026-06-01 12:34" if ts else "-"

    def age(self, since: float | None) -> str:
        return "1:23" if since else "-"


@pytest.fixture
def running_box(tmp_path: Path):
    rb = RunningBox(tmp_path).start()
    try:
        yield rb
    finally:
        rb.stop()


async def wait_until(pilot: Any, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app process messages until ``condition()`` holds (no sleeps: pilot.pause() yields to the loop)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await pilot.pause()
