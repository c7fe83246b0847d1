"""Retention per kind and customer erasure. Both run on the writer thread as one commit.

Old records go by whole shard where possible (a month that ended before the cut-off is
one unlink); the boundary month loses only its old documents. Recordings go by file age.
Erasure removes a customer's records, timeline, conversations and recording files and
leaves an audit entry that holds only a keyed hash of the customer id.
"""
from __future__ import annotations

import calendar
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.storage import recordings
from appliance.storage.engine import Engine

log = logging.getLogger(__name__)

DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days to keep each kind; None keeps forever. Kinds not listed follow ``records_days``."""

    records_days: float | None = 730.0  # calls, SMS, chats, agent events: two years
    recordings_days: float | None = 90.0
    keep_forever: tuple[str, ...] = ("customer", "audit")  # customers go only by erasure
    interval_s: float = 6 * 3600.0  # how often the scheduled job runs

    def days_for(self, kind: str) -> float | None:
        return None if kind in self.keep_forever else self.records_days


@dataclass(frozen=True, slots=True)
class RetentionReport:
    records_removed: int
    shards_deleted: int
    recordings_removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ErasureReport:
    subject_hash: str  # what the audit entry holds instead of the customer id
    records_removed: int
    files_removed: int
    audit_msg_id: str


def _period_bounds(period: str) -> tuple[float, float]:
    year, month = int(period[:4]), int(period[5:7])
    start = calendar.timegm((year, month, 1, 0, 0, 0))
    end = calendar.timegm((year + (month == 12), month % 12 + 1, 1, 0, 0, 0))
    return float(start), float(end)


def apply_retention(engine: Engine, policy: RetentionPolicy, recordings_root: Path, now: float) -> RetentionReport:
    removed_recordings: list[str] = []
    if policy.recordings_days is not None:
        removed_recordings = recordings.purge(engine, recordings_root, now - policy.recordings_days * DAY_S, now)
    removed = shards = 0
    for no in engine.shards.live():
        name = engine.shards.name(no)
        days = policy.days_for(name.kind)
        if days is None:
            continue
        cutoff = now - days * DAY_S
        start, end = _period_bounds(name.period)
        if end <= cutoff:
            removed += engine.drop_shard(no)
            shards += 1
        elif start < cutoff:
            old = [d["_key"] for _, d in engine.docs(name.kind, periods=(name.period, name.period)) if d["_at"] < cutoff]
            for key in old:
                removed += engine.remove(name.kind, key)
    if removed or removed_recordings:
        log.info("retention removed %d records (%d whole shards) and %d recordings",
                 removed, shards, len(removed_recordings))
    return RetentionReport(removed, shards, tuple(removed_recordings))


def subject_hash(salt: str, customer_id: str) -> str:
    return hmac.new(bytes.fromhex(salt), customer_id.encode(), hashlib.sha256).hexdigest()[:32]


def erase_customer(engine: Engine, customer_id: str, recordings_root: Path, salt: str, now: float) -> ErasureReport:
    """Remove everything linked to the customer; files first, so a crash leaves no audio behind."""
    refs = engine.index.customer_refs(customer_id)
    files = 0
    for kind, key, _ in refs:
        if kind != "call":
            continue
        doc = engine.get(kind, key)
        path = recordings.find_recording(recordings_root, doc.get("recording_path") if doc else None)
        if path is not None:
            path.unlink(missing_ok=True)
            path.with_name(path.name + recordings.OPEN_SUFFIX).unlink(missing_ok=True)
            files += 1
    removed = sum(engine.remove(kind, key) for kind, key, _ in refs)
    from appliance.storage import codec, customers

    conversations = [codec.doc_to_conversation(d) for _, d in engine.docs("conversation") if d.get("customer_id") == customer_id]
    for conv in conversations:  # messages that arrived before the number was known to belong to the customer
        removed += sum(engine.remove(conv.channel.value, m.key) for m in customers.messages_of(engine, conv))
        removed += engine.remove("conversation", conv.conversation_id)
    removed += engine.remove("customer", customer_id)
    digest = subject_hash(salt, customer_id)
    audit = {"action": "erase_customer", "subject": digest, "records": removed, "files": files, "at": now}
    msg_id = engine.upsert("audit", f"erase-{digest}-{int(now * 1000)}", audit, now)
    log.info("customer erased on request: %d records and %d recordings removed (audit subject %s)", removed, files, digest)
    return ErasureReport(digest, removed, files, msg_id)


def next_run_delay(policy: RetentionPolicy, started: float) -> float:
    return max(1.0, policy.interval_s - (time.time() - started))
