"""Run the real box (``run.py``) as a subprocess for end-to-end tests.

The box is started with a generated TOML config on loopback with port 0 everywhere; its
endpoints are read from ``<data>/run/endpoints.json`` once it logs that it is running.
Its log lines are collected so tests can wait for a specific event.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0  # cold imports of aiortc/av on a busy 2-core CI box take a few seconds
STOP_TIMEOUT_S = 40.0  # the box's own staged shutdown budget is well under this

DEMO_AGENTS = """
[[agents]]
id = "alice"
name = "Alice Martin"
password = "alice-pw"
queues = ["support"]

[[agents]]
id = "bob"
name = "Bob Okafor"
password = "bob-pw"
queues = ["support"]
"""


@dataclass
class BoxProcess:
    proc: asyncio.subprocess.Process
    data_dir: Path
    web_url: str = ""
    sip_udp: int = 0
    sip_tcp: int = 0
    sip_tls: int = 0
    logs: list[str] = field(default_factory=list)
    log_closed: bool = False  # the box's stderr ended: it has exited
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def wait_for_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        rx = re.compile(pattern)
        async with asyncio.timeout(timeout):
            async with self._changed:
                while True:
                    for line in self.logs[start:]:
                        m = rx.search(line)
                        if m:
                            return m
                    if self.log_closed or self.proc.returncode is not None:
                        tail = "\n".join(self.logs[-15:])
                        raise AssertionError(f"box exited before logging {pattern!r}; its last lines:\n{tail}")
                    await self._changed.wait()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_TIMEOUT_S):
            return await self.proc.wait()


def write_config(tmp: Path, extra: str = "", agents: str = DEMO_AGENTS, simulators: str = "gsm = false\nanalog = false",
                 sip_extra: str = "") -> Path:
    data = tmp / "data"
    cfg = tmp / "branchline.toml"
    cfg.write_text(
        f"""
[box]
data_dir = "{data}"
log_level = "INFO"

[sip]
bind = "127.0.0.1"
port = 0
sdp_address = "127.0.0.1"
{sip_extra}

[web]
bind = "127.0.0.1"
port = 0
ice_host_addresses = ["127.0.0.1"]

[simulators]
{simulators}

[[queues]]
id = "support"
name = "Support"
ringback_s = 2.0
{extra}
{agents}
"""
    )
    return cfg


async def _collect(box: BoxProcess) -> None:
    assert box.proc.stderr is not None
    while True:
        raw = await box.proc.stderr.readline()
        if not raw:
            break
        async with box._changed:
            box.logs.append(raw.decode(errors="replace").rstrip())
            box._changed.notify_all()
    async with box._changed:
        box.log_closed = True
        box._changed.notify_all()


@contextlib.asynccontextmanager
async def running_box(tmp: Path, extra_config: str = "", agents: str = DEMO_AGENTS,
                      simulators: str = "gsm = false\nanalog = false", sip_extra: str = "",
                      args: tuple[str, ...] = ()) -> AsyncIterator[BoxProcess]:
    """The box as its own process; ``args``: extra command-line options (``--web-port N``)."""
    cfg = write_config(tmp, extra_config, agents, simulators, sip_extra)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "run.py"), "--config", str(cfg), *args,
        cwd=tmp, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    box = BoxProcess(proc, tmp / "data")
    collector = asyncio.create_task(_collect(box), name="box-log-collector")
    try:
        await box.wait_for_log(r"Branchline is running", timeout=START_TIMEOUT_S)
        ep = json.loads((box.data_dir / "run" / "endpoints.json").read_text())
        box.web_url, box.sip_udp, box.sip_tcp = ep["web_url"], ep["sip_udp"] or 0, ep["sip_tcp"] or 0
        box.sip_tls = ep.get("sip_tls") or 0
        yield box
    finally:
        if proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await box.stop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(5):
                await collector
        if os.environ.get("BL_SHOW_BOX_LOGS"):
            print("\n".join(box.logs))


async def run_sipp(args: list[str], cwd: Path, timeout: float = 60.0) -> tuple[int, str]:
    """Run SIPp to completion; returns its exit code and combined output."""
    proc = await asyncio.create_subprocess_exec(
        "sipp", *args, "-nostdin", cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        raise AssertionError(f"sipp did not finish within {timeout}s:\n{out.decode(errors='replace')[-2000:]}") from None
    return proc.returncode or 0, out.decode(errors="replace")


def sipp_workdir(tmp: Path) -> Path:
    """A folder where SIPp's built-in uac_pcap finds ``pcap/g711a.pcap``."""
    work = tmp / "sipp"
    work.mkdir(exist_ok=True)
    link = work / "pcap"
    if not link.exists():
        link.symlink_to("/usr/share/sip-tester")
    return work
