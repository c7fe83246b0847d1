"""The location service kept across restarts: desk-phone registrations saved to a small JSON file.

After each change the bindings are written atomically (``<file>.tmp``, fsync, rename, fsync of
the folder) by a named task, in the line's one-thread executor (an fsync on an SD card can take
100 ms). Writes are coalesced: the first change is written at once, later ones at most once per
``COALESCE_S``, and ``close()`` always writes the final state.

Expiry is stored as wall-clock time (the loop's monotonic clock does not survive a reboot) and
converted back on load, capped by what was left when the file was saved (a box without a
real-time clock may boot with its clock behind) and by the registrar's longest expiry.
Expired bindings, bindings of extensions no longer configured and bindings whose extension's
password changed since they were saved are dropped (each binding carries a salted HMAC of its
credentials, so a restart after a password change still evicts a phone that used the old one).

TCP/TLS bindings are restored too: their connection is gone, so qualify and ``dial_extension``
see them as unreachable ("its TCP connection is closed") until the phone connects and registers
again. A file that cannot be read as ours (corrupt, truncated, foreign, newer) is moved aside
as ``<file>.bad`` with one warning and the line starts empty; a folder we cannot write to gives
one warning (repeats at DEBUG, recovery at INFO) and the bindings stay in memory.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from appliance.durable_file import replace_file
from drivers.sip.registrar import Binding, LocationService

log = logging.getLogger(__name__)

FORMAT = "branchline-sip-bindings"
VERSION = 1
COALESCE_S = 1.0  # at most one write per second while phones register in a burst (a site power cut ends)
CLOSE_WRITE_WAIT_S = 2.0  # on stop, time given to the final write (a few KB and two fsyncs)
TRANSPORTS = ("udp", "tcp", "tls")


class BindingsFileError(ValueError):
    """The file is not a bindings file we can read (corrupt, truncated, foreign or newer)."""


def credentials_mac(salt: str, aor: str, realm: str, password: str) -> str:
    return hmac.new(bytes.fromhex(salt), f"{aor}\0{realm}\0{password}".encode(), hashlib.sha256).hexdigest()[:32]


def encode(bindings: list[Binding], *, loop_now: float, wall_now: float, salt: str,
           mac: Callable[[str, str], str | None]) -> bytes:
    """The file's bytes; ``mac(salt, aor)``: the credentials MAC of the extension (None: unknown)."""
    offset = wall_now - loop_now
    docs = [{"aor": b.aor, "contact": b.contact, "expires_at": round(b.expires_at + offset, 3),
             "call_id": b.call_id, "cseq": b.cseq, "source": [b.source[0], b.source[1]],
             "transport": b.transport, "auth": mac(salt, b.aor) or ""} for b in bindings]
    doc = {"format": FORMAT, "version": VERSION, "saved_at": round(wall_now, 3), "salt": salt, "bindings": docs}
    return json.dumps(doc).encode() + b"\n"  # no indent: the C encoder (100 phones: 27 KB, under 1 ms on the loop)


