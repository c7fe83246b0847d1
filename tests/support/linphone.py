"""Drive Debian's ``linphonec`` (package linphone-cli, liblinphone 5.1) as a real SIP phone in tests.

Interop facts found here (see ``running_linphonec``):

* liblinphone opens its main database under ``$HOME/.local/share/linphone/``. When that folder
  does not exist the core logs ``Unable to open linphone database with uri
  "/root/.local/share/linphone/linphone.db" and backend Sqlite3``, stays in
  ``LinphoneGlobalStartup`` and never opens a SIP socket; every request then fails with
  ``belle-sip-error-No listening point matching for [udp://...]``. So each phone gets its own
  HOME with that folder, and the config names the database explicitly (``[storage] uri``).
* There is no sound card: ``soundcard use files`` switches the core to WAV files, ``play`` names
  what it sends and ``record`` where it writes what it hears.
* ``[sip] use_ipv6=0`` and ``bind_address=127.0.0.1`` (``[sip]`` and ``[rtp]``) keep its SIP and RTP
  sockets on loopback; without them it binds ``[::]``.
* linphonec rewrites its config file on exit (the password becomes an ``ha1=``), so a config is
  written fresh for every run and never shared.
* When its credentials are refused it prints ``Password for 201 on branchline:`` and waits for a
  password on stdin: that line is the sign of a failed registration.
* linphonec reads commands line by line from stdin (a pipe works; no pty needed) and prints call
  events (``Call 1 with ... connected.``) on stdout; the ``-d 6`` debug log goes to ``-l FILE``,
  which holds every SIP message sent and received.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from tests.support.softphone import free_port_pair

LINPHONEC_READY_S = 15.0  # the core loads codecs and plugins and prints its prompt in well under a second
EVENT_TIMEOUT_S = 20.0  # call events arrive in ms on loopback; generous for a loaded 2-core box
QUIT_TIMEOUT_S = 10.0  # "quit" unregisters (one round trip) and tears the core down in ~100 ms
CONSOLE_LIMIT = 1 << 20  # stdout holds only prompts and call events (a few kB per call)
PROMPT = "linphonec> "


@dataclass(frozen=True, slots=True)
class LinphoneSetup:
    folder: Path
    config: Path
    log: Path
    home: Path
    sip_port: int
    rtp_port: int


def write_linphone_config(folder: Path, *, box_port: int, user: str, password: str,
                          realm: str = "branchline") -> LinphoneSetup:
    """A linphonerc registering ``user`` at the box on 127.0.0.1:``box_port`` over UDP (digest)."""
    home = folder / "home"
    (home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
    sip_port = free_port_pair((socket.SOCK_DGRAM,))
    rtp_port = free_port_pair((socket.SOCK_DGRAM,), even=True)
    config = folder / "linphonerc"
    config.write_text(
        "[sip]\n"
        f"sip_port={sip_port}\n"
        "sip_tcp_port=-1\n"  # UDP only: one port to find free, and the box's UDP path is what we test
        "sip_tls_port=-1\n"
        "use_ipv6=0\n"  # the key is use_ipv6 ("ipv6=0" is ignored: it binds [::] then)
        "bind_address=127.0.0.1\n"  # loopback only (strace: every bind() is then on 127.0.0.1)
        "default_proxy=0\n"
        "register_only_when_network_is_up=0\n"
        "\n[rtp]\n"
        "bind_address=127.0.0.1\n"
        f"audio_rtp_port={rtp_port}\n"
        "\n[sound]\n"
        "echocancellation=0\n"
        "\n[video]\n"
        "enabled=0\n"
        "automatically_initiate=0\n"
        "automatically_accept=0\n"
        "\n[storage]\n"
        f"uri={folder / 'linphone.db'}\n"
        "\n[proxy_0]\n"
        f"reg_proxy=<sip:127.0.0.1:{box_port};transport=udp>\n"
        f"reg_identity=sip:{user}@127.0.0.1:{box_port}\n"
        "reg_expires=600\n"
        "reg_sendregister=1\n"
        "publish=0\n"
        "\n[auth_info_0]\n"
        f"username={user}\n"
        f"passwd={password}\n"
        f"realm={realm}\n"
        f"domain=127.0.0.1:{box_port}\n"
    )
    return LinphoneSetup(folder, config, folder / "linphonec.log", home, sip_port, rtp_port)


@dataclass
class Linphonec:
    """A running linphonec: commands go to its stdin, its stdout is kept and searched."""

    proc: asyncio.subprocess.Process
    setup: LinphoneSetup
    output: str = ""
    closed: bool = False
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def mark(self) -> int:
        """Position in the output: pass as ``start`` to wait only for what comes after it."""
        return len(self.output)

    async def command(self, line: str) -> int:
        """Send one console command; returns the output position from before it."""
        assert self.proc.stdin is not None
        start = self.mark()
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()
        return start

    async def wait_for(self, pattern: str, start: int = 0, timeout: float = EVENT_TIMEOUT_S) -> re.Match[str]:
        rx = re.compile(pattern)
        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    while True:
                        if m := rx.search(self.output, start):
                            return m
                        if self.closed:
                            raise AssertionError(f"linphonec exited before printing {pattern!r}")
                        await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"linphonec did not print {pattern!r} within {timeout}s; its console:\n"
                                 f"{self.output[-3000:]}\nlog tail:\n{self.log_tail()}") from None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.setup.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    async def _collect(self) -> None:
        assert self.proc.stdout is not None
        while chunk := await self.proc.stdout.read(4096):
            async with self._changed:
                if len(self.output) < CONSOLE_LIMIT:
                    self.output += chunk.decode(errors="replace")
                self._changed.notify_all()
        async with self._changed:
            self.closed = True
            self._changed.notify_all()


@contextlib.asynccontextmanager
async def running_linphonec(setup: LinphoneSetup) -> AsyncIterator[Linphonec]:
    """Start linphonec with ``setup`` and wait for its prompt; "quit" (then SIGTERM/SIGKILL) on exit."""
    env = {"HOME": str(setup.home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    proc = await asyncio.create_subprocess_exec(
        "linphonec", "-c", str(setup.config), "-d", "6", "-l", str(setup.log),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=env, cwd=setup.folder)
    phone = Linphonec(proc, setup)
    collector = asyncio.create_task(phone._collect(), name="linphonec-stdout")
    try:
        await phone.wait_for(re.escape(PROMPT), timeout=LINPHONEC_READY_S)
        yield phone
    finally:
        # at a password prompt "quit" would be taken as the password: end it with SIGTERM instead
        asking = phone.output.rfind("Password for ") > phone.output.rfind(PROMPT)
        if asking and proc.returncode is None:
            proc.terminate()
        elif proc.returncode is None and proc.stdin is not None and not proc.stdin.is_closing():
            with contextlib.suppress(ConnectionError):
                proc.stdin.write(b"quit\n")
                await proc.stdin.drain()
        try:
            async with asyncio.timeout(QUIT_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            proc.terminate()
            try:
                async with asyncio.timeout(QUIT_TIMEOUT_S):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(QUIT_TIMEOUT_S):
                await collector


_RECEIVED = re.compile(r"received \[\d+\] new bytes from \[[^\]]+\]:\n(.*?)\n\d{4}-\d\d-\d\d ", re.S)
_DIRECTIONS = ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")


def invite_answers(log_text: str) -> list[tuple[int, str]]:
    """(CSeq, a= direction) of each 200 OK to an INVITE linphonec received, in order, once per CSeq."""
    found: dict[int, str] = {}
    for m in _RECEIVED.finditer(log_text):
        lines = [line.strip() for line in m.group(1).splitlines()]
        if not lines or lines[0] != "SIP/2.0 200 OK":
            continue
        cseq = next((line.split()[1:] for line in lines if line.lower().startswith("cseq:")), [])
        if cseq[1:] == ["INVITE"]:
            direction = next((line[2:] for line in lines if line in _DIRECTIONS), "sendrecv")
            found.setdefault(int(cseq[0]), direction)
    return list(found.items())
