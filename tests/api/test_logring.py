from __future__ import annotations

import asyncio
import logging
import threading

from appliance.api.logring import FOLLOWER_QUEUE, LogRing


def _logger(ring: LogRing, name: str = "tests.ring") -> logging.Logger:
    log = logging.getLogger(name)
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.handlers = [ring]
    return log


def test_ring_keeps_the_newest_records_in_order_with_levels() -> None:
    ring = LogRing(size=3)
    log = _logger(ring)
    for i in range(5):
        log.info("record %d", i)
    log.debug("quiet")
    assert [e.message for e in ring.recent()] == ["record 3", "record 4", "quiet"]
    assert [e.message for e in ring.recent(logging.INFO)] == ["record 3", "record 4"]
    assert [e.seq for e in ring.recent()] == [4, 5, 6]


def test_bad_format_args_and_exceptions_become_one_readable_line() -> None:
    ring = LogRing()
    log = _logger(ring)
    log.warning("needs two %s %s", "only-one")
    try:
        raise OSError("disk gone")
    except OSError:
        log.exception("commit failed")
    bad, exc = ring.recent()
    assert bad.message.startswith("'needs two %s %s' (unformattable args")
    assert exc.message == "commit failed [OSError: disk gone]" and exc.level == "ERROR"


async def test_followers_get_new_records_from_any_thread_and_lose_the_oldest_when_slow() -> None:
    ring = LogRing()
    log = _logger(ring)
    follower = ring.follow(logging.INFO)
    worker = threading.Thread(target=lambda: [log.info("from thread %d", i) for i in range(FOLLOWER_QUEUE + 5)])
    worker.start()
    worker.join()
    log.debug("below the follower's level")
    log.error("last")
    got = []
    async with asyncio.timeout(5):
        while not got or got[-1] != "last":  # thread records arrive through call_soon_threadsafe
            got.append((await follower.get()).message)
    assert follower.missed == 6  # FOLLOWER_QUEUE + 6 records for a queue of FOLLOWER_QUEUE
    assert got[0] == "from thread 6" and len(got) == FOLLOWER_QUEUE and "below the follower's level" not in got
    follower.close()
    async with asyncio.timeout(1):
        assert await follower.get() is None
