"""ManualClock and MonotonicClock behaviour."""

from __future__ import annotations

import asyncio

import pytest

from fsm import Clock, ManualClock, MonotonicClock


async def test_manual_clock_wakes_sleepers_in_deadline_order_at_their_deadlines() -> None:
    clock = ManualClock(start=10.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    async with asyncio.TaskGroup() as tg:
        tg.create_task(sleeper("late", 3.0))
        tg.create_task(sleeper("early", 1.0))
        tg.create_task(sleeper("middle", 2.0))
        await clock.wait_for_sleepers(3)
        await clock.advance(5.0)

    assert woke == [("early", 11.0), ("middle", 12.0), ("late", 13.0)]
    assert clock.now() == 15.0


async def test_manual_clock_advance_leaves_later_sleepers_asleep() -> None:
    clock = ManualClock()
    done = asyncio.Event()

    async def sleeper() -> None:
        await clock.sleep(2.0)
        done.set()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(sleeper())
        await clock.wait_for_sleepers()
        await clock.advance(1.999)
        assert not done.is_set()
        assert clock.sleepers == 1
        assert clock.next_deadline == 2.0
        await clock.advance(0.001)
        assert done.is_set()
    assert clock.sleepers == 0


async def test_manual_clock_honours_a_sleep_started_by_a_woken_sleeper_within_the_same_advance() -> (
    None
):
    clock = ManualClock()
    times: list[float] = []

    async def ticker() -> None:
        for _ in range(3):
            await clock.sleep(1.0)
            times.append(clock.now())

    async with asyncio.TaskGroup() as tg:
        tg.create_task(ticker())
        await clock.wait_for_sleepers()
        await clock.advance(10.0)
    assert times == [1.0, 2.0, 3.0]


async def test_manual_clock_sleep_of_zero_returns_without_advance() -> None:
    clock = ManualClock(start=5.0)
    await asyncio.wait_for(clock.sleep(0), timeout=1.0)
    await asyncio.wait_for(clock.sleep(-1.0), timeout=1.0)
    assert clock.now() == 5.0


async def test_manual_clock_refuses_to_go_back_in_time() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="back in time"):
        await clock.advance(-0.5)


async def test_manual_clock_drops_a_cancelled_sleeper() -> None:
    clock = ManualClock()
    task = asyncio.create_task(clock.sleep(1.0))
    await clock.wait_for_sleepers()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == 0
    await clock.advance(2.0)  # must not trip over the cancelled future
    assert clock.now() == 2.0


async def test_monotonic_clock_moves_forward_and_sleeps_for_real() -> None:
    clock = MonotonicClock()
    before = clock.now()
    await clock.sleep(0.01)
    assert clock.now() - before >= 0.009


def test_both_clocks_satisfy_the_clock_protocol() -> None:
    assert isinstance(ManualClock(), Clock)
    assert isinstance(MonotonicClock(), Clock)
