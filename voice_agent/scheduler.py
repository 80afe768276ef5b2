"""Tool calls as futures: start, validate, time out, cancel, record.

The scheduler owns one task per call. Every call is written to the ledger when
it starts and again when it ends (resolved, failed, timed out or cancelled),
and the end is posted to the agent as an event. Nothing a tool does can crash
or freeze the agent: invalid arguments, an unknown tool, an exception, a hang,
a coroutine that swallows ``CancelledError`` or blocks the event loop all
become outcomes the model reads (:mod:`voice_agent.tool_exec` says how a tool
runs apart from the wait for it).

Deadlines are on the injected clock (``fsm.move_on_after``), so tests jump
past them. A ``read`` past its timeout is abandoned at once (``timed_out``).
A ``write`` past its timeout is *not*: stopping it half-way could leave the
world half-changed. The agent is told it overran (a ``ToolCallFailed`` event
while the call stays pending: the model reads "still running"), and its real
outcome is recorded when it comes, up to ``abandon_after_s`` later; then it is
recorded as timed out, and should it still complete, the ledger gets a
warning note with the late outcome and :class:`~voice_agent.writes.WriteBook`
keeps it, so the write is never blindly run again.

Identical calls: arguments are compared in their canonical form (the schema's
types: ``5`` and ``5.0`` are equal). A ``read`` repeated in one user turn
joins the first call's future. A ``write`` follows the write book's rules
(:mod:`voice_agent.writes`): never run while an identical write may still be
changing the world, never run twice for one intent unless the tool is
idempotent by the intent's key, never applied again once it succeeded (a
repeat in a later turn reads ``{"already_done": true, "by_call": ..., "result": ...}``).

Dependencies: an argument whose value is the id of another call (the model
read it in that call's pending placeholder, e.g. ``"call_abc"``) makes the
call wait for that future; the argument then takes the result (the result's
field of the same name when the result is an object that has one). A call
whose dependency failed, was cancelled or timed out, refers to a future that
does not exist, to itself, or would close a cycle of waits, fails at once,
saying so; every future therefore resolves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fsm import Clock, Event, move_on_after
from ledger import Ledger
from ledger import entries as le

from .call_control import CallControl
from .events import ToolCallFailed, ToolCallResolved
from .tool_exec import (
    EXEC_PREFIX,
    Execution,
    LoopBlocked,
    LoopWatchdog,
    blocking_calls,
    start_execution,
)
from .tools import ToolArgumentsError, ToolContext, ToolRegistry, ToolSpec, UnknownToolError
from .writes import Join, Refuse, Run, Share, WriteBook, WriteIntent

log = logging.getLogger(__name__)

# Loop turns aclose() gives cancelled tools to unwind (a tool's finally: block usually
# needs one or two); a tool that ignores cancellation is left behind, never waited for.
UNWIND_YIELDS = 10
# A string argument of this shape names a future (ids as OpenAI and the LLM client make
# them: "call_" and 6+ letters and digits, at least one a digit); one that names no known
# call is an error to report, not a literal to pass on ("call_forwarding" stays a literal).
FUTURE_ID = re.compile(r"call_(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{6,}")


@dataclass
class _Running:
    call_id: str
    spec: ToolSpec | None
    task: asyncio.Task[None]
    turn_id: int
    executing: bool = False  # the tool's own work has started (a write is then never stopped)


class _Settled(Exception):
    """Internal: the call's outcome is already recorded; stop processing it."""


# How long the end of a session waits for a write whose tool has started (s): stopping it
# half-way could leave the world half-changed, and its outcome belongs in the ledger.
SESSION_END_WRITE_GRACE_S = 10.0
# How deep a tool's result is copied (levels); deeper (or self-referencing) parts are cut.
_MAX_RESULT_DEPTH = 64


_DIGITS_PER_BIT = 0.30103  # log10(2): decimal digits per bit of an integer


def _too_long(value: int) -> bool:
    """``value`` has more decimal digits than Python converts to text (``str``, ``json``)."""
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0
    return limit > 0 and abs(value).bit_length() * _DIGITS_PER_BIT >= limit - 1


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool) and _too_long(key):
        return _json_safe(key)  # type: ignore[no-any-return]
    return _text_of(key)


