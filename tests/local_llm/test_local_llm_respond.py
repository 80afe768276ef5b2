"""Decide, then call or speak (respond), grounding of arguments and numbers, readable results.

The step logic runs on `ScriptedEngine`, a FAKE of `LlamaEngine.generate`
that answers each step from a script (what a model would write after that
prompt); the real model runs these steps in test_local_llm_server.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from voice_agent.local_llm.chat_format import render_messages
from voice_agent.local_llm.engine import GenerationStats
from voice_agent.local_llm.grammar import (
    calls_grammar,
    check_grammar,
    choice_grammar,
    speech_grammar,
)
from voice_agent.local_llm.grounding import (
    conversation_numbers,
    ungrounded_arguments,
    value_grounded,
)
from voice_agent.local_llm.output_parser import ToolCallStreamParser
from voice_agent.local_llm.protocol import parse_chat_request
from voice_agent.local_llm.reply import ReplyAssembler
from voice_agent.local_llm.respond import DECISION_PREFIX, REPLY, Responder

pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")


def _tool(name: str, **props: str) -> dict:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": name.replace("_", " "),
            "parameters": {
                "type": "object",
                "properties": {k: {"type": "string", "description": v} for k, v in props.items()},
                "required": list(props),
            },
        },
    }


TOOLS = [
    _tool("get_order_status", order_id="the order number"),
    _tool("get_store_hours", city="the city of the store"),
    _tool("schedule_callback", phone="the caller's phone number", time="when to call back"),
]


# ------------------------------------------------------------------ grammars


def test_step_grammars_parse_with_llama_cpp():
    check_grammar(choice_grammar(["get_order_status", "get_store_hours", REPLY]))
    for more in (0, 1, 3):
        check_grammar(calls_grammar(TOOLS, "schedule_callback", more))
    check_grammar(speech_grammar({"58213", "9", "7"}))
    check_grammar(speech_grammar(set()))


def test_speech_grammar_lists_only_the_conversation_numbers_and_forbids_markup():
    grammar = speech_grammar({"58213", "9"})
    assert '"58213"' in grammar and '"9"' in grammar
    assert "0-9" in grammar  # any other digit is excluded from plain characters
    assert "_" in grammar.split("\n")[0] and "<" in grammar.split("\n")[0]


def test_calls_grammar_allows_at_most_the_given_number_of_further_calls():
    assert "tc-more-2" in calls_grammar(TOOLS, "get_order_status", 3)
    assert "tc-more-3" not in calls_grammar(TOOLS, "get_order_status", 3)
    assert "tc-next" not in calls_grammar(TOOLS, "get_order_status", 0)


# ----------------------------------------------------------------- grounding


@pytest.mark.parametrize(
    ("value", "grounded"),
    [
        ("5552017788", True),
        ("555-201-7788", True),
        ("tomorrow 10 am", True),
        ("tomorrow at 10:00 AM", True),
        ("tomorrow at 2 pm", False),
        ("5551234567", False),
        ("as soon as possible", False),
        ("", False),
    ],
)
def test_a_callback_value_is_grounded_only_in_what_the_caller_said(value, grounded):
    said = ["Please call me back at 555 201 7788 tomorrow at 10 am."]
    assert value_grounded(value, said) is grounded


def test_a_corrected_number_and_spelled_digits_are_grounded_but_not_a_mix_of_them():
    said = ["My order is 4417, sorry, four four seven one."]
    assert value_grounded("4471", said)
    assert value_grounded("4417", said)
    assert not value_grounded("1744", said)


def test_a_city_nobody_named_is_ungrounded_and_reported_by_argument_name():
    said = ["Where is order 902 and order 903?"]
    schema = TOOLS[1]["function"]["parameters"]
    assert ungrounded_arguments('{"city": "New York"}', schema, said) == ["city"]
    assert ungrounded_arguments('{"order_id": "903"}', None, said) == []


def test_enum_and_boolean_arguments_are_not_checked():
    schema = {"properties": {"reason": {"type": "string", "enum": ["damaged", "late"]}}}
    assert ungrounded_arguments('{"reason": "late", "urgent": true}', schema, ["hi"]) == []


def test_conversation_numbers_cover_digits_words_and_thousands():
    numbers = conversation_numbers(["$1,204.50 due June 3", "order four four one seven"])
    assert {"1", "204", "1204", "50", "3", "4", "7"} <= numbers
    assert "0" not in numbers


# --------------------------------------------------------- readable results


def test_results_name_their_call_and_a_late_result_replaces_the_get_result_call():
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_order_status", "arguments": '{"order_id": "771"}'},
    }
    fetch = {
        "id": "c1-result",
        "type": "function",
        "function": {"name": "get_result", "arguments": '{"call_id": "c1"}'},
    }
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Where is order 771?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"status": "pending", "future": "c1", "note": "n"}),
        },
        {"role": "assistant", "content": "One moment."},
        {"role": "assistant", "content": "", "tool_calls": [fetch]},
        {
            "role": "tool",
            "tool_call_id": "c1-result",
            "content": json.dumps({"status": "resolved", "result": {"status": "shipped"}}),
        },
    ]
    prompt = render_messages(messages, TOOLS, readable_results=True)
    assert 'get_order_status(order_id="771") is still running' in prompt
    assert 'get_order_status(order_id="771") returned: {"status": "shipped"}' in prompt  # late
    assert "get_result" not in prompt
    at_once = messages[:3] + [
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"status": "resolved", "result": {"status": "lost"}}),
        }
    ]
    rendered = render_messages(at_once, TOOLS, readable_results=True)
    assert 'get_order_status(order_id="771") returned: {"status": "lost"}' in rendered
    plain = messages[:3] + [{"role": "tool", "tool_call_id": "c1", "content": '{"status": "lost"}'}]
    rendered = render_messages(plain, TOOLS, readable_results=True)
    assert '<tool_response>\n{"status": "lost"}\n</tool_response>' in rendered
    assert "get_result" not in prompt
    failed = messages[:3] + [
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"status": "failed", "error": "HTTP 503"}),
        }
    ]
    assert 'get_order_status(order_id="771") failed: HTTP 503' in render_messages(
        failed, TOOLS, readable_results=True
    )


# ------------------------------------------------------------- the steps


@dataclass
class ScriptedEngine:
    """FAKE engine: each step's text comes from `script(prompt, grammar)`."""

    script: object
    steps: list[tuple[str, str | None, float]] = field(default_factory=list)

    async def generate(self, prompt, params, grammar, on_text, until=None):
        self.steps.append((prompt, grammar, params.temperature))
        text = self.script(prompt, grammar)  # type: ignore[operator]
        stats = GenerationStats(prompt_tokens=len(prompt), finish_reason="stop")
        so_far = ""
        for piece in _pieces(text):
            so_far += piece
            stats.completion_tokens += 1
            if not await on_text(piece) or (until is not None and until(so_far)):
                break
        return stats


