"""Decide, then call or speak (respond), grounding of arguments and numbers, readable results.

The step logic runs on `ScriptedEngine`, a FAKE of `LlamaEngine.generate`
that answers each step from a script (what a model would write after that
prompt); the real model runs these steps in test_local_llm_server.py.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from grammar_helpers import grammar_accepts

from voice_agent.guidance import guidance
from voice_agent.local_llm.chat_format import render_messages
from voice_agent.local_llm.engine import GenerationStats
from voice_agent.local_llm.grammar import (
    calls_grammar,
    check_grammar,
    choice_grammar,
    speech_grammar,
)
from voice_agent.local_llm.grounding import (
    caller_spans,
    conversation_numbers,
    corrected_numbers,
    grounding_sources,
    invented_arguments,
    nothing_said,
    summary_grounded,
    taken_back_numbers,
    tool_words,
    ungrounded_arguments,
    value_grounded,
    with_callers_day,
)
from voice_agent.local_llm.openings import AUTOMATED_DISCLOSURE
from voice_agent.local_llm.output_parser import ToolCallStreamParser
from voice_agent.local_llm.protocol import parse_chat_request
from voice_agent.local_llm.reply import ReplyAssembler
from voice_agent.local_llm.respond import (
    ANSWER_AGAIN_NOTE,
    ANSWER_EACH_NOTE,
    ANSWER_NOTE,
    ASK_LEAD,
    ASKS_SOMETHING_QUESTION,
    CANNOT,
    CANNOT_LEAD,
    CANNOT_OFFER,
    DECISION_PREFIX,
    GUIDANCE_NOTE,
    MACHINERY_STARTS,
    NOT_WANTED_QUESTION,
    OFFER_LEAD,
    REPLY,
    SMALL_TALK_OFFER,
    WAIT_REPLY,
    Responder,
    asks_what_it_gives,
    caller_facing,
    catch_all,
    echoes_caller,
    echoes_guidance,
    ends_the_call,
    hands_to_a_person,
    names_the_tool,
    repeats_instruction,
    what_the_tools_do,
)

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


def test_a_continuing_speech_grammar_may_start_with_a_space():
    assert "\\t" in speech_grammar(set()).split("\n")[0]  # a fresh reply may not
    assert "\\t" not in speech_grammar(set(), continuing=True).split("\n")[0]
    check_grammar(speech_grammar({"4471"}, continuing=True))


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
    messages: list[dict[str, Any]] = [
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
    #: what `next_token_probability` answers (1.0: a call after results is likely, so
    #: the decision step runs)
    p_next: float = 1.0
    written: list[str] = field(default_factory=list)  # each step's text until it stopped
    asked_p: list[tuple[str, str]] = field(default_factory=list)
    #: what a decision step records of its likeliest tokens (`decision_margin`), if anything
    alternatives: list[dict] | None = None
    #: what `next_token_probability` answers for (prompt, text), when given (else `p_next`)
    probability: object = None

    async def next_token_probability(self, prompt, text):
        self.asked_p.append((prompt, text))
        if self.probability is not None:
            return self.probability(prompt, text)  # type: ignore[operator]
        return self.p_next

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
        self.written.append(so_far)
        if prompt.endswith(DECISION_PREFIX) and params.alternatives and self.alternatives:
            stats.extra["alternatives"] = list(self.alternatives)
        return stats


def _decision_then(decision: str, rest: str):
    """A FAKE model's script: the decision step picks `decision`, every later step writes `rest`."""
    return lambda prompt, grammar: f'{decision}"' if prompt.endswith(DECISION_PREFIX) else rest


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
    assert decision[1] is not None and f'"{REPLY}"' in decision[1]
    assert speech[0].endswith("<|im_start|>assistant\n") and speech[1] == speech_grammar(
        set(), banned_starts=MACHINERY_STARTS
    )
    assert f'"name": "{REPLY}"' in speech[0]  # the option is listed with the tools


async def test_a_tool_decision_sends_the_call_as_standard_tool_call_deltas():
    engine = ScriptedEngine(
        _decision_then("get_order_status", '{"order_id": "58213"}}\n</tool_call>')
    )
    responder, reply, deltas = await _respond(engine, _user("Where's my order 58213?"))
    assert [(name, json.loads(args)) for _, name, args in reply.calls] == [
        ("get_order_status", {"order_id": "58213"})
    ]
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "get_order_status"
    assert not reply.text
    call_prompt = engine.steps[1][0]
    assert call_prompt.endswith(DECISION_PREFIX + 'get_order_status", "arguments": ')


#: The 1.5B's next-token probabilities of "yes" and "no" after `WANTED_QUESTION` and
#: after `NOT_WANTED_QUESTION` (session 12): it leans to "yes" on both, and only the
#: comparison tells a request a tool serves from one no tool serves.
CALL_BACK_ODDS = {"asked": (0.1059, 0.0589), "negated": (0.059, 0.1317)}  # f06
LAPTOP_ODDS = {"asked": (0.1082, 0.0804), "negated": (0.1368, 0.0457)}  # y15


def _answers_by_odds(odds: dict[str, tuple[float, float]]):
    """A FAKE model's next-token probabilities of "yes" and "no" after the yes/no notes
    of a dropped call: `odds["asked"]` after `WANTED_QUESTION`, `odds["negated"]` after
    `NOT_WANTED_QUESTION`. Asked anything else, it has no answer."""

    def probability(prompt: str, text: str) -> float:
        note = prompt.rsplit("<|im_start|>system", 1)[-1]
        assert re.search(r'caller said "[^"]+"\. Is that a request', note), note
        negation = NOT_WANTED_QUESTION.split("{said}")[1].split("{purpose}")[0]
        asked = "negated" if negation in note else "asked"
        return dict(zip(("yes", "no"), odds[asked], strict=True)).get(text, 0.0)

    return probability


def _dropping_script(odds: dict[str, tuple[float, float]] | None = None):
    """A model that calls schedule_callback with invented details and answers the yes/no
    notes after the dropped call by `odds` (`_answers_by_odds`): greedily, the likelier
    of "yes" and "no"."""
    probability = _answers_by_odds(odds or CALL_BACK_ODDS)

    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'schedule_callback"'
        if prompt.endswith('"arguments": '):
            return '{"phone": "123-456-7890", "time": "tomorrow 10 am"}}\n</tool_call>'
        if grammar == choice_grammar(["yes", "no"], closing=""):
            yes, no = probability(prompt, "yes"), probability(prompt, "no")
            return "yes" if yes >= no else "no"
        if prompt.endswith(ASK_LEAD):
            return " your phone number, and when we should call?"
        return " look up orders or store hours."

    return script


def _scripted(script, odds: dict[str, tuple[float, float]] | None = None) -> ScriptedEngine:
    return ScriptedEngine(script, probability=_answers_by_odds(odds or CALL_BACK_ODDS))


async def test_a_call_with_invented_arguments_is_not_sent_and_the_agent_asks():
    engine = _scripted(_dropping_script())
    responder, reply, deltas = await _respond(engine, _user("Can someone call me back?"))
    assert not reply.calls and not any("tool_calls" in d for d in deltas)
    assert reply.text == "Could you tell me your phone number, and when we should call?"
    assert responder.plan.asked and responder.plan.asked_or_cannot == "ask"
    assert responder.plan.dropped_ungrounded == [("schedule_callback", ["phone", "time"])]
    assert responder.plan.in_callers_words is None  # invented numbers are not reworded ones
    assert responder.plan.wanted_odds == (round(0.1059 / 0.0589, 3), round(0.059 / 0.1317, 3))
    speech = engine.steps[-1]
    assert speech[0].endswith(ASK_LEAD)
    # What is missing, in words for the caller (the 1.5B copied "the caller's phone number").
    assert f'"{ASK_LEAD} your phone number and when to call back?"' in speech[0]
    assert "the caller's" not in speech[0].rsplit("<|im_start|>system", 1)[1]
    assert "never guess" in speech[0] and "can't help" not in speech[0]  # no phrase to copy


@pytest.mark.parametrize(
    ("description", "said"),
    [
        ("the caller's phone number", "your phone number"),
        ("the caller's phone number as they said it", "your phone number"),
        ("the order number the caller gives, digits only", "the order number"),
        ("the order number exactly as the caller gave it (digits or words)", "the order number"),
        ("the new street address as the caller says it", "the new street address"),
        ("why the caller wants a refund, in their words", "why you want a refund"),
        ("the city of the store", "the city of the store"),
    ],
)
def test_an_arguments_description_is_turned_into_words_for_the_caller(description, said):
    assert caller_facing(description) == said


async def test_a_dropped_call_for_a_request_no_tool_serves_says_it_cannot():
    odds = {"asked": (0.02, 0.3), "negated": (0.3, 0.02)}  # not what the caller asks for
    engine = _scripted(_dropping_script(odds), odds)
    responder, reply, deltas = await _respond(engine, _user("Book me a table for dinner."))
    assert not reply.calls
    assert deltas[:2] == [{"content": CANNOT_LEAD}, {"content": " "}]  # before the model runs
    assert reply.text == CANNOT_LEAD + " I can look up orders or store hours."
    assert responder.plan.asked_or_cannot == "cannot_do"


@pytest.mark.parametrize(
    ("said", "odds", "spoken"),
    [
        # y15 (phone tools, session 11): greedily "yes" (0.108 to 0.080), and the agent
        # asked "Could you tell me the order number?"
        (
            "Could you recommend a good laptop for me?",
            LAPTOP_ODDS,
            CANNOT_LEAD + " I can look up orders or store hours.",
        ),
        # f06: the same leaning, and a call back is what the caller asks for
        (
            "Can somebody phone me tomorrow?",
            CALL_BACK_ODDS,
            "Could you tell me your phone number, and when we should call?",
        ),
        # n09 (session 12): a "no" stands though its odds beat the negation's (0.84, 0.75)
        (
            "What's your return policy?",
            {"asked": (0.0840, 0.1000), "negated": (0.0750, 0.1000)},
            CANNOT_LEAD + " I can look up orders or store hours.",
        ),
    ],
)
async def test_after_a_dropped_call_the_models_leaning_to_yes_does_not_decide_whether_to_ask(
    said, odds, spoken
):
    engine = _scripted(_dropping_script(odds), odds)
    responder, reply, _ = await _respond(engine, _user(said))
    assert not reply.calls and reply.text == spoken
    asked, negated = odds["asked"], odds["negated"]
    read_negation = asked[0] >= asked[1]  # after a "no", the negation is not read
    assert responder.plan.wanted_odds == (
        round(asked[0] / asked[1], 3),
        round(negated[0] / negated[1], 3) if read_negation else None,
    )
    assert len(engine.asked_p) == (4 if read_negation else 2)


async def test_the_wanted_question_and_its_negation_are_read_without_sampling_a_step():
    engine = _scripted(_dropping_script())
    said = "Can somebody phone me tomorrow?"
    await _respond(engine, _user(said))
    assert not [s for s in engine.steps if s[1] == choice_grammar(["yes", "no"], closing="")]
    (first, yes), (again, no), (negated, yes2), (again2, no2) = engine.asked_p
    assert (yes, no, yes2, no2) == ("yes", "no", "yes", "no") and again == first
    assert again2 == negated
    quoted = f'the caller said "{said}". Is that a request '
    assert first.endswith(f"{quoted}to schedule callback?<|im_end|>\n<|im_start|>assistant\n")
    assert quoted + "for something other than to schedule callback?" in negated
    # the notes differ only in their last words: the second evaluates only those
    head = first.split(quoted)[0] + quoted
    assert negated.startswith(head)


async def test_an_ungrounded_second_call_is_dropped_while_the_grounded_first_is_sent():
    engine = ScriptedEngine(
        _decision_then(
            "get_order_status",
            '{"order_id": "902"}}\n</tool_call>\n<tool_call>\n{"name": "get_store_hours", '
            '"arguments": {"city": "New York"}}\n</tool_call>',
        )
    )
    responder, reply, deltas = await _respond(engine, _user("Where is order 902?"))
    assert [name for _, name, _ in reply.calls] == ["get_order_status"]
    assert reply.ungrounded == [("get_store_hours", ["city"])]
    assert len(engine.steps) == 2  # a call was sent: no speech step


@pytest.mark.parametrize(
    "dropped",
    [
        '{"name": "schedule_callback", "arguments": {"phone": "123-456-7890", "time": "10 am"}}',
        '{"name": "get_store_hours", "arguments": {"city": "902"}}',  # only reuses 902
    ],
)
async def test_a_further_call_nobody_asked_for_ends_the_calls(dropped):
    # The 1.5B, asked two things, wrote them and went on with calls nobody asked for
    # (bench h03, h15): the first of those ends the decoding, nothing after it is written.
    engine = ScriptedEngine(
        _decision_then(
            "get_order_status",
            '{"order_id": "902"}}\n</tool_call>\n<tool_call>\n'
            + dropped
            + '\n</tool_call>\n<tool_call>\n{"name": "get_store_hours", '
            '"arguments": {"city": "New York"}}\n</tool_call>',
        )
    )
    _, reply, _ = await _respond(engine, _user("Where is order 902?"))
    assert [json.loads(a) for _, _, a in reply.calls] == [{"order_id": "902"}]
    assert len(reply.ungrounded) + len(reply.reused) == 1
    assert "New York" not in engine.written[-1]


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
    numbers = conversation_numbers(grounding_sources(messages))
    assert "58213" in numbers  # the result's number may be spoken
    assert engine.steps[-1][1] == speech_grammar(numbers, banned_starts=MACHINERY_STARTS)


