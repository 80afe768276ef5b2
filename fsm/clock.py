"""Injectable time: a `Clock` protocol, real time, and virtual time for tests.

Everything in `fsm/` (and the packages built on it) reads time through a
`Clock`, never through `time` or `asyncio.sleep` directly, so a test can run
on `ManualClock` and jump time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "MonotonicClock"]

# How many times `ManualClock.advance` yields to the event loop after waking a
# group of sleepers, so that a woken task can run up to its next real await
# (e.g. the next `clock.sleep`) before time moves on. Unit: loop iterations.
# A sleeper that needs more hops than this to reach its next sleep sees the
# later time, which is still correct, only less precise.
_SETTLE_YIELDS = 8


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source in seconds with a matching sleep."""

    def now(self) -> float:
        """Return the current time in seconds; never decreases."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on this clock (at once if <= 0)."""
        ...


class MonotonicClock:
    """Real time: `time.monotonic()` and `asyncio.sleep`."""

    def now(self) -> float:
        """Return `time.monotonic()`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep for real with `asyncio.sleep` (a non-positive delay still yields once)."""
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """Virtual time that only moves when a test calls `advance`.

    `sleep(s)` registers a deadline `now() + s` and waits until `advance`
    moves time to or past it. Sleepers are woken in deadline order (ties in
    the order they went to sleep) and each woken group sees `now()` equal to
    its own deadline, so code that measures intervals with `now()` gets exact
    numbers. A cancelled sleeper is simply dropped.

    Not thread-safe: use it from the event loop's thread only (`now()` may be
    read from anywhere).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._sleep_watchers: list[asyncio.Future[None]] = []

    def now(self) -> float:
        """Return the virtual time in seconds."""
        return self._now

    @property
    def sleepers(self) -> int:
        """How many tasks are currently blocked in `sleep`."""
        return sum(1 for _, _, fut in self._sleepers if not fut.done())

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline of a blocked sleeper, or None if nobody sleeps."""
        live = [deadline for deadline, _, fut in self._sleepers if not fut.done()]
        return min(live) if live else None

    async def sleep(self, seconds: float) -> None:
        """Block until virtual time reaches `now() + seconds`.

        A non-positive delay returns after yielding to the loop once, without
        waiting for `advance` (the same as `asyncio.sleep(0)`).
        """
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        watchers, self._sleep_watchers = self._sleep_watchers, []
        for watcher in watchers:
            if not watcher.done():
                watcher.set_result(None)
        await future

    async def wait_for_sleepers(self, count: int = 1) -> None:
        """Return once at least `count` tasks are blocked in `sleep`.

        Use it before `advance` when the task under test must first reach its
        sleep; it does not move time.
        """
        while self.sleepers < count:
            watcher: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._sleep_watchers.append(watcher)
            await watcher

    async def advance(self, seconds: float) -> None:
        """Move virtual time forward by `seconds`, waking sleepers on the way.

        Sleepers whose deadline is at or before the new time are woken in
        deadline order; after each group wakes, the loop gets a few turns so
        the woken tasks run (and may go back to sleep, possibly with a
        deadline that is also due, which is then honoured in order).

        Raises ValueError for a negative `seconds`: time never goes back.
        """
        if seconds < 0:
            raise ValueError(f"ManualClock cannot go back in time (advance({seconds!r}))")
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline = self._sleepers[0][0]
            self._now = max(self._now, deadline)
            while self._sleepers and self._sleepers[0][0] == deadline:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            await self._settle()
        self._now = target
        await self._settle()

    @staticmethod
    async def _settle() -> None:
        for _ in range(_SETTLE_YIELDS):
            await asyncio.sleep(0)
