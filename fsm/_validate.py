"""Build-time checks of a `MachineDefinition` (private; used by `fsm.definition`).

`find_problems` returns every problem as one readable line that names the
offending states and events; the definition raises them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fsm.events import Event

if TYPE_CHECKING:
    from fsm.definition import Ignore, MachineDefinition, Transition

ANY_STATE = "*"


def expand_source(
    source: str | Sequence[str], states: Sequence[str], final: Sequence[str]
) -> tuple[str, ...]:
    """The states a `source` stands for: ``"*"`` is every non-final state."""
    if source == ANY_STATE:
        return tuple(state for state in states if state not in final)
    if isinstance(source, str):
        return (source,)
    return tuple(source)


def find_problems(definition: MachineDefinition) -> list[str]:
    """Every problem with `definition`, in a stable order; empty if it is valid."""
    problems: list[str] = []
    states = list(definition.states)
    known_states = set(states)
    final = set(definition.final)
    problems += _check_states(definition, known_states)
    events, event_problems = _check_events(definition.events)
    problems += event_problems

    handled: dict[tuple[str, type[Event]], list[int]] = {}
    edges: dict[str, set[str]] = {state: set() for state in states}
    for index, transition in enumerate(definition.transitions):
        where = _describe_transition(index, transition)
        sources = expand_source(transition.source, states, definition.final)
        problems += _check_entry(where, sources, transition.event, known_states, events)
        for state in sources:
            if state in final:
                problems.append(
                    f"{where}: source {state!r} is a final state (final states ignore every event)"
                )
        target = transition.target
        if target is not None and target not in known_states:
            problems.append(f"{where}: unknown target state {target!r}")
        for state in sources:
            if state not in known_states or state in final:
                continue
            if target is not None and target in known_states:
                edges[state].add(target)
            if transition.event in events:
                handled.setdefault((state, transition.event), []).append(index)

    ignored: dict[tuple[str, type[Event]], list[int]] = {}
    for index, ignore in enumerate(definition.ignored):
        where = _describe_ignore(index, ignore)
        sources = expand_source(ignore.source, states, definition.final)
        problems += _check_entry(where, sources, ignore.event, known_states, events)
        for state in sources:
            if state in known_states and state not in final and ignore.event in events:
                ignored.setdefault((state, ignore.event), []).append(index)

    if definition.initial in known_states:
        problems += _check_reachability(definition.initial, states, edges)
    problems += _check_traps(states, final, edges)
    problems += _check_coverage(definition, states, final, events, handled, ignored)
    return problems


def _check_states(definition: MachineDefinition, known_states: set[str]) -> list[str]:
    problems: list[str] = []
    if not definition.states:
        problems.append("no states are declared")
    seen: set[str] = set()
    for state in definition.states:
        if not isinstance(state, str):
            problems.append(f"state {state!r} is not a string")
        elif state == ANY_STATE:
            problems.append(f"{ANY_STATE!r} cannot be a state name (it means every state)")
        elif state in seen:
            problems.append(f"state {state!r} is declared twice")
        seen.add(state)
    if definition.initial not in known_states:
        problems.append(f"initial state {definition.initial!r} is not in states")
    for state in definition.final:
        if state not in known_states:
            problems.append(f"final state {state!r} is not in states")
    return problems


def _check_events(declared: Sequence[Any]) -> tuple[list[type[Event]], list[str]]:
    problems: list[str] = []
    events: list[type[Event]] = []
    for event in declared:
        if not (isinstance(event, type) and issubclass(event, Event)):
            problems.append(f"events entry {event!r} is not an Event subclass")
            continue
        if event in events:
            problems.append(f"event {event.__name__} is listed twice")
            continue
        params = event.__dict__.get("__dataclass_params__")
        if params is None or not params.frozen:
            problems.append(
                f"event {event.__name__} is not a frozen dataclass "
                "(declare it with @dataclass(frozen=True, kw_only=True))"
            )
        events.append(event)
    return events, problems


def _check_entry(
    where: str,
    sources: Sequence[str],
    event: object,
    known_states: set[str],
    events: Sequence[type[Event]],
) -> list[str]:
    problems: list[str] = []
    if not sources:
        problems.append(f"{where}: no source state")
    for state in sources:
        if state not in known_states:
            problems.append(f"{where}: unknown source state {state!r}")
    if event not in events:
        problems.append(f"{where}: event {_name(event)} is not listed in events")
    return problems


def _check_reachability(initial: str, states: list[str], edges: dict[str, set[str]]) -> list[str]:
    reached = _closure({initial}, edges)
    return [
        f"unreachable state {state!r}: no transition path leads to it from {initial!r}"
        for state in states
        if state not in reached
    ]


def _check_traps(states: list[str], final: set[str], edges: dict[str, set[str]]) -> list[str]:
    if final:
        reverse: dict[str, set[str]] = {state: set() for state in states}
        for source, targets in edges.items():
            for target in targets:
                reverse[target].add(source)
        can_finish = _closure(final & set(states), reverse)
        return [
            f"trap state {state!r}: no final state is reachable from it"
            for state in states
            if state not in final and state not in can_finish
        ]
    return [
        f"trap state {state!r}: no transition leaves it for another state"
        for state in states
        if not (edges[state] - {state})
    ]


def _check_coverage(
    definition: MachineDefinition,
    states: list[str],
    final: set[str],
    events: list[type[Event]],
    handled: dict[tuple[str, type[Event]], list[int]],
    ignored: dict[tuple[str, type[Event]], list[int]],
) -> list[str]:
    problems: list[str] = []
    for state in states:
        if state in final:
            continue
        for event in events:
            pair = f"state {state!r} x event {event.__name__}"
            by = handled.get((state, event), [])
            ign = ignored.get((state, event), [])
            if not by and not ign:
                problems.append(f"unhandled pair: {pair} is neither handled nor ignored")
            unguarded = [i for i in by if definition.transitions[i].guard is None]
            if by and ign and unguarded:
                problems.append(
                    f"pair {pair} is both handled (transition #{unguarded[0]}) and ignored "
                    f"(ignore #{ign[0]})"
                )
            if by and not unguarded and not ign:
                rows = ", ".join(f"#{i}" for i in by)
                problems.append(
                    f"pair {pair}: every transition is guarded ({rows}); say what happens when "
                    "no guard passes (an unguarded transition, or an Ignore with the reason)"
                )
            if len(ign) > 1:
                problems.append(f"pair {pair} is ignored twice (ignore #{ign[0]} and #{ign[1]})")
            problems += _check_shadowing(definition, state, event, by)
    return problems


def _check_shadowing(
    definition: MachineDefinition, state: str, event: type[Event], indexes: list[int]
) -> list[str]:
    """An explicit-source transition after an unguarded one for its pair never fires.

    A ``"*"`` transition shadowed in one state is the usual override idiom
    (specific first, wildcard as fallback) and is not reported.
    """
    problems: list[str] = []
    unguarded: int | None = None
    for index in indexes:
        transition = definition.transitions[index]
        if unguarded is not None and transition.source != ANY_STATE:
            problems.append(
                f"transition #{index} never fires in state {state!r} on {event.__name__}: "
                f"transition #{unguarded} has no guard and comes first"
            )
        if unguarded is None and transition.guard is None:
            unguarded = index
    return problems


def _closure(start: set[str], edges: dict[str, set[str]]) -> set[str]:
    seen = set(start)
    todo = list(start)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _describe_transition(index: int, transition: Transition[Any]) -> str:
    target = "(internal)" if transition.target is None else repr(transition.target)
    return (
        f"transition #{index} ({_name(transition.event)}: "
        f"{_describe_source(transition.source)} -> {target})"
    )


def _describe_ignore(index: int, ignore: Ignore) -> str:
    return f"ignore #{index} ({_name(ignore.event)} in {_describe_source(ignore.source)})"


def _describe_source(source: str | Sequence[str]) -> str:
    if isinstance(source, str):
        return repr(source)
    return "[" + ", ".join(repr(state) for state in source) + "]"


def _name(event: object) -> str:
    return getattr(event, "__name__", repr(event))
