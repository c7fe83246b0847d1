"""Supervised restart loops for drivers and services.

A driver that fails is restarted with backoff; only ``FatalDriverError`` (restarting
will not help) escapes to the caller. Logs escalate once: the first failure is a
WARNING, repeats are DEBUG, and recovery is logged at INFO.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


class FatalDriverError(Exception):
    """Restarting will not help (wrong PIN, unsupported device, bad config)."""


@dataclass(frozen=True, slots=True)
class Backoff:
    first_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    healthy_after_s: float = 60.0  # a run this long resets the attempt counter

    def delay(self, attempt: int) -> float:
        base = min(self.first_s * self.factor ** min(attempt, 16), self.max_s)
        return base * (0.8 + 0.4 * random.random())


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    backoff: Backoff = Backoff(),
    on_down: Callable[[str, BaseException, float], None] | None = None,
) -> None:
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            await run()
            if attempt:
                log.info("%s recovered after %d restart(s)", name, attempt)
            return
        except FatalDriverError as exc:
            log.error("%s stopped: %s", name, exc)
            raise
        except Exception as exc:  # CancelledError is a BaseException and passes through
            if time.monotonic() - started >= backoff.healthy_after_s:
                attempt = 0
            delay = backoff.delay(attempt)
            attempt += 1
            log.log(
                logging.WARNING if attempt == 1 else logging.DEBUG,
                "%s failed (%s); restart #%d in %.1fs",
                name,
                exc or type(exc).__name__,
                attempt,
                delay,
            )
            if on_down is not None:
                on_down(name, exc, delay)
            await asyncio.sleep(delay)
