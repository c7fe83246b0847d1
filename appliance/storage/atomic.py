"""Atomic file replacement and the TinyDB storage that uses it.

A write goes to ``<name>.tmp``, is fsync'd, renamed over the target, and the folder is
fsync'd, so after a power cut the file is either the old or the new version. The
storage keeps the last written tables in memory (it is the file's only writer) and
can defer writes so a group commit rewrites each shard once.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from appliance.storage import envelope

from appliance.durable_file import TMP_SUFFIX, fsync_dir  # noqa: F401  (fsync_dir: used by storage modules)


def write_atomic(path: Path, data: bytes, *, durable: bool = True, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``data``. ``durable=False`` skips the fsyncs (for rebuildable sidecars)."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable and sync_dir:
        fsync_dir(path.parent)


def serialise(
    tables: dict[str, Any], frags: dict[str, dict[str, tuple[Any, bytes, int]]]
) -> tuple[bytes, dict[str, dict[str, tuple[int, int, int]]]]:
    """The JSON body of ``tables`` and each document's (file offset, length, CRC-32 of its bytes).

    ``frags`` caches each document's bytes while the document object stays the same, so a
    commit serialises only what it touched. The bytes equal ``envelope.dumps`` of the tables.
    """
    out = bytearray(b"{")
    offsets: dict[str, dict[str, tuple[int, int, int]]] = {}
    base = envelope.HEADER_LEN
    for t, (name, table) in enumerate(tables.items()):
        cache = frags.setdefault(name, {})
        where = offsets[name] = {}
        out += b"%s%s:{" % (b"," if t else b"", envelope.dumps(name))
        for i, (doc_id, doc) in enumerate(table.items()):
            hit = cache.get(doc_id)
            if hit is None or hit[0] is not doc:
                data = envelope.dumps(doc)
                hit = (doc, data, zlib.crc32(data))
                cache[doc_id] = hit
            out += b'%s"%s":' % (b"," if i else b"", doc_id.encode())
            where[doc_id] = (base + len(out), len(hit[1]), hit[2])
            out += hit[1]
        for gone in cache.keys() - table.keys():
            del cache[gone]
        out += b"}"
    out += b"}"
    return bytes(out), offsets


class ShardStorage(Storage):
    """TinyDB storage over one enveloped file; only the store's writer thread touches it.

    ``read`` returns the cached tables (TinyDB replaces a table's dict on every update,
    so the cache holds the current state). ``write`` only records the new tables;
    ``flush`` persists them atomically. If ``flush`` fails, ``discard`` forgets the
    unsaved state so the next read comes from disk again.
    """

    def __init__(self, path: str, **_: Any) -> None:
        self.path = Path(path)
        self._tables: dict[str, Any] | None = None
        self.dirty = False
        self.disk_digest: str | None = None  # digest of the body last read or written
        # serialised documents by table and doc id, reused while the document object is unchanged:
        # a commit serialises only the documents it touched (TinyDB keeps untouched dicts as they are)
        self._frags: dict[str, dict[str, tuple[Any, bytes, int]]] = {}
        # where each document sits in the file after the last flush: table -> doc id -> (offset, length, crc)
        self.offsets: dict[str, dict[str, tuple[int, int, int]]] = {}

    def read(self) -> dict[str, Any] | None:
        if self._tables is None:
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                return None
            self._tables = envelope.decode(raw)  # raises CorruptFileError
            self.disk_digest = envelope.read_header(raw)[0]
            body, offsets = serialise(self._tables, self._frags)  # primes the cache, finds offsets
            self.offsets = offsets if body == raw[envelope.HEADER_LEN : -1] else {}
        return self._tables

    def write(self, data: dict[str, Any]) -> None:
        self._tables = data
        self.dirty = True

    def invalidate(self, table: str, doc_id: int) -> None:
        """A document was changed in place (TinyDB ``update``): serialise it again."""
        self._frags.get(table, {}).pop(str(doc_id), None)

    def _body(self) -> bytes:
        body, self.offsets = serialise(self._tables or {}, self._frags)
        return body

    def flush(self, *, sync_dir: bool) -> None:
        if not self.dirty or self._tables is None:
            return
        raw = envelope.wrap(self._body())
        write_atomic(self.path, raw, sync_dir=sync_dir)
        self.disk_digest = envelope.read_header(raw)[0]
        self.dirty = False

    def discard(self) -> None:
        self._tables = None
        self._frags.clear()
        self.offsets = {}
        self.dirty = False

    def close(self) -> None:
        pass
