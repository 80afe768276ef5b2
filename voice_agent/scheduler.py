"""Tool calls as futures: start, validate, time out, cancel, record.

The scheduler owns one task per running call. Every call is written to the
ledger when it starts and again when it ends (resolved, failed, timed out or
cancelled), and the end is posted to the agent as an event. Nothing a tool
does can crash the agent: invalid arguments, an unknown tool, an exception and
a hang all become outcomes the model reads.

Two calls that are the same (same tool, same arguments) in one user turn share
one execution: a ``read`` call joins the running future, a ``write`` call is
never executed twice (the second gets the first's outcome).

Dependencies: an argument whose value is the id of another call (the model
read it in that call's pending placeholder, e.g. ``"call_abc"``) makes the
call wait for that future; the argument then takes the result (the result's
field of the same name when the result is an object that has one). A failed
dependency fails the call, naming it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fsm import Clock, Event
from ledger import Ledger
from ledger import entries as le

from .events import ToolCallFailed, ToolCallResolved
from .tools import ToolArgumentsError, ToolRegistry, ToolSpec, UnknownToolError

log = logging.getLogger(__name__)

CANCEL_GRACE_S = 0.5  # how long aclose() waits for cancelled tools to unwind, seconds


@dataclass
class _Running:
    call_id: str
    spec: ToolSpec | None
    key: tuple[str, str]
    task: asyncio.Task[None]
    turn_id: int


def _json_safe(value: Any) -> Any:
    """A JSON-serialisable copy of a tool's result (pydantic models and dataclasses included)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        pass
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return _json_safe(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_json_safe(v) for v in value]
    return str(value)


def _invalid(call_id: str, name: str, exc: Exception) -> le.ToolCallFailed:
    return le.ToolCallFailed(call_id=call_id, error=f"invalid arguments for {name}: {exc}")


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments), sort_keys=True)
    except (json.JSONDecodeError, TypeError):
        return arguments.strip()


