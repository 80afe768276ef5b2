"""AutojumpClock: virtual time that jumps when every task waits (trio's autojump_clock)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from aiohttp import ClientSession, web
from web_helpers import serving

from fsm import AutojumpClock, Clock, fail_after, move_on_after, track_thread_job


def test_an_hour_of_sleeps_takes_no_real_time_and_keeps_the_real_order() -> None:
    clock = AutojumpClock(start=5.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    async def main() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sleeper("late", 3600.0))
            tg.create_task(sleeper("early", 1.0))
            tg.create_task(sleeper("middle", 60.0))

    started = time.monotonic()
    clock.run(main())
    assert time.monotonic() - started < 60.0  # an hour of waiting is skipped (a safety net)
    assert woke == [("early", 6.0), ("middle", 65.0), ("late", 3605.0)]
    assert isinstance(clock, Clock)
    assert clock.jumps >= 3


def test_loop_timers_asyncio_timeouts_and_fsm_deadlines_run_on_the_clock() -> None:
    clock = AutojumpClock()

    async def main() -> list[float]:
        seen = []
        await asyncio.sleep(10)  # a plain asyncio sleep is virtual on this loop
        seen.append(clock.now())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.sleep(100)
        seen.append(clock.now())
        with pytest.raises(TimeoutError):
            async with fail_after(clock, 3):
                await asyncio.Event().wait()
        seen.append(clock.now())
        async with move_on_after(clock, 1) as scope:
            await clock.sleep(0.5)
        seen.append(clock.now())
        assert not scope.expired
        return seen

    assert clock.run(main()) == [10.0, 12.0, 15.0, 15.5]


def test_http_over_a_real_socket_arrives_before_time_jumps() -> None:
    """An in-process server streaming SSE at clock deadlines: the client sees every
    chunk at exactly its deadline, because time only jumps when nothing is in flight."""
    clock = AutojumpClock()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        start = clock.now()
        for i in range(20):
            await clock.sleep(start + 0.25 * (i + 1) - clock.now())
            await response.write(f"data: {json.dumps({'i': i, 't': clock.now()})}\n\n".encode())
        await response.write_eof()
        return response

    async def main() -> list[tuple[float, float]]:
        app = web.Application()
        app.router.add_get("/stream", handler)
        seen = []
        async with serving(app) as base, ClientSession() as session:
            async with session.get(f"{base}/stream") as response:
                async for line in response.content:
                    if line.startswith(b"data: "):
                        sent = json.loads(line[6:])["t"]
                        seen.append((sent, clock.now()))
        return seen

    seen = clock.run(main())
    assert len(seen) == 20
    assert all(received == sent for sent, received in seen)  # no time passed in flight
    assert seen[-1][0] - seen[0][0] == pytest.approx(0.25 * 19)


def _compute(seconds: float) -> int:
    """Burn CPU for ``seconds`` of real time (a model decode stands for this)."""
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return n


def test_thread_work_that_computes_takes_no_virtual_time_however_long() -> None:
    clock = AutojumpClock()

    async def main() -> float:
        before = clock.now()
        async with asyncio.TaskGroup() as tg:
            ticker = tg.create_task(asyncio.sleep(0.01))  # a timer due during the work
            await asyncio.to_thread(_compute, 0.4)
            assert not ticker.done()  # time stood still while the thread computed
        return clock.now() - before

    assert clock.run(main()) == pytest.approx(0.01)


def test_a_blocked_thread_cannot_stop_a_deadline() -> None:
    clock = AutojumpClock()

    async def main() -> tuple[float, float]:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with fail_after(clock, 0.2):
                await asyncio.shield(asyncio.to_thread(time.sleep, 2.5))
        return clock.now(), time.monotonic() - started

    fired_at, real_s = clock.run(main())
    assert fired_at == pytest.approx(0.2, abs=0.05)
    # It fired while the thread slept (about 0.5 s in), not once the thread counted as a
    # runaway (the clock's 30 s grace); half the grace is a bound no load reaches.
    assert real_s < 15.0


def test_sleep_off_its_loop_is_refused() -> None:
    clock = AutojumpClock()

    async def main() -> None:
        await clock.sleep(1)

    with pytest.raises(RuntimeError, match="new_event_loop"):
        asyncio.run(main())
    with pytest.raises(ValueError):
        AutojumpClock(idle_threshold_s=-1)


def test_a_thread_started_by_hand_is_waited_for_once_tracked() -> None:
    clock = AutojumpClock()

    async def main() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        track_thread_job(future)

        def work() -> None:
            n = _compute(0.3)
            loop.call_soon_threadsafe(future.set_result, n)

        threading.Thread(target=work, daemon=True).start()
        async with move_on_after(clock, 0.05) as scope:
            await future
        return scope.expired, clock.now()

    assert clock.run(main()) == (False, 0.0)  # the 50 ms deadline did not jump past the work
