"""The words an answer from results may use (voice_agent.local_llm.answer_words), and the
speech grammar that bans the others (grammar.speech_grammar with them as `banned`).

The grammar is checked with llama.cpp's own matcher on the 0.5B model's vocabulary
(tokenizing only; nothing is generated).
"""

from __future__ import annotations

import json

import pytest
from grammar_helpers import grammar_accepts

from voice_agent.local_llm.answer_words import caller_only_words
from voice_agent.local_llm.grammar import check_grammar, speech_grammar

ORDER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_order_status",
        "description": "Look up the shipping status of an order by its order number.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "the order number"}},
        },
    },
}


def _after(said: str, result: dict) -> list[dict]:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_order_status", "arguments": '{"order_id": "3307"}'},
    }
    return [
        {"role": "system", "content": "You are Sam, the shop's voice assistant."},
        {"role": "user", "content": said},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"status": "resolved", "result": result}),
        },
    ]


@pytest.mark.parametrize(
    ("said", "result", "banned"),
    [
        # e11, e01 (session 7): the caller's verb, not the result's status
        ("Has order 3307 been dispatched?", {"status": "shipped"}, ["dispatch"]),
        (
            "Morning, can you see if order 3307 has left the warehouse yet?",
            {"status": "out for delivery"},
            ["left", "warehous"],  # "warehousing" too
        ),
        # words the result, the tool or the prompt say are the answer's to use
        ("Has order 3307 shipped yet?", {"status": "shipped"}, []),
        ("Is order 3307 delivered?", {"status": "delivered", "estimated_delivery": "Monday"}, []),
        # names, common and short words are never banned
        ("Hi, is my Denver order 3307 out yet?", {"status": "shipped"}, []),
    ],
)
def test_the_callers_words_nothing_given_says_are_the_ones_left_out(said, result, banned):
    assert caller_only_words(_after(said, result), [ORDER_TOOL]) == banned


@pytest.fixture(scope="module")
def engine():
    from voice_agent.local_llm.engine import LlamaEngine
    from voice_agent.local_llm.models import resolve_model

    engine = LlamaEngine.load(resolve_model("qwen2.5-coder-0.5b-instruct-q4_k_m"), "qwen", 2, 512)
    yield engine
    engine.close()


def _grammar_accepts(engine, grammar: str, text: str) -> bool:
    return grammar_accepts(engine._llama, grammar, text)


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("Order 3307 has shipped.", True),
        ("Okay, order 3307 has shipped and is out for delivery!", True),
        ("Order 3307 has been dispatched.", False),  # a banned stem
        ("Order 3307 has been Dispatched.", False),  # in any case
        ("Your order left us on Monday.", False),
        ("The order is dispatchable.", False),  # the stem bans its inflections too
        ("Leaving soon, order 3307 is shipped.", True),  # another word of the same letters
        ("It was undispatched.", False),  # a long stem anywhere inside a word (yourwarehouse)
        ("It was cleft, and shipped.", True),  # a short one only at the start ("return")
        ("Order 330 has shipped.", False),  # a number nobody gave
        ("Order 33073307 has shipped.", False),  # two numbers run together
        (" Order 3307 has shipped.", False),  # a leading space
        ("Order 3307 has <b>shipped</b>.", False),  # markup
    ],
)
def test_the_answer_grammar_keeps_the_speech_rules_and_bans_the_stems(engine, text, accepted):
    grammar = speech_grammar(["3307", "1"], banned=["dispatch", "left"])
    check_grammar(grammar)
    assert _grammar_accepts(engine, grammar, text) is accepted
