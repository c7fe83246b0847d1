"""The in-memory indexes, rebuilt at start from per-shard sidecars, with an undo log per commit.

Why rebuild instead of journaling the index: the shards (plus the document journal, which
is applied to them at start, see ``journal.py``) are the only source of truth. Each shard may have
a sidecar (``<shard>.idx``) holding the index columns of its documents and the digest of the
shard body they were computed from. Sidecars are written without fsync, when a shard fills
up and at close; at start a sidecar whose digest differs from its shard's header (crash,
lost or torn sidecar) is ignored and the shard parsed instead. So the indexes can never
disagree with the acknowledged data, and start-up mostly reads headers and small sidecars.

A location packs shard number, TinyDB doc id, the document's byte span in the shard file
and the CRC-32 of those bytes into one int, so a point read of a cold shard reads and checks
only that span. Memory: roughly 150 bytes per document (1M documents ~ 150-250 MB with the
customer timeline).
"""
from __future__ import annotations

from typing import Any

from appliance.storage import codec

_ID_BITS, _OFF_BITS, _LEN_BITS, _CRC_BITS = 20, 24, 20, 32
_SPAN_BITS = _OFF_BITS + _LEN_BITS + _CRC_BITS
_MISSING = object()


def pack(shard_no: int, doc_id: int, offset: int = 0, length: int = 0, crc: int = 0) -> int:
    """``length`` 0 means "span unknown": read through the parsed shard."""
    if offset >= 1 << _OFF_BITS or length >= 1 << _LEN_BITS:
        offset = length = crc = 0
    return (((((shard_no << _ID_BITS | doc_id) << _OFF_BITS | offset) << _LEN_BITS) | length) << _CRC_BITS) | crc


def unpack(loc: int) -> tuple[int, int]:
    """(shard number, doc id)."""
    head = loc >> _SPAN_BITS
    return head >> _ID_BITS, head & ((1 << _ID_BITS) - 1)


def span(loc: int) -> tuple[int, int, int]:
    """(file offset, length, CRC-32) of the document's JSON; length 0 when unknown."""
    return ((loc >> (_LEN_BITS + _CRC_BITS)) & ((1 << _OFF_BITS) - 1), (loc >> _CRC_BITS) & ((1 << _LEN_BITS) - 1),
            loc & ((1 << _CRC_BITS) - 1))


def sidecar_columns(kind: str, raw_table: dict[str, Any], offsets: dict[str, tuple[int, int, int]]) -> dict[str, Any]:
    """A shard's index columns (the sidecar content); ``offsets``: doc id -> (offset, length, crc)."""
    cols: dict[str, Any] = {
        "ids": [], "keys": [], "at": [], "cust": [], "terms": [], "off": [], "len": [], "crc": [], "pend": []}
    for i, (doc_id, doc) in enumerate(raw_table.items()):
        did, key, at, cust, terms, pending = codec.index_entry(kind, int(doc_id), doc)
        off, ln, crc = offsets.get(doc_id, (0, 0, 0))
        cols["ids"].append(did)
        cols["keys"].append(key)
        cols["at"].append(at)
        cols["cust"].append(cust)
        cols["terms"].extend([i, t] for t in terms)
        cols["off"].append(off)
        cols["len"].append(ln)
        cols["crc"].append(crc)
        cols["pend"].append(1 if pending else 0)
    return cols