async def test_tool_choice_none_speaks_at_once_and_a_named_function_skips_the_decision():
    engine = ScriptedEngine(lambda prompt, grammar: "Hi there.")
    _, reply, _ = await _respond(engine, _user("Hello"), tool_choice="none")
    assert reply.text == "Hi there." and len(engine.steps) == 1

    engine = ScriptedEngine(lambda prompt, grammar: '{"city": "Boston"}}\n</tool_call>')
    forced = {"type": "function", "function": {"name": "get_store_hours"}}
    _, reply, _ = await _respond(engine, _user("Boston hours?"), tool_choice=forced)
    assert [name for _, name, _ in reply.calls] == ["get_store_hours"]
    assert len(engine.steps) == 1 and "tc-next" not in (engine.steps[0][1] or "")


async def test_the_cannot_lead_is_a_chunk_a_speech_chunker_releases_at_once():
    # notool9 (session 9): sent bare, the lead waited in the chat's sentence chunker
    # (after the stall watch's hold phrases, the first-chunk rule no longer applies)
    # until the next hold phrase, 1.5-3.4 s, while the model wrote the offer, held whole.
    from peripherals.text_chunker import SentenceChunker

    chat = parse_chat_request({"messages": _user("Book me a table for dinner."), "tools": TOOLS})
    reply = ReplyAssembler(ToolCallStreamParser(bare_json_calls=True))
    sent: list[str] = []
    before_offer: list[str] = []
    odds = {"asked": (0.02, 0.3), "negated": (0.3, 0.02)}
    dropping = _dropping_script(odds)

    def script(prompt, grammar):
        if prompt.endswith(
            f"{CANNOT_LEAD} {OFFER_LEAD}"
        ):  # the offer's step starts: what was sent so far
            before_offer[:] = sent
        return dropping(prompt, grammar)

    async def on_text(piece: str) -> bool:
        out, go_on = reply.feed(piece)
        sent.extend(d["content"] for d in out if "content" in d)
        return go_on

    await Responder(_scripted(script, odds), chat, reply).run(on_text)  # type: ignore[arg-type]
    chunker = SentenceChunker()
    chunker.push("Let me check that for you. ")  # a hold phrase said before it
    assert [c for piece in before_offer for c in chunker.push(piece)] == [CANNOT_LEAD]
    assert "".join(sent) == CANNOT_LEAD + " I can look up orders or store hours."


async def test_cannot_do_is_decided_on_a_fresh_turn_only_and_the_tool_list_never_changes():
    def script(prompt, grammar):
        return 'cannot_do"' if prompt.endswith(DECISION_PREFIX) else " check orders instead."

    engine = ScriptedEngine(script)
    responder, reply, deltas = await _respond(engine, _user("What's the weather like?"))
    assert responder.plan.decision == "cannot_do"
    # The honest answer goes out first, whole, before the model runs again; the
    # model continues after it (the speech step's prompt ends with it).
    assert deltas[:2] == [{"content": CANNOT_LEAD}, {"content": " "}]  # before the model runs
    assert engine.steps[-1][0].endswith(f"<|im_start|>assistant\n{CANNOT_LEAD} {OFFER_LEAD}")
    # The note comes before, with what the tools do in words for the caller.
    assert f"You can help with: {what_the_tools_do(TOOLS)}." in engine.steps[-1][0]
    assert reply.text == CANNOT_LEAD + " I can check orders instead."
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
    assert f'"{REPLY}"' in decision_grammar and "cannot_do" not in decision_grammar
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


async def test_a_further_call_on_an_earlier_turns_value_is_not_sent_beside_one_on_the_new_request():
    history = [
        {"role": "system", "content": "You are Alex."},
        {"role": "user", "content": "Can you check order 2525?"},
        {"role": "assistant", "content": "Order 2525 has shipped."},
    ]

    engine = ScriptedEngine(
        _decision_then(
            "get_order_status",
            '{"order_id": "12121"}}\n</tool_call>\n<tool_call>\n{"name": "get_order_status", '
            '"arguments": {"order_id": "2525"}}\n</tool_call>',
        )
    )
    messages = [*history, {"role": "user", "content": "What about order 12121?"}]
    _, reply, _ = await _respond(engine, messages)
    assert [json.loads(a) for _, _, a in reply.calls] == [{"order_id": "12121"}]
    assert reply.reused == ["get_order_status"]

    # A request that names nothing new may still use the earlier turn's value.
    def only_old(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'get_order_status"'
        return '{"order_id": "2525"}}\n</tool_call>'

    engine = ScriptedEngine(only_old)
    messages = [*history, {"role": "user", "content": "When will it arrive?"}]
    _, reply, _ = await _respond(engine, messages)
    assert [json.loads(a) for _, _, a in reply.calls] == [{"order_id": "2525"}]


def test_iso_dates_in_a_result_are_shown_as_words_and_non_dates_stay():
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are Alex."},
        {"role": "user", "content": "When does order 17240 arrive?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup_order", "arguments": '{"order_number": "17240"}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "content": json.dumps(
                {
                    "status": "resolved",
                    "result": {"estimated_delivery": "2026-11-27", "code": "2026-13-40"},
                }
            ),
        },
    ]
    prompt = render_messages(messages, TOOLS, readable_results=True)
    assert '"estimated_delivery": "Friday, November 27"' in prompt
    assert '"code": "2026-13-40"' in prompt


def _after_call(result_payload: dict) -> list[dict]:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_order_status", "arguments": '{"order_id": "58213"}'},
    }
    return _user("Where's my order 58213?") + [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps(result_payload)},
    ]


@pytest.mark.parametrize(
    ("payload", "noted"),
    [
        ({"status": "resolved", "result": {"status": "shipped"}}, True),
        ({"status": "shipped"}, True),  # another client's plain result
        ({"status": "failed", "error": "HTTP 503"}, True),  # a failure is told too
        ({"status": "pending", "future": "f1", "note": "running"}, False),
    ],
)
async def test_speech_after_an_outcome_is_told_to_answer_from_it(payload, noted):
    engine = ScriptedEngine(_decision_then("reply", "Shipped."))
    await _respond(engine, _after_call(payload))
    decision, speech = engine.steps
    assert (ANSWER_NOTE in speech[0]) is noted
    assert ANSWER_NOTE not in decision[0]  # the decision's prompt is the cached one


async def test_after_results_the_answer_starts_at_once_when_a_call_is_unlikely():
    payload = {"status": "resolved", "result": {"status": "shipped"}}
    engine = ScriptedEngine(_decision_then("get_order_status", "Shipped."), p_next=0.01)
    responder, reply, _ = await _respond(engine, _after_call(payload))
    # One step: the answer, on the prompt whose next-token probability was read (so its
    # logits are live); no decision.
    ((speech, _, _),) = engine.steps
    assert engine.asked_p == [(speech, "<tool_call>")] and ANSWER_NOTE in speech
    assert reply.text == "Shipped." and not reply.calls
    assert responder.plan.decision == REPLY and responder.plan.call_after_results_p == 0.01


@pytest.mark.parametrize("p_next", [0.01, 0.5])  # with and without the decision step
async def test_an_answer_from_results_opens_with_the_answer_not_an_announcement(p_next):
    payload = {"status": "resolved", "result": {"status": "pending"}}
    said = "Sure, here's the answer: Yes, order 58213 is still pending."
    engine = ScriptedEngine(_decision_then("reply", said), p_next=p_next)
    responder, reply, _ = await _respond(engine, _after_call(payload))
    assert reply.text == "Sure, order 58213 is still pending."
    assert responder.plan.left_out == ["here's the answer:", "Yes,"]


async def test_nothing_held_of_an_answer_is_sent_after_the_callers_stop():
    payload = {"status": "resolved", "result": {"status": "shipped"}}
    engine = ScriptedEngine(_decision_then("reply", "Sure, Yes, it has shipped."), p_next=0.01)
    chat = parse_chat_request({"messages": _after_call(payload), "tools": TOOLS})
    reply = ReplyAssembler(ToolCallStreamParser(bare_json_calls=True))
    sent: list[str] = []

    async def on_text(piece: str) -> bool:
        sent.append(piece)
        return "," not in "".join(sent)  # the caller stops the answer after "Sure,"

    await Responder(engine, chat, reply).run(on_text)  # type: ignore[arg-type]
    assert "".join(sent) == "Sure,"  # the space held after it is not sent


@pytest.mark.parametrize("decision", ["get_order_status", "reply", CANNOT])
@pytest.mark.parametrize(
    "said",
    [
        "Hang on, I'm just getting my glasses.",  # k24
        "Sorry, my dog is barking, give me a second.",  # m24: a tool, then "order number?"
    ],
)
async def test_a_request_to_wait_is_answered_at_once_without_a_model_step(decision, said):
    engine = ScriptedEngine(_decision_then(decision, "Could you tell me the order number?"))
    responder, reply, _ = await _respond(engine, _user(said))
    assert reply.text == WAIT_REPLY and not reply.calls
    assert responder.plan.held_the_line and responder.plan.decision == REPLY
    assert engine.steps == []


async def test_a_request_to_wait_beside_a_request_is_decided_as_usual():
    engine = ScriptedEngine(_decision_then("get_order_status", '{"order_id": "4471"}}'))
    responder, reply, _ = await _respond(engine, _user("Hang on, can you check order 4471?"))
    assert not responder.plan.held_the_line
    assert [(name, args) for _, name, args in reply.calls] == [
        ("get_order_status", '{"order_id": "4471"}')
    ]


def _reply_unless_told_otherwise(again: str):
    """A FAKE model that decides "reply" whenever it may, else `again`; it asks for the
    details a call back needs, and offers to look up orders after "can't"."""

    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'reply"' if f'"{REPLY}"' in (grammar or "") else f'{again}"'
        if prompt.endswith('"arguments": '):
            return '{"phone": "123-456-7890", "time": "tomorrow 10 am"}}\n</tool_call>'
        if grammar == choice_grammar(["yes", "no"], closing=""):
            return "yes"
        if prompt.endswith(ASK_LEAD):
            return " your phone number, and when we should call?"
        if prompt.endswith(OFFER_LEAD):
            return " look up an order."
        return "You can use the following command: schedule callback."  # s10, session 10

    return script


@pytest.mark.parametrize(
    ("said", "again", "spoken"),
    [
        # spoken call s10: "reply", then instructions nobody can follow
        (
            "Can you change the email address on my online account?",
            CANNOT,
            f"{CANNOT_LEAD} {OFFER_LEAD} look up an order.",
        ),
        (
            "Can someone call me back?",
            "schedule_callback",
            f"{ASK_LEAD} your phone number, and when we should call?",
        ),
    ],
)
async def test_a_reply_decision_on_a_request_is_decided_again_between_the_tools_and_cannot(
    said, again, spoken
):
    engine = _scripted(_reply_unless_told_otherwise(again))
    responder, reply, _ = await _respond(engine, _user(said))
    assert responder.plan.reply_to_request and reply.text == spoken and not reply.calls
    first, second = [g for p, g, _ in engine.steps if p.endswith(DECISION_PREFIX)][:2]
    assert f'"{REPLY}"' in (first or "") and f'"{REPLY}"' not in (second or "")


@pytest.mark.parametrize(
    "said",
    [
        "Hello",  # no request
        "Sorry, can you hear me okay? The line's a bit crackly.",  # b24: about the call
        "How are you doing today?",
    ],
)
async def test_a_reply_decision_on_small_talk_stands(said):
    engine = ScriptedEngine(_reply_unless_told_otherwise(CANNOT))
    responder, reply, _ = await _respond(engine, _user(said))
    assert not responder.plan.reply_to_request and responder.plan.decision == REPLY
    assert reply.text == "You can use the following command: schedule callback."
    assert len(engine.steps) == 2  # the decision and the reply


async def test_a_reply_decision_on_a_request_after_results_stands():
    engine = ScriptedEngine(_reply_unless_told_otherwise(CANNOT))
    messages = _after_call({"status": "resolved", "result": {"status": "shipped"}})
    messages.append({"role": "assistant", "content": "It has shipped."})
    messages.append({"role": "user", "content": "Can you say when it will arrive?"})
    responder, _, _ = await _respond(engine, messages)
    assert not responder.plan.reply_to_request and responder.plan.decision == REPLY


@pytest.mark.parametrize(
    ("said", "asks", "reply_text"),
    [
        ("I can't help with that.", "no", SMALL_TALK_OFFER),  # s08, session 7
        ("I can't help with that.", "yes", f"{CANNOT_LEAD} {CANNOT_OFFER}"),
        ("Sorry, I can't help with that.", "no", "Sorry, how can I help you today?"),
        ("I'm sorry, but I can't assist with that.", "no", "I'm sorry, how can I help you today?"),
        (  # m08, session 11
            "I'm sorry, but I'm not able to provide an accurate answer to that question.",
            "no",
            "I'm sorry, how can I help you today?",
        ),
        ("Lovely, isn't it? How can I help?", "yes", "Lovely, isn't it? How can I help?"),
    ],
)
async def test_a_reply_to_small_talk_is_never_a_refusal(said, asks, reply_text):
    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'reply"'
        if grammar and '"yes"' in grammar:
            assert ASKS_SOMETHING_QUESTION in prompt
            return asks
        return said

    engine = ScriptedEngine(script)
    responder, reply, _ = await _respond(engine, _user("Hiya, thanks for picking up."))  # u08
    assert reply.text == reply_text and not reply.calls
    asked = [s for s in engine.steps if s[1] and '"yes"' in s[1]]
    assert len(asked) == (0 if reply_text == said else 1)  # asked only after a refusal


