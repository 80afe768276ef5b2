"""Admission: slots, a first-come-first-served queue, hand-over across event loops."""

from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_agent.admission import Admission, QueueFull, Ticket


async def test_a_freed_slot_goes_to_the_first_in_line_and_a_full_queue_refuses() -> None:
    adm = Admission(1, max_waiting=2)
    assert adm.try_enter()
    first, second = adm.queue(), adm.queue()
    with pytest.raises(QueueFull):
        adm.queue()
    assert adm.waiting == 2 and not adm.can_take()
    assert not adm.try_enter()  # nobody jumps the line
    adm.leave()
    await first.wait(60)
    assert not second.granted.done() and adm.active == 1 and adm.waiting == 1
    adm.leave()
    await second.wait(60)
    adm.leave()
    assert adm.active == 0 and adm.waiting == 0 and adm.try_enter()


async def test_a_wait_that_times_out_leaves_the_queue_and_the_slot_goes_to_the_next() -> None:
    adm = Admission(1, max_waiting=2)
    assert adm.try_enter()
    impatient, patient = adm.queue(), adm.queue()
    with pytest.raises(TimeoutError):
        await impatient.wait(0.01)
    assert adm.waiting == 1
    adm.leave()
    await patient.wait(60)
    assert adm.active == 1


async def test_a_slot_handed_to_a_caller_who_hung_up_meanwhile_is_passed_on() -> None:
    adm = Admission(1, max_waiting=2)
    assert adm.try_enter()
    gone, next_one = adm.queue(), adm.queue()
    adm.leave()  # the grant to `gone` is scheduled in its loop...
    gone.cancel()  # ...but that caller hangs up before it lands
    await next_one.wait(60)
    adm.leave()
    assert adm.active == 0 and adm.waiting == 0


def test_calls_in_other_threads_event_loops_get_the_slot_in_order() -> None:
    adm = Admission(1, max_waiting=3)
    assert adm.try_enter()
    order: list[int] = []
    queued = threading.Barrier(4)

    def job(n: int) -> None:
        async def run() -> None:
            ticket = adm.queue()
            queued.wait()
            await ticket.wait(60)
            order.append(n)
            adm.leave()

        asyncio.run(run())

    threads = []
    for n in range(3):
        t = threading.Thread(target=job, args=(n,))
        t.start()
        threads.append(t)
        while adm.waiting < n + 1:  # queued in this order
            threading.Event().wait(0.001)
    queued.wait()
    adm.leave()
    for t in threads:
        t.join(60)
    assert order == [0, 1, 2]
    assert adm.active == 0 and adm.waiting == 0


@settings(max_examples=150, deadline=None)
@given(
    max_calls=st.integers(1, 3),
    max_waiting=st.integers(0, 3),
    ops=st.lists(st.sampled_from(["arrive", "leave", "hang_up"]), max_size=40),
)
def test_slots_are_never_oversold_lost_or_given_out_of_order(
    max_calls: int, max_waiting: int, ops: list[str]
) -> None:
    """Any sequence of arrivals, calls ending and queued callers hanging up: never more than
    max_calls hold a slot, the queue never exceeds max_waiting, a freed slot goes to the
    earliest caller still waiting, and when everyone has left every slot is free again."""

    async def run() -> None:
        adm = Admission(max_calls, max_waiting)
        holding: list[int] = []  # callers holding a slot, in order of arrival
        queued: list[tuple[int, Ticket]] = []
        served_order: list[int] = []
        for n, op in enumerate(ops):
            if op == "arrive":
                if adm.try_enter():
                    holding.append(n)
                    continue
                try:
                    queued.append((n, adm.queue()))
                except QueueFull:
                    assert adm.waiting == max_waiting
            elif op == "leave" and holding:
                holding.pop(0)
                adm.leave()
            elif op == "hang_up" and queued:
                _, ticket = queued.pop(len(queued) // 2)
                ticket.cancel()
            await asyncio.sleep(0)  # grants land in the loop
            await asyncio.sleep(0)
            for m, ticket in list(queued):
                if ticket.granted.done() and not ticket.granted.cancelled():
                    queued.remove((m, ticket))
                    holding.append(m)
                    served_order.append(m)
            assert len(holding) == adm.active <= max_calls
            assert len(queued) == adm.waiting <= max_waiting
            assert served_order == sorted(served_order)  # first come, first served
        while holding:
            holding.pop()
            adm.leave()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            for m, ticket in list(queued):
                if ticket.granted.done() and not ticket.granted.cancelled():
                    queued.remove((m, ticket))
                    holding.append(m)
        assert not queued and adm.active == 0 and adm.waiting == 0

    asyncio.run(run())
