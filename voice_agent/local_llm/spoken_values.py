"""A number an answer tells about one result's thing that only another result holds,
corrected before it is said.

Asked "Has the refund for order 8427 gone through, and what's the balance on account
31580?" with both results in hand, the 0.5B said "... and the balance on account 31580
is $38.75.": the refund's amount, not the balance ($220.00); asked what is owed on
account 61150, "I owe $45.30 on account 61150" (bench z12, v06, session 13). Every
number was in some result, so the speech grammar let it through. So the answer from
results goes through `ValueCheck`:

- A clause **names** a result (`ResultValues`) by its call's key, a value the call was
  made with said in the clause ("account 31580", "Fresno"), or by a field's name, every
  word of it ("balance", "due date"; "id", "number" left out).
- A number of `MIN_DIGITS` or more said in a clause that names results (the words
  before it back to the clause's start, and up to `spoken_counts.NOUN_WINDOW_WORDS`
  after it) is **another result's** when no named result, no named call's arguments and
  no caller's words hold it, and a result the clause does not name does.
- Such a number is **replaced** by the value of the one field of the named results that
  fits where it stands (`_fitting`): a value that is that one number ("$220.00"), or one
  with the same word before its one number ("July 1" for "July 14"), with as many
  decimals. The fields the clause names are tried first. When no single field fits, the
  number and the rest of its clause are **left out** (what the answer leaves untold is
  added after it, `answer_words.untold_facts`).

Only a number that could be another result's (`ValueCheck._may_be_anothers`: held by
some results, not all, and not said by the caller) is held, with the words after it to
the end of that window, as `CountCheck` holds a count; every other word goes out as it
comes. The window ends at a clause mark or a joining word, where the speech output's
first chunk can end anyway: streamed through both checks, 255 saved real answers from
results (session 14) gave their first chunk at the same token as through `CountCheck`
alone. The check is general over the results' fields and the calls' arguments: no field
or tool is named here.

English, like the prompts shipped with the product.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voice_agent.local_llm.chat_format import ChatFormatError, content_text
from voice_agent.local_llm.spoken_counts import NOUN_WINDOW_WORDS
from voice_agent.local_llm.turn_history import tool_payloads

#: Fewest digits in a number the check judges: a single digit is a count or an hour
#: ("1 teapot", "5 pm"), said in many ways; amounts, dates and keys have more.
MIN_DIGITS = 2

#: A number as said or written: a currency sign may lead it; thousands and decimal marks,
#: and a time's colon ("10:30": one number, not "10" and "30").
_NUMBER = re.compile(r"[$€£]?\d+(?:[.,:]\d+)*")
#: A clause's end inside a sentence, or its start after a joining word.
_CLAUSE_BOUNDARY = re.compile(r"[.!?;:,](?=\s)|\b(?:and|but)\b", re.IGNORECASE)
#: Where the window after a number ends: a clause mark, or a word that joins a new clause.
_WINDOW_END = re.compile(r"[.!?;:,](?:\s|$)|\b(?:and|but)\b", re.IGNORECASE)
#: A clause mark, where a number and the rest of its clause left out end.
_MARKS = ".!?;:,"
_MARK = re.compile(r"[.!?;:,](?:\s|$)")
_TOKEN = re.compile(r"[A-Za-z]+|\d+")
_WORD = re.compile(r"[A-Za-z]+")
#: Words of a field's name that say which thing, not what about it ("order" of
#: ``order_id`` stays; "id" goes).
_KEY_WORDS = frozenset("id number no".split())


def _canonical(number: str) -> str:
    """A number's value as text: no sign, no thousands marks, no trailing decimal zeros
    ("$1,204.50" -> "1204.5", "220.00" -> "220")."""
    digits = number.lstrip("$€£").replace(",", "")
    if "." in digits:
        digits = digits.rstrip("0").rstrip(".")
    return digits


def _decimals(number: str) -> int:
    head, dot, tail = number.replace(",", "").rpartition(".")
    return len(tail) if dot and head else 0


def _numbers(text: str) -> set[str]:
    return {_canonical(n) for n in _NUMBER.findall(text)}


def _same_word(said: str, name: str) -> bool:
    """Whether a word said is a field name's word, plural or not ("balances", "balance")."""
    return said == name or said in (f"{name}s", f"{name}es") or name in (f"{said}s", f"{said}es")


