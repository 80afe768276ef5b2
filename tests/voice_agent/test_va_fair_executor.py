"""The worker's CPU scheduler: the call that got the least CPU goes next, end-of-turn
work goes before partials, a lane's own jobs keep their order, cancelled jobs never run."""

from __future__ import annotations

import threading
import time

from voice_agent.fair_executor import FairExecutor


def _blocker(pool: FairExecutor) -> tuple[threading.Event, object]:
    """Occupy the pool's single thread until the returned event is set."""
    gate = threading.Event()
    lane = pool.lane("blocker")
    future = lane.submit(gate.wait)
    while not future.running():
        time.sleep(0.001)
    return gate, future


def test_a_quiet_call_is_served_before_a_talkative_one_that_already_had_its_share() -> None:
    pool = FairExecutor("t", threads=1)
    order: list[str] = []
    try:
        busy, quiet = pool.lane("busy"), pool.lane("quiet")
        for _ in range(3):  # the busy call has used CPU already
            busy.submit(time.sleep, 0.02).result()
        gate, blocked = _blocker(pool)
        futures = [busy.submit(order.append, f"busy{i}") for i in range(4)]
        futures.append(quiet.submit(order.append, "quiet"))
        gate.set()
        for f in futures:
            f.result(timeout=5)
    finally:
        pool.shutdown()
    assert order[0] == "quiet"
    assert order[1:] == ["busy0", "busy1", "busy2", "busy3"]  # a lane keeps its order


def test_two_busy_calls_share_the_cpu_time_not_just_the_turns() -> None:
    pool = FairExecutor("t", threads=1)
    runs: list[tuple[str, float]] = []  # (lane, seconds it took), in the order they ran
    try:
        a, b = pool.lane("a"), pool.lane("b")
        gate, _ = _blocker(pool)

        def work(name: str, seconds: float) -> None:
            started = time.perf_counter()
            time.sleep(seconds)
            runs.append((name, time.perf_counter() - started))

        # a's jobs are three times as long as b's: b gets about three turns per turn of a.
        futures = [a.submit(work, "a", 0.03) for _ in range(4)]
        futures += [b.submit(work, "b", 0.01) for _ in range(12)]
        gate.set()
        for f in futures:
            f.result(timeout=10)
    finally:
        pool.shutdown()
    longest = max(took for _, took in runs)
    served = {"a": 0.0, "b": 0.0}
    for name, took in runs:
        other = "b" if name == "a" else "a"
        # The lane that runs is never more than one job's time ahead of the other.
        assert served[name] <= served[other] + longest + 1e-3, (runs, served)
        served[name] += took
        if served["a"] >= 0.03 * 4 - 1e-3 or served["b"] >= 0.01 * 12 - 1e-3:
            break  # one lane ran dry: the rest is the other's alone


def test_urgent_work_of_any_call_goes_before_ordinary_work() -> None:
    pool = FairExecutor("t", threads=1)
    order: list[str] = []
    try:
        a, b = pool.lane("a"), pool.lane("b")
        gate, _ = _blocker(pool)
        futures = [a.submit(order.append, "a-partial"), b.submit(order.append, "b-partial")]
        futures.append(b.urgent.submit(order.append, "b-final"))
        gate.set()
        for f in futures:
            f.result(timeout=5)
    finally:
        pool.shutdown()
    assert order[0] == "b-final"


def test_a_cancelled_job_never_runs_and_a_closed_lane_cancels_its_queue() -> None:
    pool = FairExecutor("t", threads=1)
    ran: list[str] = []
    try:
        lane = pool.lane("a")
        gate, _ = _blocker(pool)
        first = lane.submit(ran.append, "cancelled")
        second = lane.submit(ran.append, "dropped")
        assert first.cancel()
        lane.shutdown(cancel_futures=True)
        gate.set()
        assert second.cancelled()
        survivor = pool.lane("b").submit(ran.append, "ran")
        survivor.result(timeout=5)
    finally:
        pool.shutdown()
    assert ran == ["ran"]


def test_an_exception_reaches_the_waiting_side() -> None:
    pool = FairExecutor("t", threads=1)
    try:
        future = pool.lane("a").submit(int, "not a number")
        try:
            future.result(timeout=5)
        except ValueError:
            pass
        else:
            raise AssertionError("the error was lost")
    finally:
        pool.shutdown()


def test_backlog_counts_the_jobs_waiting_for_a_thread() -> None:
    pool = FairExecutor("t", threads=1)
    try:
        assert pool.backlog() == 0
        gate, _ = _blocker(pool)  # running, not waiting
        assert pool.backlog() == 0
        a = pool.lane("a")
        futures = [a.submit(time.sleep, 0), a.urgent.submit(time.sleep, 0)]
        assert pool.backlog() == 2
        gate.set()
        for f in futures:
            f.result(timeout=5)
        assert pool.backlog() == 0
    finally:
        pool.shutdown()
