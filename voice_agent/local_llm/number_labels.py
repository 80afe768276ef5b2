"""Which argument a number the caller said fits: what they called it, and its shape.

A caller says what a number is ("order 5127", "account 60917", "my phone number is
...") or says it the way such numbers are said (a phone number in groups, "555 808
6261"). The model may still put it in another tool's argument: asked "My number's
555 808 6261, what orders do I have?" with the phone profile's tools, the 1.5B looked
up the *order* 5558086261 (`lookup_order` 0.660 against `lookup_customer` 0.331, its
yes/no check said yes: bench y12, session 11), and the caller heard "I found no order
with the number 555 808 6261."

`misplaced_number` reads a call's number arguments against the caller's latest words:

- the *label* of each number the caller said (`said_numbers`; in digits or in words,
  "nine two eight six zero"): the words right
  before it ("order", "account", "phone number"), a number without words of its own
  in a list or a correction taking those of the number before it ("orders 3931 and
  15482", "60917, no sorry, 60971"); a number said in groups, 7 to 15 digits in all
  (`PHONE_DIGITS`), is labelled "phone" as well: that is how phone numbers are said;
- each argument's words (its name and description) and the digit counts it allows
  (`allowed_digits`: a schema pattern or length, "5-digit" in its description, a
  phone number's `PHONE_DIGITS`).

A number sits in the wrong argument when that argument cannot take its digit count,
or when another tool's argument holds more of its label's words. The tools whose
argument fits it best are named (`MisplacedNumber.fits`); the call is not sent
(`respond.Responder._to_the_fitting_tool`). A tie keeps the model's choice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voice_agent.local_llm.grounding import arguments_object
from voice_agent.phone.numbers import digit_runs  # pure text rules, no phone state

#: How many digits a phone number has (E.164 allows 15; a local number has 7 or more).
PHONE_DIGITS = range(7, 16)
#: Words that name a phone number, read as "phone" in labels and argument words.
_PHONE_WORDS = frozenset({"phone", "telephone", "mobile", "cell", "cellphone"})
#: A number as written: digit groups joined by spacing or a dash ("555 808 6261"), an
#: optional leading "+".
_NUMBER_RE = re.compile(r"\+?\d+(?:[ \-.\u2013/]\d+)*")
#: Words between a label and its number that are not part of the label ("my number's
#: 555 ...", "the order is 4417").
_LINKING = frozenset("is s was are were be been it its number's".split())
#: Words that end a label (going back from the number): function words, and verbs that
#: say what is done with the number, not what it is ("check order 5127").
_NOT_LABEL = frozenset(
    "a an the my your our his her their this that these those its it i me you we they "
    "for on at to of in from with by about and or but no not yes yeah sorry oh um uh "
    "is was are be can could would will please what which when where how why do does "
    "did have has had just also mean meant wait hold hang actually then so if than "
    "here there hi hello okay ok right like want need check look find pull get tell give "
    "send see track cancel change update call ring reach try use".split()
)
#: Words for one digit, as a number said digit by digit has them ("eight oh eight").
_DIGIT_WORDS = frozenset("zero oh o one two three four five six seven eight nine".split())
#: Words a number is said in, written as digits when the caller says two or more of them
#: in a row (`_written_as_digits`): not a word that only sounds like one ("for", "to").
_NUMBER_WORDS = _DIGIT_WORDS | frozenset(
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty "
    "thirty forty fifty sixty seventy eighty ninety hundred thousand and double triple".split()
)
#: The most words a label has ("order number", "phone number").
_LABEL_WORDS = 2
#: A digit count in an argument's description ("the 5-digit order number", "six digits").
_DESCRIBED_DIGITS_RE = re.compile(
    r"\b(\d+|four|five|six|seven|eight|nine|ten|eleven|twelve)[- ]digits?\b", re.IGNORECASE
)
_COUNT_WORDS = {
    "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12,
}  # fmt: skip
#: A schema pattern of digits only: ``^\d{5}$``, ``^[0-9]{4,6}$``.
_PATTERN_DIGITS_RE = re.compile(r"^\^?(?:\\d|\[0-9\])\{(\d+)(?:,(\d*))?\}\$?$")


@dataclass(frozen=True)
class SaidNumber:
    """A number in the caller's words: its digits and what they called it."""

    digits: str
    #: the words right before it, singular ("order", "number"), and "phone" when it
    #: was said in groups as a phone number is
    label: frozenset[str]
    #: the caller's words that go with it: from the end of the number said before it
    #: to the start of the one said after it ("and what's the balance on account" of
    #: "... order 8427 gone through, and what's the balance on account 31580?")
    words: str = ""


