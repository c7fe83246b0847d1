"""``python run.py tui`` as a real process: the one-line refusal, and a killed TUI leaving the box alone."""
from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from appliance.api import schema as s
from appliance.api.client import SocketClient
from tests.api.running_box import RunningBox

REPO = Path(__file__).resolve().parents[2]
EXIT_TIMEOUT_S = 30.0  # interpreter start + imports on a loaded 2-core machine
SCREEN_TIMEOUT_S = 30.0


def run_tui(data_dir: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "run.py", "--data", str(data_dir), "tui"], cwd=REPO, **kwargs)


def test_without_a_box_it_prints_one_clear_line_and_exits_non_zero(tmp_path: Path) -> None:
    proc = run_tui(tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    out, err = proc.communicate(timeout=EXIT_TIMEOUT_S)
    assert proc.returncode == 1
    assert out == ""
    assert err == f"branchline tui: the box is not running (no API socket at {tmp_path / 'run' / 'api.sock'})\n"


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{needle!r} never appeared; got {seen[-400:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                raise TimeoutError(f"terminal closed before {needle!r}") from None
            seen += chunk
    return seen


async def test_killing_the_tui_does_not_affect_the_box(running_box: RunningBox) -> None:
    master, slave = pty.openpty()
    os.set_blocking(master, True)
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"}
    proc = run_tui(running_box.data_dir, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    try:
        await asyncio.to_thread(read_until, master, b"test-branch", SCREEN_TIMEOUT_S)  # connected and drawn
        os.kill(proc.pid, signal.SIGKILL)
        assert await asyncio.to_thread(proc.wait, EXIT_TIMEOUT_S) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(EXIT_TIMEOUT_S)
        os.close(master)
    # the box carries on: its API, its event stream and its agent console all still work
    async with SocketClient(running_box.run_dir) as client:
        stream = client.events()
        assert isinstance(await anext(stream), s.SiteSnapshot)
        await running_box.acall(lambda: running_box.box.acd.login("alice"))
        async with asyncio.timeout(10):
            async for ev in stream:
                if isinstance(ev, s.AgentChanged) and ev.agent.agent_id == "alice":
                    assert ev.agent.state == "paused"
                    break
        await stream.aclose()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{running_box.box.endpoints.web_url}api/login",
                             json={"agent_id": "bob", "password": "bob-secret"}) as r:
            assert r.status == 200