@dataclass(frozen=True)
class ResultValues:
    """One result not yet told, as the check reads it: the values its call was made with
    (lower case; what names it in a clause), each field's name words and value as text,
    and every number the result and its call hold (`_canonical`)."""

    keys: frozenset[str]
    fields: tuple[tuple[tuple[str, ...], str], ...]
    numbers: frozenset[str]

    def named_in(self, clause: str) -> bool:
        """Whether `clause` names this result: a key said in it, as a number or whole
        words, or every word of a field's name."""
        said = {w.lower() for w in _WORD.findall(clause)}
        said_numbers = _numbers(clause)
        for key in self.keys:
            if re.fullmatch(r"\d{3,}", key):
                if key in said_numbers:
                    return True
            elif re.search(rf"(?<!\w){re.escape(key)}(?!\w)", clause, re.IGNORECASE):
                return True
        return any(
            words and all(any(_same_word(s, w) for s in said) for w in words)
            for words, _ in self.fields
        )

    def named_fields(self, clause: str) -> list[str]:
        """The values of the fields whose every name word `clause` says."""
        said = {w.lower() for w in _WORD.findall(clause)}
        return [
            value
            for words, value in self.fields
            if words and all(any(_same_word(s, w) for s in said) for w in words)
        ]


def result_values(messages: Sequence[Mapping[str, Any]]) -> list[ResultValues]:
    """The results the answer tells (`turn_history.untold`, resolved, objects), each with
    its call's keys and its fields (`ResultValues`). A field that only repeats a value its
    call was made with ("account_number": "31580") is no value of the result's own."""
    found: list[ResultValues] = []
    for _, arguments, payload in tool_payloads(messages, untold_only=True):
        result = payload.get("result")
        if payload.get("status") != "resolved" or not isinstance(result, Mapping):
            continue
        keys = {
            " ".join(str(v).split()).lower()
            for v in arguments.values()
            if isinstance(v, str | int) and not isinstance(v, bool) and str(v).strip()
        }
        keys = {re.sub(r"\D", "", k) if re.fullmatch(r"[\d\s-]+", k) else k for k in keys}
        fields = tuple(
            (
                tuple(w for w in str(field).lower().split("_") if w and w not in _KEY_WORDS),
                str(value),
            )
            for field, value in result.items()
            if isinstance(value, str | int | float)
            and not isinstance(value, bool)
            and " ".join(str(value).split()).lower() not in keys
        )
        numbers = _numbers(json.dumps(result)) | _numbers(json.dumps(arguments))
        found.append(ResultValues(frozenset(keys), fields, frozenset(numbers)))
    return found


