"""``python run.py tui``: open the site-admin UI on the box that runs on this machine."""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from appliance.api.client import ApiUnavailable, SocketClient


async def _check(client: SocketClient) -> str:
    try:
        snap = await client.snapshot()
    finally:
        await client.close()
    return snap.box.branch


def main(cfg: Any) -> int:
    """Connect to the running box of ``cfg.data_dir``; one clear line and exit 1 when it cannot."""
    run_dir = Path(cfg.data_dir) / "run"
    try:
        asyncio.run(_check(SocketClient(run_dir)))
    except ApiUnavailable as exc:
        print(f"branchline tui: {exc}", file=sys.stderr)
        return 1
    # the TUI owns the terminal: log lines on stderr would tear the screen
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(logging.NullHandler())
    from tui.app import BranchlineApp

    app = BranchlineApp(SocketClient(run_dir))
    app.run()
    return app.return_code or 0  # the box is untouched whatever happened here


if __name__ == "__main__":
    from appliance.config import load_config

    sys.exit(main(load_config(None)))
