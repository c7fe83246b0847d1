"""Backup and restore of the data folder as one tar.gz.

Consistency: shards and meta are only ever replaced by rename, never changed in place, so a
hard link taken while the writer is paused is a frozen copy of that file. ``Store.backup``
pauses the writer only while it hard-links (milliseconds), then tars in the background.
``backup(data_dir, ...)`` (for ``run.py backup``, possibly while the box runs in another
process) takes the links without pausing: the result equals the state after a power cut
at that moment, which start-up is built to recover (sidecars are rebuilt, open recordings
repaired). Restore refuses a snapshot from a newer schema and never overwrites in place:
the current folder is renamed aside first.
"""
from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.storage.atomic import TMP_SUFFIX, fsync_dir
from appliance.storage.migrations import META_FILE, SCHEMA_VERSION, SchemaTooNewError, check_version, read_meta

log = logging.getLogger(__name__)

MANIFEST = "branchline-snapshot.json"
_TOP = ("shards", "recordings")


class SnapshotError(ValueError):
    """The file is not a Branchline snapshot, or is damaged."""


@dataclass(frozen=True, slots=True)
class BackupReport:
    path: Path
    files: int
    bytes: int
    schema_version: int


def link_snapshot(data_dir: Path, staging: Path) -> int:
    """Hard-link (or copy, across file systems) the data files into ``staging``; returns the count."""
    count = 0
    sources = [data_dir / META_FILE] if (data_dir / META_FILE).exists() else []
    for top in _TOP:
        root = data_dir / top
        if root.exists():
            sources += [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(TMP_SUFFIX) and ".corrupt-" not in p.name]
    for src in sources:
        dst = staging / src.relative_to(data_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except FileNotFoundError:
            continue  # removed by retention meanwhile
        except OSError:
            shutil.copy2(src, dst)
        count += 1
    return count


def write_tar(staging: Path, out_path: Path, schema_version: int) -> BackupReport:
    tmp = out_path.with_name(out_path.name + TMP_SUFFIX)
    manifest = json.dumps({"format": 1, "schema_version": schema_version, "created_at": time.time()}).encode()
    files = total = 0
    with tarfile.open(tmp, "w:gz", compresslevel=1) as tar:  # recordings barely compress; save the CPU
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mtime = len(manifest), int(time.time())
        tar.addfile(info, io.BytesIO(manifest))
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            tar.add(path, arcname=path.relative_to(staging).as_posix(), recursive=False)
            files += 1
            total += path.stat().st_size
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out_path)
    fsync_dir(out_path.parent)
    return BackupReport(out_path, files, total, schema_version)


def backup(data_dir: Path, out_path: Path) -> BackupReport:
    """Snapshot ``data_dir`` into ``out_path`` (tar.gz). Safe while the box runs."""
    data_dir, out_path = Path(data_dir), Path(out_path)
    meta = read_meta(data_dir)
    version = int(meta["schema_version"]) if meta else SCHEMA_VERSION
    staging = data_dir / f".snapshot-{os.getpid()}-{time.time_ns()}"
    try:
        link_snapshot(data_dir, staging)
        report = write_tar(staging, out_path, version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("backup of %s written to %s: %d files, %d MB", data_dir, out_path, report.files, report.bytes // 2**20)
    return report


def read_manifest(snapshot: Path) -> dict:
    try:
        with tarfile.open(snapshot, "r:gz") as tar:
            member = tar.next()
            if member is None or member.name != MANIFEST:
                raise SnapshotError(f"{snapshot} is not a Branchline snapshot (no manifest)")
            f = tar.extractfile(member)
            return json.loads(f.read()) if f else {}
    except (tarfile.TarError, OSError, EOFError, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{snapshot} is not a readable snapshot: {exc}") from None


def restore(snapshot: Path, data_dir: Path) -> Path | None:
    """Replace ``data_dir`` with the snapshot's content. The box must not be running.

    Raises SchemaTooNewError for a snapshot from a newer Branchline, SnapshotError for a
    damaged file. Returns where the previous folder was moved (None if there was none).
    """
    snapshot, data_dir = Path(snapshot), Path(data_dir)
    manifest = read_manifest(snapshot)
    version = int(manifest.get("schema_version", 0))
    try:
        check_version(version, f"snapshot {snapshot.name}")
    except SchemaTooNewError as exc:
        raise SchemaTooNewError(f"{exc}; restore refused, nothing was changed") from None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = data_dir.with_name(f".{data_dir.name}.restore-{stamp}")
    try:
        with tarfile.open(snapshot, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name != MANIFEST]
            for m in members:
                if not (m.isfile() or m.isdir()) or m.name.split("/")[0] not in (*_TOP, META_FILE):
                    raise SnapshotError(f"unexpected entry {m.name!r} in snapshot; restore refused")
            tar.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise SnapshotError(f"{snapshot} cannot be extracted: {exc}") from None
    except SnapshotError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    aside = None
    if data_dir.exists():
        aside = data_dir.with_name(f"{data_dir.name}.pre-restore-{stamp}")
        os.replace(data_dir, aside)
    os.replace(staging, data_dir)
    fsync_dir(data_dir.parent)
    log.info("restored %s into %s (schema v%d)%s", snapshot.name, data_dir, version,
             f"; previous data kept in {aside}" if aside else "")
    return aside
