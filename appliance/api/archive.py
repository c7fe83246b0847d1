"""Stored calls, messages and recordings for the site admin: search, open, export, delete.

Everything goes through the ``Store`` (the only code that touches TinyDB); file copies
run in an executor. Deleting a recording leaves an ``audit`` document in the store.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.api import schema as s
from appliance.api.views import message_view, record_view

log = logging.getLogger(__name__)

SEARCH_SCAN = 5000  # stored call records one search looks through, newest first
FILE_TIMEOUT_S = 120.0  # copying or decrypting one recording to a slow USB stick finishes by then
MAX_SEGMENTS = 50  # transfers of one customer call looked up for its detail; a real call has a handful


class ArchiveError(Exception):
    """A query or file action that cannot be done as asked; the message is for the admin."""


def _day_bounds(text: str | None, end: bool) -> float | None:
    if not text:
        return None
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        raise ArchiveError(f"date {text!r} is not YYYY-MM-DD") from None
    return (day + timedelta(days=1)).timestamp() if end else day.timestamp()


class Archive:
    def __init__(self, box: Any) -> None:
        self.box = box

    @property
    def _store(self) -> Any:
        if self.box.store is None:
            raise ArchiveError("storage is not open")
        return self.box.store

    async def search_calls(self, q: s.CallQuery) -> s.CallList:
        lo, hi = _day_bounds(q.date_from, False), _day_bounds(q.date_to, True)
        number = (q.number or "").strip()
        agent = (q.agent_id or "").strip()
        records = await self._store.recent_calls(SEARCH_SCAN)
        found = []
        for rec in records:
            if lo is not None and rec.arrived_at < lo or hi is not None and rec.arrived_at >= hi:
                continue
            if number and number not in (rec.from_number or "") and number not in (rec.to_number or ""):
                continue
            if agent and rec.agent_id != agent:
                continue
            if q.with_recording and not rec.recording_path:
                continue
            found.append(record_view(rec))
            if len(found) >= max(1, min(q.limit, SEARCH_SCAN)):
                break
        # newest customer call first; the segments of one call (transfers) together, in order
        started: dict[str, float] = {}
        for r in found:
            key = r.parent_call_id or r.call_id
            started[key] = min(started.get(key, r.arrived_at), r.arrived_at)
        found.sort(key=lambda r: (-started[r.parent_call_id or r.call_id], r.parent_call_id or r.call_id, r.segment))
        return s.CallList(tuple(found), len(records))

    async def get_call(self, q: s.GetCall) -> s.CallDetail:
        rec = await self._store.get_call(q.call_id)
        if rec is None:
            return s.CallDetail(None)
        messages: tuple[s.MessageView, ...] = ()
        number = rec.to_number if rec.direction == "outbound" else rec.from_number
        if number:
            messages = (await self.messages(s.MessageQuery(number))).messages
        return s.CallDetail(record_view(rec), messages, await self._segments(rec))

    async def _segments(self, rec: Any) -> tuple[s.CallRecordView, ...]:
        """Every stored segment of the customer call ``rec`` belongs to (ids parent, parent-2, ...)."""
        parent = rec.parent_call_id
        if parent is None and rec.segment == 1:
            parent = rec.call_id
        if parent is None:  # an old record without the link: only itself
            return ()
        out = []
        for n in range(1, MAX_SEGMENTS + 1):
            seg_id = parent if n == 1 else f"{parent}-{n}"
            seg = rec if rec.call_id == seg_id else await self._store.get_call(seg_id)
            if seg is None:
                if n == 1:
                    continue  # segment 1 already removed by retention; later ones may still be here
                break
            out.append(record_view(seg))
        return tuple(out) if len(out) > 1 else ()

    async def messages(self, q: s.MessageQuery) -> s.MessageList:
        number = q.number.strip()
        if not number:
            raise ArchiveError("give a phone number")
        conv = await self._store.open_conversation(number)
        if conv is None:
            return s.MessageList(())
        return s.MessageList(tuple(message_view(m) for m in await self._store.messages(conv)))

    async def recordings(self, q: s.CallQuery) -> s.RecordingList:
        calls = await self.search_calls(replace(q, with_recording=True))
        out = []
        for rec in calls.calls:
            path = await self._store.recording_for(rec.call_id)
            if path is None:
                continue
            size, encrypted = await asyncio.get_running_loop().run_in_executor(None, _file_facts, path)
            out.append(s.RecordingView(rec.call_id, rec.recording_path or "", size, rec.recording_s,
                                       rec.answered_at or rec.arrived_at, rec.from_number, rec.agent_id, encrypted))
        return s.RecordingList(tuple(out))

    async def export_recording(self, cmd: s.ExportRecording, actor: str) -> s.CommandResult:
        store = self._store
        src = await store.recording_for(cmd.call_id)
        if src is None:
            return s.CommandResult(False, f"call {cmd.call_id} has no recording")
        dest = Path(cmd.path).expanduser()
        if not dest.is_absolute():
            return s.CommandResult(False, "give an absolute destination path")
        if dest.exists():
            return s.CommandResult(False, f"{dest} already exists; choose another name")
        if not dest.parent.is_dir():
            return s.CommandResult(False, f"folder {dest.parent} does not exist")
        key = getattr(store, "encryption_key", None)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(FILE_TIMEOUT_S):
                await loop.run_in_executor(None, _export, src, dest, key)
        except (OSError, TimeoutError, ValueError) as exc:
            return s.CommandResult(False, f"export failed: {getattr(exc, 'strerror', None) or exc}")
        await self._audit("recording_exported", cmd.call_id, actor, path=str(dest))
        log.info("recording of call %s exported to %s by %s", cmd.call_id, dest, actor)
        return s.CommandResult(True, f"recording exported to {dest}")

    async def delete_recording(self, cmd: s.DeleteRecording, actor: str) -> s.CommandResult:
        reason = cmd.reason.strip()
        if not reason:
            return s.CommandResult(False, "give a reason; it is kept in the audit trail")
        store = self._store
        rec = await store.get_call(cmd.call_id)
        path = await store.recording_for(cmd.call_id)
        if rec is None or path is None:
            return s.CommandResult(False, f"call {cmd.call_id} has no recording")
        try:
            await asyncio.get_running_loop().run_in_executor(None, path.unlink)
        except FileNotFoundError:
            pass
        except OSError as exc:
            return s.CommandResult(False, f"cannot delete {path.name}: {exc.strerror or exc}")
        await store.recording_removed(rec.parent_call_id or rec.call_id)  # every part of a transferred call
        await self._audit("recording_deleted", cmd.call_id, actor, path=rec.recording_path or "", reason=reason)
        log.info("recording of call %s deleted by %s (%s)", cmd.call_id, actor, reason)
        return s.CommandResult(True, f"recording of {cmd.call_id} deleted")

    async def _audit(self, action: str, call_id: str, actor: str, **fields: str) -> None:
        doc = {"action": action, "call_id": call_id, "actor": actor, "at": time.time(), **fields}
        await self._store.put("audit", doc)


def _file_facts(path: Path) -> tuple[int, bool]:
    from appliance.storage.crypto import is_encrypted

    try:
        return path.stat().st_size, is_encrypted(path)
    except OSError:
        return 0, False


def _export(src: Path, dest: Path, key: bytes | None) -> None:
    from appliance.storage.crypto import export_recording, is_encrypted

    if key is not None and is_encrypted(src):
        export_recording(src, key, dest)
        return
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
