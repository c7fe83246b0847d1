"""Storage benchmark: insert and lookup latency with 1M stored interactions, beside raw TinyDB.

    .venv/bin/python -m bench.storage_bench                 # 1,000,000 interactions (~2-3 min)
    .venv/bin/python -m bench.storage_bench --records 50000 # quick

Method (also in docs/benchmarks.md):
1. Bulk load: interactions (80 % calls, 20 % SMS over 36 months, linked to 50k customers)
   are written straight into shard files through the store's own envelope and sidecar code
   (no fsync), in the same layout the store writes. This is only to build the fixture fast.
2. ``Store.open`` on that folder (timed: start-up rebuilds the index from sidecars).
3. Latencies measured from the caller's side of the ``await`` (event loop -> writer thread ->
   journal fdatasync -> back), one operation at a time: new call insert, call update, get_call
   of a random stored call (mostly shard-cache misses), customer_by_phone,
   interactions_for_customer. The checkpoints (batched shard rewrites) that fall due during a
   series are inside these figures: the next write waits for them. Then a burst of 1,000
   concurrent saves (group commit).
4. Baseline: stock TinyDB (one JSON file, JSONStorage) pre-loaded with 10k calls; time inserts
   and lookups by call_id (Query). That is where raw TinyDB still finishes.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from appliance.records import CallOutcome, CallRecord  # noqa: E402
from appliance.storage import Store, codec, envelope  # noqa: E402
from appliance.storage.atomic import serialise, write_atomic  # noqa: E402
from appliance.storage.index import sidecar_columns  # noqa: E402
from appliance.storage.baseline import measure_raw_tinydb  # noqa: E402
from appliance.storage.ids import new_msg_id  # noqa: E402
from appliance.storage.shards import SHARD_CAP, ShardName, write_sidecar  # noqa: E402

CUSTOMERS = 50_000
MONTHS = 36


def _call(i: int, at: float, customer: int) -> CallRecord:
    return CallRecord(
        call_id=f"call-{i:08d}", line_id="gsm0", line_kind="gsm", direction="inbound",
        from_number=f"+4930{customer:07d}", from_name="Customer Name", to_number="+4930999000",
        queue="main", outcome=CallOutcome.ANSWERED, hangup_cause="normal", arrived_at=at,
        enqueued_at=at + 1, offered_at=at + 5, answered_at=at + 9, ended_at=at + 190, wrapup_ended_at=at + 220,
        wait_s=8.0, talk_s=181.0, wrapup_s=30.0, agent_id="a07", agent_name="Agent Seven", disposition="resolved",
        offers=("a07",), recording_path=f"2026/01/01/call-{i:08d}.wav", recording_s=181.0, dtmf="12",
        customer_id=f"cust-{customer:06d}", tags=("billing",),
    )


def bulk_load(data: Path, n: int, branch: str = "bench") -> dict[str, list[str]]:
    """Write ``n`` interactions and the customers as shards; returns sample keys for lookups."""
    shards = data / "shards"
    shards.mkdir(parents=True, exist_ok=True)
    now = time.time()
    rnd = random.Random(1)
    per_month = n // MONTHS + 1
    buckets: dict[tuple[str, str], list[dict]] = {}
    samples: dict[str, list[str]] = {"call": [], "customer": []}

    def flush(kind: str, period: str, docs: list[dict], seq: int) -> None:
        table = {str(j + 1): d for j, d in enumerate(docs)}
        body, offsets = serialise({kind: table}, {})
        raw = envelope.wrap(body)
        path = shards / ShardName(kind, period, seq).filename
        write_atomic(path, raw, durable=False)
        write_sidecar(path, envelope.read_header(raw)[0], sidecar_columns(kind, table, offsets[kind]))

    seqs: dict[tuple[str, str], int] = {}
    for i in range(n):
        month = MONTHS - 1 - i // per_month  # oldest first, the newest month is the current one
        at = now - month * 30.4 * 86400 - rnd.random() * 86400 * 28
        period = time.strftime("%Y-%m", time.gmtime(at))
        customer = rnd.randrange(CUSTOMERS)
        if i % 5:
            doc = codec.call_to_doc(_call(i, at, customer))
            kind, key = "call", doc["call_id"]
            if rnd.random() < 0.002:
                samples["call"].append(key)
        else:
            kind, key = "sms", f"sms-{i:08d}"
            doc = {"number": f"+4930{customer:07d}", "body": "Your appointment is confirmed for Tuesday.",
                   "direction": "out", "at": at, "customer_id": f"cust-{customer:06d}", "conversation_id": "x"}
        doc.update(_key=key, _msg_id=new_msg_id(branch, kind, at), _at=at, _rev=0,
                   _sync={"state": "ACKED", "attempts": 1, "next_at": 0.0})
        bucket = buckets.setdefault((kind, period), [])
        bucket.append(doc)
        if len(bucket) >= SHARD_CAP:
            seq = seqs.get((kind, period), 0)
            flush(kind, period, bucket, seq)
            seqs[(kind, period)] = seq + 1
            buckets[(kind, period)] = []
    for (kind, period), bucket in buckets.items():
        if bucket:
            flush(kind, period, bucket, seqs.get((kind, period), 0))
    customers = []
    for c in range(CUSTOMERS):
        at = now - 40 * 30.4 * 86400
        cid = f"cust-{c:06d}"
        doc = {"customer_id": cid, "name": f"Customer {c}", "phones": [f"+4930{c:07d}"],
               "emails": [f"c{c}@example.org"], "created_at": at, "updated_at": at, "notes": ""}
        doc.update(_key=cid, _msg_id=new_msg_id(branch, "customer", at), _at=at, _rev=0,
                   _sync={"state": "ACKED", "attempts": 1, "next_at": 0.0})
        customers.append(doc)
        if c % 997 == 0:
            samples["customer"].append(cid)
    period = time.strftime("%Y-%m", time.gmtime(now - 40 * 30.4 * 86400))
    for seq, start in enumerate(range(0, CUSTOMERS, SHARD_CAP)):
        flush("customer", period, customers[start : start + SHARD_CAP], seq)
    return samples


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] * 1000


def line(name: str, values: list[float]) -> str:
    return (f"{name:<34} n={len(values):>5}  p50 {pct(values, 50):7.2f} ms  p99 {pct(values, 99):7.2f} ms"
            f"  max {max(values) * 1000:7.2f} ms")


async def timed(coro_factory, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await coro_factory(i)
        out.append(time.perf_counter() - t0)
    return out


async def run_store(data: Path, n: int, samples: dict[str, list[str]], ops: int) -> dict[str, list[float]]:
    t0 = time.perf_counter()
    store = await Store.open(data, branch="bench")
    open_s = time.perf_counter() - t0
    count = store.engine.index.count()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"Store.open with {count:,} documents: {open_s:.2f} s, process max RSS {rss:.0f} MB")
    rnd = random.Random(2)
    now = time.time()
    res: dict[str, list[float]] = {}
    checkpoints0 = store.engine.checkpoints
    try:
        res["insert (save_call, new)"] = await timed(lambda i: store.save_call(_call(10_000_000 + i, now, i)), ops)
        res["update (save_call, same id)"] = await timed(
            lambda i: store.save_call(_call(10_000_000 + rnd.randrange(ops), now, i)), ops)
        res["insert (put sms)"] = await timed(
            lambda i: store.put("sms", {"number": "+4930000001", "body": "hi", "at": now}), ops)
        print(f"{3 * ops:,} writes: {store.engine.checkpoints - checkpoints0} checkpoints during the series")
        calls = samples["call"]
        res["get_call (random of all)"] = await timed(lambda i: store.get_call(rnd.choice(calls)), ops)
        res["get_call (recent, cached)"] = await timed(
            lambda i: store.get_call(f"call-{10_000_000 + rnd.randrange(ops):08d}"), ops)
        res["customer_by_phone"] = await timed(
            lambda i: store.customer_by_phone(f"+4930{rnd.randrange(CUSTOMERS):07d}"), ops)
        res["interactions_for_customer (~20)"] = await timed(
            lambda i: store.interactions_for_customer(f"cust-{rnd.randrange(CUSTOMERS):06d}"), max(1, ops // 4))
        assert (await store.get_call(calls[0])) is not None
        assert len(await store.interactions_for_customer("cust-000001")) > 0 or n < CUSTOMERS
        commits0 = store.commits
        t0 = time.perf_counter()
        await asyncio.gather(*(store.save_call(_call(20_000_000 + i, now, i)) for i in range(1000)))
        burst = time.perf_counter() - t0
        print(f"burst of 1,000 concurrent save_call: {burst * 1000:.0f} ms total, "
              f"{store.commits - commits0} group commits, {burst:.3f} ms per record")
    finally:
        await store.close()
    return res


def fsync_floor(tmp: Path, ops: int, size: int = 80_000) -> list[float]:
    """The unavoidable part of a commit on this disk: temp write + fsync + rename + folder fsync."""
    from appliance.storage.atomic import write_atomic as atomic

    blob = bytes(size)
    out = []
    for _ in range(ops):
        t0 = time.perf_counter()
        atomic(tmp / "floor.json", blob)
        out.append(time.perf_counter() - t0)
    return out


def journal_floor(tmp: Path, ops: int, size: int = 1_200) -> list[float]:
    """The disk part of a journaled commit: append one ~1 KB record to an open file + fdatasync."""
    import os

    blob = b"x" * (size - 1) + b"\n"
    fd = os.open(tmp / "floor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    out = []
    try:
        for _ in range(ops):
            t0 = time.perf_counter()
            os.write(fd, blob)
            os.fdatasync(fd)
            out.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return out


def run_raw(tmp: Path, size: int, ops: int) -> dict[str, list[float]]:
    now = time.time()
    docs = [codec.call_to_doc(_call(i, now, i % CUSTOMERS)) for i in range(size)]
    inserts = [codec.call_to_doc(_call(size + i, now, i)) for i in range(ops)]
    ins, look = measure_raw_tinydb(tmp / "raw.json", docs, inserts,
                                   [f"call-{random.Random(3).randrange(size):08d}" for _ in range(ops)])
    print(f"raw TinyDB file: {(tmp / 'raw.json').stat().st_size / 2**20:.1f} MB")
    return {f"raw TinyDB {size // 1000}k insert": ins, f"raw TinyDB {size // 1000}k lookup by call_id": look}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="storage benchmark")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--ops", type=int, default=2000, help="operations per measured series")
    ap.add_argument("--raw-size", type=int, default=10_000)
    ap.add_argument("--raw-ops", type=int, default=50)
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp folder, removed)")
    args = ap.parse_args(argv)
    tmp = args.dir or Path(tempfile.mkdtemp(prefix="storage-bench-"))
    try:
        data = tmp / "data"
        if data.exists():
            shutil.rmtree(data)
        t0 = time.perf_counter()
        samples = bulk_load(data, args.records)
        du = sum(p.stat().st_size for p in (data / "shards").iterdir())
        print(f"bulk load: {args.records:,} interactions + {CUSTOMERS:,} customers in {time.perf_counter() - t0:.0f} s, "
              f"{len(list((data / 'shards').glob('*.json'))):,} shards, {du / 2**20:.0f} MB")
        res = asyncio.run(run_store(data, args.records, samples, args.ops))
        res["floor: atomic 80 KB write + fsyncs"] = fsync_floor(tmp, args.ops)
        res["floor: 1 KB append + fdatasync"] = journal_floor(tmp, args.ops)
        res.update(run_raw(tmp, args.raw_size, args.raw_ops))
        for name, values in res.items():
            print(line(name, values))
        raw_name = f"raw TinyDB {args.raw_size // 1000}k"
        for what, ours in (("insert", "insert (save_call, new)"), ("lookup by call_id", "get_call (random of all)")):
            raw_v = res[f"{raw_name} {what}"]
            print(f"raw TinyDB {args.raw_size:,} docs vs ours at {args.records:,}, {what}: "
                  f"p50 {pct(raw_v, 50) / pct(res[ours], 50):.0f}x faster, p99 {pct(raw_v, 99) / pct(res[ours], 99):.0f}x faster")
        worst = max(pct(v, 99) for k, v in res.items() if not k.startswith(("raw", "floor")))
        ok = worst < 5.0 and pct(res[f"{raw_name} insert"], 50) / pct(res["insert (save_call, new)"], 50) >= 100
        print(f"goal p99 < 5 ms and >= 100x raw insert: {'MET' if ok else 'NOT MET'} (worst p99 {worst:.2f} ms; "
              f"journal floor p99 {pct(res['floor: 1 KB append + fdatasync'], 99):.2f} ms, "
              f"shard-rewrite floor p99 {pct(res['floor: atomic 80 KB write + fsyncs'], 99):.2f} ms)")
        return 0 if ok else 1
    finally:
        if args.dir is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
