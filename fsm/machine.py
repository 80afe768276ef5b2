"""The runtime: a `Machine` runs a `MachineDefinition` over one context object.

Events are processed one at a time, in the order they were posted; an action
that posts an event only enqueues it (no re-entry). Every processed event
leaves one `TraceRecord`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from fsm.clock import Clock, MonotonicClock
from fsm.definition import MachineDefinition, Transition, callable_name
from fsm.errors import MachineClosed
from fsm.events import ActionFailed, Event

__all__ = ["Machine", "Outcome", "TraceRecord"]

logger = logging.getLogger(__name__)

C = TypeVar("C")

Outcome = Literal["transition", "internal", "ignored", "guard_rejected", "final"]

# Default bound of `Machine.trace`: enough for a long call (a few events per
# second for an hour) while keeping memory flat. Unit: records.
DEFAULT_TRACE_MAXLEN = 10_000


@dataclass(frozen=True)
class TraceRecord:
    """What the machine did with one event.

    - `t`: clock time when dispatch of the event started.
    - `source` / `target`: the state before / after the event (equal unless
      `outcome` is ``"transition"``).
    - `event`: the event's `type` (class name).
    - `outcome`: ``"transition"`` (a transition with a target fired),
      ``"internal"`` (one without a target fired), ``"ignored"`` (an `Ignore`
      matched, or the event is not one of the machine's), ``"guard_rejected"``
      (transitions exist but no guard passed), ``"final"`` (the machine was
      already in a final state).
    - `label`: the fired transition's label; the `Ignore` reason; for
      ``"guard_rejected"`` the rejecting guards' labels joined by ", ".
    - `queued_s`: seconds from `post` to the start of dispatch (0 for a
      direct `dispatch`).
    - `duration_s`: seconds spent running the actions.
    - `error`: ``"ValueError: message"`` if a guard or action raised (it was
      then posted as `ActionFailed`), ``"CancelledError"`` if the dispatch was
      cancelled, else None.
    """

    t: float
    source: str
    event: str
    target: str
    outcome: Outcome
    label: str
    queued_s: float
    duration_s: float
    error: str | None = None


class Machine(Generic[C]):
    """Runs `definition` over `context`, reading time from `clock`.

    Use `post` (from the loop's thread) or `post_threadsafe` (from any other
    thread, while `run()` is running) to enqueue events and `run()` to process
    them; or call `dispatch` to process one event at once.

    Processing one event: pick the first transition for (state, event type)
    whose guard passes (declaration order), set the state to its target if it
    has one, then run its actions in order, awaiting those that return an
    awaitable. An action that raises `Exception` is logged and traced, the
    transition's remaining actions are skipped, and `ActionFailed` is posted
    (unless the failing dispatch was itself an `ActionFailed`, which would
    loop). A guard that raises is handled the same way and nothing fires.
    `CancelledError` always propagates.

    `on_transition`, if given, is called with every `TraceRecord`.
    """

    def __init__(
        self,
        definition: MachineDefinition,
        context: C,
        clock: Clock | None = None,
        on_transition: Callable[[TraceRecord], None] | None = None,
        *,
        trace_maxlen: int = DEFAULT_TRACE_MAXLEN,
    ) -> None:
        self.definition = definition
        self.context = context
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self._on_transition = on_transition
        self._state: str = definition.initial
        self._trace: deque[TraceRecord] = deque(maxlen=trace_maxlen)
        self._queue: deque[tuple[Event, float]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatching = False
        self._closed = False

    @property
    def state(self) -> str:
        """The current state."""
        return self._state

    @property
    def trace(self) -> list[TraceRecord]:
        """A copy of the most recent trace records, oldest first (bounded)."""
        return list(self._trace)

    @property
    def closed(self) -> bool:
        """True once `aclose()` was called."""
        return self._closed

    @property
    def queued(self) -> int:
        """How many posted events wait to be processed (a dispatch in progress not counted)."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """True while events are queued or one is being dispatched."""
        return bool(self._queue) or self._dispatching

    @property
    def finished(self) -> bool:
        """True when the machine is in a final state."""
        return self.definition.is_final(self._state)

    def post(self, event: Event) -> None:
        """Enqueue `event` for `run()`; never blocks. Call from the loop's thread.

        Raises MachineClosed after `aclose()`, and TypeError if `event` is not
        one of the definition's event classes (`ActionFailed` is always accepted).
        """
        self._check_postable(event)
        self._enqueue(event, self.clock.now())

    def post_threadsafe(self, event: Event) -> None:
        """Enqueue `event` from another thread while `run()` is running.

        Raises MachineClosed after `aclose()`, RuntimeError if `run()` is not
        running, TypeError for an event class the definition does not know.
        An event that reaches the loop after `aclose()` is dropped with a warning.
        """
        self._check_postable(event)
        loop = self._loop
        if loop is None:
            raise RuntimeError(
                f"machine {self.definition.name!r}: post_threadsafe() needs run() to be running"
            )
        loop.call_soon_threadsafe(self._enqueue, event, self.clock.now())

    async def dispatch(self, event: Event) -> TraceRecord:
        """Process `event` now, bypassing the queue, and return its trace record.

        Raises MachineClosed after `aclose()`, TypeError for an unknown event
        class, and RuntimeError when called while another event is being
        processed (e.g. from an action: use `post` there).
        """
        if self._closed:
            raise MachineClosed(f"machine {self.definition.name!r} is closed")
        self._check_known(event)
        return await self._dispatch(event, self.clock.now())

    async def dispatch_queued(self) -> list[TraceRecord]:
        """Process every queued event now, in order, and return their trace records.

        For a machine driven by `dispatch` rather than `run()`: the events an
        action posted (an `ActionFailed` for a failing action, included) are
        handled here instead of waiting for a `run()` that never comes. Same
        errors as `dispatch`.
        """
        records: list[TraceRecord] = []
        while self._queue and not self._closed:
            event, posted_at = self._queue.popleft()
            records.append(await self._dispatch(event, posted_at))
        return records

    async def run(self) -> None:
        """Process posted events in order until a final state or `aclose()`.

        Returns at once if the machine is already closed or final. Events
        still queued when `aclose()` is called are dropped. Raises
        RuntimeError if `run()` is already running.
        """
        if self._loop is not None:
            raise RuntimeError(f"machine {self.definition.name!r}: run() is already running")
        self._loop = asyncio.get_running_loop()
        try:
            while not self._closed and not self.finished:
                if not self._queue:
                    self._waiter = self._loop.create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
                    continue
                event, posted_at = self._queue.popleft()
                await self._dispatch(event, posted_at)
        finally:
            self._loop = None
        if self._queue:
            logger.debug(
                "machine %r: run() ended with %d event(s) still queued",
                self.definition.name,
                len(self._queue),
            )

    async def aclose(self) -> None:
        """Stop accepting events and make `run()` return after the current event.

        Idempotent. Does not wait for `run()` to return (so an action may call
        it) and does not interrupt an action in progress.
        """
        self._closed = True
        self._wake()

    # -- internals -----------------------------------------------------------

    def _check_postable(self, event: Event) -> None:
        if self._closed:
            raise MachineClosed(f"machine {self.definition.name!r} is closed")
        self._check_known(event)

    def _check_known(self, event: Event) -> None:
        event_type = type(event)
        if not self.definition.handles(event_type) and event_type is not ActionFailed:
            raise TypeError(
                f"{event_type.__qualname__} is not an event of machine {self.definition.name!r}"
            )

    def _enqueue(self, event: Event, posted_at: float) -> None:
        if self._closed:
            logger.warning("machine %r is closed: dropped %s", self.definition.name, event.type)
            return
        self._queue.append((event, posted_at))
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _dispatch(self, event: Event, posted_at: float) -> TraceRecord:
        if self._dispatching:
            raise RuntimeError(
                f"machine {self.definition.name!r}: dispatch({event.type}) called while "
                "another event is being processed; post() it instead"
            )
        self._dispatching = True
        try:
            return await self._process(event, posted_at)
        finally:
            self._dispatching = False

    async def _process(self, event: Event, posted_at: float) -> TraceRecord:
        t = self.clock.now()
        source = self._state
        event_type = type(event)

        def record(
            outcome: Outcome, label: str = "", duration_s: float = 0.0, error: str | None = None
        ) -> TraceRecord:
            return TraceRecord(
                t=t,
                source=source,
                event=event.type,
                target=self._state,
                outcome=outcome,
                label=label,
                queued_s=max(0.0, t - posted_at),
                duration_s=duration_s,
                error=error,
            )

        if self.definition.is_final(source):
            return self._emit(record("final"))
        if not self.definition.handles(event_type):
            logger.warning(
                "machine %r: ignored %s, which is not one of its events (%s)",
                self.definition.name,
                event.type,
                event,
            )
            return self._emit(record("ignored", "not an event of this machine"))
        candidates = self.definition.transitions_for(source, event_type)
        if not candidates:
            ignore = self.definition.ignore_for(source, event_type)
            return self._emit(record("ignored", ignore.reason if ignore is not None else ""))

        rejected: list[str] = []
        chosen: Transition[Any] | None = None
        for transition in candidates:
            if transition.guard is None:
                chosen = transition
                break
            try:
                passed = transition.guard(self.context, event)
            except Exception as exc:
                guard_error = self._failed(callable_name(transition.guard), event, exc)
                rejected.append(transition.label)
                return self._emit(record("guard_rejected", ", ".join(rejected), error=guard_error))
            if passed:
                chosen = transition
                break
            rejected.append(transition.label)
        if chosen is None:  # the table says what then: an Ignore for the pair gives the reason
            otherwise = self.definition.ignore_for(source, event_type)
            label = ", ".join(rejected)
            if otherwise is not None and otherwise.reason:
                label += f" -> {otherwise.reason}"
            return self._emit(record("guard_rejected", label))

        outcome: Outcome = "internal" if chosen.target is None else "transition"
        if chosen.target is not None:
            self._state = chosen.target
        started = self.clock.now()
        try:
            error = await self._run_actions(chosen, event)
        except asyncio.CancelledError:
            cancelled = record(
                outcome, chosen.label, self.clock.now() - started, error="CancelledError"
            )
            self._trace.append(cancelled)
            raise
        return self._emit(record(outcome, chosen.label, self.clock.now() - started, error))

    async def _run_actions(self, transition: Transition[Any], event: Event) -> str | None:
        """Run the actions in order; return the error text of the first that raised."""
        for action in transition.actions:
            try:
                result = action(self.context, event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                return self._failed(callable_name(action), event, exc)
        return None

    def _failed(self, name: str, event: Event, exc: Exception) -> str:
        """Log a failed guard/action, post `ActionFailed` for it, return the error text."""
        error = f"{type(exc).__name__}: {exc}"
        logger.error(
            "machine %r: %s failed in state %r while handling %s: %s",
            self.definition.name,
            name,
            self._state,
            event.type,
            error,
            exc_info=exc,
        )
        if isinstance(event, ActionFailed):
            logger.error(
                "machine %r: not posting ActionFailed for a failure while handling ActionFailed",
                self.definition.name,
            )
        else:
            self._enqueue(
                ActionFailed(action=name, during=event.type, error=error), self.clock.now()
            )
        return error

    def _emit(self, record: TraceRecord) -> TraceRecord:
        self._trace.append(record)
        if self._on_transition is not None:
            self._on_transition(record)
        return record