class Index:
    """Owned by the writer thread. ``begin``/``commit``/``rollback`` bracket each group commit."""

    def __init__(self) -> None:
        self._primary: dict[str, dict[str, int]] = {}
        self._terms: dict[str, tuple[str, str]] = {}
        # kind -> customer id -> key -> at (per kind, so no (kind, key) tuple per document)
        self._customer: dict[str, dict[str, dict[str, float]]] = {}
        self._pending: dict[str, dict[str, float]] = {}  # kind -> key -> at, for the sync outbox
        self._undo: list[tuple[Any, ...]] | None = None

    # ---- transactions ----
    def begin(self) -> None:
        self._undo = []

    def commit(self) -> None:
        self._undo = None

    def untracked(self) -> "_Untracked":
        """Changes made inside are not undone by ``rollback`` (for files already deleted)."""
        return _Untracked(self)

    def rollback(self) -> None:
        undo, self._undo = self._undo or [], None
        for item in reversed(undo):
            what = item[0]
            if what == "p":
                _, kind, key, loc = item
                if loc is _MISSING:
                    self._primary[kind].pop(key, None)
                else:
                    self._primary.setdefault(kind, {})[key] = loc
            elif what == "q":
                _, kind, key, old = item
                if old is _MISSING:
                    self._pending.get(kind, {}).pop(key, None)
                else:
                    self._pending.setdefault(kind, {})[key] = old
            elif what == "t":
                _, term, old = item
                if old is _MISSING:
                    self._terms.pop(term, None)
                else:
                    self._terms[term] = old
            else:
                _, kind, cust, key, old = item
                refs = self._customer.setdefault(kind, {}).setdefault(cust, {})
                if old is _MISSING:
                    refs.pop(key, None)
                else:
                    refs[key] = old

    # ---- updates ----
    def add(self, kind: str, shard_no: int, entry: list[Any], offset: int = 0, length: int = 0) -> None:
        doc_id, key, at, customer, terms, pending = entry
        prim = self._primary.setdefault(kind, {})
        if self._undo is not None:
            self._undo.append(("p", kind, key, prim.get(key, _MISSING)))
        prim[key] = pack(shard_no, doc_id, offset, length)
        if pending:
            pend = self._pending.setdefault(kind, {})
            if self._undo is not None:
                self._undo.append(("q", kind, key, pend.get(key, _MISSING)))
            pend[key] = at
        for term in terms:
            if self._undo is not None:
                self._undo.append(("t", term, self._terms.get(term, _MISSING)))
            self._terms[term] = (kind, key)
        if customer:
            refs = self._customer.setdefault(kind, {}).setdefault(customer, {})
            if self._undo is not None:
                self._undo.append(("c", kind, customer, key, refs.get(key, _MISSING)))
            refs[key] = at

    def add_columns(self, kind: str, shard_no: int, cols: dict[str, Any]) -> None:
        """Bulk load one shard's sidecar columns (start-up; no undo)."""
        prim = self._primary.setdefault(kind, {})
        keys = cols["keys"]
        base = shard_no << (_ID_BITS + _SPAN_BITS)
        lim_off, lim_len = 1 << _OFF_BITS, 1 << _LEN_BITS
        prim.update(zip(keys, [
            base | (i << _SPAN_BITS)
            | (((o << _LEN_BITS | n) << _CRC_BITS) | c if o < lim_off and n < lim_len else 0)
            for i, o, n, c in zip(cols["ids"], cols["off"], cols["len"], cols["crc"])
        ]))
        for i, term in cols["terms"]:
            self._terms[term] = (kind, keys[i])
        pend = self._pending.setdefault(kind, {})
        pend.update((key, at) for key, at, p in zip(keys, cols["at"], cols["pend"]) if p)
        by_cust = self._customer.setdefault(kind, {})
        for key, at, cust in zip(keys, cols["at"], cols["cust"]):
            if cust:
                refs = by_cust.get(cust)
                if refs is None:
                    refs = by_cust[cust] = {}
                refs[key] = at

    def relocate(self, kind: str, key: str, loc: int) -> None:
        """New byte span after a rewrite (post-commit, never undone)."""
        prim = self._primary.get(kind)
        if prim is not None and key in prim:
            prim[key] = loc

    def remove(self, kind: str, entry: list[Any]) -> None:
        key, customer, terms = entry[1], entry[3], entry[4]
        prim = self._primary.get(kind, {})
        if key in prim:
            if self._undo is not None:
                self._undo.append(("p", kind, key, prim[key]))
            del prim[key]
        pend = self._pending.get(kind, {})
        if key in pend:
            if self._undo is not None:
                self._undo.append(("q", kind, key, pend[key]))
            del pend[key]
        for term in terms:
            if self._terms.get(term) == (kind, key):
                if self._undo is not None:
                    self._undo.append(("t", term, self._terms[term]))
                del self._terms[term]
        if customer:
            refs = self._customer.get(kind, {}).get(customer)
            if refs is not None and key in refs:
                if self._undo is not None:
                    self._undo.append(("c", kind, customer, key, refs[key]))
                del refs[key]

    # ---- lookups ----
    def loc(self, kind: str, key: str) -> int | None:
        return self._primary.get(kind, {}).get(key)

    def term(self, term: str) -> tuple[str, str] | None:
        return self._terms.get(term)

    def customer_refs(self, customer_id: str) -> list[tuple[str, str, float]]:
        out = [(kind, key, at) for kind, by_cust in self._customer.items()
               for key, at in by_cust.get(customer_id, {}).items()]
        return sorted(out, key=lambda r: r[2])

    def pending_keys(self, kind: str) -> list[str]:
        """Keys waiting for cloud sync, oldest first."""
        pend = self._pending.get(kind, {})
        return sorted(pend, key=pend.__getitem__)

    def keys(self, kind: str) -> dict[str, int]:
        return self._primary.get(kind, {})

    def count(self, kind: str | None = None) -> int:
        if kind is not None:
            return len(self._primary.get(kind, {}))
        return sum(len(v) for v in self._primary.values())


class _Untracked:
    def __init__(self, index: Index) -> None:
        self._index = index
        self._saved: list[tuple[Any, ...]] | None = None

    def __enter__(self) -> None:
        self._saved, self._index._undo = self._index._undo, None

    def __exit__(self, *exc: object) -> None:
        self._index._undo = self._saved