def _pieces(text: str) -> list[str]:
    return [text[i : i + 3] for i in range(0, len(text), 3)]


async def _respond(engine, messages, tools=TOOLS, **body):
    chat = parse_chat_request({"messages": messages, "tools": tools, **body})
    reply = ReplyAssembler(ToolCallStreamParser(bare_json_calls=True))
    responder = Responder(engine, chat, reply)  # type: ignore[arg-type]
    deltas: list[dict] = []

    async def on_text(piece: str) -> bool:
        out, go_on = reply.feed(piece)
        deltas.extend(out)
        return go_on

    await responder.run(on_text)
    deltas.extend(reply.finish())
    return responder, reply, deltas


def _user(text: str) -> list[dict]:
    return [{"role": "system", "content": "You are Alex."}, {"role": "user", "content": text}]


async def test_a_reply_decision_speaks_from_the_plain_prompt_under_the_speech_grammar():
    def script(prompt, grammar):
        return 'reply"' if prompt.endswith(DECISION_PREFIX) else "Hello! How can I help?"

    engine = ScriptedEngine(script)
    responder, reply, deltas = await _respond(engine, _user("Hello"))
    assert responder.plan.decision == REPLY
    assert reply.text == "Hello! How can I help?" and not reply.calls
    decision, speech = engine.steps
    assert decision[2] == 0.0  # the decision is greedy
    assert decision[1] is not None and '"reply"' in decision[1]
    assert speech[0].endswith("<|im_start|>assistant\n") and "sp-num" not in (speech[1] or "")
    assert '"name": "reply"' in speech[0]  # the option is listed with the tools


async def test_a_tool_decision_sends_the_call_as_standard_tool_call_deltas():
    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'get_order_status"'
        return '{"order_id": "58213"}}\n</tool_call>'

    engine = ScriptedEngine(script)
    responder, reply, deltas = await _respond(engine, _user("Where's my order 58213?"))
    assert [(name, json.loads(args)) for _, name, args in reply.calls] == [
        ("get_order_status", {"order_id": "58213"})
    ]
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "get_order_status"
    assert not reply.text
    call_prompt = engine.steps[1][0]
    assert call_prompt.endswith(DECISION_PREFIX + 'get_order_status", "arguments": ')


async def test_a_call_with_invented_arguments_is_not_sent_and_the_agent_asks():
    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'schedule_callback"'
        if prompt.endswith('"arguments": '):
            return '{"phone": "123-456-7890", "time": "tomorrow 10 am"}}\n</tool_call>'
        return "Sure, what number should we call, and when?"

    engine = ScriptedEngine(script)
    responder, reply, deltas = await _respond(engine, _user("Can someone call me back?"))
    assert not reply.calls and not any("tool_calls" in d for d in deltas)
    assert reply.text.endswith("?")
    assert responder.plan.asked and responder.plan.dropped_ungrounded == [
        ("schedule_callback", ["phone", "time"])
    ]
    note_prompt = engine.steps[-1][0]
    assert "the caller's phone number and when to call back" in note_prompt
    assert "never guess" in note_prompt and "can't help with that here" in note_prompt


