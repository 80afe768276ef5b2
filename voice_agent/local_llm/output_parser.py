"""Split a streamed model reply into plain text and tool calls, incrementally.

The model writes Qwen's format (see `grammar`): text, then zero or more
calls, each a JSON object ``{"name": N, "arguments": A}`` either wrapped as
``<tool_call>\\n…\\n</tool_call>`` or, when `bare_json_calls` is on (the
grammar is active, so text never contains ``{``), written bare. `feed`
takes text pieces as they are decoded and returns events as early as they
are certain:

- text is released as soon as it cannot be the start of a call; whitespace
  is held until more text follows (so the newline before a call, or at the
  end, never becomes content);
- a call is announced (`ToolCallStarted`) as soon as its name is complete;
  its arguments stream as `ToolCallArgumentsDelta`; the call is finished
  (`ToolCallFinished`, with the complete arguments text) the moment its JSON
  object closes — a JSON scanner tracks nesting, so no lookahead is needed.

A call object in another layout (``arguments`` before ``name``) is accepted
when it closes; an object without a name degrades to text.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from voice_agent.local_llm.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

_CALL_HEAD_RE = re.compile(r'^\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*(?=\S)')


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStarted:
    index: int
    call_id: str
    name: str


@dataclass(frozen=True)
class ToolCallArgumentsDelta:
    index: int
    text: str


@dataclass(frozen=True)
class ToolCallFinished:
    index: int
    call_id: str
    name: str
    arguments: str


ParseEvent = TextDelta | ToolCallStarted | ToolCallArgumentsDelta | ToolCallFinished


def new_call_id() -> str:
    """A fresh OpenAI-style tool call id, ``call_`` and 24 hex digits."""
    return "call_" + secrets.token_hex(12)


@dataclass
class _JsonScanner:
    """Tracks the nesting of a JSON object being written, character by character."""

    depth: int = 0
    in_string: bool = False
    escaped: bool = False

    def step(self, ch: str) -> bool:
        """Advance over `ch`; True when it closed the outermost object."""
        if self.in_string:
            if self.escaped:
                self.escaped = False
            elif ch == "\\":
                self.escaped = True
            elif ch == '"':
                self.in_string = False
        elif ch == '"':
            self.in_string = True
        elif ch in "{[":
            self.depth += 1
        elif ch in "}]":
            self.depth -= 1
            return self.depth == 0
        return False


@dataclass
class _OpenCall:
    tagged: bool  # opened by <tool_call> (expects </tool_call> after the object)
    obj: str = ""  # the call object's text so far, from its "{"
    scanner: _JsonScanner = field(default_factory=_JsonScanner)
    index: int = -1
    call_id: str = ""
    name: str | None = None
    args_start: int = 0  # offset of the arguments in `obj`, once the name is known
    emitted: int = 0  # offset in `obj` up to which arguments were emitted


@dataclass
class ToolCallStreamParser:
    """Incremental text/tool-call splitter; one instance per reply.

    `feed(piece)` and, at the end, `finish()` return the events in order;
    `calls` lists the finished calls. `bare_json_calls`: a ``{`` in the text
    starts a call (set it only when a grammar keeps ``{`` out of text).
    """

    bare_json_calls: bool = False
    make_call_id: Callable[[], str] = new_call_id
    calls: list[ToolCallFinished] = field(default_factory=list)
    _pending: str = ""  # received, not yet consumed
    _started_text: bool = False
    _call: _OpenCall | None = None
    _await_close_tag: bool = False
    _n_started: int = 0

    def feed(self, piece: str) -> list[ParseEvent]:
        """Consume one decoded piece; return the events it makes certain."""
        self._pending += piece
        events: list[ParseEvent] = []
        self._advance(events, final=False)
        return events

    def finish(self) -> list[ParseEvent]:
        """End of the reply: flush held text, close an unterminated call."""
        events: list[ParseEvent] = []
        self._advance(events, final=True)
        call = self._call
        if call is not None:  # truncated mid-call (max_tokens)
            if call.name is None:
                pass  # a call cut before its name: nothing to run, and never text to speak
            else:
                self._finish_call(events, call.obj[call.args_start :].rstrip())
            self._call = None
        return events

    # -- internals -----------------------------------------------------

    def _advance(self, events: list[ParseEvent], final: bool) -> None:
        while self._pending:
            if self._call is not None:
                self._advance_call(events)
            elif self._await_close_tag:
                if not self._skip_close_tag(final):
                    return
            elif not self._advance_text(events, final):
                return

    def _advance_text(self, events: list[ParseEvent], final: bool) -> bool:
        """Release text up to the next call start; True when a call was opened."""
        text = self._pending
        tag = text.find(TOOL_CALL_OPEN)
        brace = text.find("{") if self.bare_json_calls else -1
        if tag >= 0 and (brace < 0 or tag < brace):
            self._emit_text(events, text[:tag].rstrip())
            rest = text[tag + len(TOOL_CALL_OPEN) :]
            opening = rest.lstrip()
            if not opening:
                self._pending = TOOL_CALL_OPEN  # wait for the object's "{"
                return False
            if not opening.startswith("{"):
                self._emit_text(events, TOOL_CALL_OPEN)  # not a call after all
                self._pending = rest
                return True
            self._call, self._pending = _OpenCall(tagged=True), opening
            return True
        if brace >= 0:
            self._emit_text(events, text[:brace].rstrip())
            self._call, self._pending = _OpenCall(tagged=False), text[brace:]
            return True
        if final:
            self._emit_text(events, text.rstrip())
            self._pending = ""
            return False
        keep = _partial_suffix(text, TOOL_CALL_OPEN)
        body = text[: len(text) - keep]
        released = body.rstrip()
        self._emit_text(events, released)
        self._pending = text[len(released) :]
        return False

    def _advance_call(self, events: list[ParseEvent]) -> None:
        call = self._call
        assert call is not None
        closed_at = -1
        for i, ch in enumerate(self._pending):
            if call.scanner.step(ch):
                closed_at = i
                break
        if closed_at < 0:
            call.obj += self._pending
            self._pending = ""
        else:
            call.obj += self._pending[: closed_at + 1]
            self._pending = self._pending[closed_at + 1 :]
        if call.name is None:
            head = _CALL_HEAD_RE.match(call.obj)
            if head is not None:
                call.name = json.loads(f'"{head.group(1)}"')
                call.index, call.call_id = self._n_started, self.make_call_id()
                self._n_started += 1
                call.args_start = call.emitted = head.end()
                events.append(ToolCallStarted(call.index, call.call_id, call.name))
        if closed_at >= 0:
            self._close_call(events)
        elif call.name is not None:
            safe = len(call.obj.rstrip())
            if safe > call.emitted:
                events.append(ToolCallArgumentsDelta(call.index, call.obj[call.emitted : safe]))
                call.emitted = safe

    def _close_call(self, events: list[ParseEvent]) -> None:
        call = self._call
        assert call is not None
        self._await_close_tag = call.tagged
        if call.name is not None:
            # obj ends with the wrapper's "}": the arguments are what precedes it
            self._finish_call(events, call.obj[call.args_start : -1].rstrip())
        else:
            self._call = None
            self._close_unusual(events, call)
        self._call = None

    def _finish_call(self, events: list[ParseEvent], arguments: str) -> None:
        call = self._call
        assert call is not None and call.name is not None
        remainder = arguments[call.emitted - call.args_start :]
        if remainder:
            events.append(ToolCallArgumentsDelta(call.index, remainder))
        finished = ToolCallFinished(call.index, call.call_id, call.name, arguments)
        self.calls.append(finished)
        events.append(finished)

    def _close_unusual(self, events: list[ParseEvent], call: _OpenCall) -> None:
        """An object whose head did not match: accept {name, arguments} in any order, else text."""
        try:
            obj = json.loads(call.obj)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("name"), str):
            args = obj.get("arguments", {})
            arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            index, call_id = self._n_started, self.make_call_id()
            self._n_started += 1
            events.append(ToolCallStarted(index, call_id, obj["name"]))
            events.append(ToolCallArgumentsDelta(index, arguments))
            finished = ToolCallFinished(index, call_id, obj["name"], arguments)
            self.calls.append(finished)
            events.append(finished)
        else:
            self._await_close_tag = False
            self._emit_text(events, (TOOL_CALL_OPEN + "\n" if call.tagged else "") + call.obj)

    def _skip_close_tag(self, final: bool) -> bool:
        """Drop whitespace and ``</tool_call>`` after a tagged call; False while undecided."""
        rest = self._pending.lstrip()
        if rest.startswith(TOOL_CALL_CLOSE):
            self._pending = rest[len(TOOL_CALL_CLOSE) :]
            self._await_close_tag = False
        elif rest and not TOOL_CALL_CLOSE.startswith(rest) or final:
            self._await_close_tag = False  # tag missing: carry on with what follows
        else:
            return False
        return True

    def _emit_text(self, events: list[ParseEvent], text: str) -> None:
        if not self._started_text:
            text = text.lstrip()
        if text:
            self._started_text = True
            events.append(TextDelta(text))


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `marker`."""
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0