def _field(entry: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = entry.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BindingsFileError(f"binding field {name!r} is missing or not a {getattr(kind, '__name__', 'number')}")
    return value


def _number(value: Any, what: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise BindingsFileError(f"{what} is not a number")
    return float(value)


def decode(data: bytes, *, loop_now: float, wall_now: float, max_remaining: float,
           mac: Callable[[str, str], str | None]) -> tuple[list[Binding], int, int]:
    """(bindings to restore, how many had expired, how many belong to a removed or re-passworded
    extension). Raises ``BindingsFileError`` for anything but a well-formed file of ours."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BindingsFileError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BindingsFileError("not a Branchline SIP bindings file")
    if doc.get("version") != VERSION:
        raise BindingsFileError(f"version {doc.get('version')!r}, this box reads {VERSION}")
    saved_at = _number(doc.get("saved_at"), "saved_at")
    salt, entries = doc.get("salt"), doc.get("bindings")
    if not isinstance(salt, str) or not isinstance(entries, list):
        raise BindingsFileError("salt or bindings missing")
    try:
        bytes.fromhex(salt)
    except ValueError:
        raise BindingsFileError("bad salt") from None
    restored: list[Binding] = []
    expired = stale = 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise BindingsFileError("a binding is not an object")
        aor, contact, call_id, auth = (_field(entry, n, str) for n in ("aor", "contact", "call_id", "auth"))
        expires_at = _number(entry.get("expires_at"), "expires_at")
        cseq = _field(entry, "cseq", int)
        source, transport = entry.get("source"), entry.get("transport")
        if (not isinstance(source, list) or len(source) != 2 or not isinstance(source[0], str)
                or not isinstance(source[1], int) or isinstance(source[1], bool) or not 0 < source[1] < 65536):
            raise BindingsFileError("a binding's source is not [host, port]")
        if transport not in TRANSPORTS:
            raise BindingsFileError(f"unknown transport {transport!r}")
        # what is left now, never more than what was left when saved (a clock that went back) or allowed
        remaining = min(expires_at - wall_now, expires_at - saved_at, max_remaining)
        if remaining <= 0:
            expired += 1
            continue
        wanted = mac(salt, aor)
        if wanted is None or not hmac.compare_digest(wanted, auth):
            stale += 1
            continue
        restored.append(Binding(aor, contact, loop_now + remaining, call_id, cseq, (source[0], source[1]), transport))
    return restored, expired, stale


def write_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (runs in the executor)."""
    replace_file(path, data, mode=0o600)


class BindingsFile:
    def __init__(self, path: str | Path, location: LocationService, clock: Callable[[], float],
                 users: Mapping[str, str], realm: str, max_expires: float, line_id: str) -> None:
        """``clock``: the line's clock (the loop's), in which ``Binding.expires_at`` is counted."""
        self.path = Path(path)
        self._location = location
        self._clock = clock
        self._users = dict(users)
        self._realm = realm
        self._max_expires = max_expires
        self._line = line_id
        self._salt = secrets.token_hex(16)
        self._dirty = False
        self._closing = False
        self._failing = False
        self._last_write = -math.inf
        self._flush_now = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._io: ThreadPoolExecutor | None = None
        self.writes = 0  # files written (the coalescing is measured by this)

    def _mac(self, salt: str, aor: str) -> str | None:
        password = self._users.get(aor)
        return None if password is None else credentials_mac(salt, aor, self._realm, password)

    async def load(self) -> tuple[str, ...]:
        """Restore the saved bindings into the location service; returns their extensions.
        Never raises: whatever goes wrong, the line starts (empty if need be)."""
        try:
            data = await asyncio.to_thread(self.path.read_bytes)
        except FileNotFoundError:
            return ()
        except OSError as exc:
            log.warning("SIP line %s: cannot read saved registrations %s (%s); starting with none",
                        self._line, self.path, exc.strerror or exc)
            return ()
        try:
            bindings, expired, stale = decode(data, loop_now=self._clock(), wall_now=time.time(),
                                              max_remaining=self._max_expires, mac=self._mac)
        except BindingsFileError as exc:
            self._set_aside(str(exc))
            return ()
        for binding in bindings:
            if self._location.get(binding.aor, binding.contact) is None:  # a fresher REGISTER wins
                self._location.put(binding)
        log.info("SIP line %s: %d registration(s) restored from %s (%d expired, %d of removed or re-passworded "
                 "extensions dropped)", self._line, len(bindings), self.path, expired, stale)
        if expired or stale:
            self.changed()  # the file then holds only what is live
        return tuple(sorted({b.aor for b in bindings}))

    def _set_aside(self, why: str) -> None:
        bad = self.path.with_name(self.path.name + ".bad")
        try:
            os.replace(self.path, bad)
            kept = f"kept as {bad}"
        except OSError as exc:
            kept = f"could not be moved to {bad}: {exc.strerror or exc}"
        log.warning("SIP line %s: saved registrations %s are unreadable (%s); starting with none, the file %s",
                    self._line, self.path, why, kept)

    def changed(self) -> None:
        """The bindings changed: write them soon (coalesced)."""
        if self._closing:
            return
        self._dirty = True
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sip-bindings-{self._line}")

    async def wait_idle(self) -> None:
        """Until every change so far is written (or failed to be)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Write the final state, then stop writing."""
        self._closing = True
        self._dirty = True
        self._flush_now.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sip-bindings-{self._line}")
        task = self._task
        try:
            async with asyncio.timeout(CLOSE_WRITE_WAIT_S):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("SIP line %s: saving registrations to %s took over %.1fs; given up", self._line, self.path,
                        CLOSE_WRITE_WAIT_S)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # the executor thread finishes its write by itself; the task is done now
        if self._io is not None:
            self._io.shutdown(wait=False)
            self._io = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._dirty:
                wait = self._last_write + COALESCE_S - loop.time()
                if wait > 0 and not self._flush_now.is_set():
                    try:
                        async with asyncio.timeout(wait):
                            await self._flush_now.wait()
                    except TimeoutError:
                        pass
                self._dirty = False
                self._last_write = loop.time()
                try:
                    await self._write(loop)
                except OSError as exc:
                    self._write_failed(exc)
                except Exception:  # a bug here must not stop the line, nor its stop()
                    log.exception("SIP line %s: cannot save registrations to %s", self._line, self.path)
                else:
                    self.writes += 1
                    if self._failing:
                        log.info("SIP line %s: registrations saved to %s again", self._line, self.path)
                        self._failing = False
        finally:
            self._task = None

    async def _write(self, loop: asyncio.AbstractEventLoop) -> None:
        now = self._clock()
        live = [b for aor in self._location.aors(now) for b in self._location.bindings(aor, now)]
        data = encode(live, loop_now=now, wall_now=time.time(), salt=self._salt, mac=self._mac)
        if self._io is None:
            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sip-bindings-{self._line}")
        await loop.run_in_executor(self._io, write_file, self.path, data)

    def _write_failed(self, exc: OSError) -> None:
        level = logging.DEBUG if self._failing else logging.WARNING
        log.log(level, "SIP line %s: cannot save registrations to %s (%s); they are kept in memory only",
                self._line, self.path, exc.strerror or exc)
        self._failing = True
