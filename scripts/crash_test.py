"""Power-cut test for appliance/storage: SIGKILL a writer at random moments, then check the store.

    .venv/bin/python scripts/crash_test.py --trials 200          # the long run (docs/benchmarks.md)
    .venv/bin/python scripts/crash_test.py writer DATA ACKS      # the child (started by the above)

The writer saves calls (insert, then update), SMS and chat messages through ``Store`` and
records one call through media.recorder's StereoWavRecorder, concurrently, as fast as the
store allows. After each await returns it appends ``kind key msg_id`` to the ack file; for
the recording it appends the recorder's synced/written seconds. After the kill the parent
reopens the store (as the box would at boot) and checks:
  * no shard is unreadable (no CORRUPT_SHARD alarm, every shard file decodes);
  * every acknowledged record is present, exactly once, with the msg id it was acked with;
  * the recording was repaired, is linked to its call, and holds at least the synced audio
    and no less than 1 s under the audio written before the kill.
"""
from __future__ import annotations

import argparse
import dataclasses
import asyncio
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

READY_TIMEOUT_S = 20.0  # child start-up: imports numpy/tinydb/cryptography and opens a growing store
LEFT_SAMPLE = b"\x01\x00"  # the writer's customer channel: every sample is 1
KILL_AFTER_S = (0.05, 2.5)  # random run time before SIGKILL: up to 2 recorder fsync periods


# ---------------------------------------------------------------- child
TEST_KEY = bytes(range(32))  # --encrypt: recordings at rest with AES-GCM chunks


