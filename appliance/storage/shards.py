"""Shard files: naming, the catalogue of shards per kind and period, and an LRU of open TinyDBs.

A shard is ``<data>/shards/<kind>-<YYYY>-<MM>-<seq>.json`` holding one TinyDB table named
after the kind, in the checksummed envelope. New documents go to the newest shard of
their kind and month until it holds ``cap`` documents, so a write rewrites at most one
bounded file. Only the store's writer thread uses this module.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tinydb import TinyDB
from tinydb.table import Table

from appliance.storage import envelope
from appliance.storage.atomic import TMP_SUFFIX, ShardStorage, fsync_dir, write_atomic

log = logging.getLogger(__name__)

SHARD_CAP = 100  # docs per shard: a rewrite stays ~80 KB and a cold shard parses in ~1 ms
OPEN_SHARDS = 48  # parsed shards kept in memory (~1 MB each as Python objects)
SIDECAR_SUFFIX = ".idx"
SIDECAR_COLUMNS = frozenset({"ids", "keys", "at", "cust", "terms", "off", "len", "crc", "pend"})
_NAME = re.compile(r"^(?P<kind>[a-z][a-z_]*)-(?P<period>\d{4}-\d{2})-(?P<seq>\d{3,})\.json$")


@dataclass(frozen=True, slots=True, order=True)
class ShardName:
    kind: str
    period: str  # "YYYY-MM" (UTC)
    seq: int

    @property
    def filename(self) -> str:
        return f"{self.kind}-{self.period}-{self.seq:03d}.json"

    @classmethod
    def parse(cls, filename: str) -> "ShardName | None":
        m = _NAME.match(filename)
        return cls(m["kind"], m["period"], int(m["seq"])) if m else None


def period_of(at: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(at))


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(path: Path, shard_digest: str) -> dict[str, Any] | None:
    """The sidecar's index columns if it matches ``shard_digest``; None when missing, stale or torn."""
    try:
        data = envelope.decode(sidecar_path(path).read_bytes())
    except (OSError, envelope.CorruptFileError):
        return None
    if not isinstance(data, dict) or data.get("shard") != shard_digest or not SIDECAR_COLUMNS <= data.keys():
        return None  # stale, or written by an older layout: rebuilt from the shard
    return data


def write_sidecar(path: Path, shard_digest: str, cols: dict[str, Any]) -> None:
    # no fsync: a lost or torn sidecar is detected by its digest and rebuilt from the shard
    write_atomic(sidecar_path(path), envelope.encode({**cols, "shard": shard_digest}), durable=False)