@pytest.mark.parametrize(
    ("said", "reply_text"),
    [
        ("Yes, I am a person.", f"{AUTOMATED_DISCLOSURE} {SMALL_TALK_OFFER}"),  # f24
        (
            "Hello! I'm a real human, happy to help.",
            f"Hello! {AUTOMATED_DISCLOSURE} {SMALL_TALK_OFFER}",
        ),
        ("No, I'm an automated assistant.", "No, I'm an automated assistant."),
        ("I am a personal shopping assistant.", "I am a personal shopping assistant."),
        ("Of course, I'm human", f"{AUTOMATED_DISCLOSURE} {SMALL_TALK_OFFER}"),  # at the end
    ],
)
async def test_a_reply_to_small_talk_never_claims_the_agent_is_a_person(said, reply_text):
    engine = ScriptedEngine(_decision_then("reply", said))
    responder, reply, _ = await _respond(engine, _user("You sound very natural, are you real?"))
    assert reply.text == reply_text and not reply.calls
    assert responder.plan.claimed_person is (reply_text != said)


@pytest.mark.parametrize(
    ("said", "small_talk"),
    [
        ("Am I talking to a robot right now?", True),  # k08
        ("Is it always this busy on your line?", True),  # m08
        ("Morning! Lovely weather today, isn't it?", True),  # s08
        ("Can you reset my password for me?", False),  # d12: a true "can't"
        ("What's the weather like?", False),  # d11: asks for a forecast
    ],
)
async def test_a_cannot_decision_on_small_talk_the_callers_words_show_is_a_reply(said, small_talk):
    engine = ScriptedEngine(_decision_then(CANNOT, "Sure, take your time."))
    responder, reply, _ = await _respond(engine, _user(said))
    assert responder.plan.small_talk_not_cannot is small_talk
    assert reply.text.startswith(CANNOT_LEAD) is not small_talk
    assert len(engine.steps) == 2  # the decision and the reply: no step decides it
    if small_talk:
        assert responder.plan.decision == REPLY and reply.text == "Sure, take your time."


@pytest.mark.parametrize(
    ("said", "reply_text"),
    [
        ("Yes, I am.", f"{AUTOMATED_DISCLOSURE} {SMALL_TALK_OFFER}"),
        ("Yes, I am here to help.", f"{AUTOMATED_DISCLOSURE} {SMALL_TALK_OFFER}"),
        ("No, I'm an automated assistant.", "No, I'm an automated assistant."),
    ],
)
async def test_a_bare_yes_to_are_you_a_person_is_never_said(said, reply_text):
    engine = ScriptedEngine(_decision_then("reply", said))
    responder, reply, _ = await _respond(engine, _user("Are you a real person?"))
    assert reply.text == reply_text
    assert responder.plan.claimed_person is (reply_text != said)


@pytest.mark.parametrize(
    ("said", "banned"),
    [
        ("Has order 58213 been dispatched?", ["dispatch"]),  # e11, session 7
        ("Where's my order 58213?", None),  # nothing of the caller's is left out
    ],
)
async def test_an_answer_from_results_cannot_use_the_callers_words_nothing_gave(said, banned):
    payload = {"status": "resolved", "result": {"status": "shipped"}}
    messages = _after_call(payload)
    messages[1] = {"role": "user", "content": said}
    engine = ScriptedEngine(_decision_then("reply", "Order 58213 has shipped."), p_next=0.01)
    responder, reply, _ = await _respond(engine, messages)
    ((_, grammar, _),) = engine.steps
    assert responder.plan.caller_only_words == banned
    numbers = conversation_numbers(grounding_sources(messages))
    assert grammar == speech_grammar(numbers, banned=banned or (), banned_starts=MACHINERY_STARTS)
    assert reply.text == "Order 58213 has shipped."


async def test_a_reply_without_results_keeps_its_yes():
    engine = ScriptedEngine(_decision_then("reply", "Yes, I can hear you fine."))
    _, reply, _ = await _respond(engine, _user("Can you hear me?"))
    assert reply.text == "Yes, I can hear you fine."


async def test_after_results_the_decision_runs_when_a_call_is_likely():
    payload = {"status": "resolved", "result": {"status": "shipped"}}
    engine = ScriptedEngine(_decision_then("reply", "Shipped."), p_next=0.5)
    responder, _, _ = await _respond(engine, _after_call(payload))
    decision, speech = engine.steps
    assert decision[0].endswith(DECISION_PREFIX) and ANSWER_NOTE in speech[0]
    assert responder.plan.call_after_results_p == 0.5


async def test_a_fresh_turn_never_skips_the_decision():
    engine = ScriptedEngine(_decision_then("reply", "Hello!"), p_next=0.0)
    await _respond(engine, _user("Hi there"))
    assert not engine.asked_p and engine.steps[0][0].endswith(DECISION_PREFIX)


async def test_two_outcomes_are_told_each_on_its_own():
    calls = [
        {"id": f"c{n}", "type": "function",
         "function": {"name": "get_order_status", "arguments": json.dumps({"order_id": n})}}
        for n in ("3141", "2718")
    ]  # fmt: skip
    messages = _user("Where are orders 3141 and 2718?") + [
        {"role": "assistant", "content": "", "tool_calls": calls},
        *(
            {"role": "tool", "tool_call_id": c["id"],
             "content": json.dumps({"status": "resolved", "result": {"status": s}})}
            for c, s in zip(calls, ("delivered", "shipped"), strict=True)
        ),
    ]  # fmt: skip
    engine = ScriptedEngine(_decision_then("reply", "3141 is delivered. 2718 has shipped."))
    await _respond(engine, messages)
    assert ANSWER_EACH_NOTE in engine.steps[-1][0] and engine.steps[-1][2] == 0.0
    engine = ScriptedEngine(_decision_then("reply", "3141 is delivered."))
    await _respond(engine, messages[:-1])  # one outcome so far
    assert ANSWER_NOTE in engine.steps[-1][0] and ANSWER_EACH_NOTE not in engine.steps[-1][0]


def _late_results(history: list[dict], told: str) -> list[dict]:
    """An async turn: order 5091 and the Dallas hours looked up, both pending; the order's
    result came late and the agent told it (`told`); now the hours' result comes late."""
    calls = [
        {"id": "c1", "type": "function",
         "function": {"name": "get_order_status", "arguments": '{"order_id": "5091"}'}},
        {"id": "c2", "type": "function",
         "function": {"name": "get_store_hours", "arguments": '{"city": "Dallas"}'}},
    ]  # fmt: skip

    def pending(call_id: str) -> dict:
        content = json.dumps({"status": "pending", "future": call_id, "note": "running"})
        return {"role": "tool", "tool_call_id": call_id, "content": content}

    def late(call_id: str, result: dict) -> list[dict]:
        fetch = {"id": f"{call_id}-result", "type": "function",
                 "function": {"name": "get_result", "arguments": json.dumps({"call_id": call_id})}}  # fmt: skip
        content = json.dumps({"status": "resolved", "result": result})
        return [{"role": "assistant", "content": "", "tool_calls": [fetch]},
                {"role": "tool", "tool_call_id": f"{call_id}-result", "content": content}]  # fmt: skip

    return [
        {"role": "system", "content": "You are Alex."}, *history,
        {"role": "user", "content": "Can you check order 5091, and the Dallas hours?"},
        {"role": "assistant", "content": "", "tool_calls": calls}, pending("c1"), pending("c2"),
        *late("c1", {"order_id": "5091", "status": "processing"}),
        {"role": "assistant", "content": told},
        *late("c2", {"city": "Dallas", "hours": "9 am to 7 pm"}),
    ]  # fmt: skip


async def test_a_late_result_after_the_agent_spoke_is_told_alone():
    # Spoken call s06 (session 9): told to tell "each answer" of the turn again, the
    # 1.5B said the order's status word for word before the hours.
    messages = _late_results([], "The order 5091 is in processing.")
    engine = ScriptedEngine(_decision_then("reply", "The Dallas store is open 9 am to 7 pm."))
    await _respond(engine, messages)
    # one answer, named (the order's result, told already, could be taken for it)
    told_alone = ANSWER_NOTE.replace(" found above", " found above about Dallas")
    assert told_alone in engine.steps[-1][0]
    # Words said with the calls ("Let me check.") come before their results: both told.
    words_with_calls = _late_results([], "")
    words_with_calls[2] = {**words_with_calls[2], "content": "Let me check."}
    del words_with_calls[7]  # no words after the first result
    engine = ScriptedEngine(_decision_then("reply", "Processing. Open 9 am to 7 pm."))
    await _respond(engine, words_with_calls)
    assert ANSWER_EACH_NOTE in engine.steps[-1][0]


async def test_the_answer_note_names_only_what_the_late_result_looked_up():
    history = [
        {"role": "user", "content": "When does the Miami store open?"},
        {"role": "assistant", "content": "The Miami store opens at 9 am."},
    ]
    engine = ScriptedEngine(_decision_then("reply", "The Dallas store is open 9 am to 7 pm."))
    await _respond(engine, _late_results(history, "The order 5091 is in processing."))
    assert "found above about Dallas, in your own words" in engine.steps[-1][0]


