"""Store: records, msg ids, sync state, group commit, shard bounds, restart, bad shards."""
from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from pathlib import Path

import pytest

from appliance.records import CallOutcome
from appliance.storage import AlarmKind, Store, SyncInfo, SyncState
from appliance.storage import atomic, envelope
from appliance.storage.shards import ShardName
from tests.storage.conftest import make_call

MSG_ID = re.compile(r"^br1:call:[0-9A-HJKMNP-TV-Z]{26}$")


async def test_save_and_get_call_round_trip(store: Store) -> None:
    rec = make_call("c1")
    msg_id = await store.save_call(rec)
    assert MSG_ID.match(msg_id)
    assert await store.get_call("c1") == rec
    assert await store.get_call("nope") is None


async def test_update_keeps_msg_id_bumps_rev_and_resets_sync(store: Store) -> None:
    rec = make_call("c1", outcome=CallOutcome.ABANDONED)
    first = await store.save_call(rec)
    await store.set_sync("call", "c1", dataclasses.replace(await store.sync_state("call", "c1"), state=SyncState.ACKED))
    assert (await store.sync_state("call", "c1")).state is SyncState.ACKED
    second = await store.save_call(dataclasses.replace(rec, outcome=CallOutcome.ANSWERED, talk_s=3.5))
    assert first == second
    doc = await store.get("call", "c1")
    assert doc["_rev"] == 1 and doc["_sync"] == {"state": "PENDING", "attempts": 0, "next_at": 0.0}
    assert (await store.get_call("c1")).talk_s == 3.5


async def test_generic_put_get_and_reserved_fields(store: Store) -> None:
    msg_id = await store.put("agent_event", {"agent": "a1", "state": "ready", "at": 1.0e9}, key="e1")
    assert msg_id.startswith("br1:agent:")  # subject name from the sync design
    doc = await store.get("agent_event", "e1")
    assert doc["state"] == "ready" and doc["_msg_id"] == msg_id and doc["_sync"]["state"] == "PENDING"
    auto = await store.put("sms", {"body": "x"})
    assert auto.startswith("br1:sms:")
    with pytest.raises(ValueError, match="reserved"):
        await store.put("sms", {"_key": "bad"})
    with pytest.raises(ValueError, match="unknown kind"):
        await store.put("calls", {"x": 1})


async def test_recent_calls_newest_first(store: Store) -> None:
    now = time.time()
    for i in range(30):
        await store.save_call(make_call(f"c{i}", at=now - 1000 + i))
    recent = await store.recent_calls(5)
    assert [r.call_id for r in recent] == ["c29", "c28", "c27", "c26", "c25"]