@dataclass(frozen=True)
class MisplacedNumber:
    """A caller's number in a call argument it does not fit."""

    argument: str
    digits: str
    #: the tools with an argument the number fits better, each with that argument, in
    #: the tools' order (none: the argument cannot take it, and no other fits it)
    fits: tuple[tuple[str, str], ...]


def _singular(word: str) -> str:
    if word in _PHONE_WORDS:
        return "phone"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower().replace("_", " "))


def _label_before(text: str) -> frozenset[str]:
    """The label right before a number: up to `_LABEL_WORDS` words, after any linking
    words, back to the first word that is no part of a label."""
    words = _words(text)
    while words and words[-1] in _LINKING:
        words.pop()
    label: list[str] = []
    while (
        words and len(label) < _LABEL_WORDS and len(words[-1]) > 1 and words[-1] not in _NOT_LABEL
    ):
        label.append(_singular(words.pop()))
    return frozenset(label)


def _written_as_digits(text: str) -> str:
    """`text` with each number said in two or more number words (`_NUMBER_WORDS`)
    written in digits, where it was said ("order forty-two" -> "order 42"; not "one"
    of "one of your colleagues", nor "for" of "30418 for me", which `digit_runs` reads
    as a 4 next to digits); one said digit by digit keeps a digit per word
    ("five five five, eight oh eight, six two six one" -> "5 5 5 8 0 8 6 2 6 1"), so
    that it reads in groups, as a phone number written in groups does. Speech
    recognition writes numbers either way."""
    out, end = [], 0
    for run in digit_runs(text):
        words = re.findall(r"[a-z]+|\d+", text[run.start : run.end].lower())
        if len(words) < 2 or not all(w in _NUMBER_WORDS for w in words):
            continue  # digits, a word that only sounds like one ("for"), or one word ("one of")
        digit_by_digit = all(w in _DIGIT_WORDS for w in words)
        out += [text[end : run.start], " ".join(run.digits) if digit_by_digit else run.digits]
        end = run.end
    return "".join([*out, text[end:]])


def said_numbers(text: str) -> list[SaidNumber]:
    """The numbers in `text` with their labels: in digits, or said in words
    (`_written_as_digits`)."""
    text = _written_as_digits(text)
    found: list[SaidNumber] = []
    end = 0
    previous: frozenset[str] = frozenset()
    matches = list(_NUMBER_RE.finditer(text))
    for index, match in enumerate(matches):
        between = text[end : match.start()]
        own = _label_before(between)
        groups = re.findall(r"\d+", match.group())
        digits = "".join(groups)
        if not own and found and not re.search(r"[.?!]", between):
            own = previous  # "orders 3931 and 15482", "60917, no sorry, 60971"
        label = set(own)
        if len(digits) in PHONE_DIGITS and (len(groups) >= 2 or match.group().startswith("+")):
            label.add("phone")
        after = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        found.append(SaidNumber(digits, frozenset(label), text[end:after]))
        previous, end = own, match.end()
    return found


def argument_words(name: str, prop: Mapping[str, Any]) -> frozenset[str]:
    """An argument's words: its name's and its description's, singular."""
    text = f"{name} {prop.get('description', '')}"
    return frozenset(_singular(w) for w in _words(text) if w not in _NOT_LABEL)