def _store_hours_turn(history: list[dict], said: str, city: str) -> list[dict]:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_store_hours", "arguments": json.dumps({"city": city})},
    }
    result = {"status": "resolved", "result": {"city": city, "hours": "9 am to 7 pm"}}
    return [{"role": "system", "content": "You are Alex."}, *history,
            {"role": "user", "content": said},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": json.dumps(result)}]  # fmt: skip


@pytest.mark.parametrize(
    ("history", "said", "about"),
    [
        # an earlier turn about another store: the answer note names the one looked up
        (
            [
                {"role": "user", "content": "When does the Miami store open?"},
                {"role": "assistant", "content": "The Miami store opens at 9 am."},
            ],
            "And the one in Tampa?",
            True,
        ),  # fmt: skip
        ([], "When does the Miami store open? No wait, I mean the Orlando one.", True),
        ([], "When does the Orlando store open?", False),  # nothing to take it for
    ],
)
async def test_the_answer_note_names_what_was_looked_up_when_something_else_could_be_meant(
    history, said, about
):
    city = "Tampa" if "Tampa" in said else "Orlando"
    engine = ScriptedEngine(_decision_then("reply", f"The {city} store opens at 9 am."))
    await _respond(engine, _store_hours_turn(history, said, city))
    speech = engine.steps[-1]
    assert (f"found above about {city}, in your own words" in speech[0]) is about
    assert about or ANSWER_NOTE in speech[0]
    assert speech[2] == 0.0  # an answer from results, greedy either way


async def test_an_answer_from_results_and_a_question_for_details_are_greedy_small_talk_is_not():
    result = {"status": "resolved", "result": {"status": "shipped"}}
    engine = ScriptedEngine(_decision_then("reply", "Order 58213 has shipped."))
    await _respond(engine, _after_call(result), temperature=0.3)
    assert engine.steps[-1][2] == 0.0  # the answer copies the result
    engine = _scripted(_dropping_script())
    await _respond(engine, _user("Can someone call me back?"), temperature=0.3)
    assert engine.steps[-1][0].endswith(ASK_LEAD) and engine.steps[-1][2] == 0.0
    engine = ScriptedEngine(_decision_then("reply", "Hello! How can I help?"))
    await _respond(engine, _user("Hello"), temperature=0.3)
    assert engine.steps[-1][2] == pytest.approx(0.3)  # free speech keeps the request's


async def test_after_call_control_the_reply_follows_its_guidance_and_states_no_fact():
    payload = {
        "status": "resolved",
        "result": {"ending": True, "note": "the call ends after your goodbye"},
    }
    engine = ScriptedEngine(_decision_then("reply", "Bye!"))
    await _respond(engine, _after_call(payload))
    _, speech = engine.steps
    assert speech[0].endswith(f"{GUIDANCE_NOTE}<|im_end|>\n<|im_start|>assistant\n")
    assert ANSWER_NOTE not in speech[0]
    assert "the call ends after your goodbye" in speech[0]  # shown as guidance


@pytest.mark.parametrize(
    ("note", "said", "spoken"),
    [
        # The 1.5B's reply after a transfer (the lead's re-check, session 4).
        (
            "the caller is told and transferred; goodbye",
            "The caller is told and transferred; goodbye.",
            "",
        ),
        ("the call ends after your goodbye", "The call ends.", "The call ends."),
        # The 1.5B's reply after a transfer (the lead's re-check, session 5): the
        # agent's own instruction, not the tool's note.
        ("the caller is told and transferred", "There is no answer to tell.", ""),
        ("the call ends after your goodbye", "Follow the guidance above.", ""),
        # ... and its instructions about the caller (session 5's quiet re-check)
        ("the caller is told and transferred", "Transfer the caller to a human agent.", ""),
        ("the caller is told and transferred", "The caller is transferred to a human agent.", ""),
        # ... and thanked the note (session 6, bench s23)
        ("the caller is told and transferred", "Thank you for the guidance.", ""),
        # ... and the 0.5B named a speech option (session 6, bench r19)
        (
            "the caller is told and transferred",
            'You can call the "reply" function to speak to them.',
            "",
        ),
        ("the call ends after your goodbye", "I will use 'reply' now.", ""),
        (
            "the caller is told and transferred",
            "I'm transferring you to a colleague.",
            "I'm transferring you to a colleague.",
        ),
        (
            "the call ends after your goodbye",
            "Goodbye, have a great day!",
            "Goodbye, have a great day!",
        ),
    ],
)
async def test_a_reply_to_guidance_that_repeats_the_note_is_never_spoken(note, said, spoken):
    payload = {"status": "resolved", "result": {"ending": True, "note": note}}
    engine = ScriptedEngine(_decision_then("reply", said))
    responder, _, deltas = await _respond(engine, _after_call(payload))
    text = "".join(d.get("content") or "" for d in deltas)
    assert text == spoken
    assert responder.plan.echoed_guidance == (said if not spoken else None)


@pytest.mark.parametrize(
    ("note", "said", "spoken"),
    [
        # The 1.5B after putting the caller through to a manager (bench f23, session 9).
        (
            "the caller is told and transferred",
            "I am sorry, but I cannot help with that. Please try again later.",
            "",
        ),
        ("the call ends after your goodbye", "I'm sorry, I can't assist with that.", ""),
        ("the call ends after your goodbye", "Unfortunately I am unable to help", ""),
        (
            "the caller is told and transferred",
            "Sorry for the wait, I'm putting you through now.",
            "Sorry for the wait, I'm putting you through now.",
        ),
    ],
)
async def test_a_reply_to_guidance_that_refuses_is_never_spoken(note, said, spoken):
    payload = {"status": "resolved", "result": {"transferring": True, "note": note}}
    engine = ScriptedEngine(_decision_then("reply", said))
    responder, _, deltas = await _respond(engine, _after_call(payload))
    assert "".join(d.get("content") or "" for d in deltas) == spoken
    assert responder.plan.refused_guidance == (said if not spoken else None)


TRANSFERRED = guidance(
    "the caller is told and transferred; say nothing more", transferring=True, say_nothing_more=True
)


@pytest.mark.parametrize(
    ("results", "silent"),
    [
        ([TRANSFERRED], True),
        # the tool's flag decides, not the note's words
        ([guidance("the line plays its own message", say_nothing_more=True)], True),
        ([{"transferring": True, "note": "the caller is told and transferred; say nothing more"}], False),
        ([guidance("the call ends after your goodbye", ending=True)], False),
        ([TRANSFERRED, guidance("the call ends", ending=True)], False),
        ([TRANSFERRED, {"status": "shipped"}], False),  # a fact to tell
    ],
)  # fmt: skip
async def test_guidance_whose_tool_asks_for_no_reply_is_followed_without_a_model_step(
    results, silent
):
    messages = _after_call({"status": "resolved", "result": results[0]})
    for number, result in enumerate(results[1:], start=2):
        messages[-2]["tool_calls"].append(
            {"id": f"c{number}", "type": "function",
             "function": {"name": "get_order_status", "arguments": "{}"}}
        )  # fmt: skip
        messages.append(
            {"role": "tool", "tool_call_id": f"c{number}",
             "content": json.dumps({"status": "resolved", "result": result})}
        )  # fmt: skip
    engine = ScriptedEngine(_decision_then("reply", "I am sorry, but I cannot help with that."))
    responder, _, deltas = await _respond(engine, messages)
    assert responder.plan.said_nothing is silent
    assert (engine.steps == []) is silent
    if silent:
        assert "".join(d.get("content") or "" for d in deltas) == ""


def test_an_answer_is_not_taken_for_an_echo_of_guidance():
    assert not echoes_guidance(
        "Your order 58213 has shipped.", ["the call ends after your goodbye"]
    )
    assert not echoes_guidance("", ["the call ends after your goodbye"])
    assert echoes_guidance("The call ends now.", ["the call ends after your goodbye"])


def test_a_reply_that_repeats_the_agents_instruction_is_told_from_one_that_follows_it():
    assert repeats_instruction("There is no answer to tell.", GUIDANCE_NOTE)
    assert repeats_instruction("State no fact.", GUIDANCE_NOTE)
    assert not repeats_instruction("I'm transferring you to a colleague now.", GUIDANCE_NOTE)
    assert not repeats_instruction("The call ends.", GUIDANCE_NOTE)
    assert not repeats_instruction("Goodbye, have a great day!", GUIDANCE_NOTE)
    assert not repeats_instruction("", GUIDANCE_NOTE)


@pytest.mark.parametrize(
    ("value", "grounded"),
    [("18:00", True), ("6:00 PM", True), ("6pm", True), ("19:00", False), ("7 pm", False)],
)
def test_a_clock_time_is_grounded_in_either_clock(value, grounded):
    assert value_grounded(value, ["Ring me this evening at 6 pm."]) is grounded


def test_caller_spans_are_runs_of_the_callers_words_holding_the_numbers():
    spans = caller_spans(["Ring me at 646 555 0123 this evening at 6 pm."], ["6"])
    assert "this evening at 6 pm" in spans and "6 pm" in spans
    assert all("6" in s.split() for s in spans)  # every span holds the number...
    assert "this evening" not in spans and "Ring me" not in spans  # ...and only those
    assert all(not s.endswith(".") for s in spans)
    assert caller_spans(["call me tomorrow"], ["9"]) == []


CALLBACK_FUNCTION = {
    "name": "schedule_callback",
    "description": "Schedule a call back from a human agent.",
}


def _rewording_script(first_time: str, in_span: str):
    """A model that rewords the caller's time, then picks `in_span` among their words."""

    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'schedule_callback"'
        if prompt.endswith('"arguments": '):
            time = in_span if in_span in (grammar or "") else first_time
            return f'{{"phone": "6465550123", "time": "{time}"}}}}\n</tool_call>'
        return "Could you tell me when?"

    return script


async def test_a_reworded_time_is_decoded_again_in_the_callers_words_and_sent():
    engine = ScriptedEngine(_rewording_script("today at 18:00", "this evening at 6 pm"))
    said = "Ring me at 646 555 0123 this evening at 6 pm."
    responder, reply, deltas = await _respond(engine, _user(said))
    assert responder.plan.in_callers_words == [("schedule_callback", ["time"])]
    assert [json.loads(a) for _, _, a in reply.calls] == [
        {"phone": "6465550123", "time": "this evening at 6 pm"}
    ]
    assert reply.ungrounded == [] and not reply.text
    retry_grammar = engine.steps[-1][1]
    assert retry_grammar is not None
    assert '"\\"6 pm\\""' in retry_grammar or "6 pm" in retry_grammar
    assert "today" not in retry_grammar  # only the caller's words


async def test_a_time_whose_number_nobody_said_is_not_reworded_and_the_agent_asks():
    engine = ScriptedEngine(_rewording_script("today at 7 pm", "this evening at 6 pm"))
    responder, reply, _ = await _respond(engine, _user("Ring me at 646 555 0123 this evening."))
    assert responder.plan.in_callers_words is None and not reply.calls
    assert responder.plan.dropped_ungrounded == [("schedule_callback", ["time"])]


@pytest.mark.parametrize(
    ("said", "written", "sent"),
    [
        # the 0.5B's call-backs on the open splits (session 8): the day left out
        ("Could a person ring me on 646 555 0123 on Friday at 3 pm?", "3 pm", "Friday at 3 pm"),
        ("Ring me at 646 555 0123 this evening at 6 pm.", "6 pm", "this evening at 6 pm"),
        ("Call me on 646 555 0123 at 3 pm tomorrow.", "15:00", "3 pm tomorrow"),
        # the day kept, or none said: sent as written
        ("Ring me on 646 555 0123 on Friday at 3 pm.", "Friday 3 pm", "Friday 3 pm"),
        ("Ring me on 646 555 0123 at 3 pm.", "3 pm", "3 pm"),
    ],
)
async def test_a_time_without_the_day_the_caller_named_is_sent_with_it(said, written, sent):
    engine = ScriptedEngine(_rewording_script(written, "(never asked)"))
    responder, reply, _ = await _respond(engine, _user(said))
    assert [json.loads(a) for _, _, a in reply.calls] == [{"phone": "6465550123", "time": sent}]
    assert responder.plan.with_the_day == (
        [("schedule_callback", ["time"])] if sent != written else None
    )
    assert responder.plan.dropped_ungrounded is None and not reply.text
    assert len(engine.steps) == 2  # the decision and the call: no model step more


@pytest.mark.parametrize(
    ("value", "said", "expected"),
    [
        ("3 pm", "Call me on Friday at 3 pm.", "Friday at 3 pm"),
        ("10:00 am", "Monday at 10 am, please.", "Monday at 10 am"),
        ("3 pm", "I bought 3 things; call me Friday at 3 pm.", "Friday at 3 pm"),
        ("3 pm", "Friday is busy for me, so call me at 3 pm.", None),  # too far from the time
        ("Friday 3 pm", "Call me on Friday at 3 pm.", None),  # the day is there
        ("3 pm", "Call me at 3 pm.", None),  # no day said
        ("4 pm", "Call me on Friday at 3 pm.", None),  # not a time the caller said
        ("asap", "Call me on Friday at 3 pm.", None),  # no clock time
    ],
)
def test_the_callers_day_is_found_next_to_the_time_they_said(value, said, expected):
    assert with_callers_day(value, [said]) == expected


async def test_nothing_is_said_after_a_write_held_for_the_callers_yes():
    held = {"status": "awaiting_confirmation", "note": "Not done yet."}
    engine = ScriptedEngine(_decision_then("reply", "Done!"))
    responder, reply, deltas = await _respond(engine, _after_call(held))
    assert engine.steps == [] and reply.text == "" and not reply.calls
    assert responder.plan.decision == "await_confirmation"
    # Beside a real result the model answers as usual, told the write is not done.
    both = _after_call(held)
    both[2]["tool_calls"].append(
        {"id": "c2", "type": "function",
         "function": {"name": "get_store_hours", "arguments": '{"city": "Oslo"}'}}
    )  # fmt: skip
    both.append(
        {"role": "tool", "tool_call_id": "c2",
         "content": json.dumps({"status": "resolved", "result": {"hours": "9 to 5"}})}
    )  # fmt: skip
    engine = ScriptedEngine(_decision_then("reply", "9 to 5."))
    _, reply, _ = await _respond(engine, both)
    assert reply.text == "9 to 5."
    assert "is NOT done: it waits for the caller's yes" in engine.steps[-1][0]


def test_a_note_summary_argument_is_checked_for_numbers_only():
    schema = {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "x-summary": "note"},
            "phone": {"type": "string"},
        },
    }
    said = ["Can I talk to a human please? My number is 555 0142."]
    paraphrase = '{"reason": "caller asks for an agent", "phone": "5550142"}'
    assert ungrounded_arguments(paraphrase, schema, said) == []
    invented = '{"reason": "call back on 555 9999", "phone": "5550142"}'
    assert ungrounded_arguments(invented, schema, said) == ["reason"]
    # Without the keyword the same paraphrase is not grounded.
    plain = {"type": "object", "properties": {"reason": {"type": "string"}}}
    assert ungrounded_arguments('{"reason": "caller asks for an agent"}', plain, said) == ["reason"]


def _phone_function(name: str) -> dict:
    from voice_agent.phone import tools as phone

    return next(s.openai_schema()["function"] for s in phone.registry if s.name == name)


@pytest.mark.parametrize(
    ("said", "summary", "grounded"),
    [
        # The request alone: nothing to summarise yet.
        ("I want to file a complaint.", "The caller wants to file a complaint.", False),
        ("I have a problem with my order.", "Problem with the order", False),
        ("Can you open a ticket for me?", "Customer needs a support ticket", False),
        # What it is about, in the caller's words or paraphrased around them.
        ("Please open a ticket about order 4116, the toaster came dented.",
         "The toaster arrived dented.", True),
        ("I'd like to complain, the delivery driver was rude to me.",
         "Complaint about a rude delivery driver", True),
        # Details the caller never gave.
        ("I want to complain about my blender.", "Blender arrived broken and late", False),
    ],
)  # fmt: skip
def test_a_ticket_summary_must_carry_what_the_caller_said_beyond_the_request(
    said, summary, grounded
):
    function = _phone_function("open_ticket")  # the real tool's schema, marked SUMMARY
    arguments = json.dumps({"summary": summary})
    missing = ungrounded_arguments(arguments, function["parameters"], [said], tool_words(function))
    assert (missing == []) is grounded
    assert (summary_grounded(summary, [said], tool_words(function))) is grounded


def test_a_transfer_reason_is_the_models_note_and_the_request_is_reason_enough():
    function = _phone_function("transfer_to_human")
    for said in ("Can I talk to a human please?", "Put me through to a person."):
        reason = json.dumps({"reason": "The caller asks to speak to a person."})
        assert (
            ungrounded_arguments(reason, function["parameters"], [said], tool_words(function)) == []
        )


def test_a_number_the_caller_took_back_grounds_no_call():
    said = "It's order 8080 - hold on, no, 8008. Has it shipped?"
    assert taken_back_numbers(said) == {"8080"}
    assert taken_back_numbers("4417, no, 4471. Wait, 4417 after all.") == {"4471"}
    assert taken_back_numbers("Call 555 201 7788 tomorrow at 10 am, no rush.") == set()
    assert taken_back_numbers("Orders 58213 and, no, also 771.") == set()  # not a correction


async def test_a_call_on_the_corrected_number_is_not_sent_beside_the_right_one():
    engine = ScriptedEngine(
        _decision_then(
            "get_order_status",
            '{"order_id": "8080"}}\n</tool_call>\n<tool_call>\n{"name": "get_order_status", '
            '"arguments": {"order_id": "8008"}}\n</tool_call>',
        )
    )
    _, reply, _ = await _respond(engine, _user("Order 8080 - hold on, no, 8008. Shipped yet?"))
    assert [json.loads(a) for _, _, a in reply.calls] == [{"order_id": "8008"}]
    assert reply.ungrounded == [("get_order_status", ["order_id"])]


