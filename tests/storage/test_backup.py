"""Backup while running, restore, and refusal of snapshots from a newer schema."""
from __future__ import annotations

import asyncio
import io
import json
import tarfile
from pathlib import Path

import pytest

from appliance.storage import SCHEMA_VERSION, SchemaTooNewError, Store, backup, restore
from appliance.storage.backup import MANIFEST, SnapshotError
from tests.storage.conftest import make_call


async def test_online_backup_during_writes_restores_consistently(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "live", branch="br1")
    acked = [await s.save_call(make_call(f"before{i}")) for i in range(50)]
    rec = s.recordings_dir() / "2026" / "12" / "03" / "before0.wav"
    rec.parent.mkdir(parents=True)
    rec.write_bytes(b"RIFF-audio")

    async def writer() -> None:
        for i in range(300):
            await s.save_call(make_call(f"during{i}"))

    task = asyncio.create_task(writer(), name="test-backup-writer")
    report = await s.backup(tmp_path / "snap.tar.gz")
    await task
    await s.close()
    assert report.schema_version == SCHEMA_VERSION and report.files > 2

    target = tmp_path / "restored"
    assert restore(tmp_path / "snap.tar.gz", target) is None
    r = await Store.open(target, branch="br1")
    try:
        assert r.alarms() == []
        assert [(await r.get("call", f"before{i}"))["_msg_id"] for i in range(50)] == acked
        assert (r.recordings_dir() / "2026/12/03/before0.wav").read_bytes() == b"RIFF-audio"
        present = [await r.get_call(f"during{i}") is not None for i in range(300)]
        k = sum(present)
        assert present == [True] * k + [False] * (300 - k)  # a consistent cut across shards: a prefix
    finally:
        await r.close()
    assert not list((tmp_path / "live").glob(".snapshot-*"))  # staging cleaned up


async def test_offline_backup_and_restore_moves_old_data_aside(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    await s.save_call(make_call("kept"))
    await s.close()
    backup(tmp_path / "d", tmp_path / "snap.tar.gz")
    s = await Store.open(tmp_path / "d")
    await s.save_call(make_call("after-backup"))
    await s.close()
    aside = restore(tmp_path / "snap.tar.gz", tmp_path / "d")
    assert aside is not None and aside.exists()
    s = await Store.open(tmp_path / "d")
    try:
        assert await s.get_call("kept") is not None and await s.get_call("after-backup") is None
    finally:
        await s.close()


def _tar_with_manifest(path: Path, manifest: dict) -> None:
    raw = json.dumps(manifest).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))


async def test_restore_refuses_newer_schema_and_changes_nothing(tmp_path: Path) -> None:
    s = await Store.open(tmp_path / "d")
    await s.save_call(make_call("mine"))
    await s.close()
    _tar_with_manifest(tmp_path / "future.tar.gz", {"format": 1, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(SchemaTooNewError, match="upgrade the software.*restore refused"):
        restore(tmp_path / "future.tar.gz", tmp_path / "d")
    s = await Store.open(tmp_path / "d")
    try:
        assert await s.get_call("mine") is not None
    finally:
        await s.close()


def test_restore_refuses_a_file_that_is_not_a_snapshot(tmp_path: Path) -> None:
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(SnapshotError, match="not a readable snapshot"):
        restore(tmp_path / "junk.tar.gz", tmp_path / "d")
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as tar:
        tar.add(__file__, arcname="etc/passwd")
    with pytest.raises(SnapshotError, match="no manifest"):
        restore(tmp_path / "other.tar.gz", tmp_path / "d")
    assert not (tmp_path / "d").exists()
