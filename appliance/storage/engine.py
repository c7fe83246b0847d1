"""The synchronous core of the store: documents in shards plus the index. Writer thread only.

Every public method runs on the store's single-thread executor. Mutations change shards
in memory. ``commit_journaled`` (the store's group commit) appends the touched documents
to the journal with one fdatasync and only then keeps the index changes, so a batch is
all-or-nothing as far as callers can tell; the touched shards stay in memory, dirty,
until ``checkpoint`` rewrites them (atomically, in one go) and empties the journal.
``commit`` is the direct form for maintenance (migrations, retention, repairs): it
rewrites every dirty shard at once.
"""
from __future__ import annotations

import copy
import gc
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tinydb.table import Document

from appliance.storage import codec, envelope
from appliance.storage.atomic import ShardStorage
from appliance.storage.ids import new_msg_id
from appliance.storage.index import Index, pack, sidecar_columns, span, unpack
from appliance.storage.journal import JOURNAL_FILE, Entry, Journal
from appliance.storage.models import Alarm, AlarmKind, SyncState
from appliance.storage.shards import SHARD_CAP, ShardName, ShardSet, read_sidecar, write_sidecar

log = logging.getLogger(__name__)

# A checkpoint (batched shard rewrites) is due past either bound. The journal bound keeps
# the replay at start short (~4 MB is ~50 ms of parsing); the dirty-shard bound keeps the
# parsed shards in memory and one checkpoint's stall (~1.5 ms per shard) small.
JOURNAL_MAX_BYTES = 4 * 1024 * 1024
DIRTY_MAX_SHARDS = 32


