"""Injectable time: a `Clock` protocol, real time, and virtual time for tests.

Everything in `fsm/` (and the packages built on it) reads time through a
`Clock`, never through `time` or `asyncio.sleep` directly, so a test can run
on virtual time and jump instead of sleeping:

- `MonotonicClock`: real time.
- `ManualClock`: time moves only when the test calls `advance` (step by step).
- `AutojumpClock`: time jumps to the next deadline whenever every task is
  waiting on it (trio's `autojump_clock`); a whole conversation or bench
  scenario runs in milliseconds, in the same order it would in real time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import selectors
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Executor
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["AutojumpClock", "Clock", "ManualClock", "MonotonicClock", "track_thread_job"]

_T = TypeVar("_T")

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
    """Real time: the running event loop's clock (`time.monotonic()` on an ordinary loop).

    Reading the loop's time rather than `time.monotonic()` directly keeps
    `now()` and `sleep` on one time line: on an `AutojumpClock` loop, code that
    defaults to `MonotonicClock` is on that virtual time too. Outside a running
    loop (another thread, start-up code) `now()` is `time.monotonic()`.
    """

    def now(self) -> float:
        """Return the running loop's `time()`, else `time.monotonic()`."""
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep with `asyncio.sleep` (a non-positive delay still yields once)."""
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


class AutojumpClock:
    """Virtual time that jumps to the next deadline when every task waits on it.

    The model is trio's `autojump_clock`, for asyncio: the clock comes with
    its own event loop (`new_event_loop`, or `run`) whose `loop.time()` is
    this clock. Whenever that loop has nothing to run and no I/O is ready, it
    jumps virtual time straight to its next timer instead of blocking. So
    `clock.sleep`, `asyncio.sleep`, `asyncio.timeout`, `fsm.fail_after` and the
    timeouts inside libraries (httpx, aiohttp) all run on virtual time, and
    code in the loop runs in the same order as it would in real time: only
    the waiting is skipped. I/O between tasks of the loop (an in-process HTTP
    server and its client over 127.0.0.1 or a Unix socket) is delivered by
    the kernel during the sending call, so it is seen before time jumps.

    Work in threads started with `loop.run_in_executor` / `asyncio.to_thread`
    (or announced with `track_thread_job`) counts like CPU work in the loop:
    while the process computes (a model decoding in a worker thread), the
    loop waits for it and time stands still, so results do not depend on how
    fast or busy the machine is. While the jobs are blocked instead (a tool
    calling `time.sleep`: no thread of the process is runnable for
    `_THREAD_WINDOW_S`), virtual time follows real time (never past the next
    timer), so a timeout set on a blocked call still fires; so it does once
    one job has computed for `_THREAD_GRACE_S`, a bound on a runaway thread.
    Thread states are the whole process's: another thread computing meanwhile
    makes a blocked job look busy until the grace. Threads nobody announced, and I/O
    from outside the process (a subprocess server), are not waited for: set
    `idle_threshold_s` to the real time the loop waits for I/O before it
    jumps, or use real time.

    `now()` may be read from any thread; `sleep` must run on this clock's loop.
    """

    def __init__(self, start: float = 0.0, *, idle_threshold_s: float = 0.0) -> None:
        if idle_threshold_s < 0:
            raise ValueError(f"idle_threshold_s must be >= 0, got {idle_threshold_s!r}")
        self._now = float(start)
        self.idle_threshold_s = idle_threshold_s
        self.jumps = 0  # how many times the loop skipped a wait (a measure, for tests)

    def now(self) -> float:
        """Return the virtual time in seconds."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of virtual time (at once if <= 0, after one yield)."""
        loop = asyncio.get_running_loop()
        if not isinstance(loop, _AutojumpLoop) or loop.clock is not self:
            raise RuntimeError(
                "AutojumpClock.sleep must run on the loop from this clock's new_event_loop()"
            )
        await asyncio.sleep(max(0.0, seconds))

    @staticmethod
    def running() -> AutojumpClock:
        """The clock of the running loop; RuntimeError when it is not an `AutojumpClock` loop."""
        loop = asyncio.get_running_loop()
        if not isinstance(loop, _AutojumpLoop):
            raise RuntimeError("the running event loop is not an AutojumpClock loop")
        return loop.clock

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A new event loop on this clock (for `asyncio.Runner(loop_factory=...)`)."""
        return _AutojumpLoop(self)

    def run(self, main: Coroutine[Any, Any, _T]) -> _T:
        """Run `main` to completion on a new loop on this clock (like `asyncio.run`)."""
        with asyncio.Runner(loop_factory=self.new_event_loop) as runner:
            return runner.run(main)

    def _advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds


def track_thread_job(future: asyncio.Future[Any]) -> None:
    """Say that `future` will be completed by work on a thread of one's own.

    Work started with `loop.run_in_executor` is known to the loop already;
    a thread started by hand is not. On an `AutojumpClock` loop the job then
    counts like executor work (time stands still while it computes and
    follows real time while it is blocked) until `future` is done, instead of
    time jumping past it. On any other loop this does nothing.
    """
    loop = future.get_loop()
    if isinstance(loop, _AutojumpLoop):
        loop.track(future)


class _AutojumpLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose time is an `AutojumpClock` (see there)."""

    def __init__(self, clock: AutojumpClock) -> None:
        self.clock = clock
        self._jobs: dict[asyncio.Future[Any], float] = {}  # running job -> real start time
        self.window: tuple[float, float] | None = None  # (real, other threads' CPU) s at start
        self.window_busy = False  # a thread was seen runnable during the current window
        super().__init__(_AutojumpSelector(selectors.DefaultSelector(), self))

    def time(self) -> float:
        """The clock's virtual time (every loop timer is on it)."""
        return self.clock.now()

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        """As the base loop, counting the job as running until its future is done."""
        future = super().run_in_executor(executor, func, *args)
        self.track(future)
        return future

    def track(self, future: asyncio.Future[Any]) -> None:
        """Count ``future`` as a running thread job until it is done."""
        if future.done() or future in self._jobs:
            return
        self._jobs[future] = time.monotonic()
        future.add_done_callback(self._thread_done)

    @property
    def threads_running(self) -> int:
        """How many `run_in_executor` jobs have not finished yet."""
        return len(self._jobs)

    @property
    def oldest_job_started(self) -> float | None:
        """Real time the longest-running job started, or None."""
        return min(self._jobs.values(), default=None)

    def _thread_done(self, future: asyncio.Future[Any]) -> None:
        self._jobs.pop(future, None)
        if not self._jobs:
            self.window = None
            self.window_busy = False


