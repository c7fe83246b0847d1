"""``python -m drivers.sim <simulator> [options]`` — run a modem simulator stand-alone."""
from __future__ import annotations

import importlib
import sys

from drivers.sim import SIMULATORS


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in SIMULATORS:
        print(f"usage: python -m drivers.sim {{{'|'.join(SIMULATORS)}}} [options]  (--help after the name)")
        return 2
    module = importlib.import_module(SIMULATORS[argv[0]])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
