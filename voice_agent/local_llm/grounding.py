"""What a small model may say and call: only what the conversation gave it.

Two checks on the text of an OpenAI message list, both plain string work:

- `conversation_numbers`: every digit run found in what the caller said, in
  tool results and arguments, and in the system prompt (numbers written as
  words, "four four one seven", count as digits). The speech grammar only
  lets the model write these numbers (`grammar.speech_grammar`).
- `taken_back_numbers` / `retracted_arguments`: a number the caller
  corrected ("4417, sorry, 4471") grounds no call.
- `ungrounded_arguments`: the arguments of a call whose values the caller
  never said (nor a tool result gave): a phone number, a time, an order, a
  city. Such a call is not sent; the agent asks instead (`server`). The
  check is deliberately literal: a value is grounded when its digits are a
  run of the digits the caller said (spacing and punctuation free), and when
  at least half of its words appear in what the caller said or a tool
  returned. Booleans, enums (the schema already limits them), empty
  optional values are not checked; a number "as the caller said it"
  (``x-spoken-number``) must hold a number; arguments the schema marks as the
  model's summary (`SUMMARY_KEYWORD`) have their numbers checked and, for a
  summary of what the caller told (a ticket's), its substance
  (`summary_grounded`).
- `corrected_numbers`: what the caller corrected a taken-back number to.

The assistant's own words are never a source: a model that said a number
once must not be able to ground it by having said it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from voice_agent.local_llm.chat_format import content_text
from voice_agent.phone.numbers import spoken_digits  # pure text rules, no phone state

_NUMBER_WORDS = {
    "zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11",
    "twelve": "12", "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16",
    "seventeen": "17", "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30",
    "forty": "40", "fifty": "50", "hundred": "100",
}  # fmt: skip
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
#: Digit groups the caller says as one number ("555 201 7788", "555-201-7788", "4 4 1 7").
_GROUPED_DIGITS_RE = re.compile(r"\d+(?:[ \-.\u2013/]+\d+)*")
#: Words that carry no fact of their own in an argument value.
_FILLER_WORDS = frozenset(
    "a an the at on in of to for and or by my me i please am pm o clock oclock "
    "around about number no".split()
)


#: A JSON-schema keyword a tool sets on an argument that is the model's own words, a
#: paraphrase rather than a value the caller said. Digits in it are always checked
#: (a number in a summary is a fact). Its value says what else is:
#:
#: - ``true``: a summary of what the caller told (a ticket's summary, a refund's
#:   reason "in their words"): grounded only when it carries something the caller
#:   said beyond asking for what the tool does (`summary_grounded`). "I want to
#:   file a complaint." gives nothing to summarise: the 1.5B opened a ticket whose
#:   summary was "The caller wants to file a complaint."
#: - `SUMMARY_NOTE` (``"note"``): the model's own note, for which the request
#:   itself is enough ("why the caller needs a person": "Can I talk to a human?").
SUMMARY_KEYWORD = "x-summary"
#: The schema marker of a string that is a number as the caller said it
#: (`voice_agent.tools.SPOKEN_NUMBER`): grounded only when it holds a number.
SPOKEN_NUMBER_KEYWORD = "x-spoken-number"
SUMMARY_NOTE = "note"


def summary_kind(prop: Any) -> str | None:
    """The kind ("details" or "note") of an argument schema marked with `SUMMARY_KEYWORD`, else None."""
    if not isinstance(prop, Mapping):
        return None
    marker = prop.get(SUMMARY_KEYWORD)
    if marker == SUMMARY_NOTE:
        return "note"
    return "details" if marker is True else None


def _spelled_digits(text: str) -> str:
    return _NUMBER_WORD_RE.sub(lambda m: _NUMBER_WORDS[m.group(1).lower()], text)


def grounding_sources(
    messages: Sequence[Mapping[str, Any]], *, include_system: bool = True
) -> list[str]:
    """The texts facts may come from: the caller's words, tool results, call arguments.

    The system prompt is included unless `include_system` is False (an
    operator may state facts there, but a call's arguments must come from
    the caller); the assistant's own text never is.
    """
    roles = ("user", "tool", "system") if include_system else ("user", "tool")
    sources: list[str] = []
    for message in messages:
        role = message.get("role")
        if role in roles:
            sources.append(content_text(message.get("content")))
        elif role == "assistant":
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping):
                    sources.append(str(function.get("arguments", "")))
    return sources


def conversation_numbers(sources: Iterable[str]) -> set[str]:
    """Every digit run in `sources` as written, without leading zeros, and with
    thousands separators removed ("1,204" gives "1", "204" and "1204")."""
    numbers: set[str] = set()
    for text in sources:
        text = _spelled_digits(text)
        for run in re.findall(r"\d+", text):
            numbers.update({run, run.lstrip("0") or "0"})
        for joined in re.findall(r"\d{1,3}(?:,\d{3})+", text):
            numbers.add(joined.replace(",", ""))
    return numbers


def _digit_groups(text: str) -> list[str]:
    """Numbers as the caller said them: digit groups joined when only spacing separates them."""
    return [re.sub(r"\D", "", g) for g in _GROUPED_DIGITS_RE.findall(_spelled_digits(text))]


#: A 24-hour clock time after noon ("18:00", "18:30h"): the caller said "6 pm".
_AFTERNOON_24H_RE = re.compile(r"\b(1[3-9]|2[0-3]):([0-5]\d)\b")


def _twelve_hour(value: str) -> str:
    """Clock times as a caller says them: "18:00" -> "6:00 pm", "10:00 am" -> "10 am"."""
    value = _AFTERNOON_24H_RE.sub(lambda m: f"{int(m.group(1)) - 12}:{m.group(2)} pm", value)
    return re.sub(r"(?<=\d):00\b", "", value)  # "10:00 am" is the "10 am" said


def value_grounded(value: str, sources: Sequence[str]) -> bool:
    """Whether a string argument value is supported by what the sources say."""
    value = _twelve_hour(value.strip())
    if not value:
        return False
    text = " ".join(sources)
    lowered = text.lower()
    if value.lower() in lowered:
        return True
    digits = re.sub(r"\D", "", _spelled_digits(value))
    if digits:
        groups = _digit_groups(text)
        said = set(groups)
        for source in sources:  # a number said in pieces: "555 201, 7788"
            source_groups = _digit_groups(source)
            for i in range(len(source_groups)):
                for j in range(i + 1, min(len(source_groups), i + 4) + 1):
                    said.add("".join(source_groups[i:j]))
        if digits not in said and digits.lstrip("0") not in {s.lstrip("0") for s in said}:
            # each separate number in the value must have been said
            if not all(
                re.sub(r"\D", "", g) in said
                for g in _GROUPED_DIGITS_RE.findall(_spelled_digits(value))
            ):
                return False
    words = [
        w for w in re.findall(r"[a-z]+", value.lower()) if w not in _FILLER_WORDS and len(w) > 1
    ]
    if not words:
        return bool(digits)
    heard = set(re.findall(r"[a-z]+", lowered))
    found = sum(
        1 for w in words if w in heard or any(h.startswith(w[:5]) for h in heard if len(w) >= 5)
    )
    return found * 2 >= len(words)


#: Words with which a caller takes back what they just said ("4417, sorry, 4471").
_CORRECTION_RE = re.compile(
    r"\b(no|nope|sorry|i mean|i meant|actually|wait|hold on|rather|make that|scratch that)\b",
    re.IGNORECASE,
)


def corrects_itself(text: str) -> bool:
    """Whether `text` holds a word with which a caller takes something back ("No wait,
    I mean the Orlando one")."""
    return bool(_CORRECTION_RE.search(text))


def taken_back_numbers(text: str) -> set[str]:
    """Numbers the caller corrected in `text`: followed by a correction word and then
    another number of about the same length ("order 8080 - hold on, no, 8008": 8080).

    A number said again after its correction is not taken back.
    """
    spelled = _spelled_digits(text)
    spans = [(m.start(), m.end(), re.sub(r"\D", "", m.group()))
             for m in _GROUPED_DIGITS_RE.finditer(spelled)]  # fmt: skip
    last = {digits: i for i, (_, _, digits) in enumerate(spans)}
    taken: set[str] = set()
    for digits, i in last.items():  # judged where the number was said last
        end = spans[i][1]
        for start, _, later in spans[i + 1 :]:
            if (
                _CORRECTION_RE.search(spelled[end:start])
                and abs(len(later) - len(digits)) <= 1
                and later != digits
            ):
                taken.add(digits)
                break
    return taken


def corrected_numbers(text: str) -> list[str]:
    """The numbers with which the caller corrected one in `text` ("It's order 78342, oh
    no, 78324": ["78324"]), in the order said; none of them taken back in turn."""
    taken = taken_back_numbers(text)
    spelled = _spelled_digits(text)
    spans = [(m.start(), m.end(), re.sub(r"\D", "", m.group()))
             for m in _GROUPED_DIGITS_RE.finditer(spelled)]  # fmt: skip
    found: list[str] = []
    for i, (_, end, digits) in enumerate(spans):
        if digits not in taken:
            continue
        for start, _, later in spans[i + 1 :]:
            if _CORRECTION_RE.search(spelled[end:start]) and abs(len(later) - len(digits)) <= 1:
                if later != digits and later not in taken and later not in found:
                    found.append(later)
                break
    return found


#: A run of capitalised words (a name: "Houston", "San Diego").
_NAME_RUN_RE = re.compile(r"\b[A-Z][a-z]+(?:[ -][A-Z][a-z]+)*\b")
#: Capitalised words that are not names (a sentence's first word, the caller's "I").
_NOT_NAMES = frozenset(
    "the a an i no nope sorry wait hold actually oh um uh well and or but when what where "
    "which who how is are can could would will do does did please hi hello hey yes yeah "
    "okay ok make scratch rather mean meant".split()
)


def names_in(text: str) -> list[tuple[int, int, str]]:
    """Names in `text` as (start, end, name), leaving out a sentence's first word."""
    found = []
    for m in _NAME_RUN_RE.finditer(text):
        words = m.group().split()
        start = m.start()
        while words and words[0].lower() in _NOT_NAMES:
            start += len(words[0]) + 1
            words = words[1:]
        opens = not text[:start].strip() or text[:start].rstrip()[-1] in ".?!"
        if start == m.start() and opens:
            words = words[1:]  # "Store hours for Atlanta": "Store" starts the sentence
            start = m.end() - len(" ".join(words)) if words else m.end()
        if words:
            found.append((start, m.end(), " ".join(words)))
    return found


def as_corrected(text: str, used: Sequence[str]) -> str:
    """The caller's words with a name they took back replaced by the value the calls used
    instead ("The Houston store, no, sorry, I meant San Diego." with San Diego looked up:
    "The San Diego store, no, sorry, I meant San Diego."); `text` itself when nothing was.

    The name taken back is the last one before a correction word, when a used value
    (a name, not that one) follows the correction. For the answer only: the calls
    were made on the caller's own words. Told the answer is about San Diego, the 1.5B
    still said "The Houston store is closed." (bench b04, session 6).
    """
    values = [v for v in used if v.strip() and not any(ch.isdigit() for ch in v)]
    if not values or not corrects_itself(text):
        return text
    lowered = [v.lower() for v in values]
    names = [n for n in names_in(text) if n[2].lower() not in lowered]
    replaced: dict[int, tuple[int, str]] = {}
    for marker in _CORRECTION_RE.finditer(text):
        before = [n for n in names if n[1] <= marker.start()]
        later = text[marker.end() :].lower()
        value = next((v for v, lv in zip(values, lowered, strict=True) if lv in later), None)
        if before and value is not None:
            start, end, _ = before[-1]
            replaced[start] = (end, value)
    out, last = [], 0
    for start in sorted(replaced):
        end, value = replaced[start]
        out.append(text[last:start] + value)
        last = end
    return "".join(out) + text[last:]


def ungrounded_arguments(
    arguments_text: str,
    schema: Mapping[str, Any] | None,
    sources: Sequence[str],
    own_words: frozenset[str] = frozenset(),
) -> list[str]:
    """Names of the arguments whose values are not grounded in `sources`.

    Checked: strings and numbers, also inside arrays and nested objects
    (reported by their top-level name). Not checked: booleans, null, values
    the schema restricts with ``enum``/``const``. Summaries (`SUMMARY_KEYWORD`)
    are checked by `summary_grounded`, `own_words` being the tool's own
    vocabulary (`tool_words`).
    """
    try:
        arguments = json.loads(arguments_text) if arguments_text.strip() else {}
    except json.JSONDecodeError:
        return ["arguments"]
    if not isinstance(arguments, dict):
        return ["arguments"]
    properties = (schema or {}).get("properties") or {}
    missing: list[str] = []
    for name, value in arguments.items():
        prop = properties.get(name) if isinstance(properties, Mapping) else None
        if isinstance(prop, Mapping) and ("enum" in prop or "const" in prop):
            continue
        if (
            isinstance(prop, Mapping)
            and prop.get(SPOKEN_NUMBER_KEYWORD)
            and isinstance(value, str)
            and value.strip()
            and not re.search(r"\d", value)
            and not spoken_digits(value)
        ):
            # A number "as the caller said it" holds a number: the 1.5B, asked whether
            # "the new iPhone is in stock", looked up the order number "iPhone".
            missing.append(name)
            continue
        kind = summary_kind(prop)
        if kind is not None:
            leaves = _leaves(value)
            if not all(_digits_grounded(leaf, sources) for leaf in leaves) or (
                kind == "details"
                and not all(summary_grounded(leaf, sources, own_words) for leaf in leaves)
            ):
                missing.append(name)
            continue
        if not all(value_grounded(leaf, sources) for leaf in _leaves(value)):
            missing.append(name)
    return missing


#: Words with which a caller asks for something to be done or noted, and that say
#: nothing of what it is about ("I want to file a complaint", "I have a problem").
REQUEST_WORDS = frozenset(
    "want wants wanted wanting need needs needed like would could can please help assist "
    "file filing filed make lodge raise raising report reporting submit register log "
    "complaint complaints complain complaining ticket tickets issue issues problem problems "
    "request requests question questions matter thing something someone somebody anyone "
    "talk speak speaking tell told ask asking asked caller customer about regarding "
    "concerning with wish going get got have having".split()
)
_WORD_RE = re.compile(r"[a-z]+")


def tool_words(function: Mapping[str, Any]) -> frozenset[str]:
    """The words a tool's own schema uses: its name, description and its arguments'
    descriptions ("open", "ticket", "support", "problem", "order", ...). A summary made
    of these says what the tool does, not what the caller told."""
    texts = [str(function.get("name", "")).replace("_", " "), str(function.get("description", ""))]
    properties = (function.get("parameters") or {}).get("properties") or {}
    for arg, prop in properties.items() if isinstance(properties, Mapping) else ():
        texts.append(str(arg).replace("_", " "))
        if isinstance(prop, Mapping):
            texts.append(str(prop.get("description", "")))
    return frozenset(w for text in texts for w in _WORD_RE.findall(text.lower()))


def _said(word: str, heard: set[str] | frozenset[str]) -> bool:
    """A word heard as itself, inflected ("dent" in "dented") or with the same first
    five letters ("broken", "broke" do not; "damaged", "damage" do)."""
    if word in heard:
        return True
    if len(word) >= 5 and any(len(h) >= 5 and h[:5] == word[:5] for h in heard):
        return True
    return len(word) >= 4 and any(
        len(h) >= 4 and (h.startswith(word) or word.startswith(h)) for h in heard
    )


def substance_words(text: str, own_words: frozenset[str] = frozenset()) -> list[str]:
    """The words of `text` that say what something is about: not fillers, not a
    request for something to be done (`REQUEST_WORDS`), not the tool's own words."""
    own = {w for w in own_words if len(w) >= 3}
    return [
        w
        for w in _WORD_RE.findall(text.lower())
        if len(w) >= 3
        and w not in _FILLER_WORDS
        and w not in REQUEST_WORDS
        and w not in _SUMMARY_STOP
        and not _said(w, own)
    ]


#: Function words a summary is written with ("the caller says that it was ...").
_SUMMARY_STOP = frozenset(
    "the and but that this these those was were has had have been being its it's his her "
    "their they them she him you your our who what when where why how which there here "
    "not yet any all some very just also only one sentence says said wants".split()
)


def summary_grounded(
    value: str, sources: Sequence[str], own_words: frozenset[str] = frozenset()
) -> bool:
    """Whether a summary argument carries something the sources say beyond asking for
    what the tool does: at least one of its substance words (`substance_words`) was
    said, and at least half of them. A summary with no substance word ("The caller
    wants to file a complaint.", "issue with order 4116") is not grounded: the
    caller has not said what it is about yet, and the agent asks. Numbers are
    checked apart (`_digits_grounded`); an order number has its own argument.
    """
    heard = set(_WORD_RE.findall(" ".join(sources).lower()))
    words = substance_words(value, own_words)
    found = sum(_said(w, heard) for w in words)
    return found > 0 and found * 2 >= len(words)


def said_digits(sources: Sequence[str]) -> list[str]:
    """Strings of which every number `value_grounded` grounds in `sources` is a part: the
    digits of all of them in order (numbers in words as digits). A run of digits that
    is part of none of them is no part of any grounded number (`argument_watch`)."""
    joined = _spelled_digits(" ".join(sources))
    return ["".join(re.findall(r"\d", joined))]


def nothing_said(value: str, sources: Sequence[str]) -> bool:
    """Whether no part of an argument value was said: none of its numbers (as
    `value_grounded` hears a number: a run of the digits said, spacing free) and none
    of its words (itself or the same first five letters) occur in `sources`. An
    empty value says nothing.

    Such a value is invented, not reworded, nor a number the caller took back: the
    1.5B, asked "Could you order me a taxi to the station?", looked up the order
    "12345" (bench e22, session 8); asked about the weather, the store hours of "New
    York". A reworded value ("today at 18:00" for "this evening at 6 pm") or a number
    taken back ("8080, no, 8008") shares something with what was said.
    """
    shown = _twelve_hour(value.strip())
    for number in _digit_groups(shown):
        if number and value_grounded(number, sources):
            return False
    heard = set(re.findall(r"[a-z]+", " ".join(sources).lower()))
    for word in re.findall(r"[a-z]+", shown.lower()):
        if word in _FILLER_WORDS or len(word) < 2:
            continue
        if word in heard or (len(word) >= 5 and any(h.startswith(word[:5]) for h in heard)):
            return False
    return True


def invented_arguments(
    arguments_text: str, names: Sequence[str], sources: Sequence[str]
) -> list[str]:
    """Of the arguments `names` (a call's ungrounded ones), those whose every value
    (`_leaves`) is `nothing_said`: values the model made up."""
    arguments = arguments_object(arguments_text)
    if arguments is None:
        return []
    return [
        name
        for name in names
        if name in arguments
        and all(nothing_said(leaf, sources) for leaf in _leaves(arguments[name]) or [""])
    ]


def arguments_object(text: str) -> dict[str, Any] | None:
    """A call's arguments text as an object (empty text: no arguments); None when it is
    not a JSON object."""
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def retracted_arguments(arguments_text: str, taken_back: set[str]) -> list[str]:
    """Names of the arguments whose number is one the caller took back (`taken_back_numbers`)."""
    if not taken_back:
        return []
    try:
        arguments = json.loads(arguments_text) if arguments_text.strip() else {}
    except json.JSONDecodeError:
        return []
    if not isinstance(arguments, dict):
        return []
    return [
        name
        for name, value in arguments.items()
        if any(re.sub(r"\D", "", _spelled_digits(leaf)) in taken_back for leaf in _leaves(value))
    ]


def _digits_grounded(value: str, sources: Sequence[str]) -> bool:
    """Whether every number in `value` was said (its words are not checked)."""
    numbers = [re.sub(r"\D", "", g) for g in _GROUPED_DIGITS_RE.findall(_spelled_digits(value))]
    return all(value_grounded(n, sources) for n in numbers if n)


def _leaves(value: Any) -> list[str]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, int | float):
        return [
            repr(value) if isinstance(value, float) and not value.is_integer() else str(int(value))
        ]
    if isinstance(value, Mapping):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [str(value)]


