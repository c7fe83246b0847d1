"""Concatenated SMS reassembly: pure code, time passed in explicitly.

Rules (modems.md A.5): key = (sender, reference, total, IEI type); parts arrive in any
order; duplicates (same key + seq + content) are ignored; a part whose seq is already
filled with *different* content means the sender reused the reference, so the old set
is delivered as it is and a new one started; invalid headers (seq 0, seq > total,
total 0) are delivered as stand-alone messages; sets still incomplete after
``timeout_s`` are delivered with what exists, marked incomplete. Nothing is ever
dropped. UCS-2 parts are joined as bytes before decoding so a surrogate pair split
across parts survives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Hashable

from drivers.gsm.pdu import Deliver

CONCAT_TIMEOUT_S = 24 * 3600.0  # SMSCs retry parts for hours; a day is the usual product limit
MAX_OPEN_SETS = 256  # beyond this the oldest incomplete set is delivered early (bounded memory)


@dataclass(frozen=True, slots=True)
class Assembled:
    sender: str
    text: str
    timestamp: datetime
    parts: int  # total announced (1 for a plain message)
    received: tuple[int, ...]  # sequence numbers we have
    complete: bool
    raw_pdus: tuple[str, ...]  # in sequence order
    tokens: tuple[Hashable, ...]  # caller's handles (storage indices) incl. duplicates


@dataclass(slots=True)
class _Set:
    first_seen: float
    total: int
    parts: dict[int, tuple[Deliver, str]] = field(default_factory=dict)
    tokens: list[Hashable] = field(default_factory=list)


class Reassembler:
    def __init__(self, timeout_s: float = CONCAT_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._sets: dict[tuple[str, int, int, int], _Set] = {}

    def __len__(self) -> int:
        return len(self._sets)

    def add(self, msg: Deliver, raw_pdu: str, now: float, token: Hashable = None) -> list[Assembled]:
        """Add one decoded part; returns the messages that became deliverable."""
        c = msg.ud.concat
        tokens = (token,) if token is not None else ()
        if c is None or c.total == 0 or c.seq == 0 or c.seq > c.total:
            return [_single(msg, raw_pdu, tokens)]
        key = (msg.sender, c.ref, c.total, c.iei)
        out: list[Assembled] = []
        s = self._sets.get(key)
        if s is not None and c.seq in s.parts:
            if s.parts[c.seq][1].upper() == raw_pdu.upper() or s.parts[c.seq][0].ud.payload == msg.ud.payload:
                s.tokens += tokens  # duplicate: nothing new, but its storage slot goes with the set
                return out
            out.append(_assemble(self._sets.pop(key)))  # reference reused for a new message
            s = None
        if s is None:
            if len(self._sets) >= MAX_OPEN_SETS:
                oldest = min(self._sets, key=lambda k: self._sets[k].first_seen)
                out.append(_assemble(self._sets.pop(oldest)))
            s = self._sets[key] = _Set(now, c.total)
        s.parts[c.seq] = (msg, raw_pdu)
        s.tokens += tokens
        if len(s.parts) == s.total:
            out.append(_assemble(self._sets.pop(key)))
        return out

    def expire(self, now: float) -> list[Assembled]:
        """Deliver, marked incomplete, every set older than the timeout."""
        old = [k for k, s in self._sets.items() if now - s.first_seen >= self.timeout_s]
        return [_assemble(self._sets.pop(k)) for k in old]

    def next_deadline(self) -> float | None:
        return min((s.first_seen + self.timeout_s for s in self._sets.values()), default=None)


def _single(msg: Deliver, raw: str, tokens: tuple[Hashable, ...]) -> Assembled:
    return Assembled(msg.sender, msg.text, msg.timestamp, 1, (1,), True, (raw,), tokens)


def _assemble(s: _Set) -> Assembled:
    seqs = sorted(s.parts)
    msgs = [s.parts[i][0] for i in seqs]
    if all(m.ud.encoding == "ucs2" for m in msgs):
        text = b"".join(m.ud.payload for m in msgs).decode("utf-16-be", errors="replace")
    else:
        text = "".join(m.text for m in msgs)
    ts = s.parts[1][0].timestamp if 1 in s.parts else min(m.timestamp for m in msgs)
    return Assembled(
        sender=msgs[0].sender,
        text=text,
        timestamp=ts,
        parts=s.total,
        received=tuple(seqs),
        complete=len(seqs) == s.total,
        raw_pdus=tuple(s.parts[i][1] for i in seqs),
        tokens=tuple(s.tokens),
    )
