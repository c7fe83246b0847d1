"""The write-ahead journal: the commit point of every group commit.

A commit appends one record (the new state of every document it touched) to
``<data>/journal.log`` and fdatasyncs it: one flush of an existing file, no temp file,
no rename, no folder fsync. The shards themselves are rewritten later, in batches
(``Engine.checkpoint``); once they are durable the journal is truncated. At start the
records left in the journal are applied again to the shards. Applying a record twice
gives the same result (it sets or deletes documents by shard and doc id), so a crash
between a checkpoint and the truncation is harmless.

Record layout (one line each)::

    <body length, 10 digits> <BLAKE2b-128 of body, 32 hex> <body>\\n

``body`` is the compact JSON list of ``[shard file name, doc id, document or null]``.
A record is acknowledged only after its fdatasync returned, so a torn or missing tail
record was never acknowledged; reading stops at the first record that fails its check.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from appliance.storage import envelope
from appliance.storage.atomic import fsync_dir

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.log"
_HEAD_LEN = 10 + 1 + 32 + 1  # "<len> <digest> "

Entry = list[Any]  # [shard file name, doc id, document dict or None (deleted)]


def encode_record(entries: list[Entry]) -> bytes:
    body = envelope.dumps(entries)
    return b"%010d %s %s\n" % (len(body), envelope.digest(body).encode(), body)


def decode_records(raw: bytes) -> tuple[list[list[Entry]], int]:
    """The intact records at the start of ``raw`` and the byte count they span."""
    records: list[list[Entry]] = []
    pos = 0
    while pos + _HEAD_LEN <= len(raw):
        head = raw[pos : pos + _HEAD_LEN]
        length, hexdigest = head[:10], head[11:43]
        if not length.isdigit() or head[10:11] != b" " or head[43:44] != b" ":
            break
        end = pos + _HEAD_LEN + int(length)
        if end + 1 > len(raw) or raw[end : end + 1] != b"\n":
            break
        body = raw[pos + _HEAD_LEN : end]
        if envelope.digest(body).encode() != hexdigest:
            break
        try:
            entries = json.loads(body)
        except ValueError:
            break
        records.append(entries)
        pos = end + 1
    return records, pos


class Journal:
    """Append-only, fdatasync'd. Owned by the store's writer thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self.size = 0
        # bodies of the records since the last reset, kept as bytes: the documents they were made
        # from may change in place afterwards, the bytes are what the disk holds
        self._bodies: list[bytes] = []
        self.pending_shards: set[str] = set()  # shard files named by those records
        self._tail_dirty = False  # a failed append could not be cut back yet

    @property
    def has_pending(self) -> bool:
        return bool(self._bodies)

    def pending(self) -> list[Entry]:
        """Entries appended since the last reset (acknowledged, maybe not yet in the shards), in order."""
        return [e for body in self._bodies for e in json.loads(body)]

    def open(self) -> tuple[list[Entry], bool]:
        """Open (creating) the journal; returns the entries of its intact records and whether
        a damaged tail (a record that was never acknowledged) was cut off."""
        created = not self.path.exists()
        raw = b"" if created else self.path.read_bytes()
        records, good = decode_records(raw)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if created:
            os.fsync(self._fd)
            fsync_dir(self.path.parent)  # the file's name must survive a power cut before it holds acks
        elif good < len(raw):  # later appends must follow the last intact record
            os.ftruncate(self._fd, good)
            os.fsync(self._fd)
        self.size = good
        self._bodies = [envelope.dumps(rec) for rec in records]
        self.pending_shards = {e[0] for rec in records for e in rec}
        return [e for rec in records for e in rec], good < len(raw)

    def append(self, entries: list[Entry]) -> None:
        """Write one record and wait for it to be on disk. On failure the file is cut back."""
        assert self._fd is not None, "journal not open"
        if self._tail_dirty:
            os.ftruncate(self._fd, self.size)
            self._tail_dirty = False
        body = envelope.dumps(entries)
        data = b"%010d %s %s\n" % (len(body), envelope.digest(body).encode(), body)
        try:
            os.write(self._fd, data)
            os.fdatasync(self._fd)
        except OSError:
            try:
                os.ftruncate(self._fd, self.size)
            except OSError as exc:  # the disk is failing; retried before the next append
                self._tail_dirty = True
                log.error("could not cut back the journal after a failed write: %s", exc)
            raise
        self.size += len(data)
        self._bodies.append(body)
        self.pending_shards.update(e[0] for e in entries)

    def reset(self) -> None:
        """Empty the journal: every entry is durable in the shards."""
        self._bodies = []
        self.pending_shards = set()
        if self._fd is None or (self.size == 0 and not self._tail_dirty):
            return
        os.ftruncate(self._fd, 0)
        self.size = 0
        self._tail_dirty = False
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