#: Longest span of the caller's words a free-text argument is re-decoded from (words).
MAX_SPAN_WORDS = 8
_SPAN_EDGE = " \t\n,.;:!?\"'()\u2013\u2014-"


def numbers_in(value: str) -> list[str]:
    """The numbers in an argument value as a caller says them (clock times in 12 hours)."""
    return [g for g in _digit_groups(_twelve_hour(value)) if g]


def caller_spans(texts: Sequence[str], numbers: Sequence[str]) -> list[str]:
    """Runs of consecutive words of `texts` (up to `MAX_SPAN_WORDS`) that contain every
    number in `numbers`, trimmed of punctuation at both ends, longest first.

    What a free-text argument (a time, an address) may be re-decoded from when
    the model reworded the caller ("today at 18:00" for "this evening at 6 pm"):
    the caller's own words, holding the numbers the model took from them.
    """
    wanted = set(numbers)
    spans: dict[str, None] = {}
    for text in texts:
        words = text.split()
        for i in range(len(words)):
            for j in range(i + 1, min(len(words), i + MAX_SPAN_WORDS) + 1):
                span = " ".join(words[i:j]).strip(_SPAN_EDGE)
                if span and wanted <= set(_digit_groups(span)):
                    spans.setdefault(span, None)
    return sorted(spans, key=lambda s: (-len(s.split()), s))


