"""Property: on random valid tables, the machine agrees with a direct reading of the table."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fsm import Event, Ignore, Machine, MachineDefinition, ManualClock, TraceRecord, Transition


@dataclass(frozen=True, kw_only=True)
class A(Event):
    n: int


@dataclass(frozen=True, kw_only=True)
class B(Event):
    n: int


@dataclass(frozen=True, kw_only=True)
class C(Event):
    n: int


EVENTS: tuple[type[Event], ...] = (A, B, C)
FINAL = "end"

# A rule is (mod, rem, target): it fires when event.n % mod == rem; mod 0 = no guard.
Rule = tuple[int, int, str | None]


@dataclass(frozen=True)
class Spec:
    """A transition table as plain data: rules[state][event] (empty list = ignored)."""

    states: tuple[str, ...]
    final: tuple[str, ...]
    rules: dict[tuple[str, type[Event]], list[Rule]]


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    count = draw(st.integers(2, 4))
    states = tuple(f"s{i}" for i in range(count))
    with_final = draw(st.booleans())
    targets: list[str | None] = [None, *states]
    rules: dict[tuple[str, type[Event]], list[Rule]] = {}
    for i, state in enumerate(states):
        for event in EVENTS:
            guarded = draw(
                st.lists(
                    st.tuples(st.integers(2, 3), st.integers(0, 2), st.sampled_from(targets)).map(
                        lambda r: (r[0], r[1] % r[0], r[2])
                    ),
                    max_size=2,
                )
            )
            fallback = draw(st.none() | st.sampled_from(targets).map(lambda t: (0, 0, t)))
            forced: str | None = None
            if event is A:  # a cycle s0 -> s1 -> ... -> s0 keeps every state reachable
                forced = states[(i + 1) % count]
            if with_final and event is C and i == 0:
                forced = FINAL
            if forced is not None:
                fallback = (0, 0, forced)
            rules[(state, event)] = guarded + ([fallback] if fallback is not None else [])
    final = (FINAL,) if with_final else ()
    return Spec(states=states + final, final=final, rules=rules)


def guard_for(mod: int, rem: int) -> Any:
    def guard(ctx: object, event: Any) -> bool:
        return bool(event.n % mod == rem)

    guard.__qualname__ = f"n%{mod}=={rem}"
    return guard


def build(spec: Spec) -> MachineDefinition:
    transitions: list[Transition[Any]] = []
    ignored: list[Ignore] = []
    for (state, event), rules in spec.rules.items():
        if not rules or all(mod for mod, _, _ in rules):  # none, or all guarded: say otherwise
            ignored.append(Ignore(state, event, "random"))
        for mod, rem, target in rules:
            guard = guard_for(mod, rem) if mod else None
            transitions.append(Transition(state, event, target, guard=guard))
    return MachineDefinition(
        name="random",
        states=spec.states,
        initial="s0",
        events=EVENTS,
        transitions=transitions,
        ignored=ignored,
        final=spec.final,
    )


def reference_step(spec: Spec, state: str, event: Event) -> tuple[str, str]:
    """(next state, outcome) read straight from the spec."""
    if state in spec.final:
        return state, "final"
    rules = spec.rules[(state, type(event))]
    if not rules:
        return state, "ignored"
    n: int = event.n  # type: ignore[attr-defined]
    for mod, rem, target in rules:
        if mod == 0 or n % mod == rem:
            return (state, "internal") if target is None else (target, "transition")
    return state, "guard_rejected"


event_sequences = st.lists(
    st.builds(lambda cls, n: cls(n=n), st.sampled_from(EVENTS), st.integers(0, 11)), max_size=30
)


@settings(max_examples=150, deadline=None)
@given(spec=specs(), events=event_sequences)
def test_machine_state_always_matches_the_reference_reading_of_the_table(
    spec: Spec, events: list[Event]
) -> None:
    definition = build(spec)

    async def scenario() -> None:
        clock = ManualClock()
        machine = Machine(definition, context=None, clock=clock)
        state = "s0"
        for event in events:
            record = await machine.dispatch(event)
            expected_state, expected_outcome = reference_step(spec, state, event)
            assert (record.source, record.outcome, record.target) == (
                state,
                expected_outcome,
                expected_state,
            )
            state = expected_state
            assert machine.state == state
        assert len(machine.trace) == len(events)

    asyncio.run(scenario())


@settings(max_examples=50, deadline=None)
@given(spec=specs(), events=event_sequences)
def test_run_processes_posted_events_like_dispatch_until_a_final_state(
    spec: Spec, events: list[Event]
) -> None:
    definition = build(spec)

    async def scenario() -> None:
        all_done = asyncio.Event()

        def on_record(record: TraceRecord) -> None:
            if len(machine.trace) == len(events):
                all_done.set()

        machine = Machine(definition, context=None, clock=ManualClock(), on_transition=on_record)
        for event in events:
            machine.post(event)
        run = asyncio.create_task(machine.run())
        if events:
            waiter = asyncio.create_task(all_done.wait())
            await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            await asyncio.wait({waiter})  # let the cancelled waiter finish; nothing left behind
        await machine.aclose()
        await run

        state, processed = "s0", 0
        for event in events:
            if state in spec.final:
                break
            state, _ = reference_step(spec, state, event)
            processed += 1
        assert machine.state == state
        assert len(machine.trace) == processed

    asyncio.run(scenario())