def caller_numbers(messages: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """Every number the caller said in the conversation (`_canonical`)."""
    numbers: set[str] = set()
    for message in messages:
        if message.get("role") == "user":
            try:
                numbers |= _numbers(content_text(message.get("content")))
            except ChatFormatError:
                continue
    return frozenset(numbers)


def _word_before(text: str, at: int) -> str:
    words = _WORD.findall(text[:at])
    return words[-1].lower() if words else ""


def _fitting(said: str, before: str, values: Sequence[str]) -> list[str]:
    """The numbers (as the values write them) of the values that fit where `said` stands
    after the words `before`: the value is that one number, or its one number has the
    same word before it as `said` ("July 1" for "... July 14"); as many decimals."""
    fits: list[str] = []
    for value in values:
        found = list(_NUMBER.finditer(value))
        if len(found) != 1 or _decimals(found[0].group()) != _decimals(said):
            continue
        number = found[0]
        alone = value.strip() == number.group()
        same_word = _word_before(value, number.start()) == _word_before(before, len(before))
        if alone or (same_word and _word_before(before, len(before))):
            fits.append(number.group().lstrip("$€£"))
    return fits


class ValueCheck:
    """Corrects, as the answer streams, a number told about one result's thing that only
    another result holds (see the module docstring). `push(piece)` returns the text that
    may be said now; `finish()` the rest. `corrected` lists (what was said, what replaced
    it; "" when left out)."""

    def __init__(self, results: Sequence[ResultValues], caller: frozenset[str]) -> None:
        # with one result, no number can be another's
        self._results = list(results) if len(results) > 1 else []
        self._caller = caller
        self._held = ""
        self._clause = ""  # the words of the current clause said so far
        self._leaving_out = False  # dropping the rest of a clause
        self._after_mark = False  # what was said before the clause left out ends at a mark
        self._last = ""  # the last character said
        self.corrected: list[tuple[str, str]] = []

    def push(self, piece: str) -> str:
        if not self._results:
            return piece
        self._held += piece
        return self._release(final=False)

    def finish(self) -> str:
        return self._release(final=True) if self._results else ""

    def _said(self, text: str) -> str:
        """`text` goes out: the clause said so far follows it."""
        self._last = (self._last + text)[-1:]
        clause = self._clause + text
        ends = list(_CLAUSE_BOUNDARY.finditer(clause))
        self._clause = clause[ends[-1].end() :] if ends else clause
        return text

    def _release(self, *, final: bool) -> str:
        out = ""
        while True:
            held = self._held
            if self._leaving_out:  # up to the clause's mark, which stays
                end = _MARK.search(held)
                if end is None:
                    self._held = ""
                    return out
                self._held = held[end.start() :]
                if end.group() in _MARKS and end.end() == len(held) and not final:
                    return out  # "3." may be "3.5"
                if end.group()[0] in ",;:" and self._after_mark:
                    # "Sure, [left out]: the" -> "Sure, the": one space stays
                    self._held = held[end.end() if self._last.isspace() else end.start() + 1 :]
                self._leaving_out = False
                continue
            number = next((m for m in _NUMBER.finditer(held) if self._whole(m, held, final)), None)
            if number is None:
                cut = len(held) if final else self._unfinished_start(held)
                out, self._held = out + self._said(held[:cut]), held[cut:]
                return out
            # the space after a word is held with the number: left out, it goes too
            start = number.start() - self._spaces_held(held[: number.start()])
            out += self._said(held[:start])
            held = self._held = held[start:]
            space, said = held[: number.start() - start], number.group()
            taken = len(space) + len(said)
            if not self._may_be_anothers(said):  # said at once: no need to wait
                out += self._said(space + said)
                self._held = held[taken:]
                continue
            window = self._window(held, taken, final)
            if window is None:
                return out  # the words that may name its thing may still come
            verdict = self._judged(said, self._clause, self._clause + held[:window])
            self._held = held[taken:]
            if verdict is None:
                out += self._said(space + said)
            elif verdict:
                sign = said[: len(said) - len(said.lstrip("$€£"))]
                self.corrected.append((said, sign + verdict))
                out += self._said(space + sign + verdict)
            else:
                self.corrected.append((held[:window].strip(), ""))
                self._after_mark = self._clause.rstrip()[-1:] in ("", *_MARKS)
                self._clause = ""
                self._leaving_out = True

    @staticmethod
    def _whole(number: re.Match[str], held: str, final: bool) -> bool:
        """Whether a number can grow no more ("38" of "38." may be "38.75")."""
        if final:
            return True
        rest = held[number.end() :]
        return bool(rest) and not (rest[0] in ".,:" and len(rest) == 1)

    def _unfinished_start(self, held: str) -> int:
        """Where the text that may still become a number starts: digits at the end
        ("$45." may be "$45.30"), a currency sign at the end, or spaces after a word (a
        number left out takes the space before it along). A word goes out as it comes."""
        cut = len(held)
        numbers = list(_NUMBER.finditer(held))
        if numbers and len(held) - numbers[-1].end() <= 1 and held[numbers[-1].end() :] in ",.:":
            cut = numbers[-1].start()
        while cut > 0 and held[cut - 1] in "$€£":
            cut -= 1
        return cut - self._spaces_held(held[:cut])

    def _spaces_held(self, before: str) -> int:
        """How many spaces at the end of `before` wait for what follows: those after a
        word (a number may follow; left out, it takes them along), none after a mark."""
        spaces = len(before) - len(before.rstrip())
        return spaces if (self._last + before[: len(before) - spaces])[-1:].isalnum() else 0

    @staticmethod
    def _window(held: str, start: int, final: bool) -> int | None:
        """Where the words after a number that may name its thing end in `held`: its
        clause's end, or `NOUN_WINDOW_WORDS` words on; None until that is known."""
        end = _WINDOW_END.search(held, start)
        tokens = [t for t in _TOKEN.finditer(held, start) if end is None or t.end() <= end.start()]
        if end is not None and (end.end() < len(held) or final or end.group()[-1:].isspace()):
            if len(tokens) <= NOUN_WINDOW_WORDS:
                return end.start()
        if len(tokens) > NOUN_WINDOW_WORDS:
            return tokens[NOUN_WINDOW_WORDS - 1].end()
        return len(held) if final else None

    def _may_be_anothers(self, said: str) -> bool:
        """Whether a number could be told about the wrong result, whatever its clause
        names: `MIN_DIGITS` long, not the caller's, held by some results and not all."""
        value = _canonical(said)
        holding = sum(value in r.numbers for r in self._results)
        return (
            len(re.sub(r"\D", "", value)) >= MIN_DIGITS
            and value not in self._caller
            and 0 < holding < len(self._results)
        )

    def _judged(self, said: str, before: str, clause: str) -> str | None:
        """None when `said` may stand in `clause`; the number to say instead; or "" when
        it is another result's and no value fits (the rest of the clause is left out)."""
        value = _canonical(said)
        named = [r for r in self._results if r.named_in(clause)]
        if not named or any(value in r.numbers for r in named):
            return None
        if not any(value in r.numbers for r in self._results if r not in named):
            return None  # no result's: not this check's to judge
        named_values = [v for r in named for v in r.named_fields(clause)]
        every_value = [v for r in named for _, v in r.fields]
        for values in (named_values, every_value):
            fits = _fitting(said, before, values)
            if len(fits) == 1:
                return fits[0]
            if fits:
                return ""
        return ""