@pytest.mark.parametrize(
    ("said", "first", "then", "stops"),
    [
        # e22 (session 8): an order nobody named, then calls on a customer nobody named
        ("Could you order me a taxi to the station?", {"order_id": "12345"},
         {"phone": "555-123-4567", "time": "tomorrow 10 am"}, True),
        # d11: the store hours of a city nobody named, read out as the weather
        ("What's the weather like?", {"city": "New York"}, {"order_id": "58213"}, True),
        # a number taken back: the right call may follow it (u04), decoding goes on
        ("Order 8080 - hold on, no, 8008. Shipped yet?", {"order_id": "8080"},
         {"order_id": "8008"}, False),
    ],
)  # fmt: skip
async def test_a_dropped_call_whose_values_nobody_said_ends_the_decoding(said, first, then, stops):
    # notool9 (session 9): the 1.5B went on writing calls after an invented one, 41-75
    # tokens (3.4-5.6 s) before the caller heard "Sorry, I can't help" (bench e22).
    name = "get_store_hours" if "city" in first else "get_order_status"
    second = "schedule_callback" if "phone" in then else "get_order_status"
    engine = ScriptedEngine(
        lambda prompt, grammar: (
            f'{name}"'
            if prompt.endswith(DECISION_PREFIX)
            else f"{json.dumps(first)}}}\n</tool_call>\n<tool_call>\n"
            f'{{"name": "{second}", "arguments": {json.dumps(then)}}}\n</tool_call>'
            if prompt.endswith('"arguments": ')
            else "no"
            if grammar and '"yes"' in grammar
            else " look up orders or store hours."
        )
    )
    responder, reply, _ = await _respond(engine, _user(said))
    call_step = engine.written[1]
    assert reply.stopped_at_invented is stops
    assert (second in call_step) is not stops  # nothing written after the invented call
    if stops:
        assert not reply.calls and reply.ungrounded == [(name, list(first))]
        # a number nobody said ends the step inside the value (`argument_watch`)
        assert "order_id" not in first or first["order_id"] not in call_step
        assert reply.text.startswith((ASK_LEAD, CANNOT_LEAD))  # the agent asks or declines
    else:
        assert [json.loads(a) for _, _, a in reply.calls] == [then]


def test_a_value_is_invented_only_when_nothing_of_it_was_said():
    said = ["Ring me at 646 555 0123 this evening at 6 pm, or order 8080, no, 8008."]
    assert nothing_said("12345", said) and nothing_said("New York", said)
    assert nothing_said("", said) and nothing_said("tomorrow 10 am", said)
    assert not nothing_said("today at 18:00", said)  # reworded: 6 pm was said
    assert not nothing_said("8080", said)  # taken back, not invented
    assert not nothing_said("646-555-0123", said) and not nothing_said("this evening", said)
    assert invented_arguments(
        '{"phone": "555 987 6543", "time": "6 pm"}', ["phone", "time"], said
    ) == ["phone"]
    assert invented_arguments("not json", ["phone"], said) == []


def test_a_results_note_is_shown_as_guidance_apart_from_the_result_and_its_flag_not_at_all():
    messages = _after_call({"status": "resolved", "result": TRANSFERRED})
    prompt = render_messages(messages, TOOLS, readable_results=True)
    assert 'returned: {"transferring": true}\n' in prompt
    assert (
        "(Guidance for you, never to be said to the caller: the caller is told and "
        "transferred; say nothing more.)" in prompt
    )


async def test_a_write_whose_only_new_value_is_a_summary_is_a_reuse_and_not_sent():
    refund = {
        "type": "function",
        "function": {
            "name": "refund_order",
            "description": "Refund an order.",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "reason": {"type": "string", "x-summary": True},
                },
            },
        },
    }
    looked_up = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_order_status", "arguments": '{"order_id": "30425"}'},
    }
    messages = _user("Has order 30425 arrived?") + [
        {"role": "assistant", "content": "", "tool_calls": [looked_up]},
        {"role": "tool", "tool_call_id": "c1",
         "content": json.dumps({"status": "resolved", "result": {"status": "delivered"}})},
    ]  # fmt: skip

    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'refund_order"'
        if prompt.endswith('"arguments": '):
            return '{"order_id": "30425", "reason": "it arrived"}}\n</tool_call>'
        return "It was delivered."

    engine = ScriptedEngine(script)
    _, reply, _ = await _respond(engine, messages, [*TOOLS, refund])
    assert not reply.calls and reply.reused == ["refund_order"]
    assert reply.text == "It was delivered."


async def test_a_number_the_caller_took_back_is_not_decoded_again_as_a_rewording():
    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'get_order_status"'
        if prompt.endswith('"arguments": '):
            return '{"order_id": "4417"}}\n</tool_call>'
        return "yes" if grammar and '"yes"' in grammar else "Which order?"

    engine = ScriptedEngine(script)
    responder, reply, _ = await _respond(engine, _user("My order is 4417, sorry, 4471. Where?"))
    assert responder.plan.in_callers_words is None
    # Made again, but on the correction (not as a rewording of the taken-back one); with
    # one number to correct to, written without a second decode.
    assert [json.loads(a) for _, _, a in reply.calls] == [{"order_id": "4471"}]
    assert len([p for p, _, _ in engine.steps if p.endswith('"arguments": ')]) == 1
    assert responder.plan.on_the_correction == [("get_order_status", ["order_id"])]


async def test_a_dropped_call_with_an_argument_the_caller_gave_asks_without_the_yes_no_question():
    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'schedule_callback"'
        if prompt.endswith('"arguments": '):
            return '{"phone": "555 123 4567", "time": "tomorrow"}}\n</tool_call>'
        assert not (grammar and '"yes"' in grammar), "no yes/no question is asked"
        return " your phone number?"

    engine = ScriptedEngine(script)
    responder, reply, _ = await _respond(engine, _user("Can I get a callback tomorrow?"))
    assert not reply.calls and reply.text == "Could you tell me your phone number?"
    assert not engine.asked_p  # nor read off probabilities
    assert responder.plan.asked_or_cannot == "ask"
    assert responder.plan.dropped_ungrounded == [("schedule_callback", ["phone"])]


@pytest.mark.parametrize(
    ("said", "named"),
    [
        ("Can I get a callback tomorrow?", True),  # the name's word
        ("Could somebody call me back later?", True),  # the description's words
        ("I'd like to schedule something.", True),
        ("What's the weather in Paris?", False),
        ("Can you give me a discount?", False),
    ],
)
def test_a_request_names_a_tool_by_a_word_of_its_name_or_purpose(said, named):
    assert names_the_tool(said, CALLBACK_FUNCTION) is named


async def test_a_dropped_call_for_a_tool_the_caller_named_asks_without_the_yes_no_question():
    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'schedule_callback"'
        if prompt.endswith('"arguments": '):
            return '{"phone": "555 123 4567", "time": "tomorrow 9 am"}}\n</tool_call>'
        assert not (grammar and '"yes"' in grammar), "no yes/no question is asked"
        return " your phone number, and when?"

    engine = ScriptedEngine(script)
    responder, reply, _ = await _respond(engine, _user("Can I get a callback?"))
    assert not reply.calls and responder.plan.asked_or_cannot == "ask"
    assert not engine.asked_p  # nor read off probabilities


TICKET = {
    "type": "function",
    "function": {
        "name": "open_ticket",
        "description": "Open a support ticket for a problem the agent cannot solve on the call.",
        "parameters": {
            "type": "object",
            "properties": {
                "summary": {
                    "type": "string",
                    "description": "what the caller needs, in one sentence",
                    "x-summary": True,
                },
            },
            "required": ["summary"],
        },
    },
}


async def test_a_ticket_with_only_the_request_as_summary_is_not_opened_and_the_agent_asks():
    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'open_ticket"'
        if prompt.endswith('"arguments": '):
            return '{"summary": "The caller wants to file a complaint."}}\n</tool_call>'
        assert not (grammar and '"yes"' in grammar), "the request is the tool's: no yes/no"
        return " what it is about?"

    engine = ScriptedEngine(script)
    responder, reply, deltas = await _respond(
        engine, _user("I want to file a complaint."), [*TOOLS, TICKET]
    )
    assert not reply.calls and not any("tool_calls" in d for d in deltas)
    assert responder.plan.dropped_ungrounded == [("open_ticket", ["summary"])]
    assert responder.plan.asked_or_cannot == "ask" and not engine.asked_p
    assert reply.text == f"{ASK_LEAD} what it is about?"


async def test_a_ticket_whose_summary_holds_the_callers_details_is_sent():
    engine = ScriptedEngine(
        _decision_then("open_ticket", '{"summary": "The kettle leaks."}}\n</tool_call>')
    )
    _, reply, _ = await _respond(
        engine, _user("I want to complain, my new kettle leaks everywhere."), [*TOOLS, TICKET]
    )
    assert [(n, json.loads(a)) for _, n, a in reply.calls] == [
        ("open_ticket", {"summary": "The kettle leaks."})
    ]


#: The phone profile's ticket, with its optional order (`voice_agent.phone.tools.open_ticket`).
TICKET_ABOUT_AN_ORDER: dict[str, Any] = json.loads(json.dumps(TICKET))
TICKET_ABOUT_AN_ORDER["function"]["parameters"]["properties"]["order_number"] = {
    "type": "string",
    "description": "the order it is about, if any",
    "default": "",
}
TRANSFER = {
    "type": "function",
    "function": {
        "name": "transfer_to_human",
        "description": "Transfer the caller to a human agent (when they ask for one or you "
        "cannot help).",
        "parameters": {
            "type": "object",
            "properties": {
                "reason": {
                    "type": "string",
                    "description": "why the caller needs a person, in a few words",
                    "x-summary": "note",
                }
            },
            "required": ["reason"],
        },
    },
}
LOOKUP_CUSTOMER = _tool("lookup_customer", phone_number="the caller's phone number")
LOOKUP_CUSTOMER["function"]["description"] = (
    "Find a customer account by phone number: name, store credit and recent orders."
)


@pytest.mark.parametrize(
    ("tool", "is_catch_all"),
    [
        (TICKET, True),  # "... for a problem the agent cannot solve on the call"
        (TRANSFER, True),  # "... (when they ask for one or you cannot help)"
        (TOOLS[2], False),
        ({"name": "f", "description": "Whether the refund for a returned order has been paid."}, False),
        ({"name": "f", "description": "Cancel an order that has not shipped yet."}, False),
    ],
)  # fmt: skip
def test_a_catch_all_is_told_by_a_clause_of_what_the_agent_cannot_do(tool, is_catch_all):
    assert catch_all(tool.get("function", tool)) is is_catch_all


def _ticket_script(summary: str):
    """A FAKE model that opens a ticket with `summary` and an empty order number (what the
    1.5B wrote for z16), answers yes/no by the engine's probabilities, and speaks an offer."""

    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'open_ticket"'
        if prompt.endswith('"arguments": '):
            return json.dumps({"summary": summary, "order_number": ""}) + "}\n</tool_call>"
        return " look up orders or store hours."

    return script


async def test_a_dropped_catch_all_the_caller_did_not_name_is_cannot_without_a_yes_no():
    # z16: the yes/no leaned to "yes" (2.8 over 1.0 negated, session 13): a ticket
    # write for "Do you have any job openings?". These odds would ask, or send it.
    engine = _scripted(_ticket_script("Looking for a job opening"), CALL_BACK_ODDS)
    responder, reply, _ = await _respond(
        engine, _user("Do you have any job openings?"), [*TOOLS, TICKET_ABOUT_AN_ORDER]
    )
    assert not reply.calls and reply.text.startswith(CANNOT_LEAD)
    assert responder.plan.asked_or_cannot == CANNOT and responder.plan.without_optional is None
    assert not engine.asked_p  # no yes/no read


async def test_a_catch_all_the_caller_names_missing_only_an_optional_detail_is_sent_without_it():
    engine = _scripted(_ticket_script("The toaster arrived dented."))
    responder, reply, deltas = await _respond(
        engine,
        _user("Please open a ticket, my toaster arrived dented."),
        [*TOOLS, TICKET_ABOUT_AN_ORDER],
    )
    assert [(n, json.loads(a)) for _, n, a in reply.calls] == [
        ("open_ticket", {"summary": "The toaster arrived dented."})
    ]
    assert not reply.text and not any(d.get("content") for d in deltas)
    assert responder.plan.without_optional == ("open_ticket", ["order_number"])
    assert not responder.plan.asked and not engine.asked_p
    assert len(engine.steps) == 2  # the decision and the call: sent as written, no step more


async def test_a_call_missing_only_an_optional_detail_is_sent_without_it_not_asked_for():
    callback = json.loads(json.dumps(TOOLS[2]))
    callback["function"]["parameters"]["required"] = ["phone"]  # the time is optional
    engine = ScriptedEngine(
        _decision_then(
            "schedule_callback",
            '{"phone": "555 201 7788", "time": "tomorrow 10 am"}}\n</tool_call>',
        )
    )
    responder, reply, _ = await _respond(
        engine, _user("Please call me back on 555 201 7788."), [*TOOLS[:2], callback]
    )
    assert [(n, json.loads(a)) for _, n, a in reply.calls] == [
        ("schedule_callback", {"phone": "555 201 7788"})
    ]
    assert responder.plan.without_optional == ("schedule_callback", ["time"])
    assert not reply.text and len(engine.steps) == 2


def _person_script(prompt, grammar):
    """A FAKE model that looks up a customer for a caller who asks for a person (the
    1.5B's y16), with an invented phone number; asked for a transfer's reason, gives one."""
    if prompt.endswith(DECISION_PREFIX):
        return 'lookup_customer"'
    if prompt.endswith('transfer_to_human", "arguments": '):
        return '{"reason": "billing question"}}\n</tool_call>'
    if prompt.endswith('"arguments": '):
        return '{"phone_number": "123-456-7890"}}\n</tool_call>'
    return " your phone number?"


async def test_a_call_dropped_for_a_caller_who_asks_for_a_person_goes_to_the_tool_that_hands_them_over():
    engine = ScriptedEngine(_person_script)
    responder, reply, _ = await _respond(
        engine,
        _user("Can you connect me with someone in billing?"),
        [LOOKUP_CUSTOMER, TICKET_ABOUT_AN_ORDER, TRANSFER],
    )
    assert [(n, json.loads(a)) for _, n, a in reply.calls] == [
        ("transfer_to_human", {"reason": "billing question"})
    ]
    assert responder.plan.to_a_person == ("lookup_customer", "transfer_to_human")
    assert not reply.text and not engine.asked_p  # no yes/no read, nothing asked
    assert len(engine.steps) == 3  # the decision, the dropped call, the transfer's call


