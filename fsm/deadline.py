"""Deadlines on an injected `Clock`: trio's `fail_after` / `move_on_after` for asyncio.

Every wait with a time limit in the engine goes through these, never through
`asyncio.timeout` (wall time), so a test on `ManualClock` jumps past a
deadline instead of sleeping through it.

    async with fail_after(clock, 2.0):      # raises TimeoutError after 2 s of clock time
        await something()

    async with move_on_after(clock, 2.0) as scope:
        await something()
    if scope.expired: ...                    # the body was cancelled at the deadline

The body runs in the calling task; at the deadline a watchdog task (owned by
the scope, cancelled on exit) cancels it. Like `asyncio.timeout`, a
cancellation that did not come from the deadline propagates untouched, and a
scope reports its own expiry only (nested scopes each see their own).

A body that swallows `CancelledError` (a misbehaving tool) cannot be stopped
by any in-task deadline; run such code in its own task and stop waiting for it
instead (see `voice_agent.scheduler`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fsm.clock import Clock

__all__ = ["CancelScope", "fail_after", "fail_at", "move_on_after", "move_on_at"]


@dataclass
class CancelScope:
    """What a deadline scope did: its deadline (clock seconds) and whether it fired."""

    deadline: float
    expired: bool = False


@asynccontextmanager
async def move_on_at(clock: Clock, deadline: float) -> AsyncIterator[CancelScope]:
    """Run the body until `deadline` on `clock`; then cancel it and carry on after the block.

    `scope.expired` is True when the deadline cut the body short (a body that
    finished as the deadline fired is not cut short). A deadline already past
    cancels the body at its first await.
    """
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - only reachable outside a task
        raise RuntimeError("move_on_at needs a running task")
    scope = CancelScope(deadline=deadline)
    cancelling_before = task.cancelling()
    fired = False

    async def watchdog() -> None:
        nonlocal fired
        await clock.sleep(deadline - clock.now())
        fired = True
        task.cancel(msg="deadline reached")

    guard = asyncio.get_running_loop().create_task(watchdog(), name="deadline-watchdog")
    try:
        yield scope
    except asyncio.CancelledError:
        if fired and task.uncancel() <= cancelling_before:
            scope.expired = True
            return  # our own cancellation: the block ends here
        raise
    else:
        if fired:
            # The deadline fired as the body finished: take back our cancellation,
            # delivered or not, and let the block end normally.
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                if task.uncancel() > cancelling_before:
                    raise
            else:
                task.uncancel()
    finally:
        guard.cancel()


@asynccontextmanager
async def move_on_after(clock: Clock, seconds: float) -> AsyncIterator[CancelScope]:
    """`move_on_at(clock, clock.now() + seconds)`."""
    async with move_on_at(clock, clock.now() + seconds) as scope:
        yield scope


@asynccontextmanager
async def fail_at(clock: Clock, deadline: float) -> AsyncIterator[CancelScope]:
    """Run the body until `deadline` on `clock`; then cancel it and raise `TimeoutError`."""
    async with move_on_at(clock, deadline) as scope:
        yield scope
    if scope.expired:
        raise TimeoutError(f"deadline {deadline:.3f} s on the clock reached")


@asynccontextmanager
async def fail_after(clock: Clock, seconds: float) -> AsyncIterator[CancelScope]:
    """`fail_at(clock, clock.now() + seconds)`: raise `TimeoutError` when `seconds` pass."""
    async with fail_at(clock, clock.now() + seconds) as scope:
        yield scope
