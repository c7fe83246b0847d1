"""Run every benchmark module in this package (``*_bench.py``), in name order, with default options."""
from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main() -> int:
    failed = []
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name.endswith("_bench"))
    for name in names:
        print(f"=== bench.{name}", flush=True)
        t0 = time.monotonic()
        rc = importlib.import_module(f"bench.{name}").main([])
        print(f"=== bench.{name}: exit {rc} in {time.monotonic() - t0:.0f} s", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
