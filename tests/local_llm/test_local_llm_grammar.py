"""Grammar construction (parsed by llama.cpp itself) and the incremental output parser."""

import json
from typing import Any

import pytest

from voice_agent.local_llm.grammar import GrammarError, build_tool_grammar, check_grammar
from voice_agent.local_llm.output_parser import (
    TextDelta,
    ToolCallArgumentsDelta,
    ToolCallFinished,
    ToolCallStarted,
    ToolCallStreamParser,
)
from voice_agent.local_llm.reply import ReplyAssembler, answered_calls

pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {"type": "function", "function": {"name": "hang_up"}},
]


@pytest.mark.parametrize(
    "tool_choice",
    ["auto", "none", "required", {"type": "function", "function": {"name": "hang_up"}}],
)
def test_grammar_parses_with_llama_cpp_for_every_tool_choice(tool_choice):
    grammar = build_tool_grammar(TOOLS, tool_choice)
    check_grammar(grammar)


def test_grammar_names_each_tool_and_forced_choice_allows_only_that_call():
    auto = build_tool_grammar(TOOLS)
    assert '\\"name\\": \\"get_order_status\\"' in auto and '\\"name\\": \\"hang_up\\"' in auto
    assert auto.startswith("root ::= tc-text ( tc-call")
    forced = build_tool_grammar(TOOLS, {"type": "function", "function": {"name": "hang_up"}})
    assert forced.startswith("root ::= tc-call-1\n")
    assert build_tool_grammar(TOOLS, "none").startswith("root ::= tc-text\n")
    assert build_tool_grammar(TOOLS, text_first=True).startswith("root ::= tc-text ( tc-call")


def test_bad_grammar_and_bad_tools_are_rejected():
    with pytest.raises(GrammarError):
        check_grammar('root ::= "x" undefined-rule')
    with pytest.raises(GrammarError):
        build_tool_grammar(TOOLS, {"type": "function", "function": {"name": "nope"}})
    with pytest.raises(GrammarError):
        build_tool_grammar([{"type": "function", "function": {"name": "bad name!"}}])


def _run(text, step, bare=False):
    ids = iter(f"call_{i}" for i in range(10))
    parser = ToolCallStreamParser(bare_json_calls=bare, make_call_id=lambda: next(ids))
    events = []
    for i in range(0, len(text), step):
        events += parser.feed(text[i : i + step])
    return events + parser.finish()


def _summary(events):
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    streamed: dict[int, str] = {}
    for e in events:
        if isinstance(e, ToolCallArgumentsDelta):
            streamed[e.index] = streamed.get(e.index, "") + e.text
    finished = [(e.name, e.arguments) for e in events if isinstance(e, ToolCallFinished)]
    return text, streamed, finished


TAGGED = (
    "Let me check.\n<tool_call>\n"
    '{"name": "get_order_status", "arguments": {"order_id": "12}345", "x": {"y": [1]}} }\n'
    "</tool_call>\n<tool_call>\n"
    '{"name": "hang_up", "arguments": {}}\n</tool_call>'
)


@pytest.mark.parametrize("step", [1, 2, 3, 5, 1000])
def test_parser_splits_text_then_several_tagged_calls_for_any_chunking(step):
    text, streamed, finished = _summary(_run(TAGGED, step))
    assert text == "Let me check."
    assert finished == [
        ("get_order_status", '{"order_id": "12}345", "x": {"y": [1]}}'),
        ("hang_up", "{}"),
    ]
    assert streamed == {0: finished[0][1], 1: "{}"}


@pytest.mark.parametrize("step", [1, 4, 1000])
def test_parser_reads_bare_json_calls_when_grammar_keeps_braces_out_of_text(step):
    raw = 'One moment.\n{"name": "get_order_status", "arguments": {"order_id": "7"}}\n{"name": "hang_up", "arguments": {}}'
    text, _, finished = _summary(_run(raw, step, bare=True))
    assert text == "One moment."
    assert finished == [("get_order_status", '{"order_id": "7"}'), ("hang_up", "{}")]


def test_call_is_announced_once_name_is_known_and_finished_when_object_closes():
    ids = iter(["call_a"])
    parser = ToolCallStreamParser(make_call_id=lambda: next(ids))
    assert parser.feed("<tool_call>\n") == []
    assert parser.feed('{"name": "hang_up", "arguments": ') == []
    started = parser.feed("{")
    assert started[0] == ToolCallStarted(0, "call_a", "hang_up")
    closed = parser.feed("}}")
    assert closed[-1] == ToolCallFinished(0, "call_a", "hang_up", "{}")


def test_plain_text_streams_immediately_and_holds_only_a_possible_tag_prefix():
    parser = ToolCallStreamParser()
    assert parser.feed("Hello there") == [TextDelta("Hello there")]
    assert parser.feed(" <tool") == []  # could be <tool_call>
    assert parser.feed("box> ok  ") == [TextDelta(" <toolbox> ok")]
    assert parser.finish() == []


def test_text_without_calls_keeps_braces_when_not_in_bare_mode():
    text, _, finished = _summary(_run("Use {x} and <b>.\n", 2))
    assert (text, finished) == ("Use {x} and <b>.", [])


def test_reply_sends_each_call_once_and_stops_on_a_repeat_or_an_answered_call():
    messages: list[dict[str, Any]] = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_order_status", "arguments": '{"order_id": "1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "{}"},
    ]
    reply = ReplyAssembler(
        ToolCallStreamParser(bare_json_calls=True), answered=answered_calls(messages)
    )
    deltas, go_on = reply.feed('{"name": "get_order_status", "arguments": {"order_id": "2"}}')
    assert go_on and deltas[0]["tool_calls"][0]["function"]["name"] == "get_order_status"
    assert json.loads(deltas[1]["tool_calls"][0]["function"]["arguments"]) == {"order_id": "2"}
    _, go_on = reply.feed('\n{"name": "get_order_status", "arguments": {"order_id": "2"}}')
    assert not go_on  # a repeat in the same reply
    again = ReplyAssembler(
        ToolCallStreamParser(bare_json_calls=True), answered=answered_calls(messages)
    )
    _, go_on = again.feed('{"name": "get_order_status", "arguments": {"order_id": "1"}}')
    assert not go_on and again.calls == []  # already answered in the history
    assert reply.finish_reason("stop") == "tool_calls"


def test_a_call_cut_off_before_its_name_is_dropped_not_spoken():
    from voice_agent.local_llm.output_parser import ToolCallStreamParser

    parser = ToolCallStreamParser()
    events = parser.feed('<tool_call>\n{"name": "get')
    events += parser.finish()
    assert all(type(e).__name__ != "TextDelta" for e in events), events
