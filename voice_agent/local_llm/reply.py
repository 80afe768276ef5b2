"""Turn decoded text into OpenAI message deltas: content and finished tool calls.

`ReplyAssembler.feed(piece)` returns the deltas to send now and whether
decoding should go on. Policy:

- content is passed on as soon as the parser releases it;
- a tool call is sent when its JSON object is complete and its arguments
  parse: one delta with index, id, type and name, then one with the
  arguments. The client cannot start a call before its JSON is complete,
  so nothing is lost by not streaming half-written arguments, and a call
  that would have to be retracted is never sent;
- a call identical (same name, same arguments) to an earlier one in the same
  reply, or to one already answered in the conversation, ends decoding
  unsent: small models loop on their last call, and a voice agent never
  wants the same read twice in one breath (the server then asks for a
  text-only reply when nothing was sent yet: see `server`);
- a call cut off by max_tokens is dropped (its arguments are not JSON);
- a call that `check_call` finds ungrounded (arguments nobody gave: see
  `grounding`) is not sent; it is kept in `ungrounded` so the server can
  have the agent ask for what is missing;
- a call that `is_reuse` rejects (it brings nothing the caller asks for now:
  it only repeats values that earlier calls of this turn already used, a
  second tool on the same order number that nobody asked for; or it uses
  values of earlier turns only, beside a call on the caller's latest words)
  is not sent either; it is kept in `reused`;
- once a call was sent, the first further call dropped for either reason ends
  decoding (quick7, issue 11): the 1.5B, asked two things, wrote them and
  went on with calls nobody asked for (a call-back to "123-456-7890", the same
  order on another tool, the call before it again), ~30 tokens each before the
  first word of the answer (bench h03, h15: 130 and 108 tokens for two calls).
  Before anything was sent, decoding goes on: a call on a number the caller
  took back may come before the right one (u04). The cost: a call the caller
  did ask for, written after such a one, is lost; in the traces (h03, h15,
  u04, b03) the asked calls came first, or before anything was sent;
- a dropped call with an argument `is_invented` finds made up (nothing of its
  value was said: `grounding.invented_arguments`) ends decoding even before
  anything was sent (notool9, session 9): no later call can repair it, and
  the 1.5B, asked "Could you order me a taxi to the station?", looked up an
  invented order "12345" and went on with calls on a customer nobody named,
  41-75 tokens (3.4-5.6 s) before the caller heard "Sorry, I can't help"
  (bench e22). A number taken back, or a value reworded, is not invented:
  decoding goes on after those as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voice_agent.local_llm.output_parser import (
    ParseEvent,
    TextDelta,
    ToolCallFinished,
    ToolCallStreamParser,
)
from voice_agent.local_llm.protocol import tool_call_arguments, tool_call_start


@dataclass
class ReplyAssembler:
    """Collects one reply; `text` and `calls` hold what was sent."""

    parser: ToolCallStreamParser
    answered: set[str] = field(default_factory=set)  # keys of calls answered in the history
    text: str = ""
    repeated_answered_call: bool = False  # stopped on a call the history already answers
    calls: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, arguments)
    #: (name, arguments) -> names of the arguments not grounded in the conversation
    check_call: Callable[[str, str], list[str]] | None = None
    ungrounded: list[tuple[str, list[str]]] = field(default_factory=list)  # (name, arguments)
    #: the ungrounded calls as written: (name, arguments text), in `ungrounded`'s order
    ungrounded_calls: list[tuple[str, str]] = field(default_factory=list)
    #: (name, arguments) -> True when the call brings no value of its own (see `respond`)
    is_reuse: Callable[[str, str], bool] | None = None
    reused: list[str] = field(default_factory=list)  # names of the calls not sent for that
    #: (name, arguments, the ungrounded ones) -> True when one of them is made up
    is_invented: Callable[[str, str, list[str]], bool] | None = None
    stopped_at_invented: bool = False  # decoding ended at a dropped call with invented values
    text_allowed: bool = True  # False while only calls may come out (stray text is dropped)
    #: True while the responder sends its own words (a lead's trailing space): passed on
    #: as they are, not through the parser, which holds trailing whitespace back until
    #: it knows no call follows
    verbatim: bool = False
    _seen: set[str] = field(default_factory=set)
    _sent_index: int = 0

    def forget_ungrounded(self) -> None:
        """Clear the ungrounded calls (before the same call is decoded again)."""
        for name, arguments in self.ungrounded_calls:
            key = _key(name, arguments)
            self._seen.discard(key or "")
        self.ungrounded.clear()
        self.ungrounded_calls.clear()

    def drop_invented(self, name: str, arguments: str, argument: str) -> None:
        """Record a call whose decoding was stopped at `argument`, a value made up
        (`argument_watch`), with `arguments` the values complete before it: it is not
        sent, and it is kept in `ungrounded` like a call checked whole."""
        missing = self.check_call(name, arguments) if self.check_call else []
        if argument not in missing:
            missing = [*missing, argument]
        self.ungrounded.append((name, missing))
        self.ungrounded_calls.append((name, arguments))
        self.stopped_at_invented = True

    def feed(self, piece: str) -> tuple[list[dict[str, Any]], bool]:
        """Deltas to send for this piece, and False when decoding should stop."""
        if self.verbatim:
            self.text += piece
            return ([{"content": piece}] if piece else []), True
        return self._convert(self.parser.feed(piece))

    def finish(self) -> list[dict[str, Any]]:
        """Deltas for whatever the end of the reply releases."""
        deltas, _ = self._convert(self.parser.finish())
        return deltas

    @property
    def sent_nothing(self) -> bool:
        """True while no content and no call has been sent."""
        return not self.text and not self.calls

    def finish_reason(self, engine_reason: str) -> str:
        """OpenAI finish_reason: "tool_calls" when calls were sent, else the engine's."""
        if self.calls and engine_reason != "length":
            return "tool_calls"
        return "stop" if engine_reason == "cancelled" else engine_reason

    def _convert(self, events: list[ParseEvent]) -> tuple[list[dict[str, Any]], bool]:
        deltas: list[dict[str, Any]] = []
        for event in events:
            if isinstance(event, TextDelta):
                if not self.text_allowed:
                    continue
                self.text += event.text
                deltas.append({"content": event.text})
            elif isinstance(event, ToolCallFinished):
                key = _call_key(event)
                if key is None:
                    continue  # truncated: arguments are not JSON
                if key in self._seen or key in self.answered:
                    self.repeated_answered_call = key in self.answered
                    return deltas, False
                self._seen.add(key)
                missing = self.check_call(event.name, event.arguments) if self.check_call else []
                if missing:
                    self.ungrounded.append((event.name, missing))
                    self.ungrounded_calls.append((event.name, event.arguments))
                    if self.calls:
                        return deltas, False  # a further call nobody asked for: see below
                    if self.is_invented is not None and self.is_invented(
                        event.name, event.arguments, missing
                    ):
                        self.stopped_at_invented = True
                        return deltas, False
                    continue
                if self.is_reuse is not None and self.is_reuse(event.name, event.arguments):
                    self.reused.append(event.name)
                    if self.calls:
                        return deltas, False
                    continue
                index = self._sent_index
                self._sent_index += 1
                self.calls.append((event.call_id, event.name, event.arguments))
                deltas.append(tool_call_start(index, event.call_id, event.name))
                deltas.append(tool_call_arguments(index, event.arguments))
        return deltas, True


def answered_calls(messages: Sequence[Mapping[str, Any]]) -> set[str]:
    """Keys of the assistant tool calls in `messages` that a tool message answers."""
    answered_ids = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    keys: set[str] = set()
    for message in messages:
        for call in message.get("tool_calls") or () if message.get("role") == "assistant" else ():
            function = call.get("function") or {}
            arguments = function.get("arguments", "")
            if call.get("id") in answered_ids and isinstance(arguments, str):
                key = _key(str(function.get("name")), arguments)
                if key is not None:
                    keys.add(key)
    return keys


def _call_key(call: ToolCallFinished) -> str | None:
    return _key(call.name, call.arguments)


def _key(name: str, arguments_text: str) -> str | None:
    try:
        arguments = json.loads(arguments_text) if arguments_text.strip() else {}
    except json.JSONDecodeError:
        return None
    return json.dumps([name, arguments], sort_keys=True)
