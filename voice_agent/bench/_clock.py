"""Clock helpers for the bench pieces (time always comes from a ``fsm.Clock``)."""

from __future__ import annotations

import asyncio

from fsm import Clock, MonotonicClock

__all__ = ["Clock", "MonotonicClock", "sleep_or_wake", "sleep_until"]


async def sleep_until(clock: Clock, deadline: float) -> None:
    """Sleep on ``clock`` until ``deadline`` (no-op if it has passed)."""
    remaining = deadline - clock.now()
    if remaining > 0:
        await clock.sleep(remaining)


async def sleep_or_wake(clock: Clock, wake: asyncio.Event, deadline: float | None) -> bool:
    """Wait until ``deadline`` on ``clock`` or until ``wake`` is set.

    Returns True when the deadline was reached, False when woken first
    (``wake`` is cleared before returning). ``deadline=None`` waits for the
    wake only. Both helper tasks are owned here and cancelled on exit.
    """
    if deadline is not None and deadline <= clock.now():
        return True
    waiter = asyncio.ensure_future(wake.wait())
    tasks: set[asyncio.Future[object]] = {waiter}  # type: ignore[arg-type]
    if deadline is not None:
        tasks.add(asyncio.ensure_future(clock.sleep(deadline - clock.now())))  # type: ignore[arg-type]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if wake.is_set():
        wake.clear()
        return False
    return True