async def test_an_ungrounded_second_call_is_dropped_while_the_grounded_first_is_sent():
    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'get_order_status"'
        return (
            '{"order_id": "902"}}\n</tool_call>\n<tool_call>\n{"name": "get_store_hours", '
            '"arguments": {"city": "New York"}}\n</tool_call>'
        )

    engine = ScriptedEngine(script)
    responder, reply, deltas = await _respond(engine, _user("Where is order 902?"))
    assert [name for _, name, _ in reply.calls] == ["get_order_status"]
    assert reply.ungrounded == [("get_store_hours", ["city"])]
    assert len(engine.steps) == 2  # a call was sent: no speech step


async def test_repeating_an_answered_call_turns_into_speech_without_a_note():
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_order_status", "arguments": '{"order_id": "58213"}'},
    }
    messages = _user("Where's my order 58213?") + [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"status": "resolved", "result": {"status": "shipped"}}),
        },
    ]

    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'get_order_status"'
        if prompt.endswith('"arguments": '):
            return '{"order_id": "58213"}}\n</tool_call>'
        return "Your order 58213 has shipped."

    engine = ScriptedEngine(script)
    responder, reply, deltas = await _respond(engine, messages)
    assert not reply.calls and reply.text == "Your order 58213 has shipped."
    assert not responder.plan.asked
    assert '"58213"' in (engine.steps[-1][1] or "")  # the result's number may be spoken


async def test_tool_choice_none_speaks_at_once_and_a_named_function_skips_the_decision():
    engine = ScriptedEngine(lambda prompt, grammar: "Hi there.")
    _, reply, _ = await _respond(engine, _user("Hello"), tool_choice="none")
    assert reply.text == "Hi there." and len(engine.steps) == 1

    engine = ScriptedEngine(lambda prompt, grammar: '{"city": "Boston"}}\n</tool_call>')
    forced = {"type": "function", "function": {"name": "get_store_hours"}}
    _, reply, _ = await _respond(engine, _user("Boston hours?"), tool_choice=forced)
    assert [name for _, name, _ in reply.calls] == ["get_store_hours"]
    assert len(engine.steps) == 1 and "tc-next" not in (engine.steps[0][1] or "")


async def test_cannot_do_is_decided_on_a_fresh_turn_only_and_the_tool_list_never_changes():
    def script(prompt, grammar):
        return (
            'cannot_do"' if prompt.endswith(DECISION_PREFIX) else "I can't check the weather here."
        )

    engine = ScriptedEngine(script)
    responder, reply, _ = await _respond(engine, _user("What's the weather like?"))
    assert responder.plan.decision == "cannot_do"
    assert "can't help with that here" in engine.steps[-1][0]  # the speech step's note
    fresh_system = engine.steps[0][0].split("<|im_end|>")[0]

    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_store_hours", "arguments": '{"city": "Oslo"}'},
    }
    follow_up = _user("Oslo hours?") + [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"status": "resolved", "result": {"hours": "9 to 5"}}),
        },
    ]
    engine = ScriptedEngine(
        lambda p, g: 'reply"' if p.endswith(DECISION_PREFIX) else "Nine to five."
    )
    await _respond(engine, follow_up)
    decision_grammar = engine.steps[0][1] or ""
    assert '"reply"' in decision_grammar and "cannot_do" not in decision_grammar
    assert engine.steps[0][0].split("<|im_end|>")[0] == fresh_system  # cached prefix kept


async def test_a_further_call_that_only_reuses_a_value_of_this_turn_is_not_sent():
    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'get_order_status"'
        return (
            '{"order_id": "2290"}}\n</tool_call>\n<tool_call>\n{"name": "cancel_order", '
            '"arguments": {"order_id": "2290"}}\n</tool_call>'
        )

    tools = [*TOOLS, _tool("cancel_order", order_id="the order to cancel")]
    engine = ScriptedEngine(script)
    _, reply, _ = await _respond(engine, _user("Did the refund for order 2290 come?"), tools)
    assert [name for _, name, _ in reply.calls] == ["get_order_status"]
    assert reply.reused == ["cancel_order"]

    # ... also in the follow-up on its result; a new caller turn makes the value usable again.
    done = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_order_status", "arguments": '{"order_id": "2290"}'},
    }
    follow_up = _user("Did the refund for order 2290 come?") + [
        {"role": "assistant", "content": "", "tool_calls": [done]},
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps({"status": "resolved", "result": {"refund": "paid"}}),
        },
    ]

    def again(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'cancel_order"'
        if prompt.endswith('"arguments": '):
            return '{"order_id": "2290"}}\n</tool_call>'
        return "Your refund was paid."

    engine = ScriptedEngine(again)
    _, reply, _ = await _respond(engine, follow_up, tools)
    assert not reply.calls and reply.text == "Your refund was paid."
    engine = ScriptedEngine(again)
    _, reply, _ = await _respond(
        engine, [*follow_up, {"role": "user", "content": "Cancel order 2290."}], tools
    )
    assert [name for _, name, _ in reply.calls] == ["cancel_order"]
