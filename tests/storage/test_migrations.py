"""Schema versions: the v1 fixture (stock single-file TinyDB) migrates; newer data is refused."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.storage import SCHEMA_VERSION, SchemaTooNewError, Store
from appliance.storage.migrations import read_meta, write_meta

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "schema_v1"


def _copy_v1(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(FIXTURE_V1, data)
    return data


async def test_v1_fixture_migrates_with_msg_ids_and_indexes(tmp_path: Path) -> None:
    data = _copy_v1(tmp_path)
    s = await Store.open(data, branch="br1")
    try:
        a = await s.get_call("v1-call-a")
        assert a is not None and a.answered_at == 1764000012.5 and a.offers == () and a.customer_id == "cust-1"
        b = await s.get_call("v1-call-b")
        assert b.tags == ("callback",) and b.from_name == "Bob"
        doc = await s.get("call", "v1-call-a")
        assert doc["_msg_id"].startswith("br1:call:") and doc["_sync"]["state"] == "PENDING"
        assert (await s.customer_by_email("ann@example.org")).name == "Ann"
        kinds = [i.kind for i in await s.interactions_for_customer("cust-1")]
        assert kinds == ["sms", "call"]
    finally:
        await s.close()
    assert read_meta(data)["schema_version"] == SCHEMA_VERSION
    assert not (data / "db.json").exists() and (data / "db.json.migrated-v1").exists()
    assert sorted(p.name for p in (data / "shards").glob("*.json"))[:2] == ["call-2025-11-000.json", "customer-2025-11-000.json"]


async def test_migration_interrupted_reruns_without_new_msg_ids(tmp_path: Path) -> None:
    data = _copy_v1(tmp_path)
    s = await Store.open(data, branch="br1")
    first = (await s.get("call", "v1-call-a"))["_msg_id"]
    await s.close()
    # power cut before meta.json was written: the legacy file is still there, meta is not
    (data / "meta.json").unlink()
    shutil.copy(FIXTURE_V1 / "db.json", data / "db.json")
    s = await Store.open(data, branch="br1")
    try:
        assert (await s.get("call", "v1-call-a"))["_msg_id"] == first
        assert s.engine.index.count("call") == 2
    finally:
        await s.close()


async def test_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = await Store.open(data)
    await s.close()
    meta = read_meta(data)
    write_meta(data, {**meta, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(SchemaTooNewError, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade"):
        await Store.open(data)


async def test_corrupt_meta_does_not_block_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    s = await Store.open(data)
    await s.put("sms", {"body": "x"}, key="k")
    await s.close()
    (data / "meta.json").write_bytes(b"\x00" * 40)
    s = await Store.open(data)
    try:
        assert (await s.get("sms", "k"))["body"] == "x"
        assert [a.subject for a in s.alarms()] == ["meta.json"]
        assert read_meta(data)["schema_version"] == SCHEMA_VERSION
    finally:
        await s.close()
