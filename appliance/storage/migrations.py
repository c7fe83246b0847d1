"""Schema versions of the data folder, the meta file, and the migrations between versions.

History:
- v1: the pre-store layout: one stock TinyDB file ``db.json`` (JSONStorage, rewritten in
  place) with tables ``calls``, ``sms``, ``chats``, ``customers``; no msg ids, no sync state.
- v2: sharded, enveloped files under ``shards/``; every document carries ``_key``,
  ``_msg_id``, ``_sync``, ``_at``, ``_rev``; ``meta.json`` holds the version.

A migration is idempotent (it upserts by key), and ``meta.json`` is written only after it
completes, so a power cut during a migration simply reruns it at the next start.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.storage import envelope
from appliance.storage.atomic import write_atomic
from appliance.storage.engine import Engine

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
META_FILE = "meta.json"
LEGACY_V1_FILE = "db.json"
_MIGRATE_BATCH = 1000  # documents per commit while migrating: few shard rewrites, bounded memory


class SchemaTooNewError(RuntimeError):
    """The data was written by a newer Branchline; refusing to touch it."""


def read_meta(data_dir: Path) -> dict[str, Any] | None:
    try:
        raw = (data_dir / META_FILE).read_bytes()
    except FileNotFoundError:
        return None
    return envelope.decode(raw)  # a corrupt meta file is a hard error: the version is unknown


def write_meta(data_dir: Path, meta: dict[str, Any]) -> None:
    write_atomic(data_dir / META_FILE, envelope.encode(meta))


def check_version(version: int, where: str) -> None:
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"{where} has schema version {version}, but this Branchline understands up to {SCHEMA_VERSION}; "
            "upgrade the software before using it"
        )


def detect_version(data_dir: Path, report: Callable[[str], None] | None = None) -> tuple[int, dict[str, Any] | None]:
    """The folder's schema version and meta. A corrupt meta file next to v2 shards is moved
    aside (reported through ``report``) and the folder treated as v2: start-up never blocks."""
    try:
        meta = read_meta(data_dir)
    except envelope.CorruptFileError as exc:
        if not (data_dir / "shards").is_dir():
            raise
        aside = data_dir / f"{META_FILE}.corrupt-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
        os.replace(data_dir / META_FILE, aside)
        if report is not None:
            report(f"{META_FILE} is corrupt ({exc}); moved aside to {aside.name}, assuming schema v{SCHEMA_VERSION}")
        return SCHEMA_VERSION, None
    if meta is not None:
        return int(meta["schema_version"]), meta
    if (data_dir / LEGACY_V1_FILE).exists():
        return 1, None
    return SCHEMA_VERSION, None  # a fresh folder starts at the current version


def _v1_to_v2(data_dir: Path, engine: Engine) -> None:
    legacy = data_dir / LEGACY_V1_FILE
    try:
        tables = json.loads(legacy.read_text("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        aside = legacy.with_name(f"{legacy.name}.corrupt-{int(time.time())}")
        os.replace(legacy, aside)
        log.error("legacy v1 database is unreadable (%s); moved aside to %s, nothing migrated", exc, aside.name)
        return
    kinds = {"calls": "call", "sms": "sms", "chats": "chat", "customers": "customer"}
    now = time.time()
    moved = 0
    engine.begin()
    for table_name, kind in kinds.items():
        for doc_id, doc in tables.get(table_name, {}).items():
            if kind == "call":
                key = doc["call_id"]
                doc = {**doc, "offers": doc.get("offers", []), "tags": doc.get("tags", [])}
            elif kind == "customer":
                key = doc.setdefault("customer_id", f"v1-customer-{doc_id}")
            else:
                key = f"v1-{table_name}-{doc_id}"
            if engine.get(kind, key) is None:  # a rerun after a crash keeps the msg ids minted before
                engine.upsert(kind, key, doc, now)
            moved += 1
            if moved % _MIGRATE_BATCH == 0:
                engine.commit()
                engine.begin()
    engine.commit()
    os.replace(legacy, legacy.with_name(legacy.name + ".migrated-v1"))
    log.info("migrated %d documents from the v1 single-file database", moved)


MIGRATIONS: dict[int, Callable[[Path, Engine], None]] = {1: _v1_to_v2}


def migrate(data_dir: Path, engine: Engine, version: int, meta: dict[str, Any] | None, branch: str) -> dict[str, Any]:
    """Run migrations from ``version`` up to SCHEMA_VERSION and return the (written) meta."""
    check_version(version, str(data_dir))
    while version < SCHEMA_VERSION:
        log.info("migrating data folder from schema v%d to v%d", version, version + 1)
        MIGRATIONS[version](data_dir, engine)
        version += 1
    if meta is None or meta.get("schema_version") != SCHEMA_VERSION:
        meta = {
            "schema_version": SCHEMA_VERSION,
            "branch": branch,
            "created_at": (meta or {}).get("created_at", time.time()),
            # per-box secret for audit hashes: an erased customer's id cannot be brute-forced back
            "audit_salt": (meta or {}).get("audit_salt") or secrets.token_hex(16),
        }
        write_meta(data_dir, meta)
    return meta