# Real time one thread job may compute while virtual time stands still (s): a bound on a
# runaway thread; far above a model decode on a loaded machine (Whisper: ~0.2-5 s).
_THREAD_GRACE_S = 30.0
# How long the loop watches its threads before it decides whether its thread jobs
# compute or are blocked (real s); sampled ten times in the window.
_THREAD_WINDOW_S = 0.3
# Below this share of one core over a window, the thread jobs are blocked, not computing
# (a thread starved on a loaded 2-core machine still gets ~5-25 %).
_BLOCKED_CPU_SHARE = 0.02


def _other_threads_cpu() -> float:
    """CPU seconds used so far by this process's threads other than the caller."""
    return time.process_time() - time.thread_time()


def _other_threads_runnable() -> bool | None:
    """True when a thread of this process other than the caller is running or runnable
    (or in uninterruptible I/O); None where thread states cannot be read (not Linux)."""
    tasks = f"/proc/{os.getpid()}/task"
    me = str(threading.get_native_id())
    try:
        names = os.listdir(tasks)
    except OSError:
        return None
    for name in names:
        if name == me:
            continue
        try:
            with open(f"{tasks}/{name}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        if state in (b"R", b"D"):
            return True
    return False


class _AutojumpSelector(selectors.BaseSelector):
    """Wraps the real selector: a wait with nothing ready becomes a jump in time.

    The loop calls `select(timeout)` with `timeout == 0` when callbacks are
    ready, the time to its next timer otherwise, or None without timers.
    """

    def __init__(self, inner: selectors.BaseSelector, loop: _AutojumpLoop) -> None:
        self._inner = inner
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._inner.select(0)
        if events or (timeout is not None and timeout <= 0):
            return events
        clock = self._loop.clock
        if self._loop.threads_running:
            return self._wait_for_threads(timeout)
        if clock.idle_threshold_s > 0:
            wait = (
                clock.idle_threshold_s if timeout is None else min(timeout, clock.idle_threshold_s)
            )
            events = self._inner.select(wait)
            if events:
                return events
        if timeout is None:
            return self._inner.select(None)  # no timer at all: only I/O can wake the loop
        clock._advance(timeout)
        clock.jumps += 1
        return []

    def _wait_for_threads(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        """Wait (for real) for thread jobs; move virtual time only while they are blocked.

        Blocked means: over a whole window, no other thread of the process was
        ever seen runnable (Linux: /proc thread states; a starved but computing
        thread is runnable, one in `time.sleep` or a lock is not) and the other
        threads together used under `_BLOCKED_CPU_SHARE` of a core.
        """
        loop, clock = self._loop, self._loop.clock
        if loop.window is None:
            loop.window = (time.monotonic(), _other_threads_cpu())
            loop.window_busy = False
        events = self._inner.select(_THREAD_WINDOW_S / 10)
        busy = _other_threads_runnable()
        loop.window_busy = loop.window_busy or bool(busy)
        start_real, start_cpu = loop.window
        elapsed = time.monotonic() - start_real
        if elapsed < _THREAD_WINDOW_S:
            return events
        # Computing: a thread was seen runnable, or the other threads used CPU meanwhile (a
        # pure-Python job waiting for the GIL the loop holds while it samples reads as sleeping,
        # so the states alone can miss it; where no states can be read, CPU is all there is).
        used = _other_threads_cpu() - start_cpu
        computing = loop.window_busy or used >= _BLOCKED_CPU_SHARE * elapsed
        oldest = loop.oldest_job_started
        runaway = oldest is not None and time.monotonic() - oldest > _THREAD_GRACE_S
        if not computing or runaway:
            clock._advance(elapsed if timeout is None else min(elapsed, timeout))
        loop.window = None
        return events

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()
