"""Power-cut test, short version: SIGKILL a writer subprocess at random moments (15 trials).

The long run (>= 200 trials) is ``scripts/crash_test.py --trials 200``; see docs/benchmarks.md.
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash_test.py"
TRIALS = 15


def _load():
    spec = importlib.util.spec_from_file_location("crash_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["crash_test"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_sigkill_never_corrupts_or_loses_acknowledged_records(tmp_path: Path) -> None:
    crash = _load()
    lines: list[str] = []
    t0 = time.monotonic()
    results = crash.run_trials(TRIALS, tmp_path / "data", seed=7, log=lines.append, kill_after=(0.05, 1.5))
    assert time.monotonic() - t0 < 60, "\n".join(lines)
    assert len(results) == TRIALS
    assert sum(r.acked for r in results) > 100, "\n".join(lines)  # the writer really wrote
    assert sum(1 for r in results if r.journal_bytes) >= 3, "\n".join(lines)  # restarts replayed the journal
    for r, line in zip(results, lines):
        assert not r.corrupt and not r.missing and not r.duplicates and r.recording_problem is None, line
    assert max(r.recording_s for r in results) > 0.5, "\n".join(lines)  # recordings were exercised


def test_sigkill_with_encrypted_recordings_leaves_decryptable_prefix(tmp_path: Path) -> None:
    crash = _load()
    lines: list[str] = []
    results = crash.run_trials(5, tmp_path / "data", seed=11, log=lines.append, kill_after=(0.3, 1.5), encrypt=True)
    for r, line in zip(results, lines):
        assert not r.corrupt and not r.missing and not r.duplicates and r.recording_problem is None, line