async def test_a_person_asked_for_with_no_tool_that_hands_over_to_one_changes_nothing():
    engine = _scripted(_person_script)
    tools = [LOOKUP_CUSTOMER, TICKET_ABOUT_AN_ORDER]
    assert not any(hands_to_a_person(t["function"]) for t in tools)
    responder, reply, _ = await _respond(
        engine, _user("Can you connect me with someone in billing?"), tools
    )
    assert not reply.calls and responder.plan.to_a_person is None
    assert responder.plan.dropped_ungrounded == [("lookup_customer", ["phone_number"])]


@pytest.mark.parametrize(
    ("said", "reply", "echo"),
    [
        ("Can you tell me if the new iPhone is in stock?",
         " Can you tell me if the new iPhone is in stock?", True),
        ("Can you tell me if the new iPhone is in stock?", " Is the new iPhone in stock?", True),
        ("Can you tell me if the new iPhone is in stock?",
         " I can help with orders, refunds and returns.", False),
        ("What's the weather like?", " I can check an order or a store's hours for you.", False),
    ],
)  # fmt: skip
def test_an_offer_that_repeats_the_callers_words_is_told_from_a_real_offer(said, reply, echo):
    assert echoes_caller(reply, said) is echo


@pytest.mark.parametrize(
    ("offer", "spoken"),
    [
        (" tell you if the new iPhone is in stock.", f"{CANNOT_LEAD} {CANNOT_OFFER}"),
        (" look up an order for you.", f"{CANNOT_LEAD} I can look up an order for you."),
    ],
)
async def test_the_offer_after_cannot_never_repeats_the_callers_question(offer, spoken):
    engine = ScriptedEngine(_decision_then("cannot_do", offer))
    responder, reply, _ = await _respond(
        engine, _user("Can you tell me if the new iPhone is in stock?")
    )
    assert responder.plan.decision == "cannot_do" and not reply.calls
    assert reply.text == spoken
    assert (responder.plan.echoed_caller is not None) is (CANNOT_OFFER in spoken)


def test_a_spoken_number_argument_without_a_number_is_not_grounded():
    schema = _phone_function("lookup_order")["parameters"]  # order_number: x-spoken-number
    said = ["Can you tell me if the new iPhone is in stock? Or order four four one seven."]
    assert ungrounded_arguments('{"order_number": "iPhone"}', schema, said) == ["order_number"]
    assert ungrounded_arguments('{"order_number": "four four one seven"}', schema, said) == []
    assert ungrounded_arguments('{"order_number": "4417"}', schema, said) == []
    tens = ["It's order ninety-eight seven eighty-two."]  # words the ASR or a typist may use
    assert (
        ungrounded_arguments('{"order_number": "ninety-eight seven eighty-two"}', schema, tens)
        == []
    )


@pytest.mark.parametrize(
    ("said", "corrected"),
    [
        ("It's order 78342, oh no, 78324. Has it been sent?", ["78324"]),
        ("Could you check order 6612, sorry, make that 6621?", ["6621"]),
        ("4417, no, 4471. Wait, 4417 after all.", ["4417"]),
        ("Call 555 201 7788 tomorrow at 10 am, no rush.", []),
    ],
)
def test_the_numbers_a_caller_corrected_to(said, corrected):
    assert corrected_numbers(said) == corrected


async def test_a_call_on_the_number_the_caller_took_back_is_made_again_on_the_correction():
    said = "It's order 78342, oh no, 78324. Has it been sent?"

    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'get_order_status"'
        if prompt.endswith('"arguments": '):
            if grammar and "78324" in grammar and "78342" not in grammar:
                return '{"order_id": "78324"}}\n</tool_call>'  # limited to the correction
            return '{"order_id": "78342"}}\n</tool_call>'
        return "Could you tell me the order number?"

    engine = ScriptedEngine(script)
    responder, reply, deltas = await _respond(engine, _user(said))
    assert [(n, json.loads(a)) for _, n, a in reply.calls] == [
        ("get_order_status", {"order_id": "78324"})
    ]
    assert responder.plan.on_the_correction == [("get_order_status", ["order_id"])]
    assert not reply.text and deltas[0]["tool_calls"][0]["function"]["name"] == "get_order_status"
    # One number to correct to: the call is written with it, not decoded a second time
    # (that cost the corrections' first audio ~10 sampled tokens; issue 11).
    assert len([p for p, _, _ in engine.steps if p.endswith('"arguments": ')]) == 1


BALANCE = {
    "type": "function",
    "function": {
        "name": "get_account_balance",
        "description": "The current balance of a customer account.",
        "parameters": {
            "type": "object",
            "properties": {
                "account_number": {"type": "string", "description": "the account number"}
            },
            "required": ["account_number"],
        },
    },
}


@pytest.mark.parametrize(
    ("said", "fields", "asks"),
    [
        ("When is that due?", ["account_number", "balance", "due_date"], True),
        ("When is that due?", None, False),  # nothing says the tool gives a due date
        ("What's the balance now?", None, True),  # its description's word
        ("Can I pay that account with PayPal?", ["balance", "due_date"], False),  # an argument's
    ],
)
def test_a_follow_up_asks_for_what_a_tool_gives(said, fields, asks):
    function: dict = BALANCE["function"]  # type: ignore[assignment]
    assert asks_what_it_gives(said, function, fields) is asks


def _balance_history(with_result: bool) -> list[dict]:
    messages = _user("What's the balance on account 88301?")
    if with_result:
        call = {
            "id": "c1",
            "type": "function",
            "function": {"name": "get_account_balance", "arguments": '{"account_number": "88301"}'},
        }
        result = {"account_number": "88301", "balance": "$1,204.50", "due_date": "June 3"}
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1",
             "content": json.dumps({"status": "resolved", "result": result})},
        ]  # fmt: skip
    return messages + [
        {"role": "assistant", "content": "The balance on account 88301 is $1,204.50."},
        {"role": "user", "content": "When is that due?"},
    ]


async def test_cannot_do_on_a_follow_up_about_a_field_an_earlier_result_carries_answers_from_it():
    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'cannot_do"'
        if prompt.endswith('"arguments": '):
            return '{"account_number": "88301"}}\n</tool_call>'  # already answered above
        return "It is due on June 3."

    engine = ScriptedEngine(script)
    responder, reply, _ = await _respond(engine, _balance_history(True), [*TOOLS, BALANCE])
    assert responder.plan.follow_up == ["get_account_balance"]
    assert not reply.calls and reply.text == "It is due on June 3."
    assert engine.steps[-1][0].rsplit("<|im_start|>system", 1)[1].startswith(f"\n{ANSWER_NOTE}")
    assert CANNOT_LEAD not in reply.text


async def test_cannot_do_stays_when_nothing_says_a_tool_gives_what_is_asked():
    engine = ScriptedEngine(_decision_then("cannot_do", " I can look up balances."))
    responder, reply, _ = await _respond(engine, _balance_history(False), [*TOOLS, BALANCE])
    assert responder.plan.follow_up is None and not reply.calls
    assert reply.text.startswith(CANNOT_LEAD)


def _looked_up_again(first: str, then: str, order: str) -> list[dict]:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_order_status", "arguments": json.dumps({"order_id": order})},
    }
    return _user(first) + [
        {"role": "assistant", "content": "Order 4802 has shipped."},
        {"role": "user", "content": then},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps(
            {"status": "resolved", "result": {"status": "shipped", "estimated_delivery": "Friday"}})},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("then", "order", "note"),
    [
        # The same order looked up again for something else in it.
        ("Okay, and what day will it arrive?", "4802", ANSWER_AGAIN_NOTE),
        # A new order the caller names now: an ordinary answer.
        ("And order 5150?", "5150", ANSWER_NOTE),
    ],
)
async def test_a_follow_up_looked_up_again_is_answered_for_what_the_caller_just_asked(
    then, order, note
):
    engine = ScriptedEngine(_decision_then("reply", "It arrives on Friday."))
    await _respond(engine, _looked_up_again("Where is order 4802?", then, order))
    system = engine.steps[-1][0].rsplit("<|im_start|>system", 1)[1]
    head, tail = note.split(" found above")  # what was looked up is named in between
    assert system.startswith(f"\n{head} found above about {order}{tail}")


# ------------------------------------------------------------ ending the call

END_CALL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "end_call",
        "description": "End the call after saying goodbye, when the caller has nothing more to ask.",
        "parameters": {"type": "object", "properties": {}},
    },
}


def _ends_unless_offered_otherwise(prompt, grammar):
    """A FAKE model that ends the call whenever it may, else says it cannot."""
    if prompt.endswith(DECISION_PREFIX):
        return 'end_call"' if "end_call" in (grammar or "") else 'cannot_do"'
    if prompt.endswith('"arguments": '):
        return "{}}\n</tool_call>"
    return " Is there anything else?"


@pytest.mark.parametrize(
    ("said", "ended"),
    [
        ("Can you book me a table for dinner?", False),
        ("Can you call me back later?", False),
        ("Hold on a second.", False),
        ("Thanks, that's all I needed. Bye!", True),
        ("Okay, you can hang up now.", True),
    ],
)
async def test_the_call_is_ended_only_when_the_callers_words_close_the_conversation(said, ended):
    engine = ScriptedEngine(_ends_unless_offered_otherwise)
    responder, reply, deltas = await _respond(engine, _user(said), tools=[*TOOLS, END_CALL])
    called = [name for _, name, _ in reply.calls]
    text = "".join(d.get("content") or "" for d in deltas)
    if ended:
        assert called == ["end_call"] and responder.plan.unwanted is None
    elif said.startswith("Hold on"):
        # Asks for nothing but a moment: nothing is decided (caller_asks.holds_the_line).
        assert called == [] and responder.plan.held_the_line and text == WAIT_REPLY
    else:
        # Decided again without the hang-up: the caller hears an honest answer.
        assert called == [] and responder.plan.unwanted == "end_call"
        assert text.startswith(CANNOT_LEAD)


async def test_a_no_to_anything_else_closes_the_conversation_and_a_forced_hang_up_waits_for_it():
    engine = ScriptedEngine(_ends_unless_offered_otherwise)
    asked = [
        {"role": "system", "content": "You are Alex."},
        {"role": "user", "content": "Where is order 5512?"},
        {"role": "assistant", "content": "It has shipped. Is there anything else I can do?"},
        {"role": "user", "content": "No, thank you."},
    ]
    _, reply, _ = await _respond(engine, asked, tools=[*TOOLS, END_CALL])
    assert [name for _, name, _ in reply.calls] == ["end_call"]
    forced = {"type": "function", "function": {"name": "end_call"}}
    responder, _, deltas = await _respond(
        engine, _user("What's the weather like?"), tools=[*TOOLS, END_CALL], tool_choice=forced
    )
    assert not [d for d in deltas if d.get("tool_calls")]
    assert responder.plan.unwanted == "end_call"


def test_a_tool_that_ends_the_call_takes_no_arguments_and_says_so():
    assert ends_the_call(END_CALL["function"])
    assert ends_the_call({"name": "hang_up", "parameters": {}})
    assert ends_the_call({"name": "bye", "description": "Disconnect the line.", "parameters": {}})
    assert not ends_the_call({"name": "list_promotions", "description": "Current promotions."})
    assert not ends_the_call(TOOLS[2]["function"])  # schedule_callback: a call back, with arguments
    assert not ends_the_call(
        {"name": "schedule_call", "description": "Book a call with sales.", "parameters": {}}
    )


_SHOP = [
    {"name": "get_order_status", "description": "Look up the shipping status of an order."},
    {"name": "cancel_order", "description": "Cancel an order that has not shipped yet."},
    {
        "name": "update_delivery_address",
        "description": "Change the delivery address of an order that has not shipped yet.",
    },
]


@pytest.mark.parametrize(
    ("said", "named"),
    [
        ("Can I change the size of the shoes I ordered?", False),  # what is done, and "order"
        ("Can I get a loan to pay for my order?", False),
        ("I moved last week, can you update my address?", True),
        ("I need to send my delivery somewhere else.", True),
        ("I want to cancel my order.", False),  # cancel_order's own word, not this tool's
    ],
)
def test_a_verb_or_a_word_every_tool_is_named_by_does_not_name_a_tool(said, named):
    assert names_the_tool(said, _SHOP[2], _SHOP) is named
    if "cancel" in said:
        assert names_the_tool(said, _SHOP[1], _SHOP)


@pytest.mark.parametrize(
    ("said", "named"),
    [
        ("Can you change the email address on my account?", False),  # c11, session 7
        ("Can I update the billing address on my card?", False),
        ("Please update the shipping address on my order.", True),  # "shipped" is the tool's
        ("The delivery address on my order is wrong.", True),
        ("I moved, so I have a new address now.", True),  # "new" says no other kind
        ("I'd like to change where my order gets delivered.", True),
    ],
)
def test_a_word_said_of_another_kind_of_thing_does_not_name_a_tool(said, named):
    assert names_the_tool(said, _SHOP[2], _SHOP) is named
    if "cancel" in said:
        assert names_the_tool(said, _SHOP[1], _SHOP)


@pytest.mark.parametrize(
    ("said", "city", "seen"),
    [
        (
            "The Houston store, no, sorry, I meant San Diego. When are they open?",
            "San Diego",
            "The San Diego store, no, sorry, I meant San Diego. When are they open?",
        ),
        (
            "Store hours for Atlanta please. Actually, make that Nashville.",
            "Nashville",
            "Store hours for Nashville please. Actually, make that Nashville.",
        ),
        # Nothing taken back: the caller's words as they are.
        ("When do the Austin and Miami stores open?", "Austin", None),
    ],
)
async def test_the_answer_reads_the_callers_words_without_the_name_they_took_back(said, city, seen):
    engine = ScriptedEngine(_decision_then("reply", f"The {city} store opens at 9 am."))
    responder, _, _ = await _respond(engine, _store_hours_turn([], said, city))
    speech = engine.steps[-1][0]
    assert responder.plan.as_corrected == seen
    assert f"user\n{seen or said}<|im_end|>" in speech
    if seen:
        assert f"user\n{said}<|im_end|>" in engine.steps[0][0]  # the decision read the caller's own


