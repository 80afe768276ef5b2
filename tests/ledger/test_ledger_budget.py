"""The context-budget policy: renderings fit the window, stay valid, and change rarely."""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from fsm import ManualClock
from ledger import Ledger, check_protocol
from ledger import entries as le
from ledger.budget import MIN_CONTENT_CHARS, estimate_tokens, fit_messages

SYSTEM = "You are Alex from Acme. Be brief."


def conversation(turns: int, *, result_chars: int = 200, big_at: int | None = None) -> Ledger:
    """A ledger of `turns` user turns, each with one tool call and a spoken answer."""
    ledger = Ledger("s", ManualClock())
    for i in range(turns):
        ledger.append(le.UserUtterance(turn_id=i + 1, text=f"Where is order {i}? " + "please " * 5))
        rid, follow = f"r{i}a", f"r{i}b"
        ledger.append(le.LlmRequestStarted(response_id=rid, reason="user_turn", mode="sync"))
        ledger.append(le.AgentTextPlanned(response_id=rid, text="Let me check."))
        ledger.append(
            le.ToolCallStarted(
                call_id=f"c{i}", response_id=rid, name="get_order",
                arguments=json.dumps({"order_id": str(i)}), kind="read",
            )
        )  # fmt: skip
        ledger.append(le.LlmResponseFinished(response_id=rid, finish_reason="tool_calls"))
        size = 1_000_000 if i == big_at else result_chars
        ledger.append(le.ToolCallResolved(call_id=f"c{i}", result={"status": "x" * size}))
        ledger.append(le.LlmRequestStarted(response_id=follow, reason="tool_results", mode="sync"))
        ledger.append(le.AgentTextPlanned(response_id=follow, text=f"Order {i} has shipped."))
        ledger.append(le.LlmResponseFinished(response_id=follow, finish_reason="stop"))
    return ledger


def test_no_budget_changes_nothing():
    messages = conversation(5).render_messages(SYSTEM)
    fit = fit_messages(messages, None)
    assert fit.messages == messages and not fit.changed


def test_two_hundred_turns_fit_the_budget_with_a_valid_protocol_and_the_last_turn_intact():
    messages = conversation(200).render_messages(SYSTEM)
    assert estimate_tokens(messages) > 20_000  # far over the window below
    fit = fit_messages(messages, 3000)
    check_protocol(fit.messages)
    assert fit.estimated_tokens <= 3000
    assert fit.elided_turns > 150
    # the current turn is complete and exactly as rendered
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    assert fit.messages[-(len(messages) - last_user) :] == messages[last_user:]
    # the elided turns leave a digest in the system message, most recent last
    system = fit.messages[0]["content"]
    assert system.startswith(SYSTEM) and "Earlier in this call" in system
    assert f"Where is order {fit.elided_turns - 1}?" in system


def test_renderings_are_append_stable_between_rare_elision_steps():
    """Turn after turn, the fitted request extends the previous one except at a few steps."""
    previous: list[dict] | None = None
    steps = 0
    turns = 120
    full = conversation(turns)
    entries = full.entries
    boundaries = [e.seq for e in entries if e.type == "UserUtterance"] + [len(entries)]
    for n in range(1, turns + 1):
        ledger = Ledger.from_entries(entries[: boundaries[n]], ManualClock())
        fitted = fit_messages(ledger.render_messages(SYSTEM), 2500).messages
        assert estimate_tokens(fitted) <= 2500
        if previous is not None and fitted[: len(previous)] != previous:
            steps += 1
        previous = fitted
    # a step frees half the budget (~5 of these ~230-token turns): one every several turns,
    # and every other turn's request extends the one before it
    assert 1 <= steps <= turns // 4


