"""`format_session`: the readable transcript of a recorded session."""

from __future__ import annotations

from fsm.clock import ManualClock
from ledger import Ledger, format_session
from ledger.entries import (
    AgentTextPlanned,
    AgentTextPlayed,
    ForkAdopted,
    ForkOpened,
    LlmRequestStarted,
    LlmResponseFinished,
    Note,
    SessionEnded,
    SessionStarted,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallStarted,
    UserUtterance,
)


async def recorded_session() -> Ledger:
    clock = ManualClock(start=1000.0)
    ledger = Ledger("s-42", clock)
    ledger.append(SessionStarted(session_id="s-42", started_at="2025-03-01T10:00:00Z"))
    await clock.advance(1.234)
    ledger.append(ForkOpened(fork_id="f1", transcript="where is my"))
    ledger.append(
        ToolCallStarted(
            call_id="s1",
            response_id="fr",
            name="get_order",
            arguments="{}",
            kind="read",
            speculative=True,
            fork_id="f1",
        )
    )
    ledger.append(UserUtterance(turn_id=1, text="Where is my order?"))
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="speculative"))
    ledger.append(AgentTextPlanned(response_id="r1", text="Let me check that for you right away."))
    ledger.append(
        ToolCallStarted(
            call_id="c1", response_id="r1", name="get_order", arguments="{}", kind="read"
        )
    )
    ledger.append(ForkAdopted(fork_id="f1", adopted={"c1": "s1"}))
    ledger.append(
        ToolCallStarted(
            call_id="c2", response_id="r1", name="refund", arguments='{"x": 1}', kind="write"
        )
    )
    ledger.append(LlmResponseFinished(response_id="r1", finish_reason="tool_calls"))
    await clock.advance(0.5)
    ledger.append(ToolCallResolved(call_id="s1", result={"status": "shipped", "blob": "x" * 500}))
    ledger.append(ToolCallFailed(call_id="c2", error="not allowed"))
    ledger.append(AgentTextPlayed(response_id="r1", text="Let me check", interrupted=True))
    ledger.append(Note(text="barge-in", level="warning"))
    ledger.append(SessionEnded(reason="hangup"))
    return ledger


async def test_format_session_shows_times_kinds_ids_and_a_summary() -> None:
    text = format_session((await recorded_session()).entries)
    lines = text.splitlines()

    assert lines[0].startswith("+  0.000s  session") and "s-42" in lines[0]
    assert lines[1].startswith("+  1.234s  fork") and "f1 opened" in lines[1]
    assert any(
        line.startswith("+  1.734s    <- resolved") and "s1 get_order" in line for line in lines
    )
    assert any("user" in line and '"Where is my order?"' in line for line in lines)
    assert any("agent (planned)" in line and "r1" in line for line in lines)
    assert any("agent (heard)" in line and "[interrupted]" in line for line in lines)
    assert any("call ->" in line and "c2 refund" in line and "write" in line for line in lines)
    assert any("[speculative, fork f1]" in line for line in lines)
    assert any("adopted c1 <- s1" in line for line in lines)
    assert any("<- failed" in line and "not allowed" in line for line in lines)
    assert any("note" in line and "[warning] barge-in" in line for line in lines)
    assert all(len(line) < 160 for line in lines)
    assert "user turns: 1" in text
    assert "responses: 1 (1 interrupted)" in text
    assert "calls: 2 (1 failed, 1 resolved)" in text
    assert "speculative calls: 1 (1 adopted)" in text
    assert "forks: 1 opened, 1 adopted, 0 discarded" in text


def test_format_session_of_nothing_says_so() -> None:
    assert format_session([]) == "(empty ledger)"
