"""The Lines screen with the ids real drivers give ("gsm:<IMEI>", "analog:0") at 80, 120 and 160
columns, and the dial plan's "test a number" field: focus, keys and footer."""
from __future__ import annotations

import pytest
from textual.widgets import ContentSwitcher, DataTable, Input
from textual.widgets._footer import FooterKey

from appliance.lines import LineKind, LineStatus
from tests.api.running_box import RunningBox
from tests.tui.conftest import wait_until
from tests.tui.test_pilot import connected, make_app, rows
from tui.screens.lines import LINE_COLUMNS, fit_line_columns, shorten_id

GSM_ID = "gsm:356938035643809"
LONG_LINES = (
    LineStatus(GSM_ID, LineKind.GSM, "registering", detail="searching", signal=9),
    LineStatus("analog:0", LineKind.ANALOG, "down", detail="no dial tone on the line"),
)


def test_shorten_id_keeps_the_kind_and_the_distinguishing_end() -> None:
    assert shorten_id(GSM_ID, 40) == GSM_ID
    assert shorten_id(GSM_ID, 11) == "gsm:…643809"
    assert len(shorten_id(GSM_ID, 7)) == 7 and shorten_id(GSM_ID, 7).endswith("09")
    assert shorten_id("sip", 2) == "si"


def test_fit_line_columns_drops_kind_before_cutting_ids_and_never_cuts_state() -> None:
    cells = [(GSM_ID, "gsm", "registering", "▂▄··"), ("sip", "sip", "up", "")]
    assert fit_line_columns(cells, 60) == (LINE_COLUMNS, len(GSM_ID))
    assert fit_line_columns(cells, 40) == (("Line", "State", "Sig"), len(GSM_ID))
    columns, id_cells = fit_line_columns(cells, 32)
    assert columns == ("Line", "State", "Sig") and id_cells + 2 + len("registering") + 2 + len("Sig ") + 2 == 32


def _fits(table: DataTable) -> bool:
    if table._require_update_dimensions:
        return False
    return sum(c.get_render_width(table) for c in table.columns.values()) <= table.scrollable_content_region.width


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_lines_table_shows_every_state_whole_at_any_width(box: RunningBox, size: tuple[int, int]) -> None:
    app = make_app(box)
    async with app.run_test(size=size) as pilot:
        await connected(pilot, app)
        await pilot.press("2")
        for status in LONG_LINES:
            await box.acall(lambda st=status: box.box.hub.topic("lines").publish(st))
        await wait_until(pilot, lambda: len(app.site.lines) >= 3 and len(rows(app, "lines-table")) == len(app.site.lines))
        table = app.screen.query_one("#lines-table", DataTable)
        await wait_until(pilot, lambda: _fits(table))
        labels = [str(c.label) for c in table.columns.values()]
        by_state = {r[labels.index("State")]: r for r in rows(app, "lines-table")}
        assert {"registering", "down"} <= set(by_state)  # whole, in columns that fit: nothing cut
        gsm = by_state["registering"][0]
        if size[0] >= 120:
            assert labels == list(LINE_COLUMNS) and gsm == GSM_ID
        else:  # 80x24: Kind gives way, then the id is shortened in the middle
            assert labels == ["Line", "State", "Sig"]
            assert gsm.startswith("gsm:") and gsm.endswith("643809")
        await pilot.press("down")  # the details still name the line in full
        await wait_until(pilot, lambda: "Line" in str(app.screen.query_one("#line-detail").render()))


def _footer(app) -> list[tuple[str, str]]:
    return [(k.key, k.description) for k in app.screen.query(FooterKey)]


async def test_dial_plan_field_takes_the_keys_and_escape_leaves_it(box: RunningBox) -> None:
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("2")
        screen = app.screen
        number = screen.query_one("#dp-number", Input)
        await wait_until(pilot, lambda: app.focused is screen.query_one("#lines-table"))
        await wait_until(pilot, lambda: ("q", "Quit") in _footer(app))
        assert ("escape", "Leave field") not in _footer(app)  # nothing to leave
        await pilot.press("p")
        assert screen.query_one("#lines-switch", ContentSwitcher).current == "dialplan-side"
        assert app.focused is number  # no Tab needed
        await pilot.press(*"0123456789", "q")  # digits and q are typed, not screen switches or quit
        assert app.screen is screen and number.value == "0123456789q"
        await wait_until(pilot, lambda: ("escape", "Leave field") in _footer(app))
        assert ("q", "Quit") not in _footer(app)
        await pilot.press("escape")
        assert app.focused is screen.query_one("#lines-table")
        await wait_until(pilot, lambda: ("q", "Quit") in _footer(app) and ("escape", "Leave field") not in _footer(app))
        await pilot.press("3")  # out of the field the digits switch screens again
        await wait_until(pilot, lambda: type(app.screen).__name__ == "AgentsScreen")
        await pilot.press("2")  # back: the panel is still open; p closes it, p again focuses the field
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.press("p", "p")
        assert app.focused is number
