"""A machine's transition table as data: `Transition`, `Ignore`, `MachineDefinition`.

A definition is built once (usually at import time, in one module), is
validated when built, and is immutable afterwards. States are plain strings
(a `StrEnum` works); events are `Event` subclasses matched by exact class.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fsm._validate import ANY_STATE, expand_source, find_problems
from fsm.errors import DefinitionError
from fsm.events import Event
from fsm.render import render_markdown, render_mermaid

__all__ = ["ANY_STATE", "Action", "Guard", "Ignore", "MachineDefinition", "Transition"]

E = TypeVar("E", bound=Event)

Guard = Callable[[Any, E], bool]
"""`guard(context, event) -> bool`; the transition fires only if it returns True."""

Action = Callable[[Any, E], Awaitable[None] | None]
"""`action(context, event)`; may be a coroutine function, then it is awaited."""


def callable_name(fn: Callable[..., object]) -> str:
    """The name a guard or action goes by in renders, traces and `ActionFailed`."""
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return name
    inner = getattr(fn, "func", None)  # functools.partial
    if inner is not None:
        return callable_name(inner)
    return type(fn).__qualname__


@dataclass(frozen=True)
class Transition(Generic[E]):
    """In state `source`, on `event`, if `guard` passes: go to `target`, then run `actions`.

    `source` is a state, a sequence of states, or ``"*"`` (every non-final
    state). `target=None` makes an internal transition: the state does not
    change. Actions run in order and are awaited when they return an
    awaitable. `label` is how the guard reads in renders and traces; it
    defaults to the guard's `__qualname__` ("" without a guard).
    """

    source: str | Sequence[str]
    event: type[E]
    target: str | None = None
    guard: Callable[[Any, E], bool] | None = None
    actions: Sequence[Callable[[Any, E], Awaitable[None] | None]] = ()
    label: str = ""

    def __post_init__(self) -> None:
        if callable(self.actions):
            raise TypeError(
                f"Transition on {_event_name(self.event)}: actions must be a sequence of "
                f"callables, got the single callable {callable_name(self.actions)}"
            )
        if not isinstance(self.source, str):
            object.__setattr__(self, "source", tuple(self.source))
        object.__setattr__(self, "actions", tuple(self.actions))
        if not self.label and self.guard is not None:
            object.__setattr__(self, "label", callable_name(self.guard))

    @property
    def action_names(self) -> tuple[str, ...]:
        """The actions' `__qualname__`s, in order."""
        return tuple(callable_name(action) for action in self.actions)


@dataclass(frozen=True)
class Ignore:
    """In state `source`, `event` is deliberately ignored (`reason` says why)."""

    source: str | Sequence[str]
    event: type[Event]
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.source, str):
            object.__setattr__(self, "source", tuple(self.source))


@dataclass(frozen=True)
class MachineDefinition:
    """A validated, immutable transition table.

    Building one checks the whole table and raises a single `DefinitionError`
    listing every problem by name: unknown states or events, unreachable
    states, trap states, (non-final state, event) pairs that are neither
    handled nor ignored, pairs both handled by an unguarded transition and
    ignored, pairs whose transitions are all guarded with no `Ignore` saying
    what happens when no guard passes, and transitions that can never fire
    because an unguarded one for the same pair comes first.

    An `Ignore` for a pair whose transitions are all guarded is the pair's
    "otherwise": when no guard passes the event is traced as
    ``"guard_rejected"`` with the ignore's reason, and nothing happens.

    Final states handle nothing: every event in a final state is traced as
    ``"final"``. Several transitions for one pair are tried in declaration
    order; the first whose guard passes fires.
    """

    name: str
    states: Sequence[str]
    initial: str
    events: Sequence[type[Event]]
    transitions: Sequence[Transition[Any]]
    ignored: Sequence[Ignore] = ()
    final: Sequence[str] = ()
    _table: dict[tuple[str, type[Event]], tuple[Transition[Any], ...]] = field(
        init=False, repr=False, compare=False
    )
    _ignores: dict[tuple[str, type[Event]], Ignore] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("states", "events", "transitions", "ignored", "final"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        problems = find_problems(self)
        if problems:
            raise DefinitionError(self.name, problems)
        table: dict[tuple[str, type[Event]], list[Transition[Any]]] = {}
        for transition in self.transitions:
            for state in expand_source(transition.source, self.states, self.final):
                table.setdefault((state, transition.event), []).append(transition)
        ignores: dict[tuple[str, type[Event]], Ignore] = {}
        for ignore in self.ignored:
            for state in expand_source(ignore.source, self.states, self.final):
                ignores[(state, ignore.event)] = ignore
        object.__setattr__(self, "_table", {key: tuple(ts) for key, ts in table.items()})
        object.__setattr__(self, "_ignores", ignores)

    def is_final(self, state: str) -> bool:
        """True if `state` is one of the final states."""
        return state in self.final

    def handles(self, event_type: type[Event]) -> bool:
        """True if `event_type` is one of this machine's events (exact class)."""
        return event_type in self.events

    def transitions_for(self, state: str, event_type: type[Event]) -> tuple[Transition[Any], ...]:
        """The transitions for this pair, in declaration order (empty if none)."""
        return self._table.get((state, event_type), ())

    def ignore_for(self, state: str, event_type: type[Event]) -> Ignore | None:
        """The `Ignore` for this pair, or None."""
        return self._ignores.get((state, event_type))

    def to_markdown(self) -> str:
        """The table as Markdown: state | event | guard | next state | actions.

        One row per transition and per ignored pair (with its reason), sorted
        by state order, then event order, then declaration order; one row per
        final state. Deterministic.
        """
        return render_markdown(self)

    def to_mermaid(self) -> str:
        """The machine as a Mermaid `stateDiagram-v2`. Deterministic.

        ``[*] --> initial``, one edge per (state, transition) labelled
        ``Event [guard] / action, action``, and ``final --> [*]``.
        """
        return render_mermaid(self)


def _event_name(event: object) -> str:
    return getattr(event, "__name__", repr(event))