#: Words that say which day a clock time is on ("Friday", "tomorrow", "this evening").
_DAY_WORD_RE = re.compile(
    r"^(?:(?:mon|tues|wednes|thurs|fri|satur|sun)day|today|tonight|tomorrow|morning|"
    r"afternoon|evening|weekend)$",
    re.IGNORECASE,
)
#: A clock time in an argument value: its hour ("3 pm", "3pm", "10:30 am", "15:00").
_CLOCK_RE = re.compile(r"\b(\d{1,2})(?::\d{2})?\s*(?:am|pm|a\.m\.|p\.m\.|o'?clock)(?!\w)", re.I)
#: Words after an hour that belong to it ("3 pm", "11 o'clock").
_CLOCK_TAIL = frozenset({"am", "pm", "a.m.", "p.m.", "o'clock", "oclock"})
#: How many words from the hour a caller's day word may be to be that time's day.
DAY_WINDOW_WORDS = 3


def _bare(word: str) -> str:
    return word.strip(_SPAN_EDGE).lower()


def with_callers_day(value: str, caller_texts: Sequence[str]) -> str | None:
    """The caller's own words for a time with the day they named for it, when `value`
    is that clock time without the day ("3 pm" for "on Friday at 3 pm"); else None.

    The run of words from the day word to the end of the time, whichever comes first
    ("Friday at 3 pm", "3 pm tomorrow"), with a "this"/"next" before it kept ("this
    evening at 6 pm"). The day word must be within `DAY_WINDOW_WORDS` of the hour in
    one utterance (latest first). A value that has any day word, or no clock time, is
    left alone. The 0.5B scheduled call-backs at "3 pm", "6 pm", "10 am" for "on
    Friday at 3 pm", "this evening at 6 pm", "on Friday at 10 am" (bench h08, u07, s07,
    b07, e07, session 8): a write at a time nobody asked for.
    """
    shown = _twelve_hour(value)
    if any(_DAY_WORD_RE.match(_bare(w)) for w in shown.split()):
        return None
    clock = _CLOCK_RE.search(shown)
    if clock is None:
        return None
    hour = clock.group(1).lstrip("0") or "0"
    for text in reversed(list(caller_texts)):
        words = _twelve_hour(text).split()
        for i, word in enumerate(words):
            digits = re.match(r"\d+", _bare(word))
            if digits is None or (digits.group().lstrip("0") or "0") != hour:
                continue
            end = i + 1 if i + 1 < len(words) and _bare(words[i + 1]) in _CLOCK_TAIL else i
            if end == i and not re.search(r"[ap]\.?m\.?$|o'?clock$", _bare(word)):
                continue  # a bare number is not that time ("3 items")
            near = [
                d
                for d in (*range(max(0, i - DAY_WINDOW_WORDS), i),
                          *range(end + 1, min(len(words), end + 1 + DAY_WINDOW_WORDS)))
                if _DAY_WORD_RE.match(_bare(words[d]))
            ]  # fmt: skip
            if not near:
                continue
            day = min(near, key=lambda d: abs(d - i))
            start, stop = min(day, i), max(day, end)
            if start > 0 and _bare(words[start - 1]) in ("this", "next"):
                start -= 1
            span = " ".join(words[start : stop + 1]).strip(_SPAN_EDGE)
            return span or None
    return None