def test_the_offer_after_cannot_names_what_the_tools_do_in_words_for_the_caller():
    tools = [
        _phone_function_tool("lookup_order"),
        _phone_function_tool("transfer_to_human"),
        _phone_function_tool("end_call"),
    ]
    assert what_the_tools_do(tools) == "look up an order; transfer you to a human agent"
    assert what_the_tools_do([_phone_function_tool("end_call")]) == ""  # no offer


def _phone_function_tool(name: str) -> dict:
    return {"type": "function", "function": _phone_function(name)}


@pytest.mark.parametrize(
    ("offer", "kept"),
    [
        # spoken call s10, session 9: 'you can use the "update email" tool.'
        (' help you with the "update email" tool.', False),
        ("'t help with that.", False),  # a second refusal offers nothing
        ("'t schedule a call back.", False),
        (" help with: look up an order.", False),  # m22: the note's list, copied
        (" look up an order; cancel an order.", False),
        (" look up an order and", False),  # cut off at its tokens' limit
        (" look up an order for you.", True),
    ],
)
async def test_an_offer_that_names_a_tool_or_refuses_again_is_not_said(offer, kept):
    engine = ScriptedEngine(_decision_then("cannot_do", offer))
    responder, reply, _ = await _respond(
        engine, _user("Can you change the email address on my online account?")
    )
    assert reply.text == f"{CANNOT_LEAD} " + (f"{OFFER_LEAD}{offer}" if kept else CANNOT_OFFER)
    assert (responder.plan.echoed_caller is None) is kept


@pytest.mark.parametrize(
    ("result", "tool_said"),
    [({"status": "shipped"}, False), ({"items": "two power tools"}, True)],
)
async def test_speech_never_starts_a_word_with_tool_unless_a_result_says_it(
    result, tool_said, vocab
):
    engine = ScriptedEngine(_decision_then("reply", "It has shipped."), p_next=0.01)
    await _respond(engine, _after_call({"status": "resolved", "result": result}))
    ((_, grammar, _),) = engine.steps
    assert grammar is not None
    assert grammar_accepts(vocab, grammar, "Your power tools have shipped.") is tool_said
    assert grammar_accepts(vocab, grammar, "It has shipped, sit on a stool.")


async def test_an_answer_that_says_a_value_in_part_is_followed_by_the_whole_value():
    payload = {"status": "resolved", "result": {"order_id": "5521", "refund": "paid on May 28"}}
    engine = ScriptedEngine(
        _decision_then("reply", "The refund for order 5521 has been paid."), p_next=0.01
    )
    responder, reply, _ = await _respond(engine, _after_call(payload))
    added = "The refund for order 58213 is paid on May 28."  # the call's order, as looked up
    assert reply.text == f"The refund for order 5521 has been paid. {added}"
    assert responder.plan.half_said == [added]


async def test_an_answer_that_promises_a_write_already_done_is_followed_by_its_outcome():
    # bench x13 (session 11): the cancel ran, and the 1.5B said "Sure, I can cancel
    # order 4096 for you." The caller must hear that it is done.
    call = {"id": "c1", "type": "function",
            "function": {"name": "cancel_order", "arguments": '{"order_id": "4096"}'}}  # fmt: skip
    result = {"order_id": "4096", "cancelled": True, "confirmation": "X-4096"}
    messages = _user("Can you cancel order 4096 for me?") + [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1",
         "content": json.dumps({"status": "resolved", "result": result})},
    ]  # fmt: skip
    engine = ScriptedEngine(
        _decision_then("reply", "Sure, I can cancel order 4096 for you."), p_next=0.01
    )
    responder, reply, _ = await _respond(engine, messages)
    assert reply.text == "Sure, I can cancel order 4096 for you. Order 4096 has been cancelled."
    assert responder.plan.outcomes_told == ["Order 4096 has been cancelled."]
    engine = ScriptedEngine(_decision_then("reply", "Order 4096 has been cancelled."), p_next=0.01)
    responder, reply, _ = await _respond(engine, messages)
    assert reply.text == "Order 4096 has been cancelled." and responder.plan.outcomes_told is None


async def test_a_refusal_before_the_results_is_not_said_when_something_is_told():
    # bench z13 (session 12, 0.5B): "I'm sorry, but I can't assist with that." and then
    # the order's status, which the responder adds: the caller heard a refusal, then
    # the answer.
    payload = {"status": "resolved", "result": {"order_id": "58213", "status": "shipped"}}
    refusal = "I'm sorry, but I can't assist with that."
    engine = ScriptedEngine(_decision_then("reply", refusal), p_next=0.01)
    responder, reply, _ = await _respond(engine, _after_call(payload), tools=SERVICE_TOOLS)
    assert reply.text == "The status for order 58213 is shipped."
    assert responder.plan.left_out == [refusal]
    engine = ScriptedEngine(_decision_then("reply", f"{refusal} Order 58213 has shipped."))
    engine.p_next = 0.01
    _, reply, _ = await _respond(engine, _after_call(payload), tools=SERVICE_TOOLS)
    assert reply.text == "Order 58213 has shipped."


async def test_a_refusal_after_results_with_nothing_else_to_tell_is_said_after_all():
    payload = {"status": "failed", "error": "HTTP 503"}  # nothing to tell from it
    refusal = "I'm sorry, but I can't assist with that."
    engine = ScriptedEngine(_decision_then("reply", refusal), p_next=0.01)
    _, reply, _ = await _respond(engine, _after_call(payload), tools=SERVICE_TOOLS)
    assert reply.text.strip() == refusal


async def test_the_offer_after_cannot_offers_one_thing_and_stops_at_its_clauses_end():
    offer = " look up an order, cancel one, or change its address."
    engine = ScriptedEngine(_decision_then("cannot_do", offer))
    _, reply, _ = await _respond(engine, _user("Can you change my email address?"))
    assert reply.text == f"{CANNOT_LEAD} {OFFER_LEAD} look up an order."
    assert engine.written[-1] == " look up an order,"  # the model stopped there


# ------------------------------------------- a low-margin decision, checked

#: k11's tools (the customer-service set, their descriptions)
SERVICE_TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {**t["function"], "description": d}}
    for t, d in (
        (_tool("get_order_status", order_id="the order number"),
         "Look up the shipping status of an order by its order number."),
        (_tool("get_account_balance", account_number="the account number"),
         "The current balance of a customer account and the date it is due."),
        (_tool("get_refund_status", order_id="the order number"),
         "Whether the refund for a returned order has been paid."),
    )
]  # fmt: skip
#: bench k11: after "get", the 1.5B put 0.618 on "_ref" and 0.235 on "_order" (decide10)
K11_STEPS = [
    {"after": "", "tokens": [["get", 0.994], ["reply", 0.003]]},
    {"after": "get", "tokens": [["_ref", 0.618], ["_order", 0.235], ["_delivery", 0.144]]},
]


def _checking_script(chosen: str, yes_to: set[str]):
    """A model that decides `chosen` and says yes only to requests for what `yes_to`'s
    tools do."""
    purposes = {t["function"]["description"].rstrip(".").lower(): t["function"]["name"]
                for t in SERVICE_TOOLS}  # fmt: skip

    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return f'{chosen}"'
        if grammar == choice_grammar(["yes", "no"], closing=""):
            asked = re.search(r"Is that a request to (.+)\?", prompt.split("<|im_start|>")[-2])
            assert asked is not None
            return "yes" if purposes[asked.group(1)] in yes_to else "no"
        return '{"order_id": "2604"}}\n</tool_call>'

    return script


@pytest.mark.parametrize(
    ("yes_to", "called", "checked"),
    [
        ({"get_order_status"}, "get_order_status",
         [("get_refund_status", False), ("get_order_status", True)]),
        ({"get_refund_status", "get_order_status"}, "get_refund_status",
         [("get_refund_status", True)]),
        (set(), "get_refund_status", [("get_refund_status", False), ("get_order_status", False)]),
    ],
)  # fmt: skip
async def test_a_low_margin_tool_decision_is_checked_against_the_callers_words(
    yes_to, called, checked
):
    engine = ScriptedEngine(_checking_script("get_refund_status", yes_to), alternatives=K11_STEPS)
    said = "What's the delivery status on order 2604?"
    responder, reply, _ = await _respond(engine, _user(said), tools=SERVICE_TOOLS)
    assert [name for _, name, _ in reply.calls] == [called]
    assert responder.plan.margin == pytest.approx(0.235 / 0.618, abs=1e-3)
    assert responder.plan.margin_check == checked
    assert responder.plan.decision == called
    yes_no = [s for s in engine.steps if s[1] == choice_grammar(["yes", "no"], closing="")]
    assert len(yes_no) == len(checked)
    assert all(f'caller said "{said}"' in s[0] for s in yes_no)  # quoted, as WANTED_QUESTION


async def test_a_clear_tool_decision_costs_no_check():
    steps = [{"after": "get", "tokens": [["_order", 0.9], ["_ref", 0.05]]}]
    engine = ScriptedEngine(_checking_script("get_order_status", set()), alternatives=steps)
    responder, reply, _ = await _respond(engine, _user("Where is order 2604?"), tools=SERVICE_TOOLS)
    assert [name for _, name, _ in reply.calls] == ["get_order_status"]
    assert responder.plan.margin == pytest.approx(0.05 / 0.9, abs=1e-3)
    assert responder.plan.margin_check is None
    assert len(engine.steps) == 2  # the decision and the call


async def test_a_count_an_answer_says_that_its_result_contradicts_is_corrected():
    orders = "41882 (shipped), 55103 (delivered), 60211 (processing), 70001 (shipped)"
    payload = {"status": "resolved", "result": {"name": "Dana", "recent_orders": orders}}
    said = "Dana has three recent orders: 41882, 55103, 60211 and 70001."
    engine = ScriptedEngine(_decision_then("reply", said), p_next=0.01)
    responder, reply, _ = await _respond(engine, _after_call(payload))
    assert reply.text == said.replace("three", "four")  # m17: four were read out
    assert responder.plan.counts_corrected == [("three recent orders", "four recent orders")]


async def test_a_quantity_an_answer_says_of_a_thing_its_result_counts_is_the_results():
    items = "2 toaster, 2 wool blanket, 2 yoga mat"
    payload = {"status": "resolved", "result": {"order_number": "58206", "items": items}}
    said = "Order 58206 has 2 toaster, 2 wool blanket, and 3 yoga mat items."
    engine = ScriptedEngine(_decision_then("reply", said), p_next=0.01)
    responder, reply, _ = await _respond(engine, _after_call(payload))
    assert reply.text == said.replace("3 yoga", "2 yoga")  # recheck14 o15
    assert responder.plan.counts_corrected == [("3 yoga mat", "2 yoga mat")]


async def test_an_answer_that_leaves_out_the_tools_main_fact_is_followed_by_it():
    payload = {
        "status": "resolved",
        "result": {"order_id": "58213", "status": "shipped", "items": "a toaster"},
    }
    said = "Order 58213 is for a toaster."
    engine = ScriptedEngine(_decision_then("reply", said), p_next=0.01)
    responder, reply, _ = await _respond(engine, _after_call(payload))
    told = "The status for order 58213 is shipped."  # k18: the status was left out
    assert reply.text == f"{said} {told}"
    assert responder.plan.untold == [told] and responder.plan.half_said is None


@pytest.mark.parametrize(
    ("said", "heard"),
    [
        ("Order 58213 is for a toaster", "Order 58213 is for a toaster."),
        ("Order 58213 is for a toaster.", "Order 58213 is for a toaster."),
        ("Order 58213 is for a toaster,", "Order 58213 is for a toaster,"),
    ],
)
async def test_an_answer_left_without_its_full_stop_ends_before_a_sentence_added_to_it(said, heard):
    # c08 (0.5B, session 14): "... due date: June 12 The status for order 4410 is ..."
    payload = {
        "status": "resolved",
        "result": {"order_id": "58213", "status": "shipped", "items": "a toaster"},
    }
    engine = ScriptedEngine(_decision_then("reply", said), p_next=0.01)
    _, reply, _ = await _respond(engine, _after_call(payload))
    assert reply.text == f"{heard} The status for order 58213 is shipped."


def _calls_then(first: tuple[str, dict], *more: tuple[str, dict]):
    """A FAKE model's script: the decision picks `first`'s tool, the call step writes
    `first`'s arguments and then each of `more` as a further call, then it speaks."""

    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return f'{first[0]}"'
        if prompt.endswith('"arguments": '):
            text = f"{json.dumps(first[1])}}}\n</tool_call>"
            for name, arguments in more:
                text += (
                    f'\n<tool_call>\n{{"name": "{name}", "arguments": {json.dumps(arguments)}}}'
                    "\n</tool_call>"
                )
            return text
        return "Let me check."

    return script


