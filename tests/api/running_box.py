"""A real ``Box`` with its local API, running on its own event loop in a thread.

The TUI under test runs on the test's loop (or Textual's) and reaches the box only
through the Unix socket, as in production. ``call()`` runs a coroutine on the box's loop.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from appliance.app import Box
from appliance.config import load_config

T = TypeVar("T")

START_TIMEOUT_S = 30.0  # store open + web + SIP bind on a loaded 2-core CI machine
STOP_TIMEOUT_S = 30.0

CONFIG = """\
[box]
branch = "test-branch"

[sip]
bind = "127.0.0.1"
port = 0

[web]
bind = "127.0.0.1"
port = 0

[simulators]
gsm = false
analog = false

[[queues]]
id = "support"
name = "Support"

[[queues]]
id = "sales"
name = "Sales"

[[agents]]
id = "alice"
name = "Alice Martin"
password = "alice-secret"
queues = ["support"]

[[agents]]
id = "bob"
name = "Bob Okafor"
password = "bob-secret"
queues = ["support", "sales"]
"""


class RunningBox:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_path = root / "branchline.toml"
        self.data_dir = root / "data"
        self.box: Box | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def start(self) -> "RunningBox":
        if not self.config_path.exists():
            self.config_path.write_text(CONFIG)
        cfg = replace(load_config(self.config_path), data_dir=self.data_dir)
        self._thread = threading.Thread(target=self._main, args=(cfg,), name="test-box", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise TimeoutError("the box did not start")
        if self._error is not None:
            raise self._error
        return self

    def _main(self, cfg: Any) -> None:
        asyncio.run(self._run(cfg))

    async def _run(self, cfg: Any) -> None:
        self.loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        box = Box(cfg)
        try:
            await box.start()  # the box serves its own local API (config changes go to cfg.source)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            await box.stop()
            return
        self.box = box
        self._ready.set()
        await self._stopped.wait()
        await box.stop()

    def call(self, fn: Callable[[], Awaitable[T]] | Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the box's loop (a coroutine function or a plain function) and return its result."""
        async def runner() -> T:
            value = fn()
            if asyncio.iscoroutine(value):
                value = await value
            return value  # type: ignore[return-value]

        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(runner(), self.loop).result(timeout)

    async def acall(self, fn: Callable[[], Any], timeout: float = 30.0) -> Any:
        """``call`` from async code on another loop, without blocking that loop."""
        async def runner() -> Any:
            value = fn()
            if asyncio.iscoroutine(value):
                value = await value
            return value

        assert self.loop is not None
        fut = asyncio.run_coroutine_threadsafe(runner(), self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(fut), timeout)

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        if self.loop is not None and self._stopped is not None:
            self.loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                raise TimeoutError("the box did not stop")