class Engine:
    def __init__(self, shards_dir: Path, branch: str, report: Callable[[Alarm], None], *, cap: int = SHARD_CAP) -> None:
        self.branch = branch
        self.shards = ShardSet(shards_dir, cap=cap)
        self.shards.on_evict = self.write_sidecar
        self.index = Index()
        self._report = report
        self._stale_sidecars: dict[int, str] = {}  # shard no -> digest its sidecar must be written for
        self._sidecar_written: set[int] = set()  # full shards whose sidecar was written once
        self.journal = Journal(Path(shards_dir).parent / JOURNAL_FILE)
        self._touched: dict[int, set[int]] = {}  # shard no -> doc ids changed by the open batch
        self.checkpoints = 0  # statistics

    # ---- start-up ----
    def load(self, *, verify_all: bool = False, recent_periods: frozenset[str] = frozenset()) -> None:
        """Build the catalogue and index. Corrupt shards are moved aside and reported, never fatal.

        Every shard's header and length are checked; shards of ``recent_periods`` (where
        writes happen) or all of them with ``verify_all`` are fully checksummed.
        """
        gc_was_on = gc.isenabled()
        gc.disable()  # millions of small containers, none cyclic: the collector would only rescan them
        try:
            self._load(verify_all, recent_periods)
            self._replay()
        finally:
            if gc_was_on:
                gc.enable()

    def _load(self, verify_all: bool, recent_periods: frozenset[str]) -> None:
        for name in self.shards.scan():
            path = self.shards.root / name.filename
            full = verify_all or name.period in recent_periods
            try:
                if full:
                    raw = path.read_bytes()
                    envelope.verify(raw)
                    shard_digest = envelope.read_header(raw)[0]
                else:
                    with open(path, "rb") as f:
                        head = f.read(envelope.HEADER_LEN)
                        size = f.seek(0, 2)
                    shard_digest, length = envelope.read_header(head)
                    if size != envelope.file_size_for(length):
                        raise envelope.CorruptFileError(f"size {size} != {envelope.file_size_for(length)}")
                cols = read_sidecar(path, shard_digest)
                if cols is None:
                    st = ShardStorage(str(path))
                    tables = st.read() or {}
                    cols = sidecar_columns(name.kind, tables.get(name.kind, {}), st.offsets.get(name.kind, {}))
                    write_sidecar(path, shard_digest, cols)
            except envelope.CorruptFileError as exc:
                self._corrupt(path, str(exc))
                continue
            no = self.shards.register(name, len(cols["keys"]))
            self.index.add_columns(name.kind, no, cols)
            if full:
                self.shards.mark_verified(no)
            if len(cols["keys"]) >= self.shards.cap:
                self._sidecar_written.add(no)

    def _replay(self) -> None:
        """Apply what the journal holds (acknowledged, maybe not yet in the shards), then checkpoint."""
        entries, torn = self.journal.open()
        if torn:
            log.warning("journal ends in a record that was never completed (cut off by a crash); it is ignored")
        if not entries:
            self.journal.reset()
            return
        self._apply(entries, indexed=True)
        self.commit()
        log.info("journal replayed: %d document changes written to their shards", len(entries))

    def _apply(self, entries: list[Entry], *, indexed: bool) -> None:
        """Set or delete documents by shard and doc id (idempotent). ``indexed``: keep the index in step."""
        for filename, doc_id, doc in entries:
            name = ShardName.parse(filename)
            if name is None:
                continue
            no = self.shards.number(name)
            if no is None:
                no = self.shards.register(name, 0)
            try:
                table = self.shards.table(no)
                old = table.get(doc_id=doc_id)
            except envelope.CorruptFileError as exc:
                self._drop_corrupt_shard(no, str(exc))
                no = self.shards.register(name, 0)  # the journal still holds these documents: keep them
                table, old = self.shards.table(no), None
            if old is not None:
                table.remove(doc_ids=[doc_id])
                self.shards.adjust_count(no, -1)
                if indexed:
                    self.index.remove(name.kind, codec.index_entry(name.kind, doc_id, old))
            if doc is not None:
                table.insert(Document(doc, doc_id=doc_id))
                self.shards.adjust_count(no, 1)
                if indexed:
                    self.index.add(name.kind, no, codec.index_entry(name.kind, doc_id, doc))

    @staticmethod
    def _entries(kind: str, raw_table: dict[str, Any]) -> list[list[Any]]:
        return [codec.index_entry(kind, int(doc_id), doc) for doc_id, doc in raw_table.items()]

    def _corrupt(self, path: Path, why: str) -> None:
        aside = self.shards.move_aside(path)
        log.error("data file %s is corrupt (%s); moved aside to %s, its records are not loaded", path.name, why, aside.name)
        self._report(Alarm(AlarmKind.CORRUPT_SHARD, path.name, f"corrupt ({why}); moved aside to {aside.name}", time.time()))

    def _drop_corrupt_shard(self, no: int, why: str) -> None:
        """A shard failed its check when loaded after start-up: unindex it and move it aside."""
        path = self.shards.path(no)
        kind = self.shards.name(no).kind
        for key, loc in list(self.index.keys(kind).items()):
            if unpack(loc)[0] == no:
                self.index.remove(kind, [0, key, 0, None, [], False])
        self.shards.forget(no)
        self._corrupt(path, why)

    # ---- commit ----
    def begin(self) -> None:
        self.index.begin()

    def commit_journaled(self) -> None:
        """The group commit: one journal record with every touched document, one fdatasync."""
        entries: list[Entry] = []
        for no, ids in self._touched.items():
            name = self.shards.name(no)
            raw_table = (self.shards.storage(no).read() or {}).get(name.kind, {})
            entries.extend([name.filename, i, raw_table.get(str(i))] for i in sorted(ids))
        if entries:
            try:
                self.journal.append(entries)
            except Exception:  # OSError (disk full, I/O error) or a bug: nothing of this batch is kept
                self.rollback()
                raise
        self._touched.clear()
        self.index.commit()

    def checkpoint_due(self) -> bool:
        return self.journal.size > JOURNAL_MAX_BYTES or len(self.shards.dirty()) > DIRTY_MAX_SHARDS

    def checkpoint(self) -> bool:
        """Rewrite the shards changed since the last checkpoint, then empty the journal. Only
        between batches. A failure is logged and retried later: the journal still holds the data."""
        if not self.journal.has_pending and not self.shards.dirty():
            return True
        try:
            self._flush_dirty()
            self.journal.reset()
        except OSError as exc:
            log.error("checkpoint failed (%s); the journal keeps the changes and it will be retried", exc)
            return False
        self.checkpoints += 1
        return True

    def require_checkpoint(self) -> None:
        """Checkpoint, raising OSError when it fails (before work that needs an empty journal)."""
        if not self.checkpoint():
            raise OSError("checkpoint failed; see the log")

    def commit(self) -> None:
        """Direct commit: rewrite every dirty shard now (journaled changes included)."""
        try:
            self._flush_dirty()
        except Exception:  # OSError (disk full, I/O error) or a bug: nothing of this batch is kept
            self.rollback()
            raise
        self._touched.clear()
        self.index.commit()
        try:
            self.journal.reset()
        except OSError as exc:  # replaying it at the next start is harmless (idempotent)
            log.error("could not empty the journal after a commit: %s", exc)

    def _flush_dirty(self) -> None:
        digests = self.shards.flush(self.shards.dirty())
        for no, d in digests.items():
            self._relocate(no)
            self._stale_sidecars[no] = d
            if self.shards.count(no) >= self.shards.cap and no not in self._sidecar_written:
                self.write_sidecar(no)  # a full shard rarely changes again: index it once now
                self._sidecar_written.add(no)
        self.shards.trim()  # shards kept open while dirty may close now

    def _relocate(self, no: int) -> None:
        """Record every document's new byte span after a rewrite of shard ``no``."""
        st = self.shards.open_storage(no)
        kind = self.shards.name(no).kind
        if st is None:
            return
        raw_table = (st.read() or {}).get(kind, {})
        offsets = st.offsets.get(kind, {})
        for doc_id, doc in raw_table.items():
            off, ln, crc = offsets.get(doc_id, (0, 0, 0))
            self.index.relocate(kind, doc["_key"], pack(no, int(doc_id), off, ln, crc))

    def write_sidecar(self, no: int) -> None:
        """Sidecars of shards still filling are written at close, or rebuilt at the next start."""
        d = self._stale_sidecars.pop(no, None)
        st = self.shards.open_storage(no)
        if d is not None and st is not None:
            kind = self.shards.name(no).kind
            raw_table = (st.read() or {}).get(kind, {})
            write_sidecar(self.shards.path(no), d, sidecar_columns(kind, raw_table, st.offsets.get(kind, {})))

    def write_sidecars(self) -> None:
        for no in list(self._stale_sidecars):
            self.write_sidecar(no)

    def rollback(self) -> None:
        """Forget the open batch. Journaled changes not yet in the shards are applied again."""
        dirty = self.shards.dirty()
        self.shards.discard(dirty)
        self.index.rollback()
        self._touched.clear()
        self._apply(self.journal.pending(), indexed=False)
        for no in dirty:
            path = self.shards.path(no)
            if path.exists() or path.name in self.journal.pending_shards:
                self.shards.register(self.shards.name(no), len(self.shards.table(no)))
            else:
                self.shards.forget(no)

    # ---- documents ----
    def _doc(self, loc: int) -> tuple[int, Any, dict[str, Any] | None]:
        no, doc_id = unpack(loc)
        try:
            table = self.shards.table(no)
            doc = table.get(doc_id=doc_id)
        except envelope.CorruptFileError as exc:
            self._drop_corrupt_shard(no, str(exc))
            return no, None, None
        return no, table, doc

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        loc = self.index.loc(kind, key)
        if loc is None:
            return None
        no, _ = unpack(loc)
        off, ln, crc = span(loc)
        if ln and not self.shards.is_open(no):  # cold shard: read just this document
            try:
                doc = self.shards.read_span(no, off, ln, crc)
            except envelope.CorruptFileError as exc:
                self._drop_corrupt_shard(no, str(exc))
                return None
            except (OSError, ValueError):
                doc = None  # a stale span: fall back to the parsed shard
            if isinstance(doc, dict) and doc.get("_key") == key:
                return doc
        doc = self._doc(loc)[2]
        return None if doc is None else copy.deepcopy(dict(doc))  # callers may mutate; the shard must not change

    def upsert(self, kind: str, key: str, body: dict[str, Any], now: float) -> str:
        """Insert or replace the document ``key`` of ``kind``; returns its msg id (minted on insert)."""
        loc = self.index.loc(kind, key)
        old = None
        if loc is not None:
            no, table, old = self._doc(loc)
        if old is not None:
            doc = dict(body)
            doc.update(_key=key, _msg_id=old["_msg_id"], _at=old["_at"], _rev=old.get("_rev", 0) + 1)
            doc["_sync"] = {"state": SyncState.PENDING.value, "attempts": 0, "next_at": 0.0}
            doc_id = unpack(loc)[1]
            table.remove(doc_ids=[doc_id])  # replace, not merge: fields dropped by the caller go
            table.insert(Document(doc, doc_id=doc_id))
            self._touched.setdefault(no, set()).add(doc_id)
            self.index.remove(kind, codec.index_entry(kind, doc_id, old))
            self.index.add(kind, no, codec.index_entry(kind, doc_id, doc))
            return doc["_msg_id"]
        at = codec.doc_time(kind, body, now)
        doc = dict(body)
        doc.update(_key=key, _msg_id=new_msg_id(self.branch, kind, now), _at=at, _rev=0)
        doc["_sync"] = {"state": SyncState.PENDING.value, "attempts": 0, "next_at": 0.0}
        no = self.shards.target(kind, at)
        doc_id = self.shards.table(no).insert(doc)
        self.shards.adjust_count(no, 1)
        self._touched.setdefault(no, set()).add(doc_id)
        self.index.add(kind, no, codec.index_entry(kind, doc_id, doc))
        return doc["_msg_id"]

    def set_fields(self, kind: str, key: str, fields: dict[str, Any]) -> bool:
        """Change store fields (e.g. ``_sync``) without bumping the revision."""
        loc = self.index.loc(kind, key)
        if loc is None:
            return False
        no, table, old = self._doc(loc)
        if old is None:
            return False
        doc_id = unpack(loc)[1]
        table.update(fields, doc_ids=[doc_id])
        self._touched.setdefault(no, set()).add(doc_id)
        self.shards.storage(no).invalidate(self.shards.name(no).kind, doc_id)
        self.index.remove(kind, codec.index_entry(kind, doc_id, old))
        self.index.add(kind, no, codec.index_entry(kind, doc_id, {**old, **fields}))
        return True

    def remove(self, kind: str, key: str) -> bool:
        loc = self.index.loc(kind, key)
        if loc is None:
            return False
        no, table, old = self._doc(loc)
        if old is None:
            return False
        doc_id = unpack(loc)[1]
        table.remove(doc_ids=[doc_id])
        self.shards.adjust_count(no, -1)
        self._touched.setdefault(no, set()).add(doc_id)
        self.index.remove(kind, codec.index_entry(kind, doc_id, old))
        return True

    def drop_shard(self, no: int) -> int:
        """Delete a whole shard file and unindex its documents; returns how many were dropped.
        Only after a checkpoint: a journal entry for it would bring the shard back at replay."""
        if self.shards.name(no).filename in self.journal.pending_shards:
            raise RuntimeError("drop_shard with journaled changes to that shard; checkpoint first")
        kind = self.shards.name(no).kind
        path = self.shards.path(no)
        try:
            raw_table = self.shards.table(no)._read_table()
            entries = self._entries(kind, raw_table)
        except envelope.CorruptFileError:
            entries = [[0, key, 0, None, [], False] for key, loc in self.index.keys(kind).items() if unpack(loc)[0] == no]
        with self.index.untracked():  # the file is gone whatever happens to the commit
            for entry in entries:
                self.index.remove(kind, entry)
        self.shards.delete_file(no)
        return len(entries)

    def docs(
        self, kind: str, newest_first: bool = False, periods: tuple[str, str] | None = None
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """(shard_no, doc) for every document of a kind (within ``periods``, inclusive), shard by shard."""
        nos = self.shards.live(kind)
        if periods is not None:
            nos = [no for no in nos if periods[0] <= self.shards.name(no).period <= periods[1]]
        for no in reversed(nos) if newest_first else nos:
            try:
                table = self.shards.table(no)
                docs = list(table.all())
            except envelope.CorruptFileError as exc:
                self._drop_corrupt_shard(no, str(exc))
                continue
            for doc in docs:
                yield no, doc

    def shard_of(self, kind: str, key: str) -> int | None:
        loc = self.index.loc(kind, key)
        return None if loc is None else unpack(loc)[0]