def allowed_digits(name: str, prop: Mapping[str, Any]) -> range | None:
    """The digit counts an argument allows, when it says: a schema pattern of digits
    (``^\\d{5}$``), a digit count in its description ("the 5-digit order number"), or a
    phone number's `PHONE_DIGITS`; None when it does not."""
    pattern = _PATTERN_DIGITS_RE.match(str(prop.get("pattern", "")))
    if pattern:
        low = int(pattern.group(1))
        if pattern.group(2) is None:
            return range(low, low + 1)
        return range(low, int(pattern.group(2)) + 1 if pattern.group(2) else 10**6)
    described = _DESCRIBED_DIGITS_RE.search(str(prop.get("description", "")))
    if described:
        word = described.group(1).lower()
        count = int(word) if word.isdigit() else _COUNT_WORDS[word]
        return range(count, count + 1)
    if "phone" in argument_words(name, prop):
        return PHONE_DIGITS
    return None


def _takes_a_number(prop: Any) -> bool:
    """An argument a caller's number can fill: a string or a number the model writes,
    not a choice from a list, a flag or the model's summary."""
    if not isinstance(prop, Mapping):
        return False
    if {"enum", "const"} & set(prop) or "x-summary" in prop:
        return False
    return prop.get("type", "string") in ("string", "integer", "number")


def _number_value(value: Any) -> str | None:
    """The digits of an argument value that is a number as written ("555-808-6261",
    58213), else None (a time, an address: words around the digits)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and re.fullmatch(r"[\d\s\-.,()+/#]*\d[\d\s\-.,()+/#]*", value):
        return re.sub(r"\D", "", value)
    return None


def _arguments(tool: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    function = tool.get("function") or {}
    properties = (function.get("parameters") or {}).get("properties") or {}
    return {str(a): p for a, p in properties.items() if _takes_a_number(p)}


def _fit(number: SaidNumber, argument: str, prop: Mapping[str, Any]) -> int | None:
    """How many of the number's label words the argument holds; None when it cannot
    take the number's digit count (`allowed_digits`)."""
    allowed = allowed_digits(argument, prop)
    if allowed is not None and len(number.digits) not in allowed:
        return None
    return len(number.label & argument_words(argument, prop))


def fitting_arguments(
    number: SaidNumber, tools: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """The (tool, argument) pairs that hold the most of `number`'s label words (at least
    one) and can take its digit count, in the tools' order: where the caller's
    "account 31580" goes (``get_account_balance``'s ``account_number``). Empty for a
    number without a label, or whose label no argument holds."""
    scores: dict[tuple[str, str], int] = {}
    for tool in tools:
        name = str((tool.get("function") or {}).get("name"))
        for argument, prop in _arguments(tool).items():
            score = _fit(number, argument, prop)
            if score:
                scores[(name, argument)] = score
    top = max(scores.values(), default=0)
    return [pair for pair, score in scores.items() if score == top]


def misplaced_number(
    name: str,
    arguments_text: str,
    tools: Sequence[Mapping[str, Any]],
    said: Sequence[SaidNumber],
) -> MisplacedNumber | None:
    """The first argument of a call to `name` that holds a number the caller said
    (`said`) and does not fit it: the argument cannot take its digit count
    (`allowed_digits`), or another tool's argument that can holds more of its label's
    words (`argument_words`). None when every number fits where it is."""
    arguments = arguments_object(arguments_text)
    if arguments is None:
        return None
    by_tool = {str((t.get("function") or {}).get("name")): _arguments(t) for t in tools}
    own_arguments = by_tool.get(name, {})
    for argument, value in arguments.items():
        prop = own_arguments.get(str(argument))
        digits = _number_value(value)
        if prop is None or not digits:
            continue
        number = next((n for n in said if n.digits == digits), None)
        if number is None:
            continue  # not the caller's number: grounding's part
        own = _fit(number, str(argument), prop)
        scores: dict[tuple[str, str], int] = {}
        for tool, props in by_tool.items():
            fitting = {a: s for a, p in props.items() if (s := _fit(number, a, p)) is not None}
            if tool != name and fitting:
                best = max(fitting, key=lambda a: fitting[a])
                scores[(tool, best)] = fitting[best]
        # better than where it is; when it cannot be there, any argument its label names
        better = {t: s for t, s in scores.items() if s > (0 if own is None else own)}
        top = max(better.values(), default=0)
        fits = tuple(t for t, s in better.items() if s == top)
        if fits or own is None:
            return MisplacedNumber(str(argument), digits, fits)
    return None