def test_a_huge_tool_result_is_capped_the_same_way_in_every_later_request():
    ledger = conversation(6, big_at=2)
    renders = []
    for upto in (4, 5, 6):
        msgs = conversation(upto, big_at=2).render_messages(SYSTEM)
        fit = fit_messages(msgs, 8000)
        check_protocol(fit.messages)
        assert fit.estimated_tokens <= 8000
        renders.append([m for m in fit.messages if m.get("tool_call_id") == "c2"][0]["content"])
    assert renders[0] == renders[1] == renders[2]
    assert "characters left out here to fit the context window" in renders[0]
    assert len(renders[0]) < 8000 * 3
    # the ledger still holds the whole result
    whole = ledger.call("c2").result
    assert isinstance(whole, dict) and isinstance(whole["status"], str)
    assert len(whole["status"]) == 1_000_000


def test_one_long_user_message_is_squeezed_into_a_small_window():
    ledger = conversation(3)
    ledger.append(le.UserUtterance(turn_id=9, text="word " * 20_000))
    fit = fit_messages(ledger.render_messages(SYSTEM), 3500)
    check_protocol(fit.messages)
    assert fit.estimated_tokens <= 3500
    assert fit.messages[-1]["role"] == "user" and fit.messages[-1]["content"].startswith(
        "word word"
    )


def test_a_single_turn_with_many_calls_drops_its_oldest_blocks_but_keeps_the_last():
    ledger = Ledger("s", ManualClock())
    ledger.append(le.UserUtterance(turn_id=1, text="Do everything."))
    for i in range(80):
        rid = f"r{i}"
        ledger.append(le.LlmRequestStarted(response_id=rid, reason="tool_results", mode="async"))
        ledger.append(
            le.ToolCallStarted(
                call_id=f"c{i}", response_id=rid, name="step", arguments="{}", kind="read"
            )
        )
        ledger.append(le.LlmResponseFinished(response_id=rid, finish_reason="tool_calls"))
        ledger.append(le.ToolCallResolved(call_id=f"c{i}", result={"data": "z" * 400}))
    messages = ledger.render_messages(SYSTEM)
    fit = fit_messages(messages, 2000)
    check_protocol(fit.messages)
    assert fit.estimated_tokens <= 2000
    assert fit.messages[1] == {"role": "user", "content": "Do everything."}
    assert fit.messages[-2:] == messages[-2:] and fit.elided_blocks > 0


_block = st.one_of(
    st.tuples(st.just("user"), st.integers(1, 3000)),
    st.tuples(st.just("say"), st.integers(1, 2000)),
    st.tuples(st.just("call"), st.integers(1, 3), st.integers(1, 20_000)),
)


@settings(max_examples=150, deadline=None)
@given(blocks=st.lists(_block, min_size=1, max_size=40), budget=st.integers(400, 6000))
@example(blocks=[("call", 3, 1), ("call", 3, 25)], budget=400)  # no user turn, 2 blocks left
def test_any_conversation_fits_any_reasonable_budget_and_stays_valid(blocks, budget):
    messages: list[dict] = [{"role": "system", "content": SYSTEM}]
    n = 0
    for block in blocks:
        if block[0] == "user":
            messages.append({"role": "user", "content": "u" * block[1]})
        elif block[0] == "say":
            messages.append({"role": "assistant", "content": "a" * block[1]})
        else:
            ids = [f"c{n + k}" for k in range(block[1])]
            n += block[1]
            messages.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}}
                        for i in ids
                    ],
                }
            )
            messages += [
                {"role": "tool", "tool_call_id": i, "content": "t" * block[2]} for i in ids
            ]
    fit = fit_messages(messages, budget)
    check_protocol(fit.messages)
    assert fit.messages[0]["content"].startswith(SYSTEM)
    if fit.estimated_tokens > budget:  # then it is as small as the policy makes it:
        body = fit.messages[1:]
        blocks = [m for m in body if m["role"] != "tool"]
        assert len(blocks) <= 2  # the turn's first block and its last one
        assert all(len(m.get("content") or "") <= MIN_CONTENT_CHARS for m in body)
    assert fit_messages(messages, budget) == fit  # pure