async def test_burst_is_group_committed_and_durable(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d", branch="br1")
    ids = await asyncio.gather(*(s.save_call(make_call(f"c{i}")) for i in range(400)))
    assert len(set(ids)) == 400
    assert s.committed_ops == 400 and s.commits < 40  # many writes share one shard rewrite
    await s.close()
    s = await Store.open(tmp_path / "d", branch="br1")
    try:
        got = [await s.get("call", f"c{i}") for i in range(400)]
        assert [d["_msg_id"] for d in got] == ids
    finally:
        await s.close()


async def test_shards_are_bounded_and_split_by_month(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    s.engine.shards.cap = 50
    nov = time.mktime((2026, 11, 15, 12, 0, 0, 0, 0, 0))
    await asyncio.gather(*(s.save_call(make_call(f"n{i}", at=nov)) for i in range(120)))
    await s.save_call(make_call("dec", at=nov + 30 * 86400))
    await s.close()
    names = sorted(p.name for p in (tmp_path / "d" / "shards").glob("call-*.json"))
    assert names == ["call-2026-11-000.json", "call-2026-11-001.json", "call-2026-11-002.json", "call-2026-12-000.json"]
    sizes = [len(envelope.decode((tmp_path / "d" / "shards" / n).read_bytes())["call"]) for n in names]
    assert sizes == [50, 50, 20, 1]


async def test_reopen_uses_sidecars_and_rebuilds_stale_ones(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    for i in range(10):
        await s.save_call(make_call(f"c{i}", at=1.0e9))  # an old period: sidecars are trusted
    await s.close()
    shard = tmp_path / "d" / "shards" / "call-2001-09-000.json"
    idx = shard.with_name(shard.name + ".idx")
    idx.write_bytes(envelope.encode({"shard": "0" * 32, "entries": []}))  # stale: crash between the renames
    s = await Store.open(tmp_path / "d")
    try:
        assert (await s.get_call("c7")).call_id == "c7"
        assert envelope.decode(idx.read_bytes())["shard"] != "0" * 32
    finally:
        await s.close()


async def test_leftover_temp_file_is_ignored_and_removed(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    await s.save_call(make_call("c1"))
    await s.close()
    shard = next((tmp_path / "d" / "shards").glob("call-*.json"))
    tmp = shard.with_name(shard.name + ".tmp")
    tmp.write_bytes(b'{"b2":"half a wri')
    s = await Store.open(tmp_path / "d")
    try:
        assert not tmp.exists() and await s.get_call("c1") is not None and s.alarms() == []
    finally:
        await s.close()


@pytest.mark.parametrize("damage", ["truncate", "zero_fill", "garbage"])
async def test_torn_shard_detected_at_start_moved_aside_and_reported_once(tmp_path: Path, damage: str) -> None:
    s = await Store.open(tmp_path / "d")
    for i in range(20):
        await s.save_call(make_call(f"c{i}"))
    await s.put("sms", {"body": "kept"}, key="s1")
    await s.close()
    shard = next((tmp_path / "d" / "shards").glob("call-*.json"))
    raw = bytearray(shard.read_bytes())
    cut = len(raw) // 3
    if damage == "truncate":
        raw = raw[:cut]
    elif damage == "zero_fill":
        raw[cut : cut + 512] = bytes(512)
    else:
        raw[cut : cut + 8] = b"GARBAGE!"
    shard.write_bytes(bytes(raw))
    s = await Store.open(tmp_path / "d")
    try:
        alarms = s.alarms()
        assert [a.kind for a in alarms] == [AlarmKind.CORRUPT_SHARD]
        assert alarms[0].subject == shard.name
        assert not shard.exists()
        assert len(list(shard.parent.glob(shard.name + ".corrupt-*"))) == 1
        assert await s.get_call("c3") is None  # not silently accepted
        assert (await s.get("sms", "s1"))["body"] == "kept"  # the rest of the store works
        await s.save_call(make_call("new"))  # and takes writes
        assert (await s.get_call("new")) is not None
    finally:
        await s.close()


async def test_corruption_found_after_start_is_handled_on_read(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    for i in range(5):
        await s.save_call(make_call(f"old{i}", at=1.0e9))  # old period: only header-checked at start
    await s.close()
    shard = tmp_path / "d" / "shards" / "call-2001-09-000.json"
    raw = bytearray(shard.read_bytes())
    raw[-40:-20] = bytes(20)  # same size, zero-filled inside: only the checksum can tell
    shard.write_bytes(bytes(raw))
    s = await Store.open(tmp_path / "d")
    try:
        assert s.alarms() == []
        assert await s.get_call("old4") is None  # its bytes fail their checksum: never returned
        assert [a.kind for a in s.alarms()] == [AlarmKind.CORRUPT_SHARD]
        assert await s.get_call("old1") is None  # the shard was moved aside
        assert len(s.alarms()) == 1  # reported once
    finally:
        await s.close()


async def test_a_damaged_document_that_still_parses_is_never_returned(tmp_path: Path) -> None:
    """Point reads of cold shards check the document's own CRC-32, not just that it parses."""
    s = await Store.open(tmp_path / "d")
    for i in range(5):
        await s.save_call(make_call(f"old{i}", at=1.0e9))
    await s.close()
    shard = tmp_path / "d" / "shards" / "call-2001-09-000.json"
    raw = bytearray(shard.read_bytes())
    at = raw.index(b"4930123", raw.index(b'"old2"'))
    raw[at : at + 7] = b"4930124"  # a plausible wrong number: valid JSON, same size
    shard.write_bytes(bytes(raw))
    s = await Store.open(tmp_path / "d")
    try:
        assert await s.get_call("old2") is None
        assert [a.kind for a in s.alarms()] == [AlarmKind.CORRUPT_SHARD]
    finally:
        await s.close()


async def test_verify_all_checks_every_checksum_at_start(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    await s.save_call(make_call("old", at=1.0e9))
    await s.close()
    shard = tmp_path / "d" / "shards" / "call-2001-09-000.json"
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 1
    shard.write_bytes(bytes(raw))
    s = await Store.open(tmp_path / "d", verify_all=True)
    try:
        assert [a.kind for a in s.alarms()] == [AlarmKind.CORRUPT_SHARD]
    finally:
        await s.close()


async def test_failed_commit_reports_error_and_leaves_no_trace(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    await store.save_call(make_call("before"))

    def disk_full(*_a: object, **_k: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("appliance.storage.journal.os.fdatasync", disk_full)  # the commit point
    with pytest.raises(OSError, match="No space"):
        await store.save_call(make_call("lost"))
    assert [a.kind for a in store.alarms()] == [AlarmKind.WRITE_FAILED]
    monkeypatch.undo()
    assert await store.get_call("lost") is None  # index rolled back with the shard
    assert await store.get_call("before") is not None
    await store.save_call(make_call("after"))
    assert await store.get_call("after") is not None


async def test_atomic_write_never_leaves_partial_target(tmp_path: Path) -> None:
    target = tmp_path / "f.json"
    atomic.write_atomic(target, b"old")
    atomic.write_atomic(target, b"new")
    assert target.read_bytes() == b"new" and not (tmp_path / "f.json.tmp").exists()


async def test_closed_store_refuses_writes(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    await s.close()
    with pytest.raises(RuntimeError, match="closed"):
        await s.save_call(make_call("x"))


async def test_shard_names_parse() -> None:
    assert ShardName.parse("agent_event-2026-12-013.json") == ShardName("agent_event", "2026-12", 13)
    assert ShardName.parse("call-2026-12-000.json.idx") is None
    assert ShardName.parse("calls.json") is None


async def test_disk_floor_refuses_recordings_with_one_alarm(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d", min_free_bytes=1 << 60)  # more than any disk
    try:
        assert s.recordings_allowed() is False
        assert s.recordings_allowed() is False
        assert [a.kind for a in s.alarms()] == [AlarmKind.DISK_LOW]
        await s.save_call(make_call("still-works"))  # records still go through
        s.min_free_bytes = 0
        assert s.recordings_allowed() is True and s.alarms() == []
    finally:
        await s.close()


async def test_point_reads_of_cold_shards_follow_rewrites(tmp_path: Path) -> None:
    """Documents are read by byte span when their shard is not parsed; spans move on rewrites."""
    s = await Store.open(tmp_path / "d")
    s.engine.shards.cap = 10
    s.engine.shards._open_limit = 1  # every other shard is cold
    expected = {}
    for i in range(60):
        rec = make_call(f"c{i}", at=1.0e9 + i)
        await s.save_call(rec)
        expected[rec.call_id] = rec
    for i in range(0, 60, 7):  # rewrites move later documents within their shard
        rec = dataclasses.replace(expected[f"c{i}"], disposition="x" * (i + 50))
        await s.save_call(rec)
        expected[rec.call_id] = rec
    for i in range(3, 60, 11):
        assert await s.delete("call", f"c{i}")
        del expected[f"c{i}"]
    await s.run_paused(s.engine.require_checkpoint)  # shards are rewritten (and closed) at checkpoints
    try:
        for call_id, rec in expected.items():
            assert await s.get_call(call_id) == rec
        assert s.engine.shards.span_reads > 30
    finally:
        await s.close()
    s = await Store.open(tmp_path / "d")
    try:
        for call_id, rec in expected.items():
            assert await s.get_call(call_id) == rec
        assert await s.get_call("c3") is None
        assert s.engine.shards.span_reads > 30
    finally:
        await s.close()


async def test_outbox_pending_index_follows_sync_state(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    for i in range(5):
        await s.save_call(make_call(f"c{i}", at=1000.0 + i))
    assert [d["_key"] for d in await s.pending("call", limit=3)] == ["c0", "c1", "c2"]
    acked = SyncInfo(SyncState.ACKED, attempts=1)
    assert await s.set_sync_many("call", {"c0": acked, "c1": acked, "nope": acked}) == 2
    await s.set_sync("call", "c2", SyncInfo(SyncState.PENDING, attempts=1, next_at=time.time() + 60))
    assert [d["_key"] for d in await s.pending("call")] == ["c3", "c4"]  # c2 backs off
    assert [d["_key"] for d in await s.pending("call", now=time.time() + 120)] == ["c2", "c3", "c4"]
    await s.save_call(make_call("c0", at=1000.0))  # changed after ACK: pending again, same msg id
    await s.close()
    s = await Store.open(tmp_path / "d")
    try:
        assert [d["_key"] for d in await s.pending("call")] == ["c0", "c3", "c4"]
        assert (await s.sync_state("call", "c1")).state is SyncState.ACKED
    finally:
        await s.close()


async def test_returned_documents_are_copies(store: Store) -> None:
    await store.put("chat", {"meta": {"tags": ["a"]}}, key="k")
    doc = await store.get("chat", "k")
    doc["meta"]["tags"].append("MUTATED")
    doc["_sync"]["state"] = "ACKED"
    again = await store.get("chat", "k")
    assert again["meta"] == {"tags": ["a"]} and again["_sync"]["state"] == "PENDING"


async def test_recent_calls_across_many_shards(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    s.engine.shards.cap = 4
    try:
        base = time.time() - 5000
        for i in range(23):
            await s.save_call(make_call(f"c{i:02d}", at=base + i))
        got = [r.call_id for r in await s.recent_calls(10)]
        assert got == [f"c{i:02d}" for i in range(22, 12, -1)]
        assert len(await s.recent_calls(100)) == 23
    finally:
        await s.close()
