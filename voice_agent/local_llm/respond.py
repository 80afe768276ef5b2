"""Decide, then call or speak: how the local server answers a request with tools.

A small model is weak at *deciding* to call a tool in free text (it describes
the call, promises to check and does not, or answers from nowhere), but good
at choosing from a short list and at filling a schema under a grammar. So a
reply is made in explicit steps, all on one KV cache:

1. **Decision.** The prompt is continued with ``<tool_call>\\n{"name": "`` and
   the grammar allows only the tool names and `REPLY` (a pseudo-tool listed
   with the tools in the system turn, described as "speak to the caller").
   Decoding is greedy and stops as soon as the name is unambiguous (usually
   the first token), so the decision costs the few tokens of that prefix,
   evaluated with the new part of the prompt.
2. **Call(s).** For a tool, the call is continued under that tool's
   JSON-schema grammar, greedily; up to `MAX_CALLS_PER_REPLY` - 1 further
   calls may follow, then the turn ends. No text can follow. Each call is
   checked (`grounding.ungrounded_arguments`) before it is sent: one whose
   arguments the caller never gave is not sent, nor one that only reuses
   values an earlier call of this turn used (`_only_reuses`).
3. **Speech.** For `REPLY` (or when every call was dropped), the reply is
   generated from the plain prompt under `grammar.speech_grammar`: no markup,
   no tool names, no number the conversation does not contain. When calls
   were dropped as ungrounded, a system note asks the model to ask the
   caller for what is missing.

Everything leaves as standard streamed ``tool_calls`` or content deltas;
the client sees an ordinary OpenAI server. ``tool_choice="none"`` goes
straight to speech, ``"required"`` decides among the tools only, a named
function skips the decision; without tools the model speaks unconstrained.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from voice_agent.local_llm.chat_format import render_messages
from voice_agent.local_llm.engine import GenerationStats, LlamaEngine, SamplingParams
from voice_agent.local_llm.grammar import (
    calls_grammar,
    check_grammar,
    choice_grammar,
    forced_tool_name,
    speech_grammar,
    tool_names,
)
from voice_agent.local_llm.grounding import (
    conversation_numbers,
    grounding_sources,
    ungrounded_arguments,
)
from voice_agent.local_llm.output_parser import ToolCallStreamParser
from voice_agent.local_llm.protocol import ChatRequest
from voice_agent.local_llm.reply import ReplyAssembler, answered_calls

#: The decision's option for "no tool: speak to the caller".
REPLY = "reply"
#: The decision's option for "no tool does what the caller asks".
CANNOT = "cannot_do"
_SPEECH_OPTIONS: tuple[dict[str, Any], ...] = (
    {
        "type": "function",
        "function": {
            "name": REPLY,
            "description": (
                "Speak to the caller without looking anything up: greetings and small talk, "
                "answering from the function results already in this conversation, or asking "
                "for details the caller has not given yet."
            ),
            "parameters": {"type": "object", "properties": {}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": CANNOT,
            "description": (
                "The caller asks about something that none of the other functions can look "
                "up or do."
            ),
            "parameters": {"type": "object", "properties": {}},
        },
    },
)
#: What the speech step is told after `CANNOT` (facts it lacks are never guessed).
CANNOT_NOTE = (
    "None of your functions can answer or do what the caller just asked, so you do not know "
    "it. Say in one short sentence that you can't help with that here, then say briefly what "
    "you can help with. Do not guess."
)
#: What the decision step continues the prompt with (Qwen's call format up to the name).
DECISION_PREFIX = '<tool_call>\n{"name": "'
#: A caller asks for a few things in one breath, never more: bounds a model
#: that keeps adding calls (the 1.5B once looked up two cities nobody named).
MAX_CALLS_PER_REPLY = 4
#: Tokens the decision may take (tool names are a few tokens; greedy, so it is deterministic).
_DECISION_MAX_TOKENS = 24

OnText = Callable[[str], Awaitable[bool]]


@dataclass
class ResponsePlan:
    """What the steps decided and what they cost (reported in the server's timings)."""

    decision: str | None = None
    decision_s: float | None = None
    dropped_ungrounded: list[tuple[str, list[str]]] | None = None
    asked: bool = False


def _greedy(sampling: SamplingParams, max_tokens: int | None) -> SamplingParams:
    return replace(sampling, temperature=0.0, top_p=1.0, max_tokens=max_tokens, stop=())


def _schemas(tools: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {
        str(t["function"]["name"]): t["function"].get("parameters") or {}
        for t in tools
        if isinstance(t.get("function"), Mapping)
    }


def _describe_missing(tool: Mapping[str, Any] | None, names: list[str]) -> str:
    props = ((tool or {}).get("parameters") or {}).get("properties") or {}
    parts = []
    for name in names:
        description = str((props.get(name) or {}).get("description") or "").split(",")[0].strip()
        parts.append(description or name.replace("_", " "))
    return " and ".join(parts)


def ask_note(dropped: list[tuple[str, list[str]]], tools: Sequence[Mapping[str, Any]]) -> str:
    """The system note that turns a dropped call into a question for the caller.

    The decision may also have picked a tool for a request it does not serve
    (a price, when only orders can be looked up), so the note names what the
    tool does and leaves the model the honest way out.
    """
    by_name = {str(t["function"]["name"]): t["function"] for t in tools}
    needs = []
    for name, missing in dropped:
        function = by_name.get(name) or {}
        purpose = str(function.get("description") or name.replace("_", " ")).rstrip(".")
        needs.append(
            f"to {purpose[:1].lower()}{purpose[1:]}, you need {_describe_missing(function, missing)}"
        )
    joined = "; ".join(needs)
    return (
        f"{joined[:1].upper()}{joined[1:]}. The caller has not told you that: never guess it. "
        "If that is what the caller wants, ask for what is missing in one short question. "
        "If the caller wants something else that none of your functions does, say that you "
        "can't help with that here."
    )


def _argument_values(arguments_text: str) -> set[str]:
    """The string and number values of a call's arguments, normalised (case, spacing)."""
    try:
        arguments = json.loads(arguments_text) if arguments_text.strip() else {}
    except json.JSONDecodeError:
        return set()
    values: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            text = " ".join(str(value).lower().split())
            if text:
                values.add(text)

    if isinstance(arguments, dict):
        walk(arguments)
    return values


def _values_used_this_turn(messages: Sequence[Mapping[str, Any]]) -> set[str]:
    """Argument values of the calls made since the caller last spoke."""
    values: set[str] = set()
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping) and function.get("name") != "get_result":
                    values |= _argument_values(str(function.get("arguments", "")))
    return values


def _only_reuses(arguments_text: str, used: set[str]) -> bool:
    """True when every value of the call was already used by a call of this turn.

    A value the caller said once serves one request: the 1.5B, asked about a
    refund for order 2290, also looked up and *cancelled* order 2290. A call
    with no values (no arguments) is never a reuse.
    """
    values = _argument_values(arguments_text)
    return bool(values) and values <= used


def _combine(total: GenerationStats | None, step: GenerationStats) -> GenerationStats:
    if total is None:
        return step
    total.completion_tokens += step.completion_tokens
    total.total_s += step.total_s
    total.finish_reason = step.finish_reason
    total.extra.update(step.extra)
    return total


class Responder:
    """Runs the steps for one request; `reply` collects and converts what is said and called."""

    def __init__(self, engine: LlamaEngine, chat: ChatRequest, reply: ReplyAssembler) -> None:
        self.engine = engine
        self.chat = chat
        self.reply = reply
        self.plan = ResponsePlan()
        self._tools = chat.tools
        schemas = _schemas(chat.tools)
        call_sources = grounding_sources(chat.messages, include_system=False)
        reply.check_call = lambda name, arguments: ungrounded_arguments(
            arguments, schemas.get(name), call_sources
        )
        turn_values = _values_used_this_turn(chat.messages)
        reply.is_reuse = lambda name, arguments: _only_reuses(
            arguments, turn_values | {v for _, _, a in reply.calls for v in _argument_values(a)}
        )
        reply.answered = answered_calls(chat.messages)
        self._numbers = conversation_numbers(grounding_sources(chat.messages))
        names = set(tool_names(chat.tools)) if chat.tools else set()
        #: A fresh turn (the caller spoke last), not a follow-up on tool results.
        self._fresh_turn = bool(chat.messages) and chat.messages[-1].get("role") == "user"
        # A tool of the caller's own with the same name wins: that speech option is not
        # offered. The list in the system turn never changes between requests (the KV
        # cache keeps it); after tool results a tool was relevant, so the decision does
        # not offer "cannot do" then.
        self._speech_options = [o for o in _SPEECH_OPTIONS if o["function"]["name"] not in names]
        self._decision_speech = [
            str(o["function"]["name"])
            for o in self._speech_options
            if self._fresh_turn or o["function"]["name"] != CANNOT
        ]

    def prompt(self, extra_system: str | None = None) -> str:
        """The ChatML prompt: the request's messages, tools plus `REPLY` listed, results readable."""
        messages = list(self.chat.messages)
        if extra_system:
            messages.append({"role": "system", "content": extra_system})
        listed = [*self._tools, *self._speech_options] if self._tools else None
        return render_messages(messages, listed, readable_results=True)

    async def run(self, on_text: OnText) -> GenerationStats:
        chat = self.chat
        if not self._tools:
            return await self.engine.generate(
                render_messages(chat.messages, None), chat.sampling, None, on_text
            )
        names = tool_names(self._tools)
        forced = forced_tool_name(chat.tool_choice)
        if chat.tool_choice == "none":
            return await self._speak(on_text, None, None)
        prompt = self.prompt()
        if forced is not None:
            choice = forced
            stats = None
        else:
            options = names if chat.tool_choice == "required" else [*names, *self._decision_speech]
            choice, stats = await self._decide(prompt, options)
        if choice == REPLY:
            return await self._speak(on_text, None, stats)
        if choice == CANNOT:
            return await self._speak(on_text, CANNOT_NOTE, stats)
        more = MAX_CALLS_PER_REPLY - 1 if chat.parallel_tool_calls and forced is None else 0
        stats = await self._call(prompt, choice, more, on_text, stats)
        reply = self.reply
        reply.parser = ToolCallStreamParser(bare_json_calls=True)  # nothing of the calls is text
        if not reply.sent_nothing:
            return stats
        note = None
        if reply.ungrounded and self._fresh_turn:
            # Even a forced or required call: asking beats inventing the arguments.
            self.plan.dropped_ungrounded = list(reply.ungrounded)
            self.plan.asked = True
            note = ask_note(reply.ungrounded, self._tools)
        elif forced is not None or chat.tool_choice == "required":
            return stats
        reply.repeated_answered_call = False
        return await self._speak(on_text, note, stats)

    async def _decide(self, prompt: str, options: list[str]) -> tuple[str, GenerationStats]:
        started = time.monotonic()
        chosen: list[str] = []

        def unique(text: str) -> bool:
            matching = [o for o in options if (o + '"').startswith(text)]
            if len(matching) == 1:
                chosen[:] = matching
                return True
            return False

        async def ignore(_: str) -> bool:
            return True

        grammar = choice_grammar(options)
        stats = await self.engine.generate(
            prompt + DECISION_PREFIX,
            _greedy(self.chat.sampling, _DECISION_MAX_TOKENS),
            grammar,
            ignore,
            until=unique,
        )
        choice = chosen[0] if chosen else options[-1]
        self.plan.decision = choice
        self.plan.decision_s = time.monotonic() - started
        stats.extra["decision"] = choice
        stats.extra["decision_ms"] = round(self.plan.decision_s * 1e3, 1)
        stats.completion_tokens = 0  # the decision is not part of the reply
        return choice, stats

    async def _call(
        self, prompt: str, name: str, more: int, on_text: OnText, stats: GenerationStats | None
    ) -> GenerationStats:
        head = f'{DECISION_PREFIX}{name}", "arguments": '
        # The parser reads the whole call; the head is what the prompt already says
        # (it only opens the call: no delta comes out of it). Text is never spoken here.
        self.reply.feed(head)
        self.reply.text_allowed = False
        grammar = calls_grammar(self._tools, name, more)
        check_grammar(grammar)
        step = await self.engine.generate(
            prompt + head,
            _greedy(self.chat.sampling, self.chat.sampling.max_tokens),
            grammar,
            on_text,
        )
        self.reply.text_allowed = True
        return _combine(stats, step)

    async def _speak(
        self, on_text: OnText, note: str | None, stats: GenerationStats | None
    ) -> GenerationStats:
        grammar = speech_grammar(self._numbers)
        step = await self.engine.generate(self.prompt(note), self.chat.sampling, grammar, on_text)
        return _combine(stats, step)
