"""A logging handler that keeps the last records in a bounded ring and streams new ones.

The TUI's Logs screen reads the ring (the recent past) and then follows new records.
Each follower owns a bounded queue; a follower that falls behind loses its oldest
records and is told how many it missed. ``emit`` never blocks and never raises.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque

from appliance.api.schema import LogEntry

RING_SIZE = 2000  # ~ an hour of a busy box at INFO; a few hundred kB of memory
FOLLOWER_QUEUE = 500  # records a slow TUI may lag before it loses the oldest ones


class LogFollower:
    """One live tail; iterate with ``get()``. ``missed`` counts records dropped for lag."""

    def __init__(self, ring: "LogRing", min_level: int) -> None:
        self._ring = ring
        self.min_level = min_level
        self._items: deque[LogEntry] = deque()
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.missed = 0
        self.closed = False

    def _push(self, entry: LogEntry) -> None:  # on the loop thread
        if self.closed or entry.levelno < self.min_level:
            return
        if len(self._items) >= FOLLOWER_QUEUE:
            self._items.popleft()
            self.missed += 1
        self._items.append(entry)
        self._event.set()

    async def get(self) -> LogEntry | None:
        """The next record; None once closed."""
        while not self._items:
            if self.closed:
                return None
            self._event.clear()
            await self._event.wait()
        return self._items.popleft()

    def close(self) -> None:
        self.closed = True
        self._ring._followers.discard(self)
        self._event.set()


class LogRing(logging.Handler):
    def __init__(self, size: int = RING_SIZE) -> None:
        super().__init__(level=logging.DEBUG)
        self._ring: deque[LogEntry] = deque(maxlen=size)
        self._seq = itertools.count(1)
        self._lock_ring = threading.Lock()
        self._followers: set[LogFollower] = set()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format in someone's log call must not break logging
            message = f"{record.msg!r} (unformattable args {record.args!r})"
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message} [{type(record.exc_info[1]).__name__}: {record.exc_info[1]}]"
        with self._lock_ring:
            entry = LogEntry(next(self._seq), record.created, record.levelname, record.levelno, record.name, message)
            self._ring.append(entry)
            followers = list(self._followers)
        for f in followers:
            try:  # records come from any thread (store executor, aiortc); hand them to the loop
                f._loop.call_soon_threadsafe(f._push, entry)
            except RuntimeError:  # that follower's loop is closed
                f.closed = True

    def recent(self, min_level: int = logging.DEBUG, limit: int = RING_SIZE) -> list[LogEntry]:
        with self._lock_ring:
            items = [e for e in self._ring if e.levelno >= min_level]
        return items[-limit:]

    def follow(self, min_level: int = logging.DEBUG) -> LogFollower:
        f = LogFollower(self, min_level)
        with self._lock_ring:
            self._followers.add(f)
        return f
