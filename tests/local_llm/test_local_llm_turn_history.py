"""What the conversation holds for the reply (voice_agent.local_llm.turn_history): this
turn's calls, and the outcomes still to tell."""

from __future__ import annotations

import json
from typing import Any

from voice_agent.local_llm.turn_history import (
    calls_to_tell,
    outcomes_to_tell,
    result_fields,
    told_this_turn,
    untold,
)


def _call(call_id: str, name: str, arguments: dict) -> dict:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}  # fmt: skip


def _tool(call_id: str, payload: dict) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": json.dumps(payload)}


BALANCE = {"account_number": "77215", "balance": "$36.20", "due_date": "June 3"}
#: An async turn: a balance and an order looked up, both pending; the balance came late and
#: the agent told it; the order's result came after that.
LATE: list[dict[str, Any]] = [
    {"role": "user", "content": "What's the balance of account 77215, and where is order 4410?"},
    {"role": "assistant", "content": "", "tool_calls": [
        _call("c1", "get_account_balance", {"account_number": "77215"}),
        _call("c2", "get_order_status", {"order_id": "4410"})]},
    _tool("c1", {"status": "pending", "future": "c1"}),
    _tool("c2", {"status": "pending", "future": "c2"}),
    {"role": "assistant", "content": "", "tool_calls": [
        _call("c1-result", "get_result", {"call_id": "c1"})]},
    _tool("c1-result", {"status": "resolved", "result": BALANCE}),
    {"role": "assistant", "content": "The balance of account 77215 is $36.20."},
    {"role": "assistant", "content": "", "tool_calls": [
        _call("c2-result", "get_result", {"call_id": "c2"})]},
    _tool("c2-result", {"status": "resolved", "result": {"status": "shipped"}}),
]  # fmt: skip


def test_the_outcomes_to_tell_are_those_since_the_agent_last_spoke():
    assert untold(LATE) == LATE[-2:]
    assert outcomes_to_tell(LATE) == 1
    assert calls_to_tell(LATE) == [("get_order_status", '{"order_id": "4410"}')]
    assert outcomes_to_tell(LATE[:-3]) == 1  # before the agent spoke: the balance
    assert outcomes_to_tell(LATE[:-2]) == 0  # the agent told it; nothing new yet


def test_a_late_results_fields_belong_to_the_tool_it_answers():
    assert result_fields(LATE) == {
        "get_account_balance": ["account_number", "balance", "due_date"],
        "get_order_status": ["status"],
    }


def test_a_result_counts_as_told_once_the_agent_spoke_after_it():
    assert told_this_turn(LATE) and told_this_turn(LATE[:-2])
    assert not told_this_turn(LATE[:-3])  # the balance arrived, nothing said since
    # words said with the calls come before their results
    with_words = [LATE[0], {**LATE[1], "content": "Let me check."}, *LATE[2:6]]
    assert not told_this_turn(with_words)


def test_the_engines_own_words_tell_nothing():
    """A hold phrase or the apology (an assistant message named `ENGINE_SPEAKER`) after the
    balance came: the balance is still to tell, with the order's result."""
    from ledger.render import engine_speech

    apology = engine_speech("Sorry, I'm having trouble right now.")
    messages = [*LATE[:6], apology, *LATE[7:]]
    assert outcomes_to_tell(messages) == 2
    assert not told_this_turn(messages)
    assert outcomes_to_tell(LATE) == 1  # the model's own words did tell it
