"""Frozen, read-only views of one call and one response, built from the ledger state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from pydantic import JsonValue

from ledger.entries import (
    AgentTextPlayed,
    LlmRequestStarted,
    LlmResponseFinished,
    Outcome,
    ToolCallCancelled,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallStarted,
    ToolCallTimedOut,
)
from ledger.state import CallRecord, ResponseRecord

__all__ = ["CallStatus", "CallView", "ResponseView", "call_view", "outcome_status", "response_view"]

CallStatus: TypeAlias = Literal["pending", "resolved", "failed", "timed_out", "cancelled"]


@dataclass(frozen=True)
class CallView:
    """A tool call as the ledger knows it now.

    `result` is set only when `status == "resolved"`. `error` is a readable
    reason for the other endings: the failure message, `"timed out after Xs"`,
    or `"cancelled: <reason>"`. For a final call adopted from a fork,
    `status`/`outcome` come from the speculative call's future (the outcome
    entry may carry the speculative call's id) and `adopted_from` names it;
    a speculative call that was adopted names its final call in `adopted_by`.
    """

    call_id: str
    name: str
    arguments: str
    kind: Literal["read", "write"]
    status: CallStatus
    result: JsonValue
    error: str | None
    started: ToolCallStarted
    outcome: Outcome | None
    speculative: bool
    fork_id: str | None
    adopted_from: str | None = None
    adopted_by: str | None = None


@dataclass(frozen=True)
class ResponseView:
    """One LLM response: `text` is what the model is told it said (played, else planned)."""

    response_id: str
    reason: str
    mode: str
    started: LlmRequestStarted
    planned_text: str
    played_text: str | None
    interrupted: bool
    finished: LlmResponseFinished | None
    call_ids: tuple[str, ...]
    text: str


def outcome_status(outcome: Outcome | None) -> CallStatus:
    """Map an outcome entry (or None) to a call status."""
    match outcome:
        case None:
            return "pending"
        case ToolCallResolved():
            return "resolved"
        case ToolCallFailed():
            return "failed"
        case ToolCallTimedOut():
            return "timed_out"
        case ToolCallCancelled():
            return "cancelled"


def _outcome_error(outcome: Outcome | None) -> str | None:
    match outcome:
        case ToolCallFailed():
            return outcome.error
        case ToolCallTimedOut():
            return f"timed out after {outcome.timeout_s:g}s"
        case ToolCallCancelled():
            return f"cancelled: {outcome.reason}"
        case _:
            return None


def call_view(record: CallRecord) -> CallView:
    """Freeze a call record into a `CallView`."""
    started = record.started
    outcome = record.future.outcome
    return CallView(
        call_id=started.call_id,
        name=started.name,
        arguments=started.arguments,
        kind=started.kind,
        status=outcome_status(outcome),
        result=outcome.result if isinstance(outcome, ToolCallResolved) else None,
        error=_outcome_error(outcome),
        started=started,
        outcome=outcome,
        speculative=started.speculative,
        fork_id=started.fork_id,
        adopted_from=record.adopted_from,
        adopted_by=record.adopted_by,
    )


def response_view(record: ResponseRecord) -> ResponseView:
    """Freeze a response record into a `ResponseView`."""
    played: AgentTextPlayed | None = record.played
    return ResponseView(
        response_id=record.started.response_id,
        reason=record.started.reason,
        mode=record.started.mode,
        started=record.started,
        planned_text=record.planned_text,
        played_text=played.text.strip() if played is not None else None,
        interrupted=played.interrupted if played is not None else False,
        finished=record.finished,
        call_ids=tuple(record.call_ids),
        text=record.text,
    )