async def _writer(data: Path, acks_path: Path, seed: int, key: bytes | None) -> None:
    from appliance.records import CallOutcome, CallRecord
    from appliance.storage import Channel, Store
    from media.frames import FRAME_BYTES
    from media.recorder import StereoWavRecorder

    rnd = random.Random(seed)
    acks = open(acks_path, "a", buffering=1)  # one write() per line; survives SIGKILL (page cache)
    store = await Store.open(data, branch="crash", encryption_key=key)
    tag = f"{seed:x}"

    def call(i: int, outcome: CallOutcome, rec_path: str | None = None) -> CallRecord:
        return CallRecord(f"c-{tag}-{i}", "gsm0", "gsm", "inbound", f"+4930{i % 97:04d}", None, None, "main",
                          outcome, "normal", arrived_at=time.time(), recording_path=rec_path)

    # the recorded call: record first (so recovery can link), then the audio
    rec_call = call(0, CallOutcome.ANSWERED, f"crash/c-{tag}-0.wav")
    acks.write(f"call {rec_call.call_id} {await store.save_call(rec_call)}\n")
    wav = store.recordings_dir() / "crash" / f"c-{tag}-0.wav"
    recorder = StereoWavRecorder(wav, sink_factory=store.recording_sink_factory())
    recorder.start()
    print("READY", flush=True)

    async def audio() -> None:
        left, right = LEFT_SAMPLE * (FRAME_BYTES // 2), b"\x02\x00" * (FRAME_BYTES // 2)
        start, n = time.monotonic(), 0
        while True:
            recorder.write(left, right)
            n += 1
            if n % 10 == 0:
                st = recorder.statistics()
                acks.write(f"rec {wav.name} {st.seconds_synced} {st.seconds_written}\n")
            await asyncio.sleep(max(0.0, start + n * 0.02 - time.monotonic()))  # pacing, not sync

    async def records(worker: int) -> None:
        i = worker * 1_000_000 + 1
        while True:
            r = rnd.random()
            if r < 0.4:
                c = call(i, CallOutcome.ABANDONED)
                mid = await store.save_call(c)
                acks.write(f"call {c.call_id} {mid}\n")
                mid2 = await store.save_call(dataclasses.replace(c, talk_s=1.0))
                acks.write(f"call {c.call_id} {mid2}\n")
            elif r < 0.7:
                key = f"s-{tag}-{i}"
                mid = await store.put("sms", {"number": "+4930111", "body": f"sms {i}", "at": time.time()}, key=key)
                acks.write(f"sms {key} {mid}\n")
            else:
                m = await store.add_message(Channel.CHAT, "in", f"web-{i % 5}", f"chat {i}")
                acks.write(f"chat {m.key} {m.msg_id}\n")
            i += 1

    async with asyncio.TaskGroup() as tg:
        tg.create_task(audio(), name="crash-audio")
        for w in range(4):
            tg.create_task(records(w), name=f"crash-records-{w}")


# ---------------------------------------------------------------- parent
@dataclass
class TrialResult:
    acked: int
    missing: list[str]
    duplicates: list[str]
    corrupt: list[str]
    recording_problem: str | None
    recording_s: float
    journal_bytes: int = 0  # journal left by the killed writer (acknowledged, not yet in the shards)


def _read_acks(path: Path) -> tuple[dict[tuple[str, str], str], dict[str, tuple[float, float]]]:
    records, recs = {}, {}
    text = path.read_text() if path.exists() else ""
    lines = text.split("\n")[:-1]  # the last element is a partial line (or empty)
    for line in lines:
        parts = line.split()
        if parts[0] == "rec":
            recs[parts[1]] = (float(parts[2]), float(parts[3]))
        else:
            records[(parts[0], parts[1])] = parts[2]
    return records, recs


async def _verify(data: Path, acks_path: Path, rec_key: bytes | None) -> TrialResult:
    from appliance.storage import AlarmKind, Store, crypto, envelope
    from media.recorder import HEADER_BYTES, BYTE_RATE

    acked, recs = _read_acks(acks_path)
    journal = data / "journal.log"
    journal_bytes = journal.stat().st_size if journal.exists() else 0
    store = await Store.open(data, branch="crash", encryption_key=rec_key)
    try:
        corrupt = [a.subject for a in store.alarms() if a.kind is AlarmKind.CORRUPT_SHARD]
        counts: Counter[tuple[str, str]] = Counter()
        for path in sorted((data / "shards").glob("*.json")):
            try:
                tables = envelope.decode(path.read_bytes())
            except envelope.CorruptFileError as exc:
                corrupt.append(f"{path.name}: {exc}")
                continue
            for kind, table in tables.items():
                for doc in table.values():
                    counts[(kind, doc["_key"])] += 1
        missing, dups = [], []
        for (kind, key), msg_id in acked.items():
            doc = await store.get(kind, key)
            if doc is None or doc["_msg_id"] != msg_id:
                missing.append(f"{kind}:{key}")
            elif counts[(kind, key)] != 1:
                dups.append(f"{kind}:{key}x{counts[(kind, key)]}")
        problem, seconds = None, 0.0
        for name, (synced, written) in recs.items():
            wav = next((store.recordings_dir()).rglob(name), None)
            if wav is None or wav.with_name(wav.name + ".open").exists():
                problem = f"{name} missing or still open"
                continue
            if rec_key is not None:
                raw = wav.read_bytes()
                plain, _ = crypto.decrypt_bytes(raw, rec_key)
                seconds = (len(plain) - HEADER_BYTES) // 4 * 4 / BYTE_RATE
                audio_ok = seconds == 0 or plain[HEADER_BYTES : HEADER_BYTES + 2] == LEFT_SAMPLE
                if crypto.valid_length(raw, rec_key) != len(raw) or not audio_ok:
                    problem = f"{name}: torn tail not cut, or audio not decryptable"
            else:
                seconds = (wav.stat().st_size - HEADER_BYTES) / BYTE_RATE
                head = wav.read_bytes()[:HEADER_BYTES]
                if int.from_bytes(head[40:44], "little") != wav.stat().st_size - HEADER_BYTES:
                    problem = f"{name}: header not repaired"
            if seconds + 1e-6 < synced or seconds < written - 1.0:
                problem = f"{name}: {seconds:.2f} s kept, {synced:.2f} s synced, {written:.2f} s written"
            rec = await store.get_call(wav.stem)
            if rec is None or rec.recording_s is None or abs(rec.recording_s - seconds) > 0.01:
                problem = f"{name}: not linked to its call record ({rec and rec.recording_s})"
        return TrialResult(len(acked), missing, dups, corrupt, problem, seconds, journal_bytes)
    finally:
        await store.close()


def run_trials(trials: int, data: Path, seed: int = 1, log=print,
               kill_after: tuple[float, float] = KILL_AFTER_S, encrypt: bool = False) -> list[TrialResult]:
    key = TEST_KEY if encrypt else None
    rnd = random.Random(seed)
    results = []
    for t in range(trials):
        acks = data.parent / f"acks-{t}.txt"
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "writer", str(data), str(acks), str(rnd.randrange(1 << 30)),
             "encrypt" if encrypt else "plain"],
            stdout=subprocess.PIPE, cwd=ROOT,
        )
        try:
            line = _readline_with_timeout(child, READY_TIMEOUT_S)
            if line.strip() != b"READY":
                raise RuntimeError(f"writer did not start: {line!r}")
            time.sleep(rnd.uniform(*kill_after))  # the random moment of the power cut
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
        res = asyncio.run(_verify(data, acks, key))
        results.append(res)
        log(f"trial {t + 1}/{trials}: {res.acked} acked, missing {len(res.missing)}, dup {len(res.duplicates)}, "
            f"corrupt {len(res.corrupt)}, recording {res.recording_s:.2f} s {res.recording_problem or 'ok'}, "
            f"journal replayed {res.journal_bytes} B")
    return results


def _readline_with_timeout(child: subprocess.Popen, timeout: float) -> bytes:
    import selectors

    sel = selectors.DefaultSelector()
    sel.register(child.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise RuntimeError(f"writer not ready within {timeout} s")
    return child.stdout.readline()


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "writer":
        key = TEST_KEY if sys.argv[5] == "encrypt" else None
        asyncio.run(_writer(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), key))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--encrypt", action="store_true", help="recordings encrypted at rest (EncryptedChunkSink)")
    args = ap.parse_args()
    import tempfile

    base = args.dir or Path(tempfile.mkdtemp(prefix="crash-"))
    t0 = time.monotonic()
    results = run_trials(args.trials, base / "data", args.seed, encrypt=args.encrypt)
    bad = [r for r in results if r.missing or r.duplicates or r.corrupt or r.recording_problem]
    print(f"{len(results)} trials in {time.monotonic() - t0:.0f} s, {sum(r.acked for r in results)} acked records "
          f"checked, {len(bad)} failed trials; {sum(1 for r in results if r.journal_bytes)} trials restarted "
          f"from a non-empty journal (largest {max((r.journal_bytes for r in results), default=0)} B); data in {base}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
