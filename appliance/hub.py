"""The one in-process event hub: typed topics with bounded per-subscriber queues.

Publishing is synchronous and never blocks the publisher. Each subscriber owns a
bounded queue; what happens when it is full is chosen per topic (``Overflow``).
A subscriber that raises is the subscriber's problem, never the publisher's.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from enum import Enum, auto
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E")


class Overflow(Enum):
    DROP_OLDEST = auto()  # state-like topics: the newest value matters most
    FAIL = auto()  # must keep up: overflow is a bug, the subscription is closed and logged


@dataclass(frozen=True, slots=True)
class SubscriptionStats:
    depth: int
    max_depth: int
    dropped: int
    closed: bool


class Subscription(Generic[E]):
    """An async iterator over a topic's events; ``close()`` unsubscribes."""

    def __init__(self, topic: "Topic[E]", maxsize: int) -> None:
        self._topic = topic
        self._items: deque[E] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._dropped = 0
        self._max_depth = 0

    def _offer(self, event: E) -> None:
        if self._closed:
            return
        if len(self._items) >= self._maxsize:
            if self._topic.overflow is Overflow.FAIL:
                log.error("subscriber of %s fell %d events behind; closing it", self._topic.name, self._maxsize)
                self.close()
                return
            self._items.popleft()
            self._dropped += 1
        self._items.append(event)
        self._max_depth = max(self._max_depth, len(self._items))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def get_nowait(self) -> E | None:
        return self._items.popleft() if self._items else None

    async def get(self) -> E:
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def __aiter__(self) -> "Subscription[E]":
        return self

    async def __anext__(self) -> E:
        return await self.get()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._topic._subs.discard(self)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def statistics(self) -> SubscriptionStats:
        return SubscriptionStats(len(self._items), self._max_depth, self._dropped, self._closed)


class Topic(Generic[E]):
    def __init__(self, name: str, *, maxsize: int = 256, overflow: Overflow = Overflow.DROP_OLDEST) -> None:
        self.name = name
        self.maxsize = maxsize
        self.overflow = overflow
        self._subs: set[Subscription[E]] = set()
        self.published = 0

    def publish(self, event: E) -> None:
        self.published += 1
        for sub in list(self._subs):
            sub._offer(event)

    def subscribe(self, maxsize: int | None = None) -> Subscription[E]:
        sub: Subscription[E] = Subscription(self, maxsize or self.maxsize)
        self._subs.add(sub)
        return sub


class Hub:
    """Owns the named topics. Components get topics from it by name and type."""

    def __init__(self) -> None:
        self._topics: dict[str, Topic] = {}

    def topic(self, name: str, *, maxsize: int = 256, overflow: Overflow = Overflow.DROP_OLDEST) -> Topic:
        t = self._topics.get(name)
        if t is None:
            t = self._topics[name] = Topic(name, maxsize=maxsize, overflow=overflow)
        return t
