"""A result that reports a failure is told in its own words (failed_results, respond).

The answer step runs on `ScriptedEngine` (test_local_llm_respond.py), a FAKE of the
model that writes what the script says; bench o07-o09 (session 14) are the real
model's answers these replace.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_local_llm_respond import SERVICE_TOOLS, ScriptedEngine, _decision_then, _respond, _tool

from voice_agent.guidance import guidance
from voice_agent.local_llm.failed_results import APOLOGY, failure, untold_failures
from voice_agent.local_llm.respond import NEXT_STEP_NOTE

pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")

NOT_FOUND = {
    "found": False,
    "heard": "5 5 5 8 0 8 6 2 6 1",
    "next_step": "read the number back to the caller digit by digit and ask them to repeat it",
}


@pytest.mark.parametrize(
    ("name", "arguments", "result", "sentence"),
    [
        ("get_account_balance", {"account_number": "60481"},
         {"error": "no account with that number"}, "Sorry, there is no account with that number."),
        ("cancel_order", {"order_id": "2058"},
         {"error": "that order cannot be cancelled"}, "Sorry, that order cannot be cancelled."),
        ("lookup", {"id": "7"}, {"error": {"message": "Backend offline"}}, "Sorry, backend offline."),
        # an outcome flag that is false: its reason, else what was not done
        ("cancel_order", {"order_number": "2058"},
         {"cancelled": False, "reason": "the order is already shipped"},
         "Sorry, the order is already shipped."),
        ("cancel_order", {"order_number": "2058"}, {"cancelled": False},
         "Sorry, order 2058 has not been cancelled."),
        ("transfer_to_human", {}, {"transferred": False, "reason": "no agents on this line"},
         "Sorry, there are no agents on this line."),
        # nothing found: what was looked for, as the tool heard it
        ("lookup_order", {"order_number": "5558086261"}, NOT_FOUND,
         "Sorry, I couldn't find order number 5 5 5 8 0 8 6 2 6 1."),
        ("get_order_status", {"order_id": "4417"}, {"found": False},
         "Sorry, I couldn't find order 4417."),
        ("get_store_hours", {"city": "Smallville"}, {"found": False},
         "Sorry, I couldn't find Smallville."),
    ],
)  # fmt: skip
def test_a_failure_is_told_in_the_results_own_words(name, arguments, result, sentence):
    told = failure(name, arguments, result)
    assert told is not None and told.sentence == sentence


@pytest.mark.parametrize(
    "result",
    [
        {"order_id": "1", "status": "shipped"},
        {"order_id": "1", "status": "shipped", "delivered": False},  # a fact, not a failure
        {"cancelled": True, "confirmation": "X-1"},
        {"error": ""},
        guidance("the call ends after your goodbye", ending=False),  # call control
        "shipped",
    ],
)
def test_a_result_that_reports_no_failure_is_none(result):
    assert failure("get_order_status", {"order_id": "1"}, result) is None


def _after(said: str, *calls: tuple[str, dict, Any]) -> list[dict]:
    messages: list[dict] = [
        {"role": "system", "content": "You are Alex."},
        {"role": "user", "content": said},
    ]
    for number, (name, arguments, result) in enumerate(calls):
        call = {"id": f"c{number}", "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)}}  # fmt: skip
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{number}",
             "content": json.dumps({"status": "resolved", "result": result})},
        ]  # fmt: skip
    return messages


NO_ACCOUNT = ("get_account_balance", {"account_number": "60481"},
              {"error": "no account with that number"})  # fmt: skip


@pytest.mark.parametrize(
    "model_says",
    [
        "I'm sorry, but I can't help with that.",  # bench o07, 1.5B
        "The current balance of account 60481 is $60481.",  # bench o07, 0.5B
    ],
)
async def test_a_failed_lookup_is_told_from_its_result_and_the_model_says_nothing(model_says):
    messages = _after("How much money is left on account 60481?", NO_ACCOUNT)
    engine = ScriptedEngine(_decision_then("reply", model_says))
    responder, reply, _ = await _respond(engine, messages, tools=SERVICE_TOOLS)
    assert reply.text.strip() == "Sorry, there is no account with that number."
    assert not engine.steps and not engine.asked_p  # no model step, not even the call probe
    assert responder.plan.failures_told == ["get_account_balance"]


async def test_a_failed_write_with_no_reason_is_never_given_one():
    # bench o09 (1.5B): "I can't cancel order 2058 because it hasn't been shipped yet."
    tools = [*SERVICE_TOOLS, _tool("cancel_order", order_id="the order number to cancel")]
    result = {"error": "that order cannot be cancelled"}
    messages = _after("please cancel order 2058", ("cancel_order", {"order_id": "2058"}, result))
    said = "I can't cancel order 2058 because it hasn't been shipped yet."
    engine = ScriptedEngine(_decision_then("reply", said))
    _, reply, _ = await _respond(engine, messages, tools=tools)
    assert reply.text.strip() == "Sorry, that order cannot be cancelled."


async def test_a_next_step_the_result_asks_for_is_taken_after_the_failure_is_told():
    tools = [_tool("lookup_order", order_number="the order number")]
    messages = _after(
        "Where's order 555 808 6261?", ("lookup_order", {"order_number": "5558086261"}, NOT_FOUND)
    )
    engine = ScriptedEngine(_decision_then("reply", "Could you say the number again?"))
    responder, reply, _ = await _respond(engine, messages, tools=tools)
    lead = "Sorry, I couldn't find order number 5 5 5 8 0 8 6 2 6 1. "
    assert reply.text == lead + "Could you say the number again?"
    ((prompt, grammar, temperature),) = engine.steps  # the next step's, and only it
    note = NEXT_STEP_NOTE.format(step=NOT_FOUND["next_step"])
    assert prompt.endswith(lead) and note in prompt
    assert temperature == 0.0 and grammar is not None
    assert "\\t" not in grammar.split("\n")[0]  # it goes on after the lead (`continuing`)


async def test_with_a_result_that_did_not_fail_the_model_tells_it_after_the_failure():
    balance = ("get_account_balance", {"account_number": "31580"},
               {"account_number": "31580", "balance": "$220.00"})  # fmt: skip
    messages = _after("What do I owe on 60481 and on 31580?", NO_ACCOUNT, balance)
    engine = ScriptedEngine(_decision_then("reply", "The balance of account 31580 is $220.00."))
    responder, reply, _ = await _respond(engine, messages, tools=SERVICE_TOOLS)
    lead = "Sorry, account number 60481: there is no account with that number. "
    assert reply.text == lead + "The balance of account 31580 is $220.00."
    answer_prompt = engine.steps[-1][0]
    assert answer_prompt.endswith(lead)
    assert responder.plan.failures_told == ["get_account_balance"]


async def test_a_failure_told_in_an_earlier_turn_is_not_told_again():
    messages = _after("How much is on 60481?", NO_ACCOUNT) + [
        {"role": "assistant", "content": "Sorry, there is no account with that number."},
        {"role": "user", "content": "Thanks, bye for now."},
    ]
    assert untold_failures(messages) == []
    assert [f.sentence for f in untold_failures(messages[:-2])] == [
        f"{APOLOGY}there is no account with that number."
    ]


_values = st.one_of(
    st.booleans(), st.none(), st.integers(-9999, 99999), st.text(max_size=30),
    st.dictionaries(st.sampled_from(["message", "code"]), st.text(max_size=20), max_size=2),
)  # fmt: skip
_fields = st.sampled_from(
    ["error", "reason", "found", "heard", "next_step", "cancelled", "changed", "status", "note"]
)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["cancel_order", "lookup_order", "get_store_hours", "transfer_to_human"]),
    arguments=st.dictionaries(st.sampled_from(["order_id", "city"]), st.text(max_size=12)),
    result=st.dictionaries(_fields, _values, max_size=5),
)
def test_a_failure_s_sentence_holds_no_number_its_result_and_call_do_not(name, arguments, result):
    # Whatever a result holds, its failure (if any) is told without a number nobody gave.
    told = failure(name, arguments, result)
    if told is None:
        return
    assert told.sentence.startswith(APOLOGY) and told.sentence.endswith(".")
    given = json.dumps([arguments, result], ensure_ascii=False)
    for number in re.findall(r"\d+", told.sentence):
        assert number in given
