"""The in-memory indexes, rebuilt at start from per-shard sidecars, with an undo log per commit.

Why rebuild instead of journaling: shards are the only source of truth. Each shard has a
sidecar (``<shard>.idx``) holding the index entries of its documents and the digest of
the shard body they were computed from. Sidecars are written without fsync; at start a
sidecar whose recorded digest differs from its shard's header (crash between the two
renames, or a lost sidecar) is rebuilt from the shard. So the indexes can never disagree
with the acknowledged data, and start-up reads ~40 bytes of each shard plus small sidecars.

Memory: about 150 bytes per document (1M documents ~ 150 MB) - locations are packed ints.
"""
from __future__ import annotations

from typing import Any

LOC_BITS = 24  # doc ids per shard are far below 2**24 (shards are capped at a few hundred docs)
_MISSING = object()


def pack(shard_no: int, doc_id: int) -> int:
    return (shard_no << LOC_BITS) | doc_id


def unpack(loc: int) -> tuple[int, int]:
    return loc >> LOC_BITS, loc & ((1 << LOC_BITS) - 1)


class Index:
    """Owned by the writer thread. ``begin``/``commit``/``rollback`` bracket each group commit."""

    def __init__(self) -> None:
        self._primary: dict[str, dict[str, int]] = {}
        self._at: dict[str, dict[str, float]] = {}
        self._terms: dict[str, tuple[str, str]] = {}
        self._customer: dict[str, dict[tuple[str, str], float]] = {}
        self._undo: list[tuple[Any, ...]] | None = None

    # ---- transactions ----
    def begin(self) -> None:
        self._undo = []

    def commit(self) -> None:
        self._undo = None

    def rollback(self) -> None:
        undo, self._undo = self._undo or [], None
        for item in reversed(undo):
            what = item[0]
            if what == "p":
                _, kind, key, loc, at = item
                if loc is _MISSING:
                    self._primary[kind].pop(key, None)
                    self._at[kind].pop(key, None)
                else:
                    self._primary.setdefault(kind, {})[key] = loc
                    self._at.setdefault(kind, {})[key] = at
            elif what == "t":
                _, term, old = item
                if old is _MISSING:
                    self._terms.pop(term, None)
                else:
                    self._terms[term] = old
            else:
                _, cust, ref, old = item
                if old is _MISSING:
                    self._customer.get(cust, {}).pop(ref, None)
                else:
                    self._customer.setdefault(cust, {})[ref] = old

    def untracked(self) -> "_Untracked":
        """Changes made inside are not undone by ``rollback`` (for files already deleted)."""
        return _Untracked(self)

    # ---- updates ----
    def add(self, kind: str, shard_no: int, entry: list[Any]) -> None:
        doc_id, key, at, customer, terms = entry
        prim = self._primary.setdefault(kind, {})
        ats = self._at.setdefault(kind, {})
        if self._undo is not None:
            self._undo.append(("p", kind, key, prim.get(key, _MISSING), ats.get(key)))
        prim[key] = pack(shard_no, doc_id)
        ats[key] = at
        for term in terms:
            if self._undo is not None:
                self._undo.append(("t", term, self._terms.get(term, _MISSING)))
            self._terms[term] = (kind, key)
        if customer:
            refs = self._customer.setdefault(customer, {})
            if self._undo is not None:
                self._undo.append(("c", customer, (kind, key), refs.get((kind, key), _MISSING)))
            refs[(kind, key)] = at

    def remove(self, kind: str, entry: list[Any]) -> None:
        _, key, _, customer, terms = entry
        prim = self._primary.get(kind, {})
        if key in prim:
            ats = self._at[kind]
            if self._undo is not None:
                self._undo.append(("p", kind, key, prim[key], ats.get(key)))
            del prim[key]
            ats.pop(key, None)
        for term in terms:
            if self._terms.get(term) == (kind, key):
                if self._undo is not None:
                    self._undo.append(("t", term, self._terms[term]))
                del self._terms[term]
        if customer:
            refs = self._customer.get(customer)
            if refs is not None and (kind, key) in refs:
                if self._undo is not None:
                    self._undo.append(("c", customer, (kind, key), refs[(kind, key)]))
                del refs[(kind, key)]

    # ---- lookups ----
    def loc(self, kind: str, key: str) -> int | None:
        return self._primary.get(kind, {}).get(key)

    def term(self, term: str) -> tuple[str, str] | None:
        return self._terms.get(term)

    def customer_refs(self, customer_id: str) -> list[tuple[str, str, float]]:
        refs = self._customer.get(customer_id, {})
        return sorted(((k, key, at) for (k, key), at in refs.items()), key=lambda r: r[2])

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