class ToolScheduler:
    """Runs tool calls as owned tasks; results go to the ledger and to ``post``."""

    def __init__(
        self,
        registry: ToolRegistry,
        ledger: Ledger,
        post: Callable[[Event], None],
        clock: Clock,
    ) -> None:
        self._registry = registry
        self._ledger = ledger
        self._post = post
        self._clock = clock
        self._running: dict[str, _Running] = {}
        self._by_key: dict[tuple[int, str, str], str] = {}  # (turn, name, args) → first call id
        self._done: dict[str, asyncio.Future[le.Entry]] = {}
        self._cancel_reason: dict[str, str] = {}
        self._turn_id = 0
        self._closed = False

    # ---------------------------------------------------------------- queries
    def pending(self) -> list[str]:
        """Ids of the calls still running."""
        return list(self._running)

    def spec_of(self, name: str) -> ToolSpec | None:
        return self._registry.get(name) if name in self._registry else None

    def new_turn(self, turn_id: int) -> None:
        """A new user turn begins: identical calls are shared only within one turn."""
        self._turn_id = turn_id

    # ---------------------------------------------------------------- start
    def start(
        self,
        *,
        call_id: str,
        response_id: str,
        name: str,
        arguments: str,
        speculative: bool = False,
        fork_id: str | None = None,
    ) -> None:
        """Record the call and start it at once (or fail it at once, with a reason).

        A speculative ``write`` (or a speculative call of an unknown tool) is refused
        whatever the caller asks: only the intent is recorded, nothing runs.
        """
        if self._closed:
            raise RuntimeError("the tool scheduler is closed")
        spec = self.spec_of(name)
        # --- speculation (helper spec): a fork never executes a write
        if speculative and (spec is None or spec.kind != "read"):
            self._ledger.append(
                le.Note(
                    text=f"refused speculative {name}({arguments}) of fork {fork_id}: "
                    "only reads run from a fork",
                    level="warning",
                )
            )
            return
        # --- end speculation
        depends_on = self._dependencies(arguments)
        self._ledger.append(
            le.ToolCallStarted(
                call_id=call_id,
                response_id=response_id,
                name=name,
                arguments=arguments,
                kind=spec.kind if spec else "read",
                speculative=speculative,
                fork_id=fork_id,
                depends_on=sorted(set(depends_on.values())),
            )
        )
        done: asyncio.Future[le.Entry] = asyncio.get_running_loop().create_future()
        self._done[call_id] = done
        if spec is None:
            try:
                self._registry.get(name)
            except UnknownToolError as exc:
                self._finish(call_id, le.ToolCallFailed(call_id=call_id, error=str(exc)))
            return
        if depends_on:
            task = asyncio.get_running_loop().create_task(
                self._after_dependencies(call_id, spec, arguments, depends_on),
                name=f"tool:{name}:{call_id}",
            )
            self._running[call_id] = _Running(call_id, spec, (name, arguments), task, self._turn_id)
            return
        try:
            args = spec.parse_arguments(arguments)
        except ToolArgumentsError as exc:
            self._finish(call_id, _invalid(call_id, name, exc))
            return
        key = (self._turn_id, name, _canonical(arguments))
        first = None if speculative else self._by_key.get(key)  # forks share through adoption
        if speculative:
            coro = self._execute(call_id, spec, args)
        elif first is not None and first in self._done:
            coro = self._join(call_id, spec, first)
        else:
            self._by_key[key] = call_id
            coro = self._execute(call_id, spec, args)
        task = asyncio.get_running_loop().create_task(coro, name=f"tool:{name}:{call_id}")
        self._running[call_id] = _Running(call_id, spec, (name, key[2]), task, self._turn_id)

    def adopt(
        self, *, call_id: str, response_id: str, name: str, arguments: str, speculative_call_id: str
    ) -> None:
        """Record final call ``call_id`` bound to a running or finished speculative call's
        future (helper spec): nothing new runs; its outcome is the speculative call's."""
        spec = self.spec_of(name)
        self._ledger.append(
            le.ToolCallStarted(
                call_id=call_id,
                response_id=response_id,
                name=name,
                arguments=arguments,
                kind=spec.kind if spec else "read",
                depends_on=sorted(set(self._dependencies(arguments).values())),
            )
        )
        self._done[call_id] = self._done[speculative_call_id]

    def _dependencies(self, arguments: str) -> dict[str, str]:
        """Top-level arguments whose value names another call: ``{argument: call_id}``."""
        try:
            data = json.loads(arguments)
        except (json.JSONDecodeError, TypeError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str) and v in self._done}

    async def _after_dependencies(
        self, call_id: str, spec: ToolSpec, arguments: str, depends_on: dict[str, str]
    ) -> None:
        """Wait for the futures this call's arguments name, substitute their values, then run."""
        data = json.loads(arguments)
        try:
            for argument, dependency in depends_on.items():
                outcome = await asyncio.shield(self._done[dependency])
                if not isinstance(outcome, le.ToolCallResolved):
                    self._finish(
                        call_id,
                        le.ToolCallFailed(
                            call_id=call_id,
                            error=f"it needs {dependency}, which ended as {outcome.type}",
                        ),
                    )
                    return
                value = outcome.result
                if isinstance(value, dict) and argument in value:
                    value = value[argument]
                data[argument] = value
        except asyncio.CancelledError:
            self._finish(call_id, self._cancelled(call_id))
            raise
        try:
            args = spec.parse_arguments(json.dumps(data))
        except ToolArgumentsError as exc:
            self._finish(call_id, _invalid(call_id, spec.name, exc))
            return
        await self._execute(call_id, spec, args)

    async def _execute(self, call_id: str, spec: ToolSpec, args: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(spec.timeout_s):
                value = await spec.invoke(args)
        except TimeoutError:
            self._finish(call_id, le.ToolCallTimedOut(call_id=call_id, timeout_s=spec.timeout_s))
        except asyncio.CancelledError:
            self._finish(call_id, self._cancelled(call_id))
            raise
        except Exception as exc:  # a tool's failure is an outcome the model reads
            log.info("tool %s (%s) failed: %r", spec.name, call_id, exc)
            self._finish(
                call_id, le.ToolCallFailed(call_id=call_id, error=f"{type(exc).__name__}: {exc}")
            )
        else:
            self._finish(call_id, le.ToolCallResolved(call_id=call_id, result=_json_safe(value)))

    async def _join(self, call_id: str, spec: ToolSpec, first: str) -> None:
        """A repeated call in the same turn: share the first call's outcome."""
        try:
            outcome = await asyncio.shield(self._done[first])
        except asyncio.CancelledError:
            self._finish(call_id, self._cancelled(call_id))
            raise
        # The ledger assigns a fresh seq and t when the copy is appended.
        self._finish(call_id, outcome.model_copy(update={"call_id": call_id}))

    def _cancelled(self, call_id: str) -> le.ToolCallCancelled:
        """The outcome of a cancelled call, with the reason given to :meth:`cancel`."""
        return le.ToolCallCancelled(
            call_id=call_id, reason=self._cancel_reason.get(call_id, "cancelled")
        )

    def _finish(self, call_id: str, payload: Any) -> None:
        """Record ``call_id``'s outcome once (later outcomes are ignored) and post it."""
        self._running.pop(call_id, None)
        done = self._done.get(call_id)
        if done is None or done.done():
            return
        entry = self._ledger.append(payload)
        done.set_result(entry)
        if isinstance(payload, le.ToolCallResolved):
            self._post(ToolCallResolved(call_id=call_id))
        else:
            error = (
                getattr(payload, "error", None) or getattr(payload, "reason", None) or payload.type
            )
            self._post(ToolCallFailed(call_id=call_id, error=str(error)))

    # ---------------------------------------------------------------- cancel
    def cancel(self, call_id: str, reason: str) -> bool:
        """Cancel one running call; its outcome is recorded as cancelled with ``reason``."""
        running = self._running.get(call_id)
        if running is None:
            return False
        self._cancel_reason[call_id] = reason
        running.task.cancel()
        return True

    def on_interrupt(self) -> tuple[list[str], list[str]]:
        """Apply each running call's ``on_interrupt`` policy after a barge-in.

        Returns ``(cancelled, continue_silently)``: the ids cancelled and the ids
        whose outcomes should be recorded but not proactively reported.
        """
        cancelled: list[str] = []
        silent: list[str] = []
        for call_id, running in list(self._running.items()):
            policy = running.spec.on_interrupt if running.spec else "cancel"
            if policy == "cancel":
                if self.cancel(call_id, "the user interrupted"):
                    cancelled.append(call_id)
            elif policy == "continue":
                silent.append(call_id)
        return cancelled, silent

    async def aclose(self) -> None:
        """Cancel every running call and wait briefly for them to unwind (idempotent)."""
        self._closed = True
        tasks = []
        for call_id, running in list(self._running.items()):
            self._cancel_reason[call_id] = "session ended"
            running.task.cancel()
            tasks.append(running.task)
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_GRACE_S)
