"""The stored lists (Calls and messages, Recordings) follow new calls and give the keys back.

Against a real box through the real socket: a call that ends while the Calls screen is hidden
is listed when the screen is shown again (with the selected row kept); a call ending while a
list is shown reloads it; enter in a search field searches; after escape the number keys
switch screens again instead of being typed into the field.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace

import pytest
from textual.widgets import DataTable, Input

from appliance.call_events import CallUpdate, LiveCallSnapshot, LiveState
from tests.api.running_box import RunningBox
from tests.api.seed import CALLS, seed_calls, write_wav
from tests.tui.conftest import wait_until
from tests.tui.test_pilot import connected, make_app, rows
from tui.screens.agents import AgentsScreen
from tui.screens.calls import CallsScreen
from tui.screens.recordings import RecordingsScreen
from tui.widgets.tables import selected_key

LISTS = (CallsScreen, RecordingsScreen)
TABLES = {"4": "calls-table", "5": "rec-table"}
SEARCH_FIELD = {"4": "q-from", "5": "r-from"}


async def store_call(rb: RunningBox, call_id: str, number: str):
    """A finished call's record (with a recording) stored on the box, without telling anyone."""
    wav = f"2026/06/01/{call_id}.wav"
    write_wav(rb.box.store.recordings_dir() / wav)
    rec = replace(CALLS[0], call_id=call_id, from_number=number, recording_path=wav)
    await rb.acall(lambda: rb.box.store.save_call(rec))
    return rec


async def end_call(rb: RunningBox, call_id: str, number: str) -> None:
    """A call ends on the box: its record is stored and the ended call is announced to the TUI."""
    rec = await store_call(rb, call_id, number)
    snap = LiveCallSnapshot(call_id, "gsm0", "gsm", number, None, "support", LiveState.ENDED, rec.ended_at or 0.0,
                            rec.arrived_at, hangup_cause="caller hung up")
    await rb.acall(lambda: rb.box.hub.topic("calls").publish(CallUpdate(snap)))


def loaded(app, table_id: str) -> bool:
    """The screen is a stored list and its first search has filled the table with stored rows."""
    return (isinstance(app.screen, LISTS) and bool(rows(app, table_id))
            and rows(app, table_id)[0][0] not in ("no recordings", "no matching calls"))


def numbers(app, table_id: str) -> set[str]:
    return {cell for row in rows(app, table_id) for cell in row}


@contextlib.asynccontextmanager
async def showing_list(rb: RunningBox, key: str):
    """The TUI on the seeded box, on the list screen ``key``, after its first search."""
    await asyncio.to_thread(seed_calls, rb)
    app = make_app(rb)
    async with app.run_test(size=(120, 40)) as pilot:
        await connected(pilot, app)
        await pilot.press(key)
        await wait_until(pilot, lambda: loaded(app, TABLES[key]))
        yield app, pilot


async def test_a_call_ended_while_the_calls_screen_was_hidden_is_listed_when_shown_again(running_box) -> None:
    async with showing_list(running_box, "4") as (app, pilot):
        assert len(rows(app, "calls-table")) == 3
        await pilot.press("down")
        chosen = selected_key(app.screen.query_one("#calls-table", DataTable))
        await pilot.press("1")
        seen = app.events_seen
        await end_call(running_box, "c-0100", "+447700900100")
        await wait_until(pilot, lambda: app.events_seen > seen)  # the TUI heard the end on the dashboard
        await pilot.press("4")
        await wait_until(pilot, lambda: len(rows(app, "calls-table")) == 4)
        assert "+447700900100" in numbers(app, "calls-table")
        assert selected_key(app.screen.query_one("#calls-table", DataTable)) == chosen  # the admin's place is kept


@pytest.mark.parametrize("key", ["4", "5"])
async def test_a_call_ending_while_the_list_is_shown_reloads_it(running_box, key: str) -> None:
    async with showing_list(running_box, key) as (app, pilot):
        before = len(rows(app, TABLES[key]))
        await end_call(running_box, "c-0101", "+447700900101")
        await wait_until(pilot, lambda: len(rows(app, TABLES[key])) == before + 1)
        assert "+447700900101" in numbers(app, TABLES[key])


@pytest.mark.parametrize("key", ["4", "5"])
async def test_enter_searches_and_after_escape_the_number_keys_switch_screens(running_box, key: str) -> None:
    async with showing_list(running_box, key) as (app, pilot):
        table = TABLES[key]
        before = len(rows(app, table))
        await store_call(running_box, "c-0102", "+447700900102")  # no announcement: only a search shows it
        await pilot.press("ctrl+f")
        field = app.screen.query_one(f"#{SEARCH_FIELD[key]}", Input)
        assert app.screen.focused is field
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(rows(app, table)) == before + 1)
        assert "+447700900102" in numbers(app, table)
        await pilot.press("3")  # in a field the digit is typed, not a screen switch
        assert field.value == "3" and isinstance(app.screen, LISTS)
        await pilot.press("backspace", "escape")
        assert isinstance(app.screen.focused, DataTable)
        await pilot.press("3")
        await wait_until(pilot, lambda: isinstance(app.screen, AgentsScreen))
        assert field.value == ""
