"""Machine runtime: dispatch order, guards, actions, failures, trace, run/close."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import pytest

from fsm import (
    ActionFailed,
    Event,
    Ignore,
    Machine,
    MachineClosed,
    MachineDefinition,
    ManualClock,
    TraceRecord,
    Transition,
)


@dataclass(frozen=True, kw_only=True)
class Started(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class Ticked(Event):
    n: int = 0


@dataclass(frozen=True, kw_only=True)
class Stopped(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class Unrelated(Event):
    pass


@dataclass
class Ctx:
    log: list[str] = field(default_factory=list)
    clock: ManualClock = field(default_factory=ManualClock)


def big(ctx: Ctx, event: Ticked) -> bool:
    return event.n >= 10


def medium(ctx: Ctx, event: Ticked) -> bool:
    return event.n >= 5


def note(text: str):  # type: ignore[no-untyped-def]
    def action(ctx: Ctx, event: Event) -> None:
        ctx.log.append(text)

    action.__qualname__ = text
    return action


async def slow_note(ctx: Ctx, event: Event) -> None:
    await ctx.clock.sleep(0)
    ctx.log.append("slow")


def boom(ctx: Ctx, event: Event) -> None:
    raise ValueError("no luck")


def on_failure(ctx: Ctx, event: ActionFailed) -> None:
    ctx.log.append(f"failed {event.action} during {event.during}: {event.error}")


def make_definition(
    running_actions: tuple = (),  # type: ignore[type-arg]
) -> MachineDefinition:
    return MachineDefinition(
        name="demo",
        states=("idle", "running", "done"),
        initial="idle",
        events=(Started, Ticked, Stopped, ActionFailed),
        transitions=(
            Transition("idle", Started, "running", actions=running_actions),
            Transition("running", Ticked, "done", guard=big, actions=[note("big")]),
            Transition("running", Ticked, guard=medium, actions=[note("medium")]),
            Transition("running", Stopped, "idle", actions=[note("stop")]),
            Transition("*", ActionFailed, actions=[on_failure]),
        ),
        ignored=(
            Ignore("idle", Ticked, "not running"),
            Ignore("idle", Stopped, "not running"),
            Ignore("running", Started, "already running"),
            Ignore("running", Ticked, "otherwise: too small to count"),
        ),
        final=("done",),
    )


def make_machine(
    running_actions: tuple = (),  # type: ignore[type-arg]
    **kwargs: object,
) -> Machine[Ctx]:
    ctx = Ctx()
    return Machine(make_definition(running_actions), ctx, clock=ctx.clock, **kwargs)  # type: ignore[arg-type]


async def test_transition_sets_state_and_traces_it() -> None:
    machine = make_machine()
    record = await machine.dispatch(Started())
    assert machine.state == "running"
    assert (record.source, record.event, record.target, record.outcome) == (
        "idle",
        "Started",
        "running",
        "transition",
    )
    assert machine.trace == [record]


async def test_guards_are_tried_in_declaration_order_and_the_first_passing_fires() -> None:
    machine = make_machine()
    await machine.dispatch(Started())
    internal = await machine.dispatch(Ticked(n=7))  # `big` rejects, `medium` passes
    assert internal.outcome == "internal"
    assert internal.label == "medium"
    assert machine.state == "running"
    final = await machine.dispatch(Ticked(n=12))  # `big` passes first even though `medium` would
    assert final.outcome == "transition" and final.label == "big"
    assert machine.state == "done"
    assert machine.context.log == ["medium", "big"]


async def test_when_no_guard_passes_the_event_is_traced_as_guard_rejected() -> None:
    machine = make_machine()
    await machine.dispatch(Started())
    record = await machine.dispatch(Ticked(n=1))
    assert record.outcome == "guard_rejected"
    assert record.label == "big, medium -> otherwise: too small to count"
    assert (record.source, record.target) == ("running", "running")
    assert machine.context.log == []


async def test_ignored_pair_is_traced_with_its_reason() -> None:
    machine = make_machine()
    record = await machine.dispatch(Ticked(n=3))
    assert (record.outcome, record.label, machine.state) == ("ignored", "not running", "idle")


async def test_state_changes_before_actions_run_and_actions_run_in_order_awaiting_async_ones() -> (
    None
):
    seen_state: list[str] = []
    machine: Machine[Ctx]

    def look(ctx: Ctx, event: Event) -> None:
        seen_state.append(machine.state)

    machine = make_machine(running_actions=(note("a"), look, slow_note, note("b")))
    await machine.dispatch(Started())
    assert seen_state == ["running"]
    assert machine.context.log == ["a", "slow", "b"]


async def test_raising_action_skips_the_rest_and_posts_action_failed_that_the_table_handles() -> (
    None
):
    machine = make_machine(running_actions=(note("first"), boom, note("never")))
    record = await machine.dispatch(Started())
    assert record.error == "ValueError: no luck"
    assert (record.outcome, record.target) == ("transition", "running")  # the state change stands
    assert machine.context.log == ["first"]

    machine.post(Ticked(n=20))  # queued behind the ActionFailed
    await asyncio.wait_for(machine.run(), timeout=5)
    assert machine.context.log == [
        "first",
        "failed boom during Started: ValueError: no luck",
        "big",
    ]
    assert [(r.event, r.outcome) for r in machine.trace] == [
        ("Started", "transition"),
        ("ActionFailed", "internal"),
        ("Ticked", "transition"),
    ]


async def test_action_failed_queues_behind_events_posted_before_the_failure() -> None:
    three_done = asyncio.Event()

    def count(record: TraceRecord) -> None:
        if len(machine.trace) == 3:
            three_done.set()

    machine = make_machine(running_actions=(boom,), on_transition=count)
    machine.post(Started())
    machine.post(Ticked(n=7))
    run = asyncio.create_task(machine.run())
    await asyncio.wait_for(three_done.wait(), timeout=5)
    await machine.aclose()
    await asyncio.wait_for(run, timeout=5)
    assert [(r.event, r.outcome) for r in machine.trace] == [
        ("Started", "transition"),
        ("Ticked", "internal"),
        ("ActionFailed", "internal"),
    ]


async def test_action_failed_not_in_events_is_traced_as_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    definition = MachineDefinition(
        name="lean",
        states=("idle", "done"),
        initial="idle",
        events=(Started, Stopped),
        transitions=(
            Transition("idle", Started, actions=[boom]),
            Transition("idle", Stopped, "done"),
        ),
        final=("done",),
    )
    machine = Machine(definition, Ctx(), clock=ManualClock())
    await machine.dispatch(Started())  # boom -> ActionFailed is queued
    machine.post(Stopped())
    with caplog.at_level("WARNING", logger="fsm.machine"):
        await asyncio.wait_for(machine.run(), timeout=5)
    assert [(r.event, r.outcome, r.target) for r in machine.trace] == [
        ("Started", "internal", "idle"),
        ("ActionFailed", "ignored", "idle"),
        ("Stopped", "transition", "done"),
    ]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert any("ignored ActionFailed" in r.getMessage() for r in warnings)


async def test_action_failed_outside_events_is_ignored_when_dispatched() -> None:
    definition = MachineDefinition(
        name="lean",
        states=("idle", "done"),
        initial="idle",
        events=(Stopped,),
        transitions=(Transition("idle", Stopped, "done"),),
        final=("done",),
    )
    machine = Machine(definition, Ctx(), clock=ManualClock())
    record = await machine.dispatch(ActionFailed(action="x", during="Stopped", error="E: e"))
    assert (record.outcome, machine.state) == ("ignored", "idle")


async def test_a_raising_guard_rejects_and_posts_action_failed() -> None:
    def broken(ctx: Ctx, event: Ticked) -> bool:
        raise KeyError("k")

    definition = MachineDefinition(
        name="guarded",
        states=("idle", "done"),
        initial="idle",
        events=(Ticked, ActionFailed),
        transitions=(
            Transition("idle", Ticked, "done", guard=broken),
            Transition("idle", ActionFailed, "done", actions=[on_failure]),
        ),
        ignored=(Ignore("idle", Ticked, "otherwise: nothing"),),
        final=("done",),
    )
    ctx = Ctx()
    machine = Machine(definition, ctx, clock=ctx.clock)
    machine.post(Ticked(n=1))
    await asyncio.wait_for(machine.run(), timeout=5)
    assert machine.trace[0].outcome == "guard_rejected"
    assert machine.trace[0].error == "KeyError: 'k'"
    assert ctx.log == [
        "failed test_a_raising_guard_rejects_and_posts_action_failed.<locals>.broken "
        "during Ticked: KeyError: 'k'"
    ]


async def test_cancelled_error_in_an_action_propagates_and_is_not_turned_into_action_failed() -> (
    None
):
    async def hang(ctx: Ctx, event: Event) -> None:
        await asyncio.Event().wait()

    machine = make_machine(running_actions=(hang, note("after")))
    task = asyncio.create_task(machine.dispatch(Started()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert machine.context.log == []
    assert machine.trace[-1].error == "CancelledError"
    # Nothing was posted: an ActionFailed would now sit in the queue and be dispatched.
    machine.post(Ticked(n=20))
    await asyncio.wait_for(machine.run(), timeout=5)
    assert [r.event for r in machine.trace] == ["Started", "Ticked"]


async def test_cancelling_run_propagates_cancellation() -> None:
    machine = make_machine()
    task = asyncio.create_task(machine.run())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_trace_records_manual_clock_times_queue_delay_and_action_duration() -> None:
    ctx = Ctx(clock=ManualClock(start=100.0))

    async def wait_two_seconds(c: Ctx, event: Event) -> None:
        await c.clock.sleep(2.0)

    machine = Machine(make_definition((wait_two_seconds,)), ctx, clock=ctx.clock)
    machine.post(Started())
    await ctx.clock.advance(1.5)  # Started waits 1.5 s in the queue
    machine.post(Ticked(n=20))
    run = asyncio.create_task(machine.run())
    await ctx.clock.wait_for_sleepers()
    await ctx.clock.advance(2.0)
    await asyncio.wait_for(run, timeout=5)

    started, ticked = machine.trace
    assert (started.t, started.queued_s, started.duration_s) == (101.5, 1.5, 2.0)
    # Ticked was posted at 101.5 and dispatched when Started's actions ended at 103.5.
    assert (ticked.t, ticked.queued_s, ticked.duration_s) == (103.5, 2.0, 0.0)


async def test_run_stops_at_a_final_state_leaving_later_events_queued() -> None:
    machine = make_machine()
    for event in (Started(), Ticked(n=11), Stopped()):
        machine.post(event)
    await asyncio.wait_for(machine.run(), timeout=5)
    assert machine.state == "done" and machine.finished
    assert [r.event for r in machine.trace] == ["Started", "Ticked"]


async def test_events_in_a_final_state_are_traced_as_final() -> None:
    machine = make_machine()
    await machine.dispatch(Started())
    await machine.dispatch(Ticked(n=10))
    record = await machine.dispatch(Stopped())
    assert (record.outcome, record.source, record.target) == ("final", "done", "done")


async def test_run_waits_for_posts_and_aclose_stops_it() -> None:
    machine = make_machine()
    run = asyncio.create_task(machine.run())
    await asyncio.sleep(0)
    machine.post(Started())
    await asyncio.sleep(0)
    assert machine.state == "running"
    await machine.aclose()
    await asyncio.wait_for(run, timeout=5)
    assert machine.closed and machine.state == "running"


async def test_aclose_is_idempotent_and_post_or_dispatch_after_close_raise_machine_closed() -> None:
    machine = make_machine()
    await machine.aclose()
    await machine.aclose()
    with pytest.raises(MachineClosed):
        machine.post(Started())
    with pytest.raises(MachineClosed):
        await machine.dispatch(Started())
    await asyncio.wait_for(machine.run(), timeout=5)  # returns at once


async def test_an_action_posting_an_event_does_not_reenter() -> None:
    order: list[str] = []
    machine: Machine[Ctx]

    def post_tick(ctx: Ctx, event: Event) -> None:
        machine.post(Ticked(n=20))
        order.append("after post")

    def record(rec: TraceRecord) -> None:
        order.append(f"{rec.event} traced")

    ctx = Ctx()
    machine = Machine(make_definition((post_tick,)), ctx, clock=ctx.clock, on_transition=record)
    machine.post(Started())
    await asyncio.wait_for(machine.run(), timeout=5)
    assert order == ["after post", "Started traced", "Ticked traced"]


async def test_dispatch_from_inside_an_action_is_refused() -> None:
    machine: Machine[Ctx]

    async def reenter(ctx: Ctx, event: Event) -> None:
        await machine.dispatch(Ticked(n=1))

    machine = make_machine(running_actions=(reenter,))
    record = await machine.dispatch(Started())
    assert record.error is not None
    assert record.error.startswith("RuntimeError: ") and "post() it instead" in record.error


async def test_unknown_event_class_is_refused_by_post_and_dispatch() -> None:
    machine = make_machine()
    with pytest.raises(TypeError, match="Unrelated is not an event of machine 'demo'"):
        machine.post(Unrelated())
    with pytest.raises(TypeError, match="Unrelated"):
        await machine.dispatch(Unrelated())


async def test_run_twice_concurrently_is_refused() -> None:
    machine = make_machine()
    first = asyncio.create_task(machine.run())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already running"):
        await machine.run()
    await machine.aclose()
    await first


async def test_post_threadsafe_delivers_events_from_another_thread_in_order() -> None:
    machine = make_machine()
    with pytest.raises(RuntimeError, match="run\\(\\) to be running"):
        machine.post_threadsafe(Started())
    run = asyncio.create_task(machine.run())
    await asyncio.sleep(0)

    def worker() -> None:
        machine.post_threadsafe(Started())
        machine.post_threadsafe(Ticked(n=7))
        machine.post_threadsafe(Ticked(n=30))

    thread = threading.Thread(target=worker)
    thread.start()
    await asyncio.to_thread(thread.join)
    await asyncio.wait_for(run, timeout=5)
    assert [(r.event, r.outcome) for r in machine.trace] == [
        ("Started", "transition"),
        ("Ticked", "internal"),
        ("Ticked", "transition"),
    ]


async def test_on_transition_sees_every_record_and_trace_is_bounded() -> None:
    seen: list[TraceRecord] = []
    ctx = Ctx()
    machine = Machine(
        make_definition(), ctx, clock=ctx.clock, on_transition=seen.append, trace_maxlen=3
    )
    await machine.dispatch(Started())
    for n in range(4):
        await machine.dispatch(Ticked(n=n))
    assert len(seen) == 5
    assert machine.trace == seen[-3:]
