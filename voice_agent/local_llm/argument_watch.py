"""Read a call's arguments as the model writes them; stop at a number nobody said.

A call step decodes ``{"order_number": "12345"}`` one token at a time (digits
are single tokens for Qwen). When the caller said no number, every digit of
that value is made up, and the call will be dropped whatever follows
(`grounding.ungrounded_arguments` grounds a number only when it was said); the
1.5B went on to the end of the call, and beyond it to calls nobody asked for,
before the caller heard "Sorry, I can't help" (bench e22, session 8).

`ArgumentWatch.push(piece)` follows the top-level object of one call's
arguments and returns the name of an argument as soon as its string value
holds a run of digits that is no run of digits said (`grounding.said_digits`):
no completion of that value can be grounded. It only does so when no later
argument the schema lets the model write could carry a value of the caller's
own (`_caller_valued`): what is written so far is then all that the agent's
next step could use (`respond.Responder._partly_given` reads a dropped call's
other arguments to tell a request that lacks details from one no tool serves).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from voice_agent.local_llm.grounding import said_digits, summary_kind
from voice_agent.local_llm.turn_history import argument_values

#: Separators inside one number as a caller says it ("555-201-7788", "4 4 1 7"):
#: `grounding`'s digit groups are joined across these.
_GROUP_SEPARATORS = " -.\u2013/"


def _caller_valued(prop: Any) -> bool:
    """Whether an argument may hold a value of the caller's own: not an enum or a
    constant, not the model's summary, not a flag."""
    if not isinstance(prop, Mapping):
        return True
    if {"enum", "const"} & set(prop) or summary_kind(prop) is not None:
        return False
    return prop.get("type") not in ("boolean", "null")


def _checked(prop: Any) -> bool:
    """Whether a string value of this argument has its numbers checked (not an enum)."""
    return not (isinstance(prop, Mapping) and {"enum", "const"} & set(prop))


class ArgumentWatch:
    """Follows one call's arguments object, piece by piece (see the module's docstring)."""

    def __init__(self, schema: Mapping[str, Any] | None, sources: Sequence[str]) -> None:
        schema = schema or {}
        properties = schema.get("properties") or {}
        self._properties: Mapping[str, Any] = properties if isinstance(properties, Mapping) else {}
        required = [p for p in schema.get("required") or () if p in self._properties]
        # The order the JSON-schema grammar writes them in: required first, then the rest.
        order = [*required, *(p for p in self._properties if p not in required)]
        self._later_valued = {
            name: any(_caller_valued(self._properties.get(p)) for p in order[i + 1 :])
            for i, name in enumerate(order)
        }
        self._said = said_digits(sources)
        self._text = ""
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._expect_key = False
        self._key: str | None = None  # the argument whose value is being written
        self._value_start: int | None = None
        self.done = False  # the arguments object is complete (nothing more is watched)

    @property
    def written(self) -> str:
        """The arguments whose values are complete, as a JSON object."""
        match = re.match(r"\s*\{", self._text)
        if match is None:
            return "{}"
        body = self._text[match.end() :]
        # Whole "key": value pairs only: cut at the last comma outside strings.
        depth, in_string, escaped, cut = 0, False, False, 0
        for i, ch in enumerate(body):
            if in_string:
                escaped = (ch == "\\") and not escaped
                if ch == '"' and not escaped:
                    in_string = False
                continue
            if ch == '"':
                in_string = True
            elif ch in "[{":
                depth += 1
            elif ch in "]}":
                if depth == 0:
                    cut = i
                    break
                depth -= 1
            elif ch == "," and depth == 0:
                cut = i
        try:
            value = json.loads("{" + body[:cut] + "}")
        except json.JSONDecodeError:
            return "{}"
        return json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else "{}"

    def push(self, piece: str) -> str | None:
        """Read `piece`; the name of the argument whose value holds a number nobody said,
        when decoding may stop there, else None."""
        if self.done:
            return None
        for ch in piece:
            self._read(ch)
            if self.done:
                return None
        return self._unsaid_number()

    def _read(self, ch: str) -> None:
        self._text += ch
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif ch == "\\":
                self._escaped = True
            elif ch == '"':
                self._in_string = False
                if self._depth == 1 and self._expect_key and self._value_start is not None:
                    self._key = json.loads(self._text[self._value_start - 1 :])
                    self._value_start = None
                elif self._depth == 1:
                    self._value_start = None  # a value is complete
            return
        if ch == '"':
            self._in_string = True
            self._value_start = len(self._text) if self._depth == 1 else None
        elif ch in "[{":
            self._depth += 1
            self._expect_key = self._depth == 1 and ch == "{"
        elif ch in "]}":
            self._depth -= 1
            if self._depth <= 0:
                self.done = True
        elif ch == ":" and self._depth == 1:
            self._expect_key = False
        elif ch == "," and self._depth == 1:
            self._expect_key = True
            self._key = None

    def _unsaid_number(self) -> str | None:
        if not (self._in_string and self._depth == 1 and not self._expect_key):
            return None
        key, start = self._key, self._value_start
        if key is None or start is None or key not in self._properties:
            return None
        if not _checked(self._properties.get(key)) or self._later_valued.get(key, True):
            return None
        value = self._text[start:]
        run = re.search(r"\d[\d" + re.escape(_GROUP_SEPARATORS) + r"]*$", value)
        if run is None:
            return None
        digits = re.sub(r"\D", "", run.group()).lstrip("0")
        if not digits or any(digits in said for said in self._said):
            return None
        if run.group().isdigit() and (digits in ("1", "2") or 13 <= int(digits) <= 23):
            return None  # may be a 24-hour clock's hour ("18:00" is the "6 pm" said)
        return key


