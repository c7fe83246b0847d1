"""The store's group-commit writer: a bounded queue of mutations, one task, one executor thread.

The task takes everything queued (up to ``MAX_BATCH``), runs the batch on the store's
thread, commits it through the journal (one fdatasync) and only then resolves the
callers' futures. A burst that arrives while a commit is in progress shares the next
commit. When the writer has been idle for ``IDLE_CHECKPOINT_S`` with journaled changes,
it rewrites the touched shards (a checkpoint), so the journal stays short.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from appliance.storage.engine import Engine
from appliance.storage.models import Alarm, AlarmKind

log = logging.getLogger(__name__)
T = TypeVar("T")

WRITE_QUEUE_MAX = 1024  # queued writes before callers wait; ~1 s of the worst burst we expect
MAX_BATCH = 256  # ops per group commit: bounds one commit's latency and journal record
COMMIT_TIMEOUT_S = 30.0  # an SD card in garbage collection can stall seconds; 30 s means the disk is gone
IDLE_CHECKPOINT_S = 0.5  # quiet this long -> rewrite the journaled shards (keeps the replay at boot short)
CHECKPOINT_RETRY_S = 30.0  # after a failed checkpoint (disk trouble): the journal keeps the data meanwhile

Op = Callable[[Engine], Any]


class GroupCommitWriter:
    def __init__(self, engine: Engine, io: ThreadPoolExecutor, report: Callable[[Alarm], None],
                 clear: Callable[[AlarmKind, str], None]) -> None:
        self._engine = engine
        self._io = io
        self._report = report
        self._clear = clear
        self._queue: asyncio.Queue[tuple[Op, asyncio.Future[Any]] | None] = asyncio.Queue(WRITE_QUEUE_MAX)
        self.commits = 0  # statistics: group commits done, ops committed
        self.committed_ops = 0
        self._checkpoint_after = 0.0  # monotonic time before which no checkpoint is tried again
        self.checkpoint_ran = asyncio.Event()  # set after each checkpoint the writer ran (for tests)

    async def submit(self, fn: Callable[[Engine], T]) -> T:
        """Queue a mutation; returns after the group commit that contains it is on disk."""
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(COMMIT_TIMEOUT_S):
            await self._queue.put((fn, fut))
            return await asyncio.shield(fut)

    async def stop(self) -> None:
        """Ask ``run`` to end after the writes queued so far."""
        await self._queue.put(None)

    async def _next(self) -> tuple[Op, asyncio.Future[Any]] | None | bool:
        """The next queued item; False when the writer went idle and checkpointed instead."""
        if not (self._engine.journal.has_pending and self._queue.empty()):
            return await self._queue.get()
        try:
            async with asyncio.timeout(max(IDLE_CHECKPOINT_S, self._checkpoint_after - time.monotonic())):
                return await self._queue.get()
        except TimeoutError:  # idle: rewrite the journaled shards now
            await self._checkpoint()
            return False

    async def _checkpoint(self) -> None:
        if time.monotonic() < self._checkpoint_after:
            return
        ok = await asyncio.get_running_loop().run_in_executor(self._io, self._engine.checkpoint)
        self.checkpoint_ran.set()
        if ok:
            if self._checkpoint_after:
                self._checkpoint_after = 0.0
                self._clear(AlarmKind.WRITE_FAILED, "checkpoint")
            return
        self._checkpoint_after = time.monotonic() + CHECKPOINT_RETRY_S
        self._report(Alarm(AlarmKind.WRITE_FAILED, "checkpoint",
                           "shards could not be rewritten; changes are safe in the journal", time.time()))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            item = await self._next()
            if item is False:
                continue
            batch = []
            while item is not None:
                batch.append(item)
                if len(batch) >= MAX_BATCH or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            stopping = item is None
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._io, self._commit_batch, [fn for fn, _ in batch])
            except Exception as exc:  # OSError mostly; never let the writer task die
                log.error("commit of %d writes failed: %s", len(batch), exc)
                self._report(Alarm(AlarmKind.WRITE_FAILED, "store", f"commit failed: {exc}", time.time()))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), (ok, value) in zip(batch, results):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)
            if self._engine.checkpoint_due():  # after the callers were released
                await self._checkpoint()

    def _commit_batch(self, ops: list[Op]) -> list[tuple[bool, Any]]:
        engine = self._engine
        engine.begin()
        results: list[tuple[bool, Any]] = []
        for op in ops:
            try:
                results.append((True, op(engine)))
            except Exception as exc:  # a bad op fails alone; the batch still commits
                log.warning("store operation failed: %s", exc)
                results.append((False, exc))
        engine.commit_journaled()  # raises OSError after rolling back
        self.commits += 1
        self.committed_ops += len(ops)
        return results
