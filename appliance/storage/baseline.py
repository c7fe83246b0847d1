"""Stock single-file TinyDB (JSONStorage, no sharding), kept only as the benchmark's baseline.

It lives here because this package is the only code that may import TinyDB.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB


def measure_raw_tinydb(path: Path, docs: list[dict[str, Any]], inserts: list[dict[str, Any]],
                       lookups: list[str]) -> tuple[list[float], list[float]]:
    """Pre-load ``docs`` (one write), then time each insert and each lookup by ``call_id`` (seconds)."""
    db = TinyDB(str(path))
    try:
        db.table("calls").insert_multiple(docs)
        table = db.table("calls")
        ins = []
        for doc in inserts:
            t0 = time.perf_counter()
            table.insert(doc)
            ins.append(time.perf_counter() - t0)
        q = Query()
        look = []
        for call_id in lookups:
            t0 = time.perf_counter()
            table.clear_cache()
            hits = table.search(q.call_id == call_id)
            look.append(time.perf_counter() - t0)
            assert len(hits) == 1
        return ins, look
    finally:
        db.close()
