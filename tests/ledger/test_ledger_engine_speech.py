"""The engine's own words in the model's context (`ledger.render.engine_speech`).

A chunk planned as `canned` (a hold phrase, the apology, a greeting) is the engine's:
it never appears in the model's own assistant message; it is shown in an assistant
message of its own, named `ENGINE_SPEAKER`, before its response's own message.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fsm.clock import ManualClock
from ledger import Ledger, check_protocol
from ledger.entries import (
    AgentTextPlanned,
    AgentTextPlayed,
    LlmRequestStarted,
    LlmResponseFinished,
    ToolCallResolved,
    ToolCallStarted,
    UserUtterance,
)
from ledger.render import ENGINE_SPEAKER, engine_speech
from voice_agent.local_llm.turn_history import outcomes_to_tell


def rendered(ledger: Ledger) -> list[dict[str, Any]]:
    messages = ledger.render_messages(None)
    check_protocol(messages)
    return messages


def said(ledger: Ledger, rid: str, text: str, canned: bool = False) -> None:
    ledger.append(AgentTextPlanned(response_id=rid, text=text, canned=canned))


def turn_with_a_result(ledger: Ledger) -> None:
    """The caller asks; r1 calls c1; its result is there before the next request."""
    ledger.append(UserUtterance(turn_id=1, text="where is order 5091?"))
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    ledger.append(
        ToolCallStarted(
            call_id="c1", response_id="r1", name="lookup", arguments='{"id": "5091"}', kind="read"
        )
    )
    ledger.append(LlmResponseFinished(response_id="r1", finish_reason="tool_calls"))
    ledger.append(ToolCallResolved(call_id="c1", result={"status": "shipped"}))


def test_a_canned_response_is_the_engines_message_not_the_models() -> None:
    ledger = Ledger("s", ManualClock())
    turn_with_a_result(ledger)
    ledger.append(LlmRequestStarted(response_id="r2", reason="canned", mode="async"))
    said(ledger, "r2", "One moment.", canned=True)
    ledger.append(LlmResponseFinished(response_id="r2", finish_reason="stop"))
    messages = rendered(ledger)
    assert messages[-1] == {"role": "assistant", "name": ENGINE_SPEAKER, "content": "One moment."}
    # the result came before the hold phrase and the model never told it
    assert outcomes_to_tell(messages) == 1


def test_a_result_after_a_hold_phrase_is_shown_with_its_call_as_no_model_saw_it_pending() -> None:
    """The engine's words are no request a model sees: a result that came after them (but
    before the model's next request) is inlined, with no placeholder and no get_result
    pair; after a model's request it is late (session 12's turn12 finding)."""
    for between, late in (("canned", False), ("hold", True)):
        ledger = Ledger("s", ManualClock())
        ledger.append(UserUtterance(turn_id=1, text="where is order 5091?"))
        ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
        ledger.append(ToolCallStarted(call_id="c1", response_id="r1", name="lookup",
                                      arguments='{"id": "5091"}', kind="read"))  # fmt: skip
        ledger.append(LlmResponseFinished(response_id="r1", finish_reason="tool_calls"))
        ledger.append(LlmRequestStarted(response_id="r2", reason=between, mode="async"))
        said(ledger, "r2", "One moment.", canned=True)
        ledger.append(LlmResponseFinished(response_id="r2", finish_reason="stop"))
        ledger.append(ToolCallResolved(call_id="c1", result={"status": "shipped"}))
        messages = rendered(ledger)
        shown = json.loads(next(m for m in messages if m.get("tool_call_id") == "c1")["content"])
        pairs = [m for m in messages if m.get("tool_call_id") == "c1-result"]
        if late:
            assert shown["status"] == "pending" and len(pairs) == 1, between
        else:
            assert shown == {"status": "resolved", "result": {"status": "shipped"}}, between
            assert pairs == [], between


def test_an_apology_in_a_failed_follow_up_leaves_the_result_untold() -> None:
    ledger = Ledger("s", ManualClock())
    turn_with_a_result(ledger)
    ledger.append(LlmRequestStarted(response_id="r2", reason="tool_results", mode="async"))
    said(ledger, "r2", "Sorry, I'm having trouble right now.", canned=True)
    ledger.append(LlmResponseFinished(response_id="r2", finish_reason="error", error="stalled"))
    ledger.append(AgentTextPlayed(response_id="r2", text="Sorry, I'm having trouble right now."))
    messages = rendered(ledger)
    assert [m.get("name") for m in messages if m["role"] == "assistant"] == [None, ENGINE_SPEAKER]
    assert outcomes_to_tell(messages) == 1


def test_a_hold_phrase_inside_an_answer_is_shown_apart_from_the_models_words() -> None:
    ledger = Ledger("s", ManualClock())
    ledger.append(UserUtterance(turn_id=1, text="where is order 5091?"))
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    said(ledger, "r1", "Let me check.")
    said(ledger, "r1", "One moment.", canned=True)
    said(ledger, "r1", "It has shipped.")
    ledger.append(
        ToolCallStarted(
            call_id="c1", response_id="r1", name="lookup", arguments='{"id": "5091"}', kind="read"
        )
    )
    ledger.append(LlmResponseFinished(response_id="r1", finish_reason="tool_calls"))
    planned = rendered(ledger)
    # cut by the caller after the hold phrase: the model's heard words, the engine's apart
    ledger.append(
        AgentTextPlayed(response_id="r1", text="Let me check. One moment. It has", interrupted=True)
    )
    heard = rendered(ledger)
    for messages, own in (
        (planned, "Let me check. It has shipped."),
        (heard, "Let me check. It has"),
    ):
        assert messages[1] == {
            "role": "assistant",
            "name": ENGINE_SPEAKER,
            "content": "One moment.",
        }
        assert messages[2]["content"] == own and "name" not in messages[2]
        assert messages[3]["role"] == "tool"  # the call's result follows its call
    assert ledger.transcript().endswith("agent: Let me check. One moment. It has")


def test_an_engine_response_that_runs_a_confirmed_call_keeps_the_call_in_the_models_turn() -> None:
    ledger = Ledger("s", ManualClock())
    ledger.append(UserUtterance(turn_id=1, text="yes"))
    ledger.append(LlmRequestStarted(response_id="r5", reason="canned", mode="async"))
    said(ledger, "r5", "Okay, doing that now.", canned=True)
    ledger.append(LlmResponseFinished(response_id="r5", finish_reason="stop"))
    ledger.append(
        ToolCallStarted(
            call_id="c1-confirmed", response_id="r5", name="cancel", arguments="{}", kind="write"
        )
    )
    messages = rendered(ledger)
    # said, then run: the request that reports the write ends on its result
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant", "tool"]
    assert messages[1] == engine_speech("Okay, doing that now.")
    assert messages[2]["content"] == "" and messages[2]["tool_calls"][0]["id"] == "c1-confirmed"


chunks = st.lists(
    st.tuples(st.booleans(), st.integers(1, 3)), min_size=1, max_size=6
)  # (canned, words) per chunk, in order


@settings(max_examples=200, deadline=None)
@given(plan=chunks, cut=st.floats(0.0, 1.0), with_call=st.booleans(), played=st.booleans())
def test_the_models_message_holds_its_own_words_and_the_engines_message_the_rest(
    plan: list[tuple[bool, int]], cut: float, with_call: bool, played: bool
) -> None:
    """Whatever the order of model and engine chunks and wherever a barge-in cuts them:
    no engine word is in the model's message, every model word heard is, in order, and
    every engine chunk heard whole is in the engine's message."""
    ledger = Ledger("s", ManualClock())
    ledger.append(UserUtterance(turn_id=1, text="hello"))
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    texts: list[tuple[bool, list[str]]] = []
    for n, (canned, words) in enumerate(plan):
        tokens = [f"{'e' if canned else 'm'}{n}w{i}" for i in range(words)]
        texts.append((canned, tokens))
        said(ledger, "r1", " ".join(tokens) + ".", canned=canned)
    if with_call:
        ledger.append(
            ToolCallStarted(call_id="c1", response_id="r1", name="f", arguments="{}", kind="read")
        )
    ledger.append(LlmResponseFinished(response_id="r1", finish_reason="stop"))
    heard_words = [w + ("." if i == len(t) - 1 else "") for _, t in texts for i, w in enumerate(t)]
    keep = round(cut * len(heard_words)) if played else len(heard_words)
    if played:
        ledger.append(
            AgentTextPlayed(
                response_id="r1",
                text=" ".join(heard_words[:keep]),
                interrupted=keep < len(heard_words),
            )
        )
    messages = rendered(ledger)
    own = " ".join(
        m["content"] for m in messages[1:] if m["role"] == "assistant" and "name" not in m
    )
    engine = " ".join(m["content"] for m in messages[1:] if m.get("name") == ENGINE_SPEAKER)
    heard = heard_words[:keep]
    whole_engine = []
    position = 0
    for canned, tokens in texts:
        span = heard[position : position + len(tokens)]
        if canned and len(span) == len(tokens):
            whole_engine += span
        position += len(tokens)
    model_heard = [w for w in heard if w.startswith("m")]
    assert [w for w in own.split() if w.startswith("m")] == model_heard
    assert engine.split() == whole_engine
    assert not set(whole_engine) & set(own.split())
    assert json.dumps(messages)  # plain JSON for any server


def test_the_session_view_names_the_engines_words() -> None:
    from ledger import format_session

    ledger = Ledger("s", ManualClock())
    turn_with_a_result(ledger)
    ledger.append(LlmRequestStarted(response_id="r2", reason="canned", mode="async"))
    said(ledger, "r2", "One moment.", canned=True)
    lines = format_session(ledger.entries).splitlines()
    assert any("engine (planned)" in line and "One moment." in line for line in lines)
