"""``Store``: the async face of storage. One writer task, one executor thread, group commit.

Writes go through the group-commit writer (``writer.py``): batches run on the store's
single thread (TinyDB is not thread-safe) and are acknowledged once their journal record is
fdatasync'd. The touched shards are rewritten (temp, fsync, rename, folder fsync) in batches
by a checkpoint: when the journal grows past its bound, when the writer has been idle, and
at close. Reads go straight to the same thread, between commits.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from appliance.records import CallRecord
from appliance.storage import codec, customers
from appliance.storage.engine import Engine
from appliance.storage.ids import new_ulid
from appliance.storage.migrations import check_version, detect_version, migrate
from appliance.storage.models import (
    Alarm, AlarmKind, Channel, Conversation, Customer, Interaction, Message, SyncInfo,
)
from appliance.storage.backup import BackupReport, link_snapshot, write_tar
from appliance.storage.retention import (
    ErasureReport, RetentionPolicy, RetentionReport, apply_retention, erase_customer,
)
from appliance.storage.shards import period_of
from appliance.storage.writer import COMMIT_TIMEOUT_S, GroupCommitWriter

log = logging.getLogger(__name__)
T = TypeVar("T")

OPEN_TIMEOUT_S = 600.0  # start-up incl. migrations and index rebuild; years of records on an SD card
READ_TIMEOUT_S = 10.0  # a read waits for at most one commit plus a shard load
CLOSE_TIMEOUT_S = 10.0  # drain queued writes at shutdown (fits the "final_write" stage budget)
DEFAULT_MIN_FREE_BYTES = 512 * 1024 * 1024  # below this free space new recordings are refused
RETENTION_TIMEOUT_S = 600.0  # dropping a month of shards and recordings; writes wait meanwhile
BACKUP_TIMEOUT_S = 3600.0  # tar of years of recordings on an SD card
GENERIC_KINDS = frozenset({"sms", "chat", "agent_event", "customer", "audit", "conversation"})


class StoreClosedError(RuntimeError):
    pass


class Store:
    def __init__(self, data_dir: Path, branch: str, retention: RetentionPolicy, min_free_bytes: int) -> None:
        self.data_dir = data_dir
        self.branch = branch
        self.retention = retention
        self.min_free_bytes = min_free_bytes
        self.meta: dict[str, Any] = {}
        self._alarms: list[Alarm] = []
        self._alarm_keys: set[tuple[str, str]] = set()
        self._alarm_lock = threading.Lock()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.engine = Engine(data_dir / "shards", branch, self._raise_alarm)
        self._writes = GroupCommitWriter(self.engine, self._io, self._raise_alarm, self.clear_alarm)
        self._writer: asyncio.Task[None] | None = None
        self._closed = False
        self._disk_low = False
        self.encryption_key: bytes | None = None
        self.last_retention: RetentionReport | None = None
        self._retention_ran = asyncio.Event()

    @classmethod
    async def open(
        cls,
        data_dir: Path,
        *,
        branch: str = "box",
        retention: RetentionPolicy | None = None,
        encryption_key: bytes | None = None,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        verify_all: bool = False,
    ) -> "Store":
        """Open (creating, migrating, repairing) the data folder. Raises SchemaTooNewError."""
        data_dir = Path(data_dir)
        self = cls(data_dir, branch, retention or RetentionPolicy(), min_free_bytes)
        self.encryption_key = encryption_key
        try:
            await self._call(self._start, verify_all, timeout=OPEN_TIMEOUT_S)
        except BaseException:
            self._io.shutdown(wait=False)
            raise
        self._writer = asyncio.get_running_loop().create_task(self._writes.run(), name="store-writer")
        from appliance.storage.recordings import recover_recordings

        try:
            await recover_recordings(self)
        except TimeoutError:  # never blocks start-up; the repair goes on in the writer thread
            log.error("repairing recordings left open by a crash is taking long; continuing start-up")
        except BaseException:
            await self.close()
            raise
        return self

    def _start(self, verify_all: bool) -> None:
        t0 = time.monotonic()
        (self.data_dir / "recordings").mkdir(parents=True, exist_ok=True)

        def meta_corrupt(message: str) -> None:
            log.error("%s", message)
            self._raise_alarm(Alarm(AlarmKind.CORRUPT_SHARD, "meta.json", message, time.time()))

        version, meta = detect_version(self.data_dir, meta_corrupt)
        check_version(version, str(self.data_dir))
        now = time.time()
        recent = frozenset({period_of(now), period_of(now - 32 * 86400)})
        self.engine.load(verify_all=verify_all, recent_periods=recent)
        self.meta = migrate(self.data_dir, self.engine, version, meta, self.branch)
        log.info("store open at %s: %d records in %d shards (%.0f ms)", self.data_dir,
                 self.engine.index.count(), len(self.engine.shards.live()), (time.monotonic() - t0) * 1000)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._writes.stop()
                    await asyncio.shield(self._writer)
            except TimeoutError:
                log.warning("store writer did not drain within %.0f s; stopping it", CLOSE_TIMEOUT_S)
                self._writer.cancel()
        try:
            await self._call(self._close_files, timeout=CLOSE_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:  # the journal is replayed and sidecars rebuilt at the next start
            log.warning("could not write shards or index sidecars at close: %s", exc)
        self._io.shutdown(wait=True)

    def _close_files(self) -> None:
        self.engine.checkpoint()
        self.engine.write_sidecars()
        self.engine.journal.close()

    # ---- plumbing ----
    async def _call(self, fn: Callable[..., T], *args: Any, timeout: float = READ_TIMEOUT_S) -> T:
        async with asyncio.timeout(timeout):
            return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    async def _read(self, fn: Callable[[Engine], T]) -> T:
        if self._closed:
            raise StoreClosedError("store is closed")
        return await self._call(fn, self.engine)

    async def _write(self, fn: Callable[[Engine], T]) -> T:
        """Queue a mutation; returns after the group commit that contains it is on disk."""
        if self._closed:
            raise StoreClosedError("store is closed")
        return await self._writes.submit(fn)

    @property
    def commits(self) -> int:
        """Statistics: group commits done."""
        return self._writes.commits

    @property
    def committed_ops(self) -> int:
        return self._writes.committed_ops

    async def run_paused(self, fn: Callable[[], T], timeout: float = COMMIT_TIMEOUT_S) -> T:
        """Run ``fn`` on the writer thread between commits: no shard changes while it runs."""
        return await self._call(fn, timeout=timeout)

    # ---- alarms ----
    def _raise_alarm(self, alarm: Alarm) -> None:
        with self._alarm_lock:
            if (alarm.kind, alarm.subject) in self._alarm_keys:
                return
            self._alarm_keys.add((alarm.kind, alarm.subject))
            self._alarms.append(alarm)

    def clear_alarm(self, kind: AlarmKind, subject: str) -> None:
        with self._alarm_lock:
            self._alarm_keys.discard((kind, subject))
            self._alarms = [a for a in self._alarms if (a.kind, a.subject) != (kind, subject)]

    def alarms(self) -> list[Alarm]:
        with self._alarm_lock:
            return list(self._alarms)

    # ---- calls ----
    async def save_call(self, rec: CallRecord) -> str:
        doc = codec.call_to_doc(rec)
        return await self._write(lambda e: e.upsert("call", rec.call_id, doc, time.time()))

    async def get_call(self, call_id: str) -> CallRecord | None:
        doc = await self._read(lambda e: e.get("call", call_id))
        return None if doc is None else codec.doc_to_call(doc)

    async def recent_calls(self, limit: int = 50) -> list[CallRecord]:
        def newest(e: Engine) -> list[dict[str, Any]]:
            docs: list[dict[str, Any]] = []
            last_shard, extra = None, 0
            for no, doc in e.docs("call", newest_first=True):
                if no != last_shard:
                    last_shard = no
                    if len(docs) >= limit:
                        extra += 1  # one more shard: saves can land slightly out of order
                        if extra > 1:
                            break
                docs.append(doc)
            docs.sort(key=lambda d: d.get("arrived_at", 0), reverse=True)
            return docs[:limit]

        return [codec.doc_to_call(d) for d in await self._read(newest)]

    # ---- generic documents ----
    async def put(self, kind: str, doc: dict[str, Any], *, key: str | None = None) -> str:
        """Insert (or replace, when ``key`` exists) a document of a generic kind; returns its msg id."""
        if kind not in GENERIC_KINDS:
            raise ValueError(f"unknown kind {kind!r}; calls go through save_call")
        if any(k.startswith("_") for k in doc):
            raise ValueError("document fields starting with '_' are reserved for the store")
        key = key or new_ulid()
        body = dict(doc)
        return await self._write(lambda e: e.upsert(kind, key, body, time.time()))

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        """The stored document including store fields (``_key``, ``_msg_id``, ``_sync``, ``_at``, ``_rev``)."""
        return await self._read(lambda e: e.get(kind, key))

    async def delete(self, kind: str, key: str) -> bool:
        return await self._write(lambda e: e.remove(kind, key))

    # ---- outbox (for the sync service) ----
    async def sync_state(self, kind: str, key: str) -> SyncInfo | None:
        doc = await self.get(kind, key)
        return None if doc is None else codec.doc_to_sync(doc)

    async def set_sync(self, kind: str, key: str, info: SyncInfo) -> bool:
        fields = {"_sync": codec.sync_to_doc(info)}
        return await self._write(lambda e: e.set_fields(kind, key, fields))

    async def set_sync_many(self, kind: str, states: dict[str, SyncInfo]) -> int:
        """One commit for a whole batch of outbox results; returns how many records were found."""
        fields = {key: {"_sync": codec.sync_to_doc(info)} for key, info in states.items()}
        return await self._write(lambda e: sum(e.set_fields(kind, key, f) for key, f in fields.items()))

    async def pending(self, kind: str, limit: int = 100, now: float | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` PENDING documents of ``kind`` whose ``next_at`` has passed, oldest first.

        Served from the in-memory pending index, so the cost does not grow with ACKED history."""
        t = time.time() if now is None else now

        def scan(e: Engine) -> list[dict[str, Any]]:
            out = []
            for key in e.index.pending_keys(kind):
                doc = e.get(kind, key)
                if doc is not None and doc["_sync"].get("next_at", 0) <= t:
                    out.append(doc)
                    if len(out) >= limit:
                        break
            return out

        return await self._read(scan)

    # ---- customers ----
    async def customer_by_phone(self, number: str) -> Customer | None:
        term = f"tel:{codec.normalise_number(number)}"
        return await self._read(lambda e: customers.customer_by_term(e, term))

    async def customer_by_email(self, email: str) -> Customer | None:
        term = f"mail:{codec.normalise_email(email)}"
        return await self._read(lambda e: customers.customer_by_term(e, term))

    async def get_customer(self, customer_id: str) -> Customer | None:
        doc = await self._read(lambda e: e.get("customer", customer_id))
        return None if doc is None else codec.doc_to_customer(doc)

    async def upsert_customer(
        self,
        customer_id: str | None = None,
        *,
        name: str | None = None,
        phones: tuple[str, ...] = (),
        emails: tuple[str, ...] = (),
        notes: str | None = None,
    ) -> Customer:
        return await self._write(
            lambda e: customers.upsert_customer(e, time.time(), customer_id, name, tuple(phones), tuple(emails), notes)
        )

    async def interactions_for_customer(self, customer_id: str, limit: int | None = None) -> list[Interaction]:
        return await self._read(lambda e: customers.interactions_for(e, customer_id, limit))

    async def open_conversation(self, number: str, channel: Channel | None = None) -> Conversation | None:
        return await self._read(lambda e: customers.open_conversation(e, number, channel))

    async def add_message(
        self, channel: Channel, direction: str, number: str, body: str, *, at: float | None = None
    ) -> Message:
        return await self._write(lambda e: customers.add_message(e, time.time(), channel, direction, number, body, at))

    async def close_conversation(self, conversation_id: str) -> Conversation | None:
        return await self._write(lambda e: customers.close_conversation(e, time.time(), conversation_id))

    async def recent_conversations(self, limit: int = 30) -> list[Conversation]:
        """Conversations by latest activity, newest first (the console's inbox)."""
        return await self._read(lambda e: customers.recent_conversations(e, limit))

    async def messages(self, conversation: Conversation) -> list[Message]:
        return await self._read(lambda e: customers.messages_of(e, conversation))

    # ---- recordings ----
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    def recordings_allowed(self) -> bool:
        """False (with one DISK_LOW alarm) while free space is under ``min_free_bytes``."""
        free = shutil.disk_usage(self.data_dir).free
        low = free < self.min_free_bytes
        if low and not self._disk_low:
            log.error("disk almost full (%d MB free, floor %d MB): new recordings are refused, calls continue",
                      free // 2**20, self.min_free_bytes // 2**20)
            self._raise_alarm(Alarm(AlarmKind.DISK_LOW, "recordings", f"{free // 2**20} MB free; recordings refused", time.time()))
        elif not low and self._disk_low:
            log.info("disk space recovered (%d MB free): recordings allowed again", free // 2**20)
            self.clear_alarm(AlarmKind.DISK_LOW, "recordings")
        self._disk_low = low
        return not low

    def recording_sink_factory(self):  # -> media.recorder.SinkFactory
        """Pass as ``StereoWavRecorder(path, sink_factory=...)``: encrypts when a key is configured."""
        from appliance.storage.recordings import sink_factory

        return sink_factory(self.encryption_key)

    async def recording_removed(self, call_id: str) -> int:
        """The recording of ``call_id`` (the first part's id) was deleted: no part names it any more."""
        from appliance.storage.recordings import unlink_from_call

        return await self._write(lambda e: unlink_from_call(e, call_id, time.time()))

    async def recording_for(self, call_id: str) -> Path | None:
        """The recording file of a call, if the call has one that still exists."""
        from appliance.storage.recordings import find_recording

        doc = await self._read(lambda e: e.get("call", call_id))
        return find_recording(self.recordings_dir(), doc.get("recording_path") if doc else None)

    # ---- retention, erasure, backup ----
    async def run_retention(self, now: float | None = None) -> RetentionReport:
        t = time.time() if now is None else now
        if t < self.meta.get("created_at", 0) - 86400:
            # a box without a battery clock boots in 1970 until NTP answers: deleting by age then is wrong
            log.warning("clock is before this data folder was created; retention skipped until the time is right")
            return RetentionReport(0, 0, ())

        def job() -> RetentionReport:
            self.engine.require_checkpoint()  # whole shards may be deleted: none may have journaled changes
            self.engine.begin()
            report = apply_retention(self.engine, self.retention, self.recordings_dir(), t)
            self.engine.commit()
            return report

        return await self.run_paused(job, timeout=RETENTION_TIMEOUT_S)

    async def retention_task(self) -> None:
        """Run retention every ``retention.interval_s``; start it as a named task, cancel to stop."""
        while True:
            try:
                self.last_retention = await self.run_retention()
            except (OSError, TimeoutError) as exc:
                log.error("retention run failed (%s); will retry in %.0f s", exc, self.retention.interval_s)
            self._retention_ran.set()
            await asyncio.sleep(self.retention.interval_s)  # a schedule, not synchronisation

    async def wait_retention_run(self) -> RetentionReport | None:
        """Wait for the scheduled task's next run to end (for tests and the TUI)."""
        self._retention_ran.clear()
        await self._retention_ran.wait()
        return self.last_retention

    async def erase_customer(self, customer_id: str) -> ErasureReport:
        salt = self.meta["audit_salt"]
        report = await self._write(lambda e: erase_customer(e, customer_id, self.recordings_dir(), salt, time.time()))
        await self.run_paused(self.engine.require_checkpoint)  # the erased data leaves the disk now, journal included
        return report

    async def backup(self, out_path: Path) -> BackupReport:
        """Consistent snapshot while running: writes pause only while files are hard-linked."""
        staging = self.data_dir / f".snapshot-{time.time_ns()}"
        try:
            await self.run_paused(lambda: self.engine.require_checkpoint() or link_snapshot(self.data_dir, staging))
            async with asyncio.timeout(BACKUP_TIMEOUT_S):
                return await asyncio.to_thread(write_tar, staging, Path(out_path), int(self.meta["schema_version"]))
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)
