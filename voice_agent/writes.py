"""Write intents: what makes a write happen exactly once (or not at all).

An *intent* is one change to the world the caller asked for: a ``write`` tool
and its canonical arguments (:meth:`ToolSpec.canonical_arguments`, so ``5`` and
``5.0`` are the same intent). It has an idempotency key, the same for every
attempt, which a tool declared ``idempotent`` passes to its backend (from its
:class:`~voice_agent.tools.ToolContext`). :class:`WriteBook` keeps every intent of a session and
decides, for each new write call, what may happen:

========================================  =========================================
the same intent is ...                    a new call with those arguments ...
========================================  =========================================
(none yet)                                runs: a new intent, a new key
running (also past its timeout)           joins it: gets its outcome, runs nothing
resolved in this user turn                gets that outcome, runs nothing
resolved earlier in the session (also     runs nothing; answered "already done"
late, after its timeout)                  with the earlier call and its result
failed (the tool raised) in this turn     gets that failure
failed in an earlier turn                 runs again: same intent, same key
of unknown effect (abandoned, cancelled   runs again with the same key if the tool
mid-flight, no late outcome yet)          is idempotent; else is refused, saying why
========================================  =========================================

So a write never runs while an identical one may still be changing the world,
never runs twice for one intent unless the tool can deduplicate it itself, and
an identical write that succeeded once in a call is not applied again in that
call (a caller who asks "did it work? please do it" after a slow answer gets it
once). Doing the very same write twice on purpose needs different arguments or
the caller's explicit confirmation (issue 8's confirmed writes).
Issue 8's confirmed writes build on this: the intent (``WriteIntent``) is what
the agent reads back, and its key is what makes the confirmed execution happen
once whatever the caller or the network repeats.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from pydantic import JsonValue

IntentState = Literal["running", "resolved", "failed", "unknown"]


@dataclass(frozen=True)
class WriteIntent:
    """One write the caller asked for. ``key`` is its idempotency key."""

    key: str
    tool: str
    arguments: str  # canonical JSON (ToolSpec.canonical_arguments)
    turn_id: int  # the user turn that asked for it
    first_call: str  # the call that created it


@dataclass(frozen=True)
class Run:
    """Execute ``intent`` (attempt number ``attempt``)."""

    intent: WriteIntent
    attempt: int


@dataclass(frozen=True)
class Join:
    """Do not execute: wait for the call ``call_id`` (running the same intent) and share its outcome."""

    intent: WriteIntent
    call_id: str


@dataclass(frozen=True)
class Share:
    """Do not execute: the intent is settled; answer with its outcome."""

    intent: WriteIntent
    state: Literal["resolved", "failed"]
    value: JsonValue = None
    error: str = ""
    late: bool = False
    earlier: bool = False  # settled before this user turn (or after its timeout)
    call_id: str = ""  # the call whose outcome this is


@dataclass(frozen=True)
class Refuse:
    """Do not execute: a previous attempt may have changed the world; ``reason`` says so."""

    intent: WriteIntent
    reason: str


Decision = Run | Join | Share | Refuse


@dataclass
class _Record:
    intent: WriteIntent
    state: IntentState
    call_id: str  # the call of the latest attempt
    attempts: int = 1
    settled_turn: int | None = None
    value: JsonValue = None
    error: str = ""
    late: bool = False
    superseded: bool = False  # a later intent with the same arguments exists
    history: list[str] = field(default_factory=list)


class WriteBook:
    """Every write intent of one session, by tool and canonical arguments."""

    def __init__(self, session_id: str) -> None:
        self._session_id = session_id
        self._current: dict[tuple[str, str], _Record] = {}
        self._by_key: dict[str, _Record] = {}
        self._counter: dict[tuple[str, str], int] = {}

    def decide(
        self, *, tool: str, arguments: str, turn_id: int, call_id: str, retry_safe: bool
    ) -> Decision:
        """What a new call of ``tool`` with canonical ``arguments`` may do (table above).

        A :class:`Run` is recorded at once as a running attempt under ``call_id``.
        ``retry_safe``: the tool is idempotent by its key (a retry cannot apply twice).
        """
        record = self._current.get((tool, arguments))
        if record is None:
            return self._new(tool, arguments, turn_id, call_id)
        intent = record.intent
        match record.state:
            case "running":
                return Join(intent, record.call_id)
            case "resolved":
                return Share(
                    intent,
                    "resolved",
                    value=record.value,
                    late=record.late,
                    earlier=record.settled_turn != turn_id or record.late,
                    call_id=record.call_id,
                )
            case "failed":
                if record.settled_turn == turn_id:
                    return Share(
                        intent,
                        "failed",
                        error=record.error,
                        late=record.late,
                        call_id=record.call_id,
                    )
                return self._retry(record, call_id)
            case _:  # unknown
                if retry_safe:
                    return self._retry(record, call_id)
                return Refuse(
                    intent,
                    f"an identical {tool} request (call {record.call_id}) did not confirm "
                    f"in time and may already have been applied, so it is not repeated "
                    f"automatically: {record.error or 'its outcome is unknown'}. Tell the "
                    "caller it will be checked; do not call it again",
                )

    def settle(
        self,
        key: str,
        state: Literal["resolved", "failed", "unknown"],
        *,
        turn_id: int,
        value: JsonValue = None,
        error: str = "",
        late: bool = False,
    ) -> None:
        """Record how the latest attempt of intent ``key`` ended.

        ``unknown``: the engine stopped waiting (abandoned at its deadline,
        cancelled at the end of the session) without knowing whether it applied.
        A late outcome (``late=True``) replaces an ``unknown``; it never
        replaces a known outcome.
        """
        record = self._by_key[key]
        if late and record.state in ("resolved", "failed") and not record.late:
            return
        record.state = state
        record.settled_turn = turn_id
        record.value = value
        record.error = error
        record.late = late
        record.history.append(f"{state}{' (late)' if late else ''}")

    def intent(self, key: str) -> WriteIntent:
        """The intent with idempotency key ``key``."""
        return self._by_key[key].intent

    def state(self, key: str) -> IntentState:
        """How the latest attempt of intent ``key`` stands."""
        return self._by_key[key].state

    def attempts(self, key: str) -> int:
        """How many times intent ``key`` was executed."""
        return self._by_key[key].attempts

    def intents(self) -> list[WriteIntent]:
        """Every intent, in creation order."""
        return [record.intent for record in self._by_key.values()]

    def _new(self, tool: str, arguments: str, turn_id: int, call_id: str) -> Run:
        ordinal = self._counter.get((tool, arguments), 0) + 1
        self._counter[(tool, arguments)] = ordinal
        digest = hashlib.sha256(
            f"{self._session_id}\0{tool}\0{arguments}\0{ordinal}".encode()
        ).hexdigest()
        intent = WriteIntent(
            key=f"{tool}-{digest[:24]}",
            tool=tool,
            arguments=arguments,
            turn_id=turn_id,
            first_call=call_id,
        )
        previous = self._current.get((tool, arguments))
        if previous is not None:
            previous.superseded = True
        record = _Record(intent=intent, state="running", call_id=call_id)
        self._current[(tool, arguments)] = record
        self._by_key[intent.key] = record
        return Run(intent, 1)

    def _retry(self, record: _Record, call_id: str) -> Run:
        record.attempts += 1
        record.state = "running"
        record.call_id = call_id
        record.late = False
        return Run(record.intent, record.attempts)