class ShardSet:
    def __init__(self, root: Path, cap: int = SHARD_CAP, open_limit: int = OPEN_SHARDS) -> None:
        self.root = root
        self.cap = cap
        self._open_limit = open_limit
        self._names: list[ShardName] = []  # shard_no -> name (numbers are never reused)
        self._numbers: dict[ShardName, int] = {}
        self._counts: dict[int, int] = {}
        self._latest: dict[tuple[str, str], ShardName] = {}
        self._open: OrderedDict[int, TinyDB] = OrderedDict()
        self._live: dict[str | None, list[int]] = {}
        self._verified: set[int] = set()  # shards whose current file passed its checksum (or we wrote)
        self.on_evict: Callable[[int], None] | None = None
        self.span_reads = 0  # statistics: documents read without parsing their shard

    # ---- catalogue ----
    def scan(self) -> list[ShardName]:
        """Shard names on disk in order; removes leftover temp files from an interrupted write."""
        self.root.mkdir(parents=True, exist_ok=True)
        names = []
        for entry in os.scandir(self.root):
            if entry.name.endswith(TMP_SUFFIX):
                os.unlink(entry.path)
                continue
            name = ShardName.parse(entry.name)
            if name is not None:
                names.append(name)
        return sorted(names)

    def number(self, name: ShardName) -> int | None:
        return self._numbers.get(name)

    def register(self, name: ShardName, count: int) -> int:
        no = self._numbers.get(name)
        if no is None:
            self._live.clear()
            no = len(self._names)
            self._names.append(name)
            self._numbers[name] = no
        self._counts[no] = count
        latest = self._latest.get((name.kind, name.period))
        if latest is None or latest.seq < name.seq:
            self._latest[(name.kind, name.period)] = name
        return no

    def mark_verified(self, no: int) -> None:
        self._verified.add(no)

    def read_span(self, no: int, offset: int, length: int, crc: int = 0) -> Any:
        """One document by its byte span, without parsing the shard. With the span's CRC-32 (from
        the index) only the span is read and checked; a mismatch (damaged or stale span) raises
        ValueError, and the caller reads through the parsed, checksummed shard instead. Without
        it the first read of a shard checksums the whole file (raises CorruptFileError)."""
        path = self.path(no)
        self.span_reads += 1
        if crc:
            fd = os.open(path, os.O_RDONLY)
            try:
                raw = os.pread(fd, length, offset)
            finally:
                os.close(fd)
            if zlib.crc32(raw) != crc:
                raise ValueError("span does not match its checksum")
            return json.loads(raw)
        if no not in self._verified:
            raw = path.read_bytes()
            envelope.verify(raw)
            self._verified.add(no)
            return json.loads(raw[offset : offset + length])
        with open(path, "rb") as f:
            f.seek(offset)
            return json.loads(f.read(length))

    def forget(self, no: int) -> None:
        self._live.clear()
        self._verified.discard(no)
        name = self._names[no]
        self._numbers.pop(name, None)
        self._counts.pop(no, None)
        db = self._open.pop(no, None)
        if db is not None:
            db.storage.discard()
        if self._latest.get((name.kind, name.period)) == name:
            rest = [n for n in self._numbers if (n.kind, n.period) == (name.kind, name.period)]
            if rest:
                self._latest[(name.kind, name.period)] = max(rest)
            else:
                del self._latest[(name.kind, name.period)]

    def name(self, no: int) -> ShardName:
        return self._names[no]

    def path(self, no: int) -> Path:
        return self.root / self._names[no].filename

    def live(self, kind: str | None = None) -> list[int]:
        """Shard numbers on disk, oldest period/seq first (cached until a shard comes or goes)."""
        nos = self._live.get(kind)
        if nos is None:
            nos = [no for name, no in self._numbers.items() if kind is None or name.kind == kind]
            nos.sort(key=lambda no: self._names[no])
            self._live[kind] = nos
        return list(nos)

    def target(self, kind: str, at: float) -> int:
        """The shard a new document of this kind and time goes to (a new one when the last is full)."""
        period = period_of(at)
        latest = self._latest.get((kind, period))
        if latest is not None:
            no = self._numbers[latest]
            if self._counts.get(no, 0) < self.cap:
                return no
            return self.register(ShardName(kind, period, latest.seq + 1), 0)
        return self.register(ShardName(kind, period, 0), 0)

    def count(self, no: int) -> int:
        return self._counts.get(no, 0)

    def is_open(self, no: int) -> bool:
        return no in self._open

    def adjust_count(self, no: int, delta: int) -> None:
        self._counts[no] = self._counts.get(no, 0) + delta

    # ---- open shards ----
    def table(self, no: int) -> Table:
        db = self._open.get(no)
        if db is None:
            db = TinyDB(str(self.path(no)), storage=ShardStorage)
            self._open[no] = db
            self._evict()
        else:
            self._open.move_to_end(no)
        return db.table(self._names[no].kind, cache_size=0)

    def trim(self) -> None:
        """Close clean shards over the limit (kept open while they were dirty)."""
        self._evict()

    def _evict(self) -> None:
        """Close the least recently used clean shards; never a dirty one, nor the one just opened."""
        while len(self._open) > self._open_limit:
            newest = next(reversed(self._open))
            for no, db in self._open.items():
                if not db.storage.dirty and no != newest:
                    if self.on_evict is not None:
                        self.on_evict(no)  # e.g. write its stale sidecar while it is parsed
                    del self._open[no]
                    break
            else:
                return

    def dirty(self) -> list[int]:
        return [no for no, db in self._open.items() if db.storage.dirty]

    def open_storage(self, no: int) -> ShardStorage | None:
        db = self._open.get(no)
        return None if db is None else db.storage

    def storage(self, no: int) -> ShardStorage:
        self.table(no)
        return self._open[no].storage

    def flush(self, nos: list[int]) -> dict[int, str]:
        """Persist these shards (each atomically), then fsync the folder once. Returns new digests."""
        digests = {}
        for no in nos:
            st = self._open[no].storage
            st.flush(sync_dir=False)
            digests[no] = st.disk_digest
            self._verified.add(no)
        if nos:
            fsync_dir(self.root)
        return digests

    def discard(self, nos: list[int]) -> None:
        for no in nos:
            self._verified.discard(no)
            db = self._open.pop(no, None)
            if db is not None:
                db.storage.discard()

    def delete_file(self, no: int) -> None:
        path = self.path(no)
        for p in (path, sidecar_path(path)):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        self.forget(no)

    def move_aside(self, path: Path) -> Path:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
        os.replace(path, aside)
        try:
            os.unlink(sidecar_path(path))
        except FileNotFoundError:
            pass
        fsync_dir(path.parent)
        return aside
