"""Protocol-breaking appends raise LedgerError and record nothing."""

from __future__ import annotations

from typing import Any

import pytest

from fsm.clock import ManualClock
from ledger import Ledger, LedgerClosed, LedgerError
from ledger.entries import (
    AgentTextPlanned,
    AgentTextPlayed,
    Entry,
    ForkAdopted,
    ForkDiscarded,
    ForkOpened,
    LlmRequestStarted,
    LlmResponseFinished,
    SessionStarted,
    ToolCallCancelled,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallStarted,
    ToolCallTimedOut,
)


def started(call_id: str, response_id: str = "r1", **extra: Any) -> ToolCallStarted:
    return ToolCallStarted(
        call_id=call_id,
        response_id=response_id,
        name="lookup",
        arguments="{}",
        kind="read",
        **extra,
    )


def base_ledger() -> Ledger:
    """r1 streaming, c1 resolved, c2 pending, fork f1 open with s1, fork f0 discarded."""
    ledger = Ledger("s1", ManualClock())
    ledger.append(SessionStarted(session_id="s1", started_at="2025-01-01T00:00:00Z"))
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    ledger.append(started("c1"))
    ledger.append(started("c2"))
    ledger.append(ToolCallResolved(call_id="c1", result=1))
    ledger.append(ForkOpened(fork_id="f1", transcript="what"))
    ledger.append(started("s1", "fork-r", speculative=True, fork_id="f1"))
    ledger.append(ForkOpened(fork_id="f0", transcript="wh"))
    ledger.append(ForkDiscarded(fork_id="f0", reason="changed"))
    return ledger


BAD_APPENDS: list[tuple[Entry, str]] = [
    (ToolCallResolved(call_id="nope", result=1), "unknown call 'nope'"),
    (ToolCallFailed(call_id="nope", error="x"), "unknown call"),
    (ToolCallTimedOut(call_id="nope", timeout_s=1), "unknown call"),
    (ToolCallCancelled(call_id="nope", reason="x"), "unknown call"),
    (ToolCallResolved(call_id="c1", result=2), "already has an outcome"),
    (ToolCallCancelled(call_id="c1", reason="late"), "already has an outcome"),
    (started("c1"), "duplicate call id 'c1'"),
    (started("c1-result"), "duplicate call id"),
    (started("c2", speculative=True, fork_id="f1"), "duplicate call id"),
    (ForkAdopted(fork_id="zz", adopted={}), "unknown fork 'zz'"),
    (ForkDiscarded(fork_id="zz", reason="x"), "unknown fork"),
    (ForkAdopted(fork_id="f0", adopted={}), "already closed"),
    (ForkDiscarded(fork_id="f0", reason="x"), "already closed"),
    (ForkOpened(fork_id="f1", transcript="again"), "already opened"),
    (AgentTextPlanned(response_id="r9", text="hi"), "never started"),
    (AgentTextPlayed(response_id="r9", text="hi"), "never started"),
    (LlmResponseFinished(response_id="r9", finish_reason="stop"), "never started"),
    (started("c9", "r9"), "never started"),
    (started("c9", "r1", speculative=True, fork_id="f0"), "already closed"),
    (started("c9", "r1", speculative=True), "unknown fork None"),
    (LlmRequestStarted(response_id="r1", reason="hold", mode="async"), "already started"),
    (SessionStarted(session_id="s1", started_at="x"), "already started"),
    (ForkAdopted(fork_id="f1", adopted={"c9": "s1"}), "'c9' is not a known final call"),
    (ForkAdopted(fork_id="f1", adopted={"c2": "c1"}), "'c1' is not a known speculative call"),
    (ForkAdopted(fork_id="f1", adopted={"c1": "s1"}), "already has its own outcome"),
]


@pytest.mark.parametrize(("payload", "complaint"), BAD_APPENDS)
def test_a_protocol_breaking_append_raises_and_records_nothing(
    payload: Entry, complaint: str
) -> None:
    ledger = base_ledger()
    before = ledger.entries
    rendered = ledger.render_messages(None)

    with pytest.raises(LedgerError, match=complaint):
        ledger.append(payload)

    assert ledger.entries == before
    assert ledger.render_messages(None) == rendered


def test_a_second_finish_of_one_response_is_rejected() -> None:
    ledger = base_ledger()
    ledger.append(LlmResponseFinished(response_id="r1", finish_reason="stop"))

    with pytest.raises(LedgerError, match="already finished"):
        ledger.append(LlmResponseFinished(response_id="r1", finish_reason="cancelled"))


def test_an_adopted_pair_takes_exactly_one_outcome_under_either_id() -> None:
    ledger = base_ledger()
    ledger.append(ForkAdopted(fork_id="f1", adopted={"c2": "s1"}))
    ledger.append(ToolCallResolved(call_id="c2", result="ok"))

    with pytest.raises(LedgerError, match="already has an outcome"):
        ledger.append(ToolCallCancelled(call_id="s1", reason="late"))
    assert ledger.call("s1").status == "resolved"


def test_adopting_a_call_with_another_name_or_from_another_fork_is_rejected() -> None:
    ledger = base_ledger()
    ledger.append(
        ToolCallStarted(call_id="c3", response_id="r1", name="other", arguments="{}", kind="read")
    )
    ledger.append(ForkOpened(fork_id="f2", transcript="x"))
    ledger.append(started("s2", "fork-r", speculative=True, fork_id="f2"))

    with pytest.raises(LedgerError, match="names differ"):
        ledger.append(ForkAdopted(fork_id="f1", adopted={"c3": "s1"}))
    with pytest.raises(LedgerError, match="belongs to fork 'f2'"):
        ledger.append(ForkAdopted(fork_id="f1", adopted={"c2": "s2"}))


def test_a_session_started_for_another_session_is_rejected() -> None:
    ledger = Ledger("s1", ManualClock())

    with pytest.raises(LedgerError, match="'s2' in the ledger of session 's1'"):
        ledger.append(SessionStarted(session_id="s2", started_at="x"))


def test_ledger_error_is_a_value_error() -> None:
    assert issubclass(LedgerError, ValueError)


def test_appending_after_close_raises_ledger_closed() -> None:
    ledger = base_ledger()
    ledger.close()
    ledger.close()

    with pytest.raises(LedgerClosed):
        ledger.append(ToolCallResolved(call_id="c2", result=1))
