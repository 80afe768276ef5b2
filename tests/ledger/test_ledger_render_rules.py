"""The rendering rules of docs/INTERFACES.md, one scenario at a time."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fsm.clock import ManualClock
from ledger import Ledger, ProtocolError, check_protocol, render_messages
from ledger.entries import (
    AgentTextPlanned,
    AgentTextPlayed,
    ForkAdopted,
    ForkDiscarded,
    ForkOpened,
    LlmRequestStarted,
    LlmResponseFinished,
    Note,
    ToolCallCancelled,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallStarted,
    ToolCallTimedOut,
    UserUtterance,
)
from ledger.render import PENDING_NOTE


def new_ledger() -> Ledger:
    return Ledger("s1", ManualClock())


def request(ledger: Ledger, response_id: str, reason: Any = "user_turn") -> None:
    ledger.append(LlmRequestStarted(response_id=response_id, reason=reason, mode="async"))


def call(
    ledger: Ledger, call_id: str, response_id: str, name: str = "get_order", **extra: Any
) -> None:
    ledger.append(
        ToolCallStarted(
            call_id=call_id,
            response_id=response_id,
            name=name,
            arguments=json.dumps({"id": call_id}),
            kind="read",
            **extra,
        )
    )


def rendered(ledger: Ledger) -> list[dict[str, Any]]:
    messages = ledger.render_messages(None)
    check_protocol(messages)
    return messages


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_sync_mode_renders_the_conventional_protocol_with_outcomes_inline() -> None:
    ledger = new_ledger()
    ledger.append(UserUtterance(turn_id=1, text="Where is order 7?"))
    request(ledger, "r1")
    ledger.append(AgentTextPlanned(response_id="r1", text="Let me check."))
    call(ledger, "c1", "r1")
    ledger.append(LlmResponseFinished(response_id="r1", finish_reason="tool_calls"))
    ledger.append(ToolCallResolved(call_id="c1", result={"status": "shipped"}))
    request(ledger, "r2", "tool_results")
    ledger.append(AgentTextPlanned(response_id="r2", text="It has shipped."))

    assert ledger.render_messages("You are helpful.") == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Where is order 7?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [tool_call("c1", "get_order", '{"id": "c1"}')],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"status": "resolved", "result": {"status": "shipped"}}),
        },
        {"role": "assistant", "content": "It has shipped."},
    ]


def test_a_call_pending_at_the_next_request_gets_a_placeholder_then_a_get_result_pair() -> None:
    ledger = new_ledger()
    ledger.append(UserUtterance(turn_id=1, text="Where is order 7?"))
    request(ledger, "r1")
    call(ledger, "c1", "r1")
    ledger.append(LlmResponseFinished(response_id="r1", finish_reason="tool_calls"))
    request(ledger, "r2", "continuation")
    ledger.append(AgentTextPlanned(response_id="r2", text="One moment."))
    ledger.append(LlmResponseFinished(response_id="r2", finish_reason="stop"))
    seen_by_r2 = rendered(ledger)[:3]
    ledger.append(ToolCallFailed(call_id="c1", error="database down"))

    messages = rendered(ledger)
    placeholder = {"status": "pending", "future": "c1", "note": PENDING_NOTE}
    assert messages == [
        {"role": "user", "content": "Where is order 7?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [tool_call("c1", "get_order", '{"id": "c1"}')],
        },
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps(placeholder)},
        {"role": "assistant", "content": "One moment."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [tool_call("c1-result", "get_result", json.dumps({"call_id": "c1"}))],
        },
        {
            "role": "tool",
            "tool_call_id": "c1-result",
            "content": json.dumps({"status": "failed", "error": "database down"}),
        },
    ]
    assert messages[:3] == seen_by_r2


def test_an_outcome_before_any_later_request_replaces_the_placeholder_nobody_saw() -> None:
    ledger = new_ledger()
    request(ledger, "r1")
    call(ledger, "c1", "r1")
    assert json.loads(rendered(ledger)[1]["content"])["status"] == "pending"
    ledger.append(ToolCallResolved(call_id="c1", result=42))

    messages = rendered(ledger)
    assert [m["role"] for m in messages] == ["assistant", "tool"]
    assert json.loads(messages[1]["content"]) == {"status": "resolved", "result": 42}


@pytest.mark.parametrize(
    ("outcome", "payload"),
    [
        (
            ToolCallResolved(call_id="c1", result=[1, "a"]),
            {"status": "resolved", "result": [1, "a"]},
        ),
        (ToolCallFailed(call_id="c1", error="bad"), {"status": "failed", "error": "bad"}),
        (ToolCallTimedOut(call_id="c1", timeout_s=3.0), {"status": "timed_out", "timeout_s": 3.0}),
        (
            ToolCallCancelled(call_id="c1", reason="barge-in"),
            {"status": "cancelled", "reason": "barge-in"},
        ),
    ],
)
def test_each_outcome_kind_renders_its_status_payload_inline_and_late(
    outcome: Any, payload: Any
) -> None:
    inline, late = new_ledger(), new_ledger()
    for ledger in (inline, late):
        request(ledger, "r1")
        call(ledger, "c1", "r1")
    inline.append(outcome)
    request(late, "r2")
    late.append(outcome)

    assert json.loads(rendered(inline)[-1]["content"]) == payload
    assert json.loads(rendered(late)[-1]["content"]) == payload
    assert rendered(late)[-1]["tool_call_id"] == "c1-result"


def test_an_interrupted_response_renders_only_the_played_text() -> None:
    ledger = new_ledger()
    request(ledger, "r1")
    ledger.append(AgentTextPlanned(response_id="r1", text="Your order shipped on Monday."))
    ledger.append(AgentTextPlanned(response_id="r1", text="It arrives Friday."))
    assert rendered(ledger)[0]["content"] == "Your order shipped on Monday. It arrives Friday."
    ledger.append(LlmResponseFinished(response_id="r1", finish_reason="stop"))
    ledger.append(AgentTextPlayed(response_id="r1", text="Your order shipped", interrupted=True))

    assert rendered(ledger) == [{"role": "assistant", "content": "Your order shipped"}]
    assert ledger.transcript() == "agent: Your order shipped"


def test_a_response_interrupted_before_any_word_keeps_its_calls_with_empty_content() -> None:
    ledger = new_ledger()
    request(ledger, "r1")
    ledger.append(AgentTextPlanned(response_id="r1", text="Checking."))
    call(ledger, "c1", "r1")
    ledger.append(AgentTextPlayed(response_id="r1", text="", interrupted=True))

    messages = rendered(ledger)
    assert messages[0]["content"] == ""
    assert [c["id"] for c in messages[0]["tool_calls"]] == ["c1"]


def test_a_response_with_neither_text_nor_calls_and_partial_utterances_render_nothing() -> None:
    ledger = new_ledger()
    ledger.append(UserUtterance(turn_id=1, text="what is", final=False))
    request(ledger, "r1")
    ledger.append(AgentTextPlanned(response_id="r1", text="   "))
    ledger.append(LlmResponseFinished(response_id="r1", finish_reason="cancelled"))
    ledger.append(Note(text="hello"))

    assert rendered(ledger) == []


def test_a_user_message_appended_while_a_response_streams_comes_after_that_response() -> None:
    ledger = new_ledger()
    ledger.append(UserUtterance(turn_id=1, text="first"))
    request(ledger, "r1")
    ledger.append(AgentTextPlanned(response_id="r1", text="Sure,"))
    ledger.append(UserUtterance(turn_id=2, text="second"))
    ledger.append(AgentTextPlanned(response_id="r1", text="here it is."))
    call(ledger, "c1", "r1")

    assert [(m["role"], m["content"]) for m in rendered(ledger)] == [
        ("user", "first"),
        ("assistant", "Sure, here it is."),
        ("tool", json.dumps({"status": "pending", "future": "c1", "note": PENDING_NOTE})),
        ("user", "second"),
    ]


def test_speculative_calls_render_only_when_adopted_and_then_under_the_final_id() -> None:
    ledger = new_ledger()
    ledger.append(ForkOpened(fork_id="f1", transcript="where is my"))
    call(ledger, "s1", "fork-r", speculative=True, fork_id="f1")
    call(ledger, "s2", "fork-r", name="weather", speculative=True, fork_id="f1")
    ledger.append(ToolCallResolved(call_id="s1", result="shipped"))
    assert rendered(ledger) == []
    ledger.append(UserUtterance(turn_id=1, text="where is my order"))
    request(ledger, "r1")
    call(ledger, "c1", "r1")
    ledger.append(ForkAdopted(fork_id="f1", adopted={"c1": "s1"}))
    ledger.append(ToolCallCancelled(call_id="s2", reason="not adopted"))

    messages = rendered(ledger)
    assert [c["id"] for m in messages for c in m.get("tool_calls", [])] == ["c1"]
    assert messages[-1] == {
        "role": "tool",
        "tool_call_id": "c1",
        "content": json.dumps({"status": "resolved", "result": "shipped"}),
    }
    assert ledger.call("c1").status == "resolved"
    assert ledger.call("c1").adopted_from == "s1"


def test_an_adoption_after_a_later_request_reports_the_outcome_as_a_late_pair() -> None:
    ledger = new_ledger()
    ledger.append(ForkOpened(fork_id="f1", transcript="where is my"))
    call(ledger, "s1", "fork-r", speculative=True, fork_id="f1")
    ledger.append(ToolCallResolved(call_id="s1", result="shipped"))
    request(ledger, "r1")
    call(ledger, "c1", "r1")
    request(ledger, "r2", "continuation")  # saw c1 as pending
    seen = rendered(ledger)
    ledger.append(ForkAdopted(fork_id="f1", adopted={"c1": "s1"}))

    messages = rendered(ledger)
    assert messages[: len(seen)] == seen
    assert json.loads(messages[1]["content"])["status"] == "pending"
    assert messages[-1]["tool_call_id"] == "c1-result"
    assert json.loads(messages[-1]["content"]) == {"status": "resolved", "result": "shipped"}


def test_discarded_forks_leave_no_trace_in_the_messages() -> None:
    ledger = new_ledger()
    ledger.append(ForkOpened(fork_id="f1", transcript="book a"))
    call(ledger, "s1", "fork-r", speculative=True, fork_id="f1")
    ledger.append(ForkDiscarded(fork_id="f1", reason="transcript changed"))
    ledger.append(ToolCallCancelled(call_id="s1", reason="fork discarded"))

    assert rendered(ledger) == []


def test_render_messages_of_loaded_entries_matches_the_live_ledger() -> None:
    ledger = new_ledger()
    ledger.append(UserUtterance(turn_id=1, text="hi"))
    request(ledger, "r1")
    call(ledger, "c1", "r1")
    request(ledger, "r2")
    ledger.append(ToolCallResolved(call_id="c1", result=None))

    assert render_messages(ledger.entries, "sys") == ledger.render_messages("sys")


@pytest.mark.parametrize(
    ("messages", "complaint"),
    [
        (
            [{"role": "assistant", "content": "", "tool_calls": [tool_call("a", "f", "{}")]}],
            "never answered",
        ),
        (
            [
                {"role": "assistant", "content": "", "tool_calls": [tool_call("a", "f", "{}")]},
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "a", "content": "{}"},
            ],
            "not answered before the next non-tool message",
        ),
        ([{"role": "tool", "tool_call_id": "a", "content": "{}"}], "not an open call"),
        (
            [
                {"role": "assistant", "content": "", "tool_calls": [tool_call("a", "f", "{}")]},
                {"role": "tool", "tool_call_id": "a", "content": "{}"},
                {"role": "assistant", "content": "", "tool_calls": [tool_call("a", "f", "{}")]},
                {"role": "tool", "tool_call_id": "a", "content": "{}"},
            ],
            "repeats",
        ),
        (
            [
                {"role": "assistant", "content": "", "tool_calls": [tool_call("a", "f", "{}")]},
                {"role": "tool", "tool_call_id": "a", "content": "{}"},
                {"role": "tool", "tool_call_id": "a", "content": "{}"},
            ],
            "not an open call",
        ),
        ([{"role": "assistant", "content": None}], "content must be a string"),
        ([{"role": "assistant", "content": "", "tool_calls": []}], "non-empty list"),
        ([{"role": "user", "content": "x"}, {"role": "system", "content": "s"}], "must come first"),
        ([{"role": "assistant", "content": "", "tool_calls": [{"id": "a"}]}], "malformed"),
    ],
)
def test_check_protocol_names_the_broken_rule(messages: Any, complaint: str) -> None:
    with pytest.raises(ProtocolError, match=complaint):
        check_protocol(messages)
