"""fail_after / move_on_after on the injected clock: deadlines jump with virtual time."""

from __future__ import annotations

import asyncio

import pytest

from fsm import ManualClock, MonotonicClock
from fsm.deadline import fail_after, fail_at, move_on_after


async def test_fail_after_raises_timeout_when_virtual_time_passes_the_deadline() -> None:
    clock = ManualClock()
    reached: list[str] = []

    async def body() -> None:
        async with fail_after(clock, 2.0):
            await asyncio.Event().wait()  # never set
        reached.append("after")  # pragma: no cover - must not run

    task = asyncio.create_task(body())
    await clock.wait_for_sleepers(1)
    await clock.advance(1.9)
    assert not task.done()
    await clock.advance(0.2)
    with pytest.raises(TimeoutError):
        await task
    assert reached == []


async def test_move_on_after_ends_the_block_and_says_so() -> None:
    clock = ManualClock()

    async def body() -> bool:
        async with move_on_after(clock, 1.0) as scope:
            await clock.sleep(5.0)
        return scope.expired

    task = asyncio.create_task(body())
    await clock.wait_for_sleepers(2)
    await clock.advance(1.0)
    assert await task is True
    assert clock.now() == 1.0


async def test_a_body_that_finishes_in_time_is_not_expired_and_the_watchdog_is_gone() -> None:
    clock = ManualClock()
    async with move_on_after(clock, 10.0) as scope:
        await asyncio.sleep(0)
    assert scope.expired is False
    await asyncio.sleep(0)
    assert clock.sleepers == 0


async def test_an_outside_cancellation_is_not_mistaken_for_the_deadline() -> None:
    clock = ManualClock()

    async def body() -> None:
        async with fail_after(clock, 10.0):
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await clock.wait_for_sleepers(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_scopes_each_report_their_own_deadline() -> None:
    clock = ManualClock()
    seen: list[str] = []

    async def body() -> None:
        async with move_on_after(clock, 5.0) as outer:
            async with move_on_after(clock, 1.0) as inner:
                await clock.sleep(100)
            seen.append(f"inner expired={inner.expired}")
            await clock.sleep(100)
        seen.append(f"outer expired={outer.expired}")

    task = asyncio.create_task(body())
    await clock.wait_for_sleepers(3)
    await clock.advance(1.0)
    await clock.wait_for_sleepers(2)
    await clock.advance(4.0)
    await task
    assert seen == ["inner expired=True", "outer expired=True"]


async def test_fail_at_with_a_past_deadline_cancels_at_the_first_await() -> None:
    clock = ManualClock(start=5.0)
    with pytest.raises(TimeoutError):
        async with fail_at(clock, 4.0):
            await clock.sleep(1.0)


async def test_real_clock_deadline_works_with_generous_bounds() -> None:
    clock = MonotonicClock()
    async with move_on_after(clock, 0.05) as scope:
        await asyncio.sleep(30)
    assert scope.expired
