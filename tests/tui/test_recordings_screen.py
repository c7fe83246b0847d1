"""The Recordings screen: the number dialled for an outbound call, and one row per recording file
for a call transferred between agents (its parts share the file)."""
from __future__ import annotations

from dataclasses import replace

from appliance.api import schema as s
from appliance.records import CallOutcome, CallRecord
from tests.api.running_box import RunningBox
from tests.api.seed import write_wav
from tests.api.test_call_features import SEGMENTS, T0
from tests.tui.conftest import wait_until
from tests.tui.test_pilot import connected, make_app, rows
from tui.screens.forms import FormScreen
from tui.screens.recordings import recording_rows

TRANSFERRED = "2026/06/01/t-1.wav"
# the recorder runs across the transfer: every part names the file, the last part stopped it
RECORDED_SEGMENTS = (replace(SEGMENTS[0], recording_path=TRANSFERRED),
                     replace(SEGMENTS[1], recording_path=TRANSFERRED, recording_s=120.0))
OUTBOUND = CallRecord(call_id="out-2", line_id="gsm0", line_kind="gsm", direction="outbound", from_number=None,
                      from_name=None, to_number="07700900556", queue=None, outcome=CallOutcome.ANSWERED,
                      hangup_cause="agent hung up", arrived_at=T0 + 900, answered_at=T0 + 905, ended_at=T0 + 935,
                      talk_s=30.0, agent_id="bob", agent_name="Bob Okafor", recording_path="2026/06/01/out-2.wav",
                      recording_s=30.0)


def _view(call_id: str, path: str, seconds: float | None, at: float, agent: str | None) -> s.RecordingView:
    return s.RecordingView(call_id, path, 32_044, seconds, at, "+447700900042", agent)


def _rec(call_id: str, segment: int, agent: str | None, recording_s: float | None, **kw) -> s.CallRecordView:
    return s.CallRecordView(call_id=call_id, line_id="sip", direction=kw.pop("direction", "inbound"),
                            from_number=kw.pop("from_number", "+447700900042"), from_name=None,
                            to_number=kw.pop("to_number", "support"), queue="support", outcome="answered",
                            hangup_cause="", arrived_at=T0, agent_id=agent, recording_path="a.wav",
                            recording_s=recording_s, segment=segment, parent_call_id="t-1", **kw)


def test_recording_rows_group_the_parts_of_one_file() -> None:
    files = (_view("t-1", "a.wav", None, T0 + 5, "alice"), _view("t-1-2", "a.wav", 120.0, T0 + 65, "bob"))
    calls = (_rec("t-1", 1, "alice", None), _rec("t-1-2", 2, "bob", 120.0))
    [row] = recording_rows(files, calls)
    assert (row.key, row.call_id, row.number, row.agents, row.seconds, row.file.at) == \
        ("t-1", "t-1", "+447700900042", "alice → bob", 120.0, T0 + 5)
    external = _rec("t-1-2", 2, None, 60.0, to_number="07700900777")  # handed on to an outside number
    assert recording_rows(files, (calls[0], external))[0].agents == "alice → 07700900777"
    assert [r.key for r in recording_rows(files[::-1], calls)] == ["t-1"]  # first part, whatever the order
    # the file is listed but its record is no longer there (retention raced the search)
    assert recording_rows(files[:1], ())[0].agents == "alice"


async def test_recordings_list_the_number_dialled_and_one_row_per_transferred_call(box: RunningBox) -> None:
    folder = box.box.store.recordings_dir()
    write_wav(folder / TRANSFERRED, seconds=2.0)
    write_wav(folder / OUTBOUND.recording_path)
    for rec in (*RECORDED_SEGMENTS, OUTBOUND):
        await box.acall(lambda rec=rec: box.box.store.save_call(rec))
    app = make_app(box)
    async with app.run_test(size=(80, 24)) as pilot:
        await connected(pilot, app)
        await pilot.press("5")
        await wait_until(pilot, lambda: len(rows(app, "rec-table")) == 2)
        assert rows(app, "rec-table") == [
            ["2026-06-01 12:34", "out-2", "07700900556", "bob", "0:30", "31 kB"],
            ["2026-06-01 12:34", "t-1", "+447700900042", "alice → bob", "2:00", "63 kB"],
        ]
        app.screen.query_one("#r-number").value = "900556"  # the number dialled is searched too
        app.screen.query_one("#r-number").focus()
        await pilot.press("enter", "escape")
        await wait_until(pilot, lambda: [r[1] for r in rows(app, "rec-table")] == ["out-2"])
        app.screen.query_one("#r-number").value = ""
        app.screen.query_one("#r-number").focus()
        await pilot.press("enter", "escape")
        await wait_until(pilot, lambda: len(rows(app, "rec-table")) == 2)
        await pilot.press("down", "d")  # the transferred call's one recording
        await wait_until(pilot, lambda: isinstance(app.screen, FormScreen))
        assert "t-1" in app.screen.query_one("#form").border_title
        await pilot.press(*"caller asked", "enter")
        await wait_until(pilot, lambda: [r[1] for r in rows(app, "rec-table")] == ["out-2"])
    assert not (folder / TRANSFERRED).exists()
