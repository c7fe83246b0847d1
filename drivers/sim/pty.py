"""A pseudo-terminal pair standing in for a USB modem port.

The simulator owns the master side; the driver opens ``.port`` (``/dev/pts/N``) through
the real pyserial stack. ``close()`` is "unplug": the driver's next read fails just as
with a vanished ``/dev/ttyUSB*``. ``reopen()`` is USB re-enumeration: a new pty (new
name) is opened before the old one is closed, so the name is guaranteed to change.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pty
import tty
from typing import Callable

log = logging.getLogger(__name__)

READ_CHUNK = 4096
MAX_PENDING_WRITE = 256 * 1024  # bytes the driver may leave unread before we drop (audio)


class PtyEndpoint:
    def __init__(self, on_data: Callable[[bytes], None] | None = None, *, name: str = "pty") -> None:
        self.name = name
        self._on_data = on_data
        self._loop = asyncio.get_running_loop()
        self._master = -1
        self._slave = -1
        self._pending = bytearray()
        self._writer_armed = False
        self.port = ""
        self._previous = ""
        self.dropped_bytes = 0
        self._open()

    def _open(self) -> None:
        master, slave = pty.openpty()
        spare: list[int] = []
        while os.ttyname(slave) == self._previous and len(spare) < 8:  # re-enumeration renames
            spare += [master, slave]
            master, slave = pty.openpty()
        for fd in spare:
            os.close(fd)
        self._previous = os.ttyname(slave)
        tty.setraw(slave)  # nothing is echoed or translated before the driver opens it
        os.set_blocking(master, False)
        old_master, old_slave = self._master, self._slave
        self._master, self._slave = master, slave
        self.port = os.ttyname(slave)
        self._loop.add_reader(master, self._read_ready)
        if old_master >= 0:
            self._close_fds(old_master, old_slave)

    @property
    def is_open(self) -> bool:
        return self._master >= 0

    def set_receiver(self, on_data: Callable[[bytes], None] | None) -> None:
        self._on_data = on_data

    def _read_ready(self) -> None:
        try:
            data = os.read(self._master, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:  # EIO: nobody has the slave open any more; nothing to read
            return
        if data and self._on_data is not None:
            self._on_data(data)

    def write(self, data: bytes) -> None:
        if self._master < 0:
            return
        if self._pending:
            self._queue(data)
            return
        try:
            n = os.write(self._master, data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            log.debug("%s write failed: %s", self.name, exc)
            return
        if n < len(data):
            self._queue(data[n:])

    def _queue(self, data: bytes) -> None:
        if len(self._pending) + len(data) > MAX_PENDING_WRITE:
            self.dropped_bytes += len(data)
            return
        self._pending += data
        if not self._writer_armed:
            self._loop.add_writer(self._master, self._write_ready)
            self._writer_armed = True

    def _write_ready(self) -> None:
        try:
            n = os.write(self._master, self._pending)
        except BlockingIOError:
            return
        except OSError:
            n = len(self._pending)
        del self._pending[:n]
        if not self._pending:
            self._loop.remove_writer(self._master)
            self._writer_armed = False

    def _close_fds(self, master: int, slave: int) -> None:
        self._loop.remove_reader(master)
        if self._writer_armed and master == self._master:
            self._loop.remove_writer(master)
        for fd in (master, slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def reopen(self) -> str:
        """Re-enumerate: a fresh pty with a different name; the old one disappears."""
        if self._writer_armed:
            self._loop.remove_writer(self._master)
            self._writer_armed = False
        self._pending.clear()
        self._open()
        return self.port

    def close(self) -> None:
        """Unplug: the driver sees EOF/EIO on its side."""
        if self._master < 0:
            return
        if self._writer_armed:
            self._loop.remove_writer(self._master)
            self._writer_armed = False
        self._pending.clear()
        self._close_fds(self._master, self._slave)
        self._master = self._slave = -1
