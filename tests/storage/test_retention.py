"""Retention and erasure: the files are gone and the indexes no longer return them."""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from appliance.storage import Channel, RetentionPolicy, Store
from tests.storage.conftest import make_call

DAY = 86400.0


def _recording(store: Store, rel: str, age_days: float) -> Path:
    path = store.recordings_dir() / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + bytes(100))
    t = time.time() - age_days * DAY
    os.utime(path, (t, t))
    return path


async def test_retention_drops_old_shards_and_old_docs(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d", retention=RetentionPolicy(records_days=730, recordings_days=90))
    now = time.time()
    await s.save_call(make_call("ancient", at=now - 900 * DAY, customer_id="cust"))  # a whole old month
    await s.save_call(make_call("fresh", at=now - 10 * DAY, customer_id="cust"))
    await s.put("sms", {"body": "old", "at": now - 800 * DAY}, key="old-sms")
    await s.put("audit", {"action": "x", "at": now - 3000 * DAY}, key="old-audit")  # kept forever
    cust = await s.upsert_customer(name="Old friend", phones=("+1",))
    await s.run_paused(s.engine.require_checkpoint)  # shard files are written at checkpoints
    shards = tmp_path / "d" / "shards"
    ancient_shard = next(p for p in shards.glob("call-*.json") if p.name < "call-2025")
    report = await s.run_retention()
    try:
        assert report.records_removed == 2 and report.shards_deleted == 2
        assert not ancient_shard.exists() and not Path(str(ancient_shard) + ".idx").exists()
        assert await s.get_call("ancient") is None and await s.get("sms", "old-sms") is None
        assert [i.key for i in await s.interactions_for_customer("cust")] == ["fresh"]
        assert await s.get("audit", "old-audit") is not None
        assert await s.get_customer(cust.customer_id) is not None
    finally:
        await s.close()
    s = await Store.open(tmp_path / "d")  # and after a restart
    try:
        assert await s.get_call("ancient") is None and await s.get_call("fresh") is not None
    finally:
        await s.close()


async def test_retention_removes_docs_inside_a_boundary_month(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d", retention=RetentionPolicy(records_days=1.0, recordings_days=None))
    now = time.time()
    await s.save_call(make_call("two-days", at=now - 2 * DAY))
    await s.save_call(make_call("now", at=now))
    try:
        report = await s.run_retention(now=now)
        assert report.records_removed == 1
        assert await s.get_call("two-days") is None and await s.get_call("now") is not None
    finally:
        await s.close()


async def test_recordings_retention_deletes_files_and_unlinks_calls(store: Store) -> None:
    old = _recording(store, "2026/08/01/c-old.wav", age_days=120)
    new = _recording(store, "2026/12/01/c-new.wav", age_days=2)
    await store.save_call(make_call("c-old", recording_path="2026/08/01/c-old.wav"))
    await store.save_call(make_call("c-new", recording_path="2026/12/01/c-new.wav"))
    assert await store.recording_for("c-old") == old
    report = await store.run_retention()
    assert report.recordings_removed == ("2026/08/01/c-old.wav",)
    assert not old.exists() and not old.parent.exists() and new.exists()
    assert await store.recording_for("c-old") is None
    assert (await store.get_call("c-old")).recording_path is None
    assert await store.recording_for("c-new") == new


async def test_erase_customer_removes_everything_and_audits_without_personal_data(store: Store) -> None:
    c = await store.upsert_customer(name="Erin Erased", phones=("+4930777",), emails=("erin@example.org",))
    rec = _recording(store, "2026/12/02/c-erin.wav", age_days=1)
    await store.save_call(make_call("c-erin", number="+4930777", customer_id=c.customer_id,
                                    recording_path="2026/12/02/c-erin.wav"))
    sms = await store.add_message(Channel.SMS, "in", "+4930777", "my address is 1 Secret Road")
    await store.save_call(make_call("c-other", customer_id="someone-else"))
    report = await store.erase_customer(c.customer_id)

    assert report.files_removed == 1 and not rec.exists()
    assert report.records_removed == 4  # call, sms, conversation, customer
    assert await store.get_customer(c.customer_id) is None
    assert await store.customer_by_phone("+4930777") is None
    assert await store.customer_by_email("erin@example.org") is None
    assert await store.interactions_for_customer(c.customer_id) == []
    assert await store.get_call("c-erin") is None and await store.get(Channel.SMS.value, sms.key) is None
    assert await store.open_conversation("+4930777") is None
    assert await store.get_call("c-other") is not None
    # nothing personal left on disk, and the audit entry holds only an opaque hash
    files = [*(store.data_dir / "shards").iterdir(), store.data_dir / "journal.log"]
    blob = b"".join(p.read_bytes() for p in files)  # shards, sidecars and the journal
    for personal in (b"Erin", b"4930777", b"erin@example", b"Secret Road", c.customer_id.encode()):
        assert personal not in blob
    audit = next(d for p in (store.data_dir / "shards").glob("audit-*.json")
                 for d in json.loads(p.read_bytes())["tables"]["audit"].values())
    assert audit["subject"] == report.subject_hash and audit["action"] == "erase_customer"
    assert (await store.get("audit", audit["_key"]))["_msg_id"] == report.audit_msg_id


async def test_scheduled_retention_task_runs_and_stops_on_cancel(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d", retention=RetentionPolicy(records_days=1.0, interval_s=3600.0))
    await s.save_call(make_call("old", at=time.time() - 3 * DAY))
    task = asyncio.get_running_loop().create_task(s.retention_task(), name="test-retention")
    try:
        async with asyncio.timeout(10):
            report = await s.wait_retention_run()
        assert report is not None and report.records_removed == 1
        assert await s.get_call("old") is None
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await s.close()


async def test_retention_is_skipped_while_the_clock_is_wrong(store: Store) -> None:
    await store.save_call(make_call("c1"))
    report = await store.run_retention(now=86400.0)  # 1970: a box without RTC before NTP
    assert report.records_removed == 0 and await store.get_call("c1") is not None
