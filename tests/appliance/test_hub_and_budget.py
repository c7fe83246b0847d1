"""The event hub's bounded queues, and the shutdown budget against systemd's stop timeout."""
from __future__ import annotations

import asyncio

from appliance.app import SHUTDOWN_STAGES_S, SYSTEMD_TIMEOUT_STOP_S
from appliance.hub import Hub, Overflow


async def test_publish_fans_out_in_order() -> None:
    hub = Hub()
    a, b = hub.topic("t").subscribe(), hub.topic("t").subscribe()
    for i in range(3):
        hub.topic("t").publish(i)
    async with asyncio.timeout(1):
        assert [await a.get() for _ in range(3)] == [0, 1, 2]
        assert [await b.get() for _ in range(3)] == [0, 1, 2]


async def test_drop_oldest_keeps_newest_and_counts() -> None:
    topic = Hub().topic("state", maxsize=2)
    sub = topic.subscribe()
    for i in range(5):
        topic.publish(i)
    assert sub.statistics().dropped == 3
    async with asyncio.timeout(1):
        assert [await sub.get(), await sub.get()] == [3, 4]


async def test_fail_policy_closes_a_slow_subscriber_without_hurting_others() -> None:
    topic = Hub().topic("must", maxsize=2, overflow=Overflow.FAIL)
    slow, fast = topic.subscribe(), topic.subscribe(maxsize=10)
    for i in range(3):
        topic.publish(i)
    assert slow.statistics().closed and not fast.statistics().closed
    async with asyncio.timeout(1):
        assert [await fast.get() for _ in range(3)] == [0, 1, 2]


async def test_closing_wakes_a_waiting_reader() -> None:
    sub = Hub().topic("t").subscribe()
    reader = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    sub.close()
    async with asyncio.timeout(1):
        try:
            await reader
            raise AssertionError("get() should end the iteration")
        except StopAsyncIteration:
            pass


def test_shutdown_fits_systemd_budget() -> None:
    assert sum(SHUTDOWN_STAGES_S.values()) + 10.0 <= SYSTEMD_TIMEOUT_STOP_S
