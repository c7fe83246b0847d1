"""The recordings index: crash repair at start-up, linking files to call records, sinks, purging.

Layout and marker convention are the recorder's (media/recorder.py): a recording is
``recordings/<YYYY>/<MM>/<DD>/<call_id>.wav`` and ``<file>.wav.open`` exists while it is
being written. The call id is the file's stem, which is how a file is linked to its record.
With encryption at rest the same path holds an ``EncryptedChunkSink`` container.
"""
from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.storage import crypto
from appliance.storage.engine import Engine
from appliance.storage.models import Alarm, AlarmKind

if TYPE_CHECKING:
    from appliance.storage.store import Store

log = logging.getLogger(__name__)

OPEN_SUFFIX = ".open"  # media.recorder.OPEN_SUFFIX; repeated so a scan needs no media import
REPAIR_TIMEOUT_S = 120.0  # repairing rewrites only headers; 120 s covers thousands of files on an SD card


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def open_recordings(root: Path) -> list[Path]:
    return sorted(m.with_name(m.name[: -len(OPEN_SUFFIX)]) for m in root.rglob("*.wav" + OPEN_SUFFIX))


def repair_one(path: Path, key: bytes | None) -> float:
    """Repair one recording left open; returns seconds of audio. Raises OSError/ValueError."""
    marker = path.with_name(path.name + OPEN_SUFFIX)
    if not path.exists():
        marker.unlink(missing_ok=True)
        raise FileNotFoundError(f"{path.name}: marker without a recording")
    if crypto.is_encrypted(path):
        if key is None:
            raise ValueError(f"{path.name} is encrypted and no recording key is configured")
        raw = path.read_bytes()
        keep = crypto.valid_length(raw, key)
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        plain, _ = crypto.decrypt_bytes(raw[:keep], key)
        marker.unlink(missing_ok=True)
        from media.recorder import BYTE_RATE, HEADER_BYTES

        return max(0, len(plain) - HEADER_BYTES) / BYTE_RATE
    from media.recorder import repair_wav  # lazily: storage must import without media

    return repair_wav(path)


def _link(engine: Engine, root: Path, path: Path, seconds: float) -> bool:
    """Point the call record (call id = file stem) at this recording; False when no record exists."""
    doc = engine.get("call", path.stem)
    if doc is None:
        return False
    rel = path.relative_to(root).as_posix()  # relative to recordings/, as appliance/calls.py stores it
    if doc.get("recording_path") == rel and doc.get("recording_s") == round(seconds, 3):
        return True
    body = _body(doc)
    body["recording_path"] = rel
    body["recording_s"] = round(seconds, 3)
    engine.upsert("call", path.stem, body, time.time())
    return True


def _recover(store: "Store") -> tuple[int, int]:
    root = store.recordings_dir()
    repaired = failed = 0
    engine = store.engine
    engine.begin()
    for path in open_recordings(root):
        try:
            seconds = repair_one(path, store.encryption_key)
        except (OSError, ValueError) as exc:
            failed += 1
            log.error("recording %s left open by a crash cannot be repaired: %s", path.name, exc)
            store._raise_alarm(Alarm(AlarmKind.RECORDING_UNREPAIRABLE, path.name, str(exc), time.time()))
            continue
        repaired += 1
        if not _link(engine, root, path, seconds):
            log.warning("repaired recording %s has no call record (the call was not saved before the crash)", path.name)
    engine.commit()
    if repaired:
        store._raise_alarm(Alarm(AlarmKind.RECORDING_REPAIRED, "recordings",
                                 f"{repaired} recording(s) left open by a crash were repaired", time.time()))
    return repaired, failed


async def recover_recordings(store: "Store") -> tuple[int, int]:
    """Start-up: repair recordings left open by a crash and link them to their call records."""
    return await store.run_paused(functools.partial(_recover, store), timeout=REPAIR_TIMEOUT_S)


def sink_factory(key: bytes | None):  # -> media.recorder.SinkFactory
    """The recorder's ``sink_factory``: plain files, or encrypted chunks when a key is configured."""
    if key is None:
        from media.recorder import FileSink

        return FileSink
    return functools.partial(crypto.EncryptedChunkSink, key=key)


def purge(engine: Engine, root: Path, cutoff: float, now: float) -> list[str]:
    """Delete recordings older than ``cutoff`` (by file time), unlink them from their calls."""
    removed = []
    for path in sorted(root.rglob("*.wav")):
        try:
            if path.with_name(path.name + OPEN_SUFFIX).exists() or path.stat().st_mtime >= cutoff:
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path.relative_to(root).as_posix())
        unlink_from_call(engine, path.stem, now)
    for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        try:
            folder.rmdir()  # only empty day/month/year folders go
        except OSError:
            pass
    return removed


MAX_CALL_PARTS = 100  # a call transferred more often than this is not a real call


def unlink_from_call(engine: Engine, call_id: str, now: float) -> int:
    """The recording file of ``call_id`` is gone: clear it on the call and on each later part of
    the call (a transfer's parts ``<id>-2``, ``<id>-3`` ... share the file). Returns how many."""
    cleared = 0
    for n in range(1, MAX_CALL_PARTS + 1):
        key = call_id if n == 1 else f"{call_id}-{n}"
        doc = engine.get("call", key)
        if doc is None:
            break
        if doc.get("recording_path"):
            engine.set_fields("call", key, {"recording_path": None, "recording_purged_at": now})
            cleared += 1
    return cleared


def find_recording(root: Path, rel: str | None) -> Path | None:
    """The file of a call's ``recording_path`` (relative to recordings/, or to the data folder)."""
    if not rel:
        return None
    for path in (root / rel, root.parent / rel):
        if path.is_file():
            return path
    return None
