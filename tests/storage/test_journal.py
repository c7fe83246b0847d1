"""The write-ahead journal: acknowledged writes survive a crash before the shards are rewritten,
a torn tail is ignored, replay is idempotent, and a failed checkpoint loses nothing."""
from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.storage import AlarmKind, Store, SyncInfo, SyncState
from appliance.storage.journal import JOURNAL_FILE, decode_records, encode_record
from tests.storage.conftest import make_call

RECORDS = [[["call-2026-12-000.json", i, {"_key": f"c{i}", "n": "é" * i}], ["sms-2026-12-000.json", i, None]]
           for i in range(1, 8)]
RAW = b"".join(encode_record(r) for r in RECORDS)


@pytest.fixture(autouse=True)
def no_idle_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests decide when shards are rewritten."""
    monkeypatch.setattr("appliance.storage.writer.IDLE_CHECKPOINT_S", 3600.0)


def test_records_round_trip() -> None:
    assert decode_records(RAW) == (RECORDS, len(RAW))


@settings(max_examples=300)
@given(cut=st.integers(min_value=0, max_value=len(RAW)), junk=st.binary(max_size=64))
def test_a_torn_tail_yields_exactly_the_whole_records_before_it(cut: int, junk: bytes) -> None:
    ends, pos = [], 0
    for r in RECORDS:
        pos += len(encode_record(r))
        ends.append(pos)
    data = RAW[:cut] + junk
    # a record is whole when all its bytes are there; junk may happen to complete the cut one
    whole = sum(1 for end in ends if data[:end] == RAW[:end])
    records, used = decode_records(data)
    assert records == RECORDS[:whole]
    assert used == (ends[whole - 1] if whole else 0)


async def _writes(s: Store) -> dict[str, object]:
    """Inserts, an update, a sync-state change and a delete; returns what must be found."""
    recs = {f"c{i}": make_call(f"c{i}") for i in range(12)}
    for rec in recs.values():
        await s.save_call(rec)
    recs["c3"] = dataclasses.replace(recs["c3"], disposition="called back")
    await s.save_call(recs["c3"])
    await s.set_sync("call", "c4", SyncInfo(SyncState.ACKED, 1, 0.0))
    assert await s.delete("call", "c5")
    del recs["c5"]
    await s.put("sms", {"body": "hello", "number": "+4930111"}, key="m1")
    return recs


async def _check(data: Path, recs: dict[str, object]) -> None:
    s = await Store.open(data, branch="br1")
    try:
        for call_id, rec in recs.items():
            assert await s.get_call(call_id) == rec
        assert await s.get_call("c5") is None
        assert (await s.get("call", "c3"))["_rev"] == 1
        assert (await s.sync_state("call", "c4")).state is SyncState.ACKED
        assert (await s.get("sms", "m1"))["body"] == "hello"
        assert s.engine.index.count("call") == len(recs)
        assert not [a for a in s.alarms() if a.kind is AlarmKind.CORRUPT_SHARD]
        assert (data / JOURNAL_FILE).stat().st_size == 0  # replayed into the shards
    finally:
        await s.close()


async def test_acknowledged_writes_survive_a_crash_before_any_checkpoint(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d", branch="br1")
    recs = await _writes(s)
    assert s.engine.journal.size > 0 and not list((tmp_path / "d" / "shards").glob("call-*.json"))
    shutil.copytree(tmp_path / "d", tmp_path / "crashed")  # the disk as a power cut would leave it
    await s.close()
    await _check(tmp_path / "crashed", recs)


async def test_a_torn_journal_tail_is_ignored(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d", branch="br1")
    recs = await _writes(s)
    size = s.engine.journal.size
    await s.save_call(make_call("torn"))  # its record is then cut in half, as if never completed
    shutil.copytree(tmp_path / "d", tmp_path / "crashed")
    await s.close()
    journal = tmp_path / "crashed" / JOURNAL_FILE
    raw = journal.read_bytes()
    journal.write_bytes(raw[: size + (len(raw) - size) // 2])
    await _check(tmp_path / "crashed", recs)


async def test_replay_after_a_crash_between_checkpoint_and_truncation_is_idempotent(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d", branch="br1")
    recs = await _writes(s)
    journal = (tmp_path / "d" / JOURNAL_FILE).read_bytes()
    await s.run_paused(s.engine.require_checkpoint)
    assert (tmp_path / "d" / JOURNAL_FILE).stat().st_size == 0
    shutil.copytree(tmp_path / "d", tmp_path / "crashed")
    await s.close()
    (tmp_path / "crashed" / JOURNAL_FILE).write_bytes(journal)  # the truncation never reached the disk
    await _check(tmp_path / "crashed", recs)
    await _check(tmp_path / "crashed", recs)  # and again: nothing doubles


async def test_a_failed_checkpoint_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = await Store.open(tmp_path / "d", branch="br1")
    recs = await _writes(s)

    def disk_full(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("appliance.storage.atomic.write_atomic", disk_full)
    assert await s.run_paused(s.engine.checkpoint) is False
    recs["late"] = make_call("late")
    await s.save_call(recs["late"])  # the journal still takes writes
    assert await s.get_call("c3") == recs["c3"]
    shutil.copytree(tmp_path / "d", tmp_path / "crashed")
    monkeypatch.undo()
    await s.close()
    await _check(tmp_path / "crashed", recs)
    await _check(tmp_path / "d", recs)  # the clean close wrote the shards


async def test_a_failed_journal_write_keeps_earlier_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = await Store.open(tmp_path / "d", branch="br1")
    recs = await _writes(s)  # journaled, shards not yet rewritten

    def io_error(*_a: object, **_k: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("appliance.storage.journal.os.fdatasync", io_error)
    with pytest.raises(OSError):
        await s.save_call(make_call("c3"))  # an update of a journaled record fails
    with pytest.raises(OSError):
        await s.save_call(make_call("new"))
    monkeypatch.undo()
    assert await s.get_call("c3") == recs["c3"] and await s.get_call("new") is None
    shutil.copytree(tmp_path / "d", tmp_path / "crashed")
    await s.close()
    await _check(tmp_path / "crashed", recs)


async def test_an_idle_writer_checkpoints_and_a_failed_checkpoint_raises_an_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("appliance.storage.writer.IDLE_CHECKPOINT_S", 0.05)
    s = await Store.open(tmp_path / "d", branch="br1")
    try:
        writes = s._writes
        await s.save_call(make_call("c1"))
        writes.checkpoint_ran.clear()
        async with asyncio.timeout(5):
            await writes.checkpoint_ran.wait()
        assert s.engine.journal.size == 0 and list((tmp_path / "d" / "shards").glob("call-*.json"))

        def disk_full(*_a: object, **_k: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("appliance.storage.atomic.write_atomic", disk_full)
        await s.save_call(make_call("c2"))  # acknowledged through the journal
        writes.checkpoint_ran.clear()
        async with asyncio.timeout(5):
            await writes.checkpoint_ran.wait()
        assert [(a.kind, a.subject) for a in s.alarms()] == [(AlarmKind.WRITE_FAILED, "checkpoint")]
        assert s.engine.journal.size > 0 and await s.get_call("c2") is not None
    finally:
        monkeypatch.undo()
        await s.close()
    s = await Store.open(tmp_path / "d", branch="br1")
    try:
        assert await s.get_call("c2") is not None
    finally:
        await s.close()