#: A further call's name, complete: `<tool_call>` then the object's "name" value.
_FURTHER_CALL_NAME = re.compile(r'<tool_call>\s*\{\s*"name"\s*:\s*"([^"\\]+)"')


def _digits_only(value: str) -> str | None:
    """The digits of a value that is a number as a caller says it ("555 838 9065"), or
    None when it holds anything else (a city, a time, a sentence)."""
    digits = re.sub(r"[" + re.escape(_GROUP_SEPARATORS) + r"]", "", value.strip())
    return digits if digits.isdigit() else None


@dataclass(frozen=True)
class FurtherCallStop:
    """A further call `FurtherCalls` ended the step at: its tool, why, and for a made-up
    number the argument and the arguments complete before it (as `ArgumentWatch.written`)."""

    name: str
    why: Literal["repeat", "invented"]
    argument: str | None = None
    written: str = "{}"


class FurtherCalls:
    """Reads the calls a call step writes after its first, and says when one can bring
    nothing, as soon as that is certain, so that decoding stops there.

    After the call the caller asked for, the 1.5B often wrote another: the same lookup
    again ("How much did I pay for order 90875?": `lookup_order` 90875 twice) or one on
    a number nobody said (after `lookup_customer`, `lookup_order` "12345"; bench m16,
    m17, session 11). `reply.ReplyAssembler` drops such a call once it is complete, but
    its 25-50 tokens were decoded first, and the answer request waits for the step's
    end: seconds before the caller hears the answer on a loaded machine.

    A further call brings nothing when

    - its tool was already called in this step with numbers only (its arguments as a
      caller says a number) and the caller's latest words hold no number that no call
      of the step used (`used_numbers`): a second call of it could only repeat one or
      invent one. Told "orders 3931 and 15482", the second lookup has 15482 left; the
      store hours of a second city are not numbers, and are never stopped here;
    - its arguments hold a number nobody said (`ArgumentWatch`, as for the first call).
    """

    def __init__(
        self,
        schemas: Mapping[str, Mapping[str, Any]],
        sources: Sequence[str],
        caller_numbers: Sequence[str],
    ) -> None:
        self._schemas = schemas
        self._sources = sources
        self._caller_numbers = [n.lstrip("0") for n in caller_numbers if n.strip("0")]
        self._text = ""
        self._searched = 0  # where the next further call's name is looked for
        self._watch: ArgumentWatch | None = None
        self._name = ""  # the further call being read
        self._args_from: int | None = None  # where the current call's arguments start

    def push(self, piece: str, calls: Sequence[tuple[str, str]]) -> FurtherCallStop | None:
        """Read `piece` of the call step's text (from the first call's arguments on; only
        calls that open after it are read); `calls` the (name, arguments) the step has
        sent so far. Returns where and why decoding should stop, else None."""
        self._text += piece
        if self._watch is None:
            match = _FURTHER_CALL_NAME.search(self._text, self._searched)
            if match is None:
                return None
            self._name = match.group(1)
            self._searched = match.end()
            if self._repeats(self._name, calls):
                return FurtherCallStop(self._name, "repeat")
            self._watch = ArgumentWatch(self._schemas.get(self._name), self._sources)
            opening = self._text.find("{", match.end())
            self._args_from = opening if opening >= 0 else None
            if self._args_from is None:
                return None
            piece = self._text[self._args_from :]
        elif self._args_from is None:
            opening = self._text.find("{", self._searched)
            if opening < 0:
                return None
            self._args_from = opening
            piece = self._text[opening:]
        if (argument := self._watch.push(piece)) is not None:
            return FurtherCallStop(self._name, "invented", argument, self._watch.written)
        if self._watch.done:
            self._watch, self._args_from = None, None
            self._searched = len(self._text)
        return None

    def _repeats(self, name: str, calls: Sequence[tuple[str, str]]) -> bool:
        earlier = [argument_values(a) for n, a in calls if n == name]
        if not earlier or any(not v or any(_digits_only(x) is None for x in v) for v in earlier):
            return False  # not called yet, or with a city, a time: another one may follow
        used = {
            n.lstrip("0") for _, a in calls for v in argument_values(a) if (n := _digits_only(v))
        }
        return all(n in used for n in self._caller_numbers)