def _json_safe(value: Any, depth: int = 0) -> Any:
    """A JSON-serialisable copy of a tool's result (pydantic models and dataclasses included).

    A result that refers to itself, or nests deeper than ``_MAX_RESULT_DEPTH``, is cut
    there (``"..."``) instead of breaking the call.
    """
    if depth > _MAX_RESULT_DEPTH:
        return "..."
    if depth == 0:
        try:
            json.dumps(value)
            return value
        except Exception:  # not JSON as it is (or a broken object): converted below
            pass
    if isinstance(value, int) and not isinstance(value, bool) and _too_long(value):
        # (hostile9) json.dumps (the session file, every later request's messages) raises
        # ValueError for an int longer than sys.get_int_max_str_digits() (4,300 digits):
        # the follow-up failed with a traceback and the agent stayed silent for good
        digits = int(abs(value).bit_length() * _DIGITS_PER_BIT) + 1
        return f"<an integer of about {digits:,} digits, too long to write out>"
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "model_dump"):
        try:
            return _json_safe(value.model_dump(mode="json"), depth + 1)
        except Exception:  # a model that cannot dump itself is shown as its text
            return _text_of(value)
    if hasattr(value, "__dataclass_fields__") and not isinstance(value, type):
        import dataclasses

        try:
            return _json_safe(dataclasses.asdict(value), depth + 1)
        except (TypeError, RecursionError):
            return _text_of(value)
    try:
        if isinstance(value, dict):
            return {_key_text(k): _json_safe(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [_json_safe(v, depth + 1) for v in value]
    except Exception:  # (hostile9) a container the tool broke (its items() raises): its text
        return _text_of(value)
    return _text_of(value)


# The most of one outcome the ledger keeps (characters of a result's JSON, of an error's
# text). The ledger keeps a large result whole (the model is shown a part of it:
# ledger.budget), but the session file redacts every line on the event loop, 0.2-5 s per
# MB: a tool returning 10 MB (or raising with a 10 MB message) stalled the call for
# minutes. A longer outcome keeps its head and says how much was cut.
MAX_RESULT_CHARS = 2_000_000
MAX_ERROR_CHARS = 100_000  # an error is read by the model: its head says all it can use


def _cut(text: str, what: str, limit: int) -> str:
    return text[:limit] + f" … [{what} was {len(text):,} characters; the first {limit:,} are kept]"


def _bounded(payload: Any) -> Any:
    """``payload`` (an outcome entry) with a result longer than ``MAX_RESULT_CHARS`` or an
    error longer than ``MAX_ERROR_CHARS`` cut to that (the result becomes its JSON's head)."""
    if isinstance(payload, le.ToolCallResolved):
        if isinstance(payload.result, str):
            if len(payload.result) <= MAX_RESULT_CHARS:
                return payload
            text = payload.result
        else:
            try:
                text = json.dumps(payload.result, ensure_ascii=False)
            except (TypeError, ValueError, RecursionError):
                return payload
            if len(text) <= MAX_RESULT_CHARS:
                return payload
        return payload.model_copy(update={"result": _cut(text, "the result", MAX_RESULT_CHARS)})
    error = getattr(payload, "error", None)
    if isinstance(error, str) and len(error) > MAX_ERROR_CHARS:
        return payload.model_copy(update={"error": _cut(error, "the error", MAX_ERROR_CHARS)})
    return payload


def _text_of(value: Any) -> str:
    try:
        return str(value)
    except Exception:  # a __str__ that raises: the type still says what it was
        return f"<{type(value).__name__}>"


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_text_of(exc)}"


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
        self._reads: dict[tuple[int, str, str], str] = {}  # (turn, name, canonical) → first call
        self._done: dict[str, asyncio.Future[le.Entry]] = {}
        self._waits_for: dict[str, set[str]] = {}  # call → calls whose outcome it awaits
        self._cancel_reason: dict[str, str] = {}
        self._executions: dict[str, Execution] = {}
        self._isolated: set[str] = set()  # async tools that block the loop: own thread
        self._checked: set[str] = set()  # tools whose source was read for blocking calls
        self._watchdog: LoopWatchdog | None = None
        self.writes = WriteBook(ledger.session_id)
        self._turn_id = 0
        self._closed = False
        # What a tool's ToolContext.call reaches (set by the conversation; issue 8).
        self.call_control: CallControl | None = None

    # ---------------------------------------------------------------- queries
    def pending(self) -> list[str]:
        """Ids of the calls still running."""
        return list(self._running)

    def spec_of(self, name: str) -> ToolSpec | None:
        return self._registry.get(name) if name in self._registry else None

    def new_turn(self, turn_id: int) -> None:
        """A new user turn begins: identical reads are shared only within one turn."""
        self._turn_id = turn_id

    def isolated_tools(self) -> set[str]:
        """Async tools caught blocking the event loop; they now run on their own thread."""
        return set(self._isolated)

    def _record_start(
        self,
        call_id: str,
        response_id: str,
        name: str,
        arguments: str,
        depends_on: Iterable[str] = (),
        speculative: bool = False,
        fork_id: str | None = None,
    ) -> None:
        """The one place a call's ``ToolCallStarted`` is recorded."""
        spec = self.spec_of(name)
        self._ledger.append(
            le.ToolCallStarted(
                call_id=call_id,
                response_id=response_id,
                name=name,
                arguments=arguments,
                kind=spec.kind if spec else "read",
                speculative=speculative,
                fork_id=fork_id,
                depends_on=sorted(set(depends_on)),
            )
        )

    def _call_control_for(self, call_id: str) -> CallControl | None:
        return self.call_control.for_call(call_id) if self.call_control is not None else None

    def answer(
        self, *, call_id: str, response_id: str, name: str, arguments: str, result: Any
    ) -> None:
        """Record a call the engine answers itself, without running the tool.

        Issue 8: a write held for the caller's confirmation is answered with
        "awaiting confirmation" (the model's protocol stays valid; nothing runs,
        no intent is created: the confirmed execution is a call of its own).
        """
        self._record_start(call_id, response_id, name, arguments)
        self._done[call_id] = asyncio.get_running_loop().create_future()
        self._finish(call_id, le.ToolCallResolved(call_id=call_id, result=result))

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
            self._note(
                f"refused speculative {name}({arguments}) of fork {fork_id}: "
                "only reads run from a fork",
                "warning",
            )
            return
        # --- end speculation
        depends_on, problem = self._dependencies(call_id, arguments)
        self._record_start(
            call_id, response_id, name, arguments, depends_on.values(), speculative, fork_id
        )
        done: asyncio.Future[le.Entry] = asyncio.get_running_loop().create_future()
        self._done[call_id] = done
        if spec is None:
            try:
                self._registry.get(name)
            except UnknownToolError as exc:
                self._fail(call_id, str(exc))
            return
        if problem:
            self._fail(call_id, problem)
            return
        parsed: dict[str, Any] | None = None
        if not depends_on:  # validate now: a bad call is answered without a task
            try:
                parsed = spec.parse_arguments(arguments)
            except ToolArgumentsError as exc:
                self._fail(call_id, f"invalid arguments for {name}: {exc}")
                return
        task = asyncio.get_running_loop().create_task(
            self._run(call_id, spec, arguments, depends_on, parsed, speculative),
            name=f"tool:{name}:{call_id}",
        )
        task.add_done_callback(self._ensure_outcome(call_id))
        self._running[call_id] = _Running(call_id, spec, task, self._turn_id)

    def _ensure_outcome(self, call_id: str) -> Callable[[asyncio.Task[None]], None]:
        """A task cancelled before its first step never runs its body: record it here."""

        def check(task: asyncio.Task[None]) -> None:
            if task.cancelled():
                self._finish(call_id, self._cancelled(call_id))
            elif (error := task.exception()) is not None:
                self._fail(call_id, f"internal error: {_error_text(error)}")
            else:
                self._running.pop(call_id, None)

        return check

    def adopt(
        self, *, call_id: str, response_id: str, name: str, arguments: str, speculative_call_id: str
    ) -> None:
        """Record final call ``call_id`` bound to a running or finished speculative call's
        future (helper spec): nothing new runs; its outcome is the speculative call's."""
        depends_on, _ = self._dependencies(call_id, arguments)
        self._record_start(call_id, response_id, name, arguments, depends_on.values())
        self._done[call_id] = self._done[speculative_call_id]

    def _dependencies(self, call_id: str, arguments: str) -> tuple[dict[str, str], str | None]:
        """Top-level arguments naming a future: ``({argument: call_id}, problem or None)``."""
        try:
            data = json.loads(arguments)
        except (ValueError, TypeError):  # ValueError: also a number too long to read
            return {}, None
        if not isinstance(data, dict):
            return {}, None
        found: dict[str, str] = {}
        for argument, value in data.items():
            if not isinstance(value, str):
                continue
            if value == call_id:
                return found, f"argument {argument!r} refers to this call's own result ({value})"
            if value in self._done:
                found[argument] = value
            elif FUTURE_ID.fullmatch(value):
                return found, (
                    f"argument {argument!r} refers to the future {value}, which does not "
                    "exist; use the id of a call you made, or the value itself"
                )
        return found, None

    # ---------------------------------------------------------------- one call
    async def _run(
        self,
        call_id: str,
        spec: ToolSpec,
        arguments: str,
        depends_on: dict[str, str],
        parsed: dict[str, Any] | None,
        speculative: bool = False,
    ) -> None:
        """The whole life of one call: dependencies, deduplication, execution, outcome."""
        try:
            if parsed is None:
                parsed = await self._substitute(call_id, spec, arguments, depends_on)
            canonical = spec.canonical_arguments(parsed)
            if spec.kind == "write":
                await self._run_write(call_id, spec, parsed, canonical)
            else:
                await self._run_read(call_id, spec, parsed, canonical, speculative)
        except _Settled:
            pass
        except asyncio.CancelledError:
            self._finish(call_id, self._cancelled(call_id))
            raise
        except Exception as exc:  # a bug here must still give the call an outcome
            log.exception("tool call %s (%s) broke in the scheduler", call_id, spec.name)
            self._fail(call_id, f"internal error: {_error_text(exc)}")
        finally:
            self._running.pop(call_id, None)

    async def _substitute(
        self, call_id: str, spec: ToolSpec, arguments: str, depends_on: dict[str, str]
    ) -> dict[str, Any]:
        """Wait for the futures the arguments name and put their values in; then validate."""
        data = json.loads(arguments)
        for argument, dependency in depends_on.items():
            outcome = await self._await_outcome(call_id, dependency)
            if not isinstance(outcome, le.ToolCallResolved):
                self._fail(call_id, f"it needs {dependency}, which {_ended_as(outcome)}")
                raise _Settled
            value = outcome.result
            if isinstance(value, dict) and argument in value:
                value = value[argument]
            data[argument] = value
        try:
            return spec.parse_arguments(json.dumps(data))
        except ToolArgumentsError as exc:
            self._fail(call_id, f"invalid arguments for {spec.name}: {exc}")
            raise _Settled from None

    async def _await_outcome(self, call_id: str, other: str) -> le.Entry:
        """``other``'s outcome, unless waiting for it would close a cycle (then fail this call)."""
        cycle = self._cycle_through(call_id, other)
        if cycle:
            self._fail(call_id, f"it waits for {other}, which waits for it: {' -> '.join(cycle)}")
            raise _Settled
        self._waits_for.setdefault(call_id, set()).add(other)
        try:
            return await asyncio.shield(self._done[other])
        finally:
            self._waits_for[call_id].discard(other)

    def _cycle_through(self, start: str, target: str) -> list[str]:
        """The chain of waits from ``target`` back to ``start``, if there is one."""
        path = [start, target]
        seen: set[str] = set()

        def walk(node: str) -> bool:
            if node == start:
                return True
            if node in seen:
                return False
            seen.add(node)
            for nxt in self._waits_for.get(node, ()):
                path.append(nxt)
                if walk(nxt):
                    return True
                path.pop()
            return False

        return path if walk(target) else []

    async def _run_read(
        self,
        call_id: str,
        spec: ToolSpec,
        args: dict[str, Any],
        canonical: str,
        speculative: bool = False,
    ) -> None:
        key = (self._turn_id, spec.name, canonical)
        first = None if speculative else self._reads.get(key)  # forks share through adoption
        if first is not None and first in self._done:
            outcome = await self._await_outcome(call_id, first)
            # The ledger assigns a fresh seq and t when the copy is appended.
            self._finish(call_id, outcome.model_copy(update={"call_id": call_id}))
            return
        if not speculative:
            self._reads[key] = call_id
        context = ToolContext(
            call_id=call_id,
            tool=spec.name,
            session_id=self._session_id,
            call=self._call_control_for(call_id),
        )
        execution = self._execute(call_id, spec, args, context)
        async with move_on_after(self._clock, spec.timeout_s) as scope:
            await asyncio.wait({execution.future})
        if scope.expired:
            execution.cancel()
            execution.future.add_done_callback(self._discard_late_read(call_id, spec))
            self._finish(call_id, le.ToolCallTimedOut(call_id=call_id, timeout_s=spec.timeout_s))
        else:
            self._finish(call_id, self._outcome_of(call_id, spec, execution.future))

    async def _run_write(
        self, call_id: str, spec: ToolSpec, args: dict[str, Any], canonical: str
    ) -> None:
        decision = self.writes.decide(
            tool=spec.name,
            arguments=canonical,
            turn_id=self._turn_id,
            call_id=call_id,
            retry_safe=spec.idempotent,
        )
        match decision:
            case Join(intent=intent, call_id=first):
                self._note(f"{call_id}: same write as {first} (intent {intent.key}); not run again")
                outcome = await self._await_outcome(call_id, first)
                self._finish(call_id, outcome.model_copy(update={"call_id": call_id}))
            case Share(intent=intent, state=state, value=value, error=error, late=late):
                self._note(
                    f"{call_id}: intent {intent.key} already {state} by {decision.call_id}"
                    f"{' (after its timeout)' if late else ''}; not run again"
                )
                if state == "failed":
                    self._fail(call_id, error)
                elif decision.earlier:  # tell the model it was not done twice
                    result = {"already_done": True, "by_call": decision.call_id, "result": value}
                    self._finish(call_id, le.ToolCallResolved(call_id=call_id, result=result))
                else:
                    self._finish(call_id, le.ToolCallResolved(call_id=call_id, result=value))
            case Refuse(intent=intent, reason=reason):
                self._note(f"{call_id}: intent {intent.key} refused: {reason}", "warning")
                self._fail(call_id, reason)
            case Run(intent=intent, attempt=attempt):
                if attempt > 1:
                    self._note(f"{call_id}: retrying intent {intent.key} (attempt {attempt})")
                else:
                    self._note(f"{call_id}: write intent {intent.key}")
                await self._execute_write(call_id, spec, args, intent, attempt)

    async def _execute_write(
        self, call_id: str, spec: ToolSpec, args: dict[str, Any], intent: WriteIntent, attempt: int
    ) -> None:
        try:
            await self._intent_stored(call_id, spec)
        except asyncio.CancelledError:  # its tool never started: known not applied
            self.writes.settle(
                intent.key,
                "failed",
                turn_id=self._turn_id,
                error="cancelled before its tool started; nothing was done",
            )
            raise
        context = ToolContext(
            call_id=call_id,
            tool=spec.name,
            session_id=self._session_id,
            idempotency_key=intent.key,
            attempt=attempt,
            call=self._call_control_for(call_id),
        )
        execution = self._execute(call_id, spec, args, context)
        try:
            async with move_on_after(self._clock, spec.timeout_s) as scope:
                await asyncio.wait({execution.future})
            if scope.expired:
                self._note(
                    f"{spec.name} ({call_id}) overran its {spec.timeout_s:g} s timeout; still "
                    f"waiting up to {spec.abandon_after_s:g} s for its outcome",
                    "warning",
                )
                self._post(
                    ToolCallFailed(
                        call_id=call_id,
                        error=f"still running after its {spec.timeout_s:g} s timeout",
                    )
                )
                async with move_on_after(self._clock, spec.abandon_after_s) as scope:
                    await asyncio.wait({execution.future})
        except asyncio.CancelledError:
            self._abandon_write(call_id, spec, intent, execution, "cancelled")
            # (hostile8) its tool had started: whatever the reason, the ledger must not say
            # it simply did not happen (a second Ctrl-C cancelled it as "cancelled")
            reason = self._cancel_reason.get(call_id, "cancelled while its tool ran")
            if "effect is unknown" not in reason:
                self._cancel_reason[call_id] = f"{reason}: its effect is unknown"
            raise
        if scope.expired:
            self._abandon_write(call_id, spec, intent, execution, "abandoned")
            self._finish(
                call_id,
                le.ToolCallTimedOut(
                    call_id=call_id, timeout_s=spec.timeout_s + spec.abandon_after_s
                ),
            )
            return
        outcome = self._outcome_of(call_id, spec, execution.future)
        self._settle_write(intent, outcome, late=False)
        self._finish(call_id, outcome)

    async def _intent_stored(self, call_id: str, spec: ToolSpec) -> None:
        """Wait until the write's intent (its ``ToolCallStarted`` and intent note, and
        everything before them) is handed to the OS by the session file (hostile9).

        A large entry (a tool's megabytes, masked off the loop) makes later entries
        queue behind it for seconds; a write that ran meanwhile and a process killed
        (SIGKILL, a power cut with ``durable``) left a file without the intent of a
        write that was applied: its evidence lost, a restart free to apply it again.
        Write-ahead: the tool waits (the loop does not; the caller hears the holds) and
        the write's own timeout starts after. Cancelled here, the tool never started."""
        stored = self._ledger.persisted()
        if stored.done():
            return
        log.info(
            "%s (%s) waits for its intent to reach the session file before it runs",
            spec.name,
            call_id,
        )
        await asyncio.wrap_future(stored)

    def _abandon_write(
        self, call_id: str, spec: ToolSpec, intent: WriteIntent, execution: Execution, how: str
    ) -> None:
        """Stop waiting for a write whose effect is unknown; record its outcome if it comes."""
        execution.cancel()
        self.writes.settle(
            intent.key,
            "unknown",
            turn_id=self._turn_id,
            error=f"it was {how} before it reported an outcome",
        )

        def late(future: asyncio.Future[Any]) -> None:
            outcome = self._outcome_of(call_id, spec, future)
            self._settle_write(intent, outcome, late=True)
            if isinstance(outcome, le.ToolCallResolved):
                what = f"resolved: {json.dumps(outcome.result, ensure_ascii=False)}"
            elif isinstance(outcome, le.ToolCallFailed):
                what = f"failed: {outcome.error}"
            else:
                what = "was cancelled"
            self._note(
                f"write {spec.name} ({call_id}, intent {intent.key}) finished after it was "
                f"{how}: {what}",
                "warning",
            )

        execution.future.add_done_callback(late)

    def _settle_write(self, intent: WriteIntent, outcome: le.Entry, *, late: bool) -> None:
        if isinstance(outcome, le.ToolCallResolved):
            self.writes.settle(
                intent.key, "resolved", turn_id=self._turn_id, value=outcome.result, late=late
            )
        elif isinstance(outcome, le.ToolCallFailed):
            self.writes.settle(
                intent.key, "failed", turn_id=self._turn_id, error=outcome.error, late=late
            )
        else:  # cancelled inside the tool: we cannot tell what it did
            self.writes.settle(
                intent.key,
                "unknown",
                turn_id=self._turn_id,
                error="the tool was cancelled before it reported an outcome",
                late=late,
            )

    # ---------------------------------------------------------------- execution
    @property
    def _session_id(self) -> str:
        return self._ledger.session_id

    def _execute(
        self, call_id: str, spec: ToolSpec, args: dict[str, Any], context: ToolContext
    ) -> Execution:
        """Start the tool's own work, apart from this call's task (which only waits for it)."""
        running = self._running.get(call_id)
        if running is not None:
            running.executing = True
        if spec.name not in self._checked:
            self._checked.add(spec.name)
            calls = blocking_calls(spec.fn)
            if calls:
                self._isolate(
                    spec.name, call_id, f"it calls {', '.join(calls)} in an async function"
                )
        isolated = spec.name in self._isolated
        execution = start_execution(
            spec.fn, spec.bind(args, context), name=spec.name, call_id=call_id, isolated=isolated
        )
        self._executions[call_id] = execution
        if execution.where == "loop":
            watchdog = self._loop_watchdog()
            watchdog.hold()
            execution.future.add_done_callback(lambda _: watchdog.release())
        execution.future.add_done_callback(lambda _: self._executions.pop(call_id, None))
        return execution

    def _loop_watchdog(self) -> LoopWatchdog:
        if self._watchdog is None:
            self._watchdog = LoopWatchdog(asyncio.get_running_loop(), self._on_loop_blocked)
        return self._watchdog

    def _on_loop_blocked(self, report: LoopBlocked) -> None:
        """The loop was stuck: name the tool, and run that tool on its own thread from now on."""
        label = report.task_name or ""
        if not label.startswith(EXEC_PREFIX):
            log.warning(
                "the event loop was blocked for %.2f s in %s (not a tool)",
                report.seconds,
                label or "a callback",
            )
            return
        name, _, call_id = label[len(EXEC_PREFIX) :].rpartition(":")
        self._isolate(name, call_id, f"it blocked the event loop for {report.seconds:.2f} s")

    def _isolate(self, name: str, call_id: str, why: str) -> None:
        """Run async tool ``name`` on its own thread from now on, saying why (log and ledger)."""
        self._isolated.add(name)
        log.warning(
            "tool %s (call %s): %s; an async tool must not call blocking code, so it now "
            "runs on its own thread",
            name,
            call_id,
            why,
        )
        self._note(f"tool {name} ({call_id}): {why}; it runs on its own thread", "warning")

    def _outcome_of(self, call_id: str, spec: ToolSpec, future: asyncio.Future[Any]) -> Any:
        """The outcome entry (unstamped) for a finished execution."""
        if future.cancelled():
            return self._cancelled(call_id, "the tool stopped itself (cancelled)")
        exc = future.exception()
        if exc is not None:  # a tool's failure is an outcome the model reads
            log.info("tool %s (%s) failed: %s", spec.name, call_id, type(exc).__name__)
            return le.ToolCallFailed(call_id=call_id, error=_error_text(exc))
        return le.ToolCallResolved(call_id=call_id, result=_json_safe(future.result()))

    def _discard_late_read(
        self, call_id: str, spec: ToolSpec
    ) -> Callable[[asyncio.Future[Any]], None]:
        def discard(future: asyncio.Future[Any]) -> None:
            if not future.cancelled():
                future.exception()  # retrieved: a late read's error is not news
            log.debug(
                "read %s (%s) finished after its timeout; result discarded", spec.name, call_id
            )

        return discard

    # ---------------------------------------------------------------- outcomes
    def _cancelled(self, call_id: str, default: str = "cancelled") -> le.ToolCallCancelled:
        """The outcome of a cancelled call, with the reason given to :meth:`cancel`."""
        return le.ToolCallCancelled(
            call_id=call_id, reason=self._cancel_reason.get(call_id, default)
        )

    def _fail(self, call_id: str, error: str) -> None:
        self._finish(call_id, le.ToolCallFailed(call_id=call_id, error=error))

    def _note(self, text: str, level: str = "info") -> None:
        try:
            self._ledger.append(le.Note(text=text, level=level))  # type: ignore[arg-type]
        except Exception as exc:  # a note must never break a call
            log.warning("could not record a note (%s): %s", type(exc).__name__, text)

    def _finish(self, call_id: str, payload: Any) -> None:
        """Record ``call_id``'s outcome once (later outcomes are ignored) and post it.

        The future resolves even if the ledger refuses the entry (logged), so
        nothing waiting on it can hang.
        """
        self._running.pop(call_id, None)
        done = self._done.get(call_id)
        if done is None or done.done():
            return
        payload = _bounded(payload)
        try:
            entry = self._ledger.append(payload)
        except Exception as exc:
            log.error("could not record the outcome of %s: %s", call_id, _error_text(exc))
            entry = payload
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

        A write whose tool has started is never cancelled (it could stop
        half-way): it goes on and its outcome is reported. Returns
        ``(cancelled, continue_silently)``: the ids cancelled and the ids
        whose outcomes should be recorded but not proactively reported.
        """
        cancelled: list[str] = []
        silent: list[str] = []
        for call_id, running in list(self._running.items()):
            policy = running.spec.on_interrupt if running.spec else "cancel"
            if running.spec is not None and running.spec.kind == "write" and running.executing:
                policy = "continue_and_report"
            if policy == "cancel":
                if self.cancel(call_id, "the user interrupted"):
                    cancelled.append(call_id)
            elif policy == "continue":
                silent.append(call_id)
        return cancelled, silent

    async def aclose(self) -> None:
        """Cancel every running call and wait briefly for them to unwind (idempotent).

        A write whose tool has started is not stopped half-way: its outcome is awaited
        for up to ``SESSION_END_WRITE_GRACE_S`` and recorded; one still running then is
        recorded as cancelled with a reason saying its effect is unknown (it used to be
        "session ended" at once, while the tool went on and applied the write). Interrupted
        while it waits (cancelled, or KeyboardInterrupt: a second Ctrl-C), it stops waiting,
        records the same, and re-raises the interruption.
        """
        self._closed = True
        interrupted: BaseException | None = None
        writing = {
            call_id: running.task
            for call_id, running in self._running.items()
            if running.spec is not None and running.spec.kind == "write" and running.executing
        }
        if writing:
            try:
                log.warning(
                    "the session is ending: waiting up to %g s for the write(s) in flight (%s)",
                    SESSION_END_WRITE_GRACE_S,
                    ", ".join(writing),
                )
                async with move_on_after(self._clock, SESSION_END_WRITE_GRACE_S):
                    await asyncio.wait(set(writing.values()))
            except (asyncio.CancelledError, KeyboardInterrupt) as stop:
                # (hostile8) interrupted again while waiting (a second Ctrl-C, SIGTERM then
                # Ctrl-C: asyncio cancels this task, or raises KeyboardInterrupt right here
                # if the signal lands while this task runs): stop waiting, record what is
                # known below, then let the interruption go on
                interrupted = stop
        tasks = []
        for call_id, running in list(self._running.items()):
            if call_id not in writing:
                reason = "session ended"
            elif interrupted:
                reason = (
                    "the session was interrupted again while the write ran: its effect is unknown"
                )
            else:
                reason = (
                    f"the session ended while the write ran ({SESSION_END_WRITE_GRACE_S:g} s "
                    "waited for it): its effect is unknown"
                )
            self._cancel_reason[call_id] = reason
            running.task.cancel()
            tasks.append(running.task)
        if tasks:  # they only wait for futures: cancelled, they end at once
            await asyncio.gather(*tasks, return_exceptions=True)
        strays = [ex.task for ex in self._executions.values() if ex.task is not None]
        for task in strays:
            task.cancel()
        for _ in range(UNWIND_YIELDS):  # let well-behaved tools unwind; never wait for the rest
            if all(task.done() for task in strays):
                break
            await asyncio.sleep(0)
        if self._watchdog is not None:
            self._watchdog.close()
        if isinstance(interrupted, KeyboardInterrupt):
            # raised in this task's code, it would end the task with an exception nobody
            # retrieves (a traceback at exit): it ends as cancelled, as the first Ctrl-C
            # does, and asyncio.run turns that into KeyboardInterrupt for the command
            raise asyncio.CancelledError("interrupted again") from interrupted
        if interrupted is not None:
            raise interrupted  # never swallowed: the cancellation goes on


def _ended_as(outcome: le.Entry) -> str:
    match outcome:
        case le.ToolCallFailed():
            return f"failed ({outcome.error})"
        case le.ToolCallTimedOut():
            return f"timed out after {outcome.timeout_s:g} s"
        case le.ToolCallCancelled():
            return f"was cancelled ({outcome.reason})"
        case _:
            return f"ended as {outcome.type}"