@pytest.mark.parametrize(
    ("said", "first", "further", "sent", "stopped"),
    [
        # m16 (session 11): the same lookup again, on the number already looked up
        ("How much did I pay for order 90875?", ("get_order_status", {"order_id": "90875"}),
         ("get_order_status", {"order_id": "90875"}), 1, "repeat"),
        # m17: after the caller's own lookup, an order nobody named
        ("When does the Denver store open?", ("get_store_hours", {"city": "Denver"}),
         ("get_order_status", {"order_id": "12345"}), 1, "invented"),
        # a second number said: the second lookup has it left
        ("Where are my orders 3931 and 15482?", ("get_order_status", {"order_id": "3931"}),
         ("get_order_status", {"order_id": "15482"}), 2, None),
        # a second city: not a number, never stopped at its name
        ("Store hours for Denver and Boston?", ("get_store_hours", {"city": "Denver"}),
         ("get_store_hours", {"city": "Boston"}), 2, None),
        # a number taken back left over: no call on it either way (dropped when complete)
        ("Order 8080, no, 8008. Shipped yet?", ("get_order_status", {"order_id": "8008"}),
         ("get_order_status", {"order_id": "8008"}), 1, "repeat"),
    ],
)  # fmt: skip
async def test_a_further_call_that_can_bring_nothing_ends_the_step_early(
    said, first, further, sent, stopped
):
    # The 1.5B wrote a second call after the one asked for (25-50 tokens, dropped once
    # complete) before the answer request could start (bench m16, m17; session 11).
    engine = ScriptedEngine(_calls_then(first, further))
    responder, reply, _ = await _respond(engine, _user(said))
    assert [(n, json.loads(a)) for _, n, a in reply.calls] == [first, further][:sent]
    assert responder.plan.further_call_stopped == stopped
    call_step = engine.written[1]
    if stopped == "repeat":  # at the further call's name: none of its arguments written
        assert call_step.count('"arguments"') == 0 and further[0] in call_step
    elif stopped == "invented":  # inside the made-up number
        assert "12345" not in call_step and '"order_id": "' in call_step


# ------------------------------------------ a caller's number in an argument it does not fit

#: the phone profile's two lookups (their descriptions)
LOOKUPS: list[dict[str, Any]] = [
    {"type": "function", "function": {**t["function"], "description": d}}
    for t, d in (
        (_tool("lookup_order", order_number="the order number exactly as the caller gave it"),
         "Look up an order: its status, items, total and estimated delivery date."),
        (_tool("lookup_customer", phone_number="the caller's phone number as they said it"),
         "Find a customer account by phone number: name, store credit and recent orders."),
    )
]  # fmt: skip
#: bench y12 (session 11): "lookup" for sure, then "_order" 0.660 against "_customer" 0.331
Y12_STEPS = [
    {"after": "", "tokens": [["lookup", 0.993], ["reply", 0.001]]},
    {"after": "lookup", "tokens": [["_order", 0.660], ["_customer", 0.331]]},
]
Y12 = "My number's 555 808 6261, what orders do I have?"


def _misplacing_script(yes_to: set[str]):
    """A model that decides `lookup_order`, writes the caller's phone number as its order
    number, and says yes only to requests for what `yes_to`'s tools do."""
    purposes = {
        t["function"]["description"].split(":")[0].lower(): t["function"]["name"] for t in LOOKUPS
    }

    def script(prompt, grammar):
        if prompt.endswith(DECISION_PREFIX):
            return 'lookup_order"'
        if grammar == choice_grammar(["yes", "no"], closing=""):
            asked = re.search(r"Is that a request to (.+?)[:?]", prompt.split("<|im_start|>")[-2])
            assert asked is not None
            return "yes" if purposes[asked.group(1)] in yes_to else "no"
        if prompt.endswith('lookup_order", "arguments": '):
            return '{"order_number": "555 808 6261"}}\n</tool_call>'
        if prompt.endswith(ASK_LEAD):
            return " the order number?"
        raise AssertionError(f"no other step expected: {prompt[-80:]!r}")

    return script


async def test_a_phone_number_in_an_order_lookup_is_looked_up_as_a_phone_number():
    # y12: the runner-up of the decision is the tool the number fits: called at once,
    # its only argument written without a model step
    engine = ScriptedEngine(_misplacing_script({"lookup_order"}), alternatives=Y12_STEPS)
    responder, reply, deltas = await _respond(engine, _user(Y12), tools=LOOKUPS)
    assert [(n, json.loads(a)) for _, n, a in reply.calls] == [
        ("lookup_customer", {"phone_number": "555 808 6261"})
    ]
    assert [d["tool_calls"][0]["function"].get("name") for d in deltas[:1]] == ["lookup_customer"]
    assert responder.plan.misplaced == ("lookup_order", "order_number", "lookup_customer")
    assert responder.plan.decision == "lookup_customer"
    assert responder.plan.margin_check == [("lookup_order", True)]
    assert len(engine.steps) == 3  # decision, its check, the dropped call: no step more
    assert not reply.text


@pytest.mark.parametrize(("yes_to", "called"), [({"lookup_customer"}, True), (set(), False)])
async def test_a_tool_the_decision_did_not_put_near_is_taken_on_the_models_yes(yes_to, called):
    clear = [{"after": "lookup", "tokens": [["_order", 0.95], ["_customer", 0.02]]}]
    engine = ScriptedEngine(_misplacing_script(yes_to), alternatives=clear)
    responder, reply, _ = await _respond(engine, _user(Y12), tools=LOOKUPS)
    yes_no = [s for s in engine.steps if s[1] == choice_grammar(["yes", "no"], closing="")]
    assert "find a customer account by phone number" in yes_no[0][0].rsplit("system", 1)[1]
    if called:
        assert [n for _, n, _ in reply.calls] == ["lookup_customer"]
        assert responder.plan.misplaced == ("lookup_order", "order_number", "lookup_customer")
    else:
        # the number is not the order's: the call stays dropped and the agent asks for it
        assert not reply.calls
        assert reply.text == "Could you tell me the order number?"
        assert responder.plan.misplaced == ("lookup_order", "order_number", None)
        assert responder.plan.dropped_ungrounded == [("lookup_order", ["order_number"])]
        assert responder.plan.in_callers_words is None  # not decoded again on its spans


async def test_a_number_called_by_its_arguments_name_is_sent_where_the_model_put_it():
    engine = ScriptedEngine(
        _decision_then("lookup_order", '{"order_number": "4417"}}\n</tool_call>'),
        alternatives=Y12_STEPS,
    )
    responder, reply, _ = await _respond(engine, _user("Where's order 4417?"), tools=LOOKUPS)
    assert [n for _, n, _ in reply.calls] == ["lookup_order"]
    assert responder.plan.misplaced is None


# ------------------------------------- a number the caller named and no call used


def _after_refund(said: str, result: dict | None = None) -> list[dict]:
    call = {"id": "c1", "type": "function",
            "function": {"name": "get_refund_status", "arguments": '{"order_id": "8427"}'}}  # fmt: skip
    result = result or {"order_id": "8427", "refund": "paid on November 20", "amount": "$38.75"}
    return _user(said) + [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1",
         "content": json.dumps({"status": "resolved", "result": result})},
    ]  # fmt: skip


def _after_refund_and_balance(said: str, balance: str) -> list[dict]:
    """`_after_refund`, then the added call's result: account 31580's `balance`."""
    call = {"id": "c2", "type": "function",
            "function": {"name": "get_account_balance", "arguments": '{"account_number": "31580"}'}}  # fmt: skip
    result = {"account_number": "31580", "balance": balance}
    return _after_refund(said) + [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c2",
         "content": json.dumps({"status": "resolved", "result": result})},
    ]  # fmt: skip


async def test_a_number_the_caller_named_for_a_second_lookup_gets_its_call_before_any_answer():
    # bench z12 (session 12, 0.5B): one call made, then "the balance on account 31580 is
    # $38.75", the refund's amount. The balance's call is made first, with no model step.
    said = "Has the refund for order 8427 gone through, and what's the balance on account 31580?"
    engine = ScriptedEngine(_decision_then("reply", "The balance is $38.75."), p_next=0.01)
    responder, reply, deltas = await _respond(engine, _after_refund(said), tools=SERVICE_TOOLS)
    assert [(name, json.loads(args)) for _, name, args in reply.calls] == [
        ("get_account_balance", {"account_number": "31580"})
    ]
    assert not reply.text and not engine.steps
    assert responder.plan.unused_number_call == ("get_account_balance", "account_number")
    assert deltas[0]["tool_calls"][0]["function"]["name"] == "get_account_balance"


@pytest.mark.parametrize(
    "said",
    [
        "Has the refund for order 8427 gone through?",  # every number used
        "Has the refund for order 8472, sorry, 8427 gone through?",  # 8472 taken back
        "Has the refund for order 8427 gone through? I paid it on 11 20.",  # no label fits
        # the label fits several tools, and the caller names none of them
        "Has the refund for order 8427 gone through, and what about order 5521?",
    ],
)
async def test_no_call_is_added_when_every_named_number_was_used_or_fits_no_named_tool(said):
    engine = ScriptedEngine(_decision_then("reply", "The refund was paid."), p_next=0.01)
    responder, reply, _ = await _respond(engine, _after_refund(said), tools=SERVICE_TOOLS)
    assert not reply.calls and reply.text.startswith("The refund was paid.")
    assert responder.plan.unused_number_call is None


async def test_after_the_added_call_s_result_the_answer_follows():
    said = "Has the refund for order 8427 gone through, and what's the balance on account 31580?"
    messages = _after_refund_and_balance(said, "$120.00")
    answer = "The refund was paid on November 20, and the balance is $120.00."
    engine = ScriptedEngine(_decision_then("reply", answer), p_next=0.01)
    responder, reply, _ = await _respond(engine, messages, tools=SERVICE_TOOLS)
    assert not reply.calls and reply.text.startswith(answer)
    assert responder.plan.unused_number_call is None


async def test_a_number_told_about_one_result_that_another_result_holds_is_corrected():
    # bench z12 (session 13, 0.5B): with both results in hand, "the balance on account
    # 31580 is $38.75", the refund's amount. The balance is said instead, and the sentence
    # that would have told the balance after the answer is not needed.
    said = "Has the refund for order 8427 gone through, and what's the balance on account 31580?"
    messages = _after_refund_and_balance(said, "$220.00")
    answer = "The refund was paid on November 20, and the balance on account 31580 is $38.75."
    engine = ScriptedEngine(_decision_then("reply", answer), p_next=0.01)
    responder, reply, _ = await _respond(engine, messages, tools=SERVICE_TOOLS)
    assert reply.text == answer.replace("$38.75", "$220.00")
    assert responder.plan.values_corrected == [("$38.75", "$220.00")]
    assert responder.plan.untold is None


def _after_order(said: str) -> list[dict]:
    call = {"id": "c1", "type": "function",
            "function": {"name": "get_order_status", "arguments": '{"order_id": "8154"}'}}  # fmt: skip
    result = {"order_id": "8154", "status": "shipped"}
    return _user(said) + [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1",
         "content": json.dumps({"status": "resolved", "result": result})},
    ]  # fmt: skip


async def test_a_name_the_caller_gave_for_a_second_lookup_gets_its_call_before_any_answer():
    # bench x03 (session 13, 0.5B): the order looked up, the store's hours not
    said = "Two things: how late is the Fresno store open, and what's going on with order 8154?"
    engine = ScriptedEngine(_decision_then("reply", "Order 8154 has shipped."), p_next=0.01)
    responder, reply, _ = await _respond(engine, _after_order(said))
    assert [(name, json.loads(args)) for _, name, args in reply.calls] == [
        ("get_store_hours", {"city": "Fresno"})
    ]
    assert not reply.text and not engine.steps
    assert responder.plan.unused_name_call == ("get_store_hours", "city")


@pytest.mark.parametrize(
    "said",
    [
        "What's going on with order 8154?",  # no name
        "This is Dana, what's going on with order 8154?",  # its clause names no tool
        "Is the store open on Sunday, and where is order 8154?",  # a day names no city
        # the name taken back: which one stands is the caller's to say
        "Is the Fresno store, no wait, the Tulsa store open, and where is order 8154?",
    ],
)
async def test_no_call_is_added_for_a_name_whose_clause_names_no_lookup(said):
    engine = ScriptedEngine(_decision_then("reply", "Order 8154 has shipped."), p_next=0.01)
    responder, reply, _ = await _respond(engine, _after_order(said))
    assert not reply.calls and reply.text.startswith("Order 8154 has shipped.")
    assert responder.plan.unused_name_call is None


@pytest.mark.parametrize(
    "said",
    [
        "How late is the Fresno store open, and what's going on with order 8154?",
        # the clause a call of the tool served: the model's own answer stands
        "How late are the Tulsa and Fresno stores open, and where is order 8154?",
    ],
)
async def test_no_call_is_added_for_a_name_a_call_used_or_a_clause_it_served(said):
    messages = _after_order(said)
    city = "Tulsa" if "Tulsa" in said else "Fresno"
    call = {"id": "c2", "type": "function",
            "function": {"name": "get_store_hours", "arguments": json.dumps({"city": city})}}  # fmt: skip
    messages += [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c2",
         "content": json.dumps({"status": "resolved", "result": {"hours": "9 am to 7 pm"}})},
    ]  # fmt: skip
    engine = ScriptedEngine(_decision_then("reply", "Order 8154 has shipped."), p_next=0.01)
    responder, reply, _ = await _respond(engine, messages)
    assert not reply.calls and responder.plan.unused_name_call is None


async def test_no_call_is_added_by_rule_on_a_tool_that_writes_for_a_name():
    said = "How late is the Fresno store open, and what's going on with order 8154?"
    tools = [TOOLS[0], _tool("book_store_visit", city="the city of the store")]
    engine = ScriptedEngine(_decision_then("reply", "Order 8154 has shipped."), p_next=0.01)
    responder, reply, _ = await _respond(engine, _after_order(said), tools=tools)
    assert not reply.calls and responder.plan.unused_name_call is None


async def test_no_write_is_added_by_rule_for_a_number_the_caller_named():
    tools = [*SERVICE_TOOLS, _tool("cancel_order", order_id="the order number to cancel")]
    said = "Has the refund for order 8427 gone through? And cancel order 5521."
    engine = ScriptedEngine(_decision_then("reply", "The refund was paid."), p_next=0.01)
    responder, reply, _ = await _respond(engine, _after_refund(said), tools=tools)
    assert not reply.calls and responder.plan.unused_number_call is None
