"""The words an answer from tool results may use: the result's, not the caller's framing.

Asked "Has order 3307 been dispatched?" with a result that says ``shipped``, the
1.5B answered "... has been dispatched"; asked whether order 40716 "has left the
warehouse yet", with ``out for delivery``, it said "... has left the warehouse"
(bench e11, e01, session 7): the answer took the caller's words instead of the
result's, and a note asking for the result's words, or quoting them, changed
nothing. So the answer's grammar leaves those words out: a word of the caller's
latest words that nothing the agent was given says (`caller_only_words`: not a
result's key or value, not a call's argument, not the called tools' names and
descriptions, not the system prompt, not a common word, not a name) cannot
be said in the answer: its stem is banned, any case, inside words or at their start
(`answer_bans`, for `grammar.speech_grammar`). The model then says what it has:
"... has shipped".

And an answer that said a result's value only in part ("has been paid" for "paid on
May 28") is followed by the whole value (`half_said_values`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from voice_agent.local_llm.chat_format import ChatFormatError, content_text
from voice_agent.local_llm.turn_history import tool_payloads

#: Shortest word that is banned (letters): shorter words carry no fact of their own.
MIN_BANNED_LETTERS = 4
#: Common words never banned: what a caller asks with, not what they ask about.
_COMMON = frozenset(
    "this that these those what when where which while whom whose with without would could "
    "should shall will been being have having does doing done did there their they them then "
    "than from into onto over under about after before again also just only very much many "
    "more most some such your yours mine please thanks thank hello okay yeah sure know want "
    "need like tell give take make call check look find help able still here well good great "
    "today right sorry morning evening afternoon night hi hey anyway actually really maybe "
    "going gonna wanna something anything nothing everything someone anyone".split()
)
_WORD_RE = re.compile(r"[A-Za-z]+")
_SUFFIX_RE = re.compile(r"(?:ing|ed|es|s)$")


def _stem(word: str) -> str:
    """A word without an inflection's ending, and without a final "e" ("warehouse" ->
    "warehous": the 1.5B, with "warehouse" banned, said "warehousing"), when at least
    `MIN_BANNED_LETTERS` remain."""
    stem = _SUFFIX_RE.sub("", word)
    if len(stem) < MIN_BANNED_LETTERS:
        stem = word
    if stem.endswith("e") and len(stem) - 1 >= MIN_BANNED_LETTERS:
        stem = stem[:-1]
    return stem


def _said_in(stem: str, vocabulary: set[str]) -> bool:
    """Whether a stem is a word of the vocabulary, as itself, inflected, or by its first
    five letters ("deliver" in "delivery"). A shorter stem only as itself or inflected:
    "sent" is not said by the prompt's "sentence" (told "Has order 3815 been sent out
    yet?", the 1.5B answered "Okay, order 3815 has been sent out." for an order packed
    and waiting for the courier; bench x09, session 11)."""
    if len(stem) >= 5:
        return any(
            word.startswith(stem[:5]) or (len(word) >= 4 and stem.startswith(word))
            for word in vocabulary
        )
    inflected = re.compile(re.escape(stem) + r"(?:e?s|e?d|ing|e?r|ers|ly)?")
    return any(
        inflected.fullmatch(word) or (len(word) >= 4 and stem.startswith(word))
        for word in vocabulary
    )


def _result_texts(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    texts: list[str] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            try:
                texts.append(content_text(message.get("content")))
            except ChatFormatError:
                continue
        elif role == "assistant":
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping):
                    texts.append(str(function.get("name", "")).replace("_", " "))
                    texts.append(str(function.get("arguments", "")).replace("_", " "))
    return texts


def _given_words(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> set[str]:
    """The words (lower-case) of what the agent was given: results, calls, the system
    prompt, the tools' names and descriptions."""
    given = _result_texts(messages)
    if messages and messages[0].get("role") == "system":
        given.append(content_text(messages[0].get("content")))
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, Mapping):
            given.append(json.dumps(function).replace("_", " "))
    return {w.lower() for text in given for w in _WORD_RE.findall(text)}


def caller_only_words(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Stems of the caller's latest words that nothing the agent was given says (see the
    module docstring), lower-case, sorted."""
    latest = next(
        (content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )
    vocabulary = _given_words(messages, tools)
    banned: set[str] = set()
    for match in _WORD_RE.finditer(latest):
        word = match.group()
        before = latest[: match.start()].rstrip()
        if word[0].isupper() and before and before[-1] not in ".?!":
            continue  # a name ("Denver", "Sam"), not at a sentence's start
        lowered = word.lower()
        if len(lowered) < MIN_BANNED_LETTERS or lowered in _COMMON:
            continue
        stem = _stem(lowered)
        if not _said_in(stem, vocabulary) and lowered not in vocabulary:
            banned.add(stem)
    return sorted(banned)


#: A banned stem this long (letters) is banned anywhere inside a word, a shorter one
#: only at a word's start: the 1.5B glued "warehouse" to the word before it
#: ("yourwarehouse") when it was banned only as a start, while "come" and "turn" are
#: inside "welcome" and "return".
INSIDE_WORDS_LETTERS = 6


class AnswerBans(NamedTuple):
    """Where the answer's grammar bans the caller-only stems, for
    `grammar.speech_grammar`'s ``banned``, ``banned_starts`` and ``speakable``."""

    anywhere: list[str]
    starts: list[str]
    #: Given words a start-banned stem begins ("sentence" for "sent"): still speakable.
    speakable: list[str]


def answer_bans(
    stems: Sequence[str],
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
) -> AnswerBans:
    """Where the answer's grammar bans each of the caller-only `stems`. A stem of
    `INSIDE_WORDS_LETTERS` letters or more is banned anywhere, unless a word the agent
    was given holds it inside: then only at a word's start, so that the result's own
    word stays speakable (asked "Has it been delivered?" with ``undelivered``, the
    answer may say "undelivered", not "delivered"). A stem banned at a word's start
    that begins a given word (only a short one can: `caller_only_words` counts a longer
    stem said by a word its first five letters begin) leaves that word speakable
    ("sent" with "sentence"; asked "inwa" with ``inwarehouse``, the grammar banned the
    result's word before session 14). So every word the agent was given can be said."""
    vocabulary = _given_words(messages, tools)
    anywhere: list[str] = []
    starts: list[str] = []
    for stem in stems:
        inside = any(stem in word[1:] for word in vocabulary)
        (anywhere if len(stem) >= INSIDE_WORDS_LETTERS and not inside else starts).append(stem)
    speakable = sorted(w for w in vocabulary if any(w.startswith(s) for s in starts))
    return AnswerBans(anywhere, starts, speakable)


# ------------------------------------------------ a value the answer half-said

#: Words of a result's value that carry nothing of its own ("paid on May 28": "paid"
#: and "may" are its words, "on" is not).
_FILLER = frozenset("a an the on in at of to for by and or is are was were be".split())


def _results_by_call(
    messages: Sequence[Mapping[str, Any]],
) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(the tool's name, the call's arguments, its result) of each result the agent has
    not spoken about yet (`turn_history.untold`): what the answer tells."""
    return [
        (name, arguments, payload["result"])
        for name, arguments, payload in tool_payloads(messages, untold_only=True)
        if payload.get("status") == "resolved" and isinstance(payload.get("result"), dict)
    ]


def call_subject(arguments: Mapping[str, Any]) -> str:
    """What a call was about, in words: a number with what it numbers ("order 5521" for
    ``{"order_id": "5521"}``), a name as itself ("Tulsa" for ``{"city": "Tulsa"}``, not
    "city Tulsa")."""
    for name, value in arguments.items():
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            if not re.search(r"\d", str(value)):
                return str(value)
            words = [w for w in str(name).split("_") if w.lower() not in ("id", "number")]
            return " ".join([*words, str(value)])
    return ""


#: First words of a tool's name that read, not change: such a tool's result is about
#: what it was called on ("order 5521"), never a thing it made.
READING_VERBS = frozenset(
    "get look lookup check find search list read show fetch query see view".split()
)


def made_thing(name: str) -> str:
    """What a tool that changes things acts on, from its name: the words after its verb
    ("callback" of ``schedule_callback``, "delivery address" of
    ``update_delivery_address``); "" for a tool that reads (`READING_VERBS`) or whose
    name is one word."""
    verb, *thing = [w for w in name.lower().split("_") if w]
    return "" if verb in READING_VERBS or not thing else " ".join(thing)


def call_about(name: str, arguments: Mapping[str, Any]) -> str:
    """What a call's result is about, for a sentence that tells one of its values: "your
    callback" when the tool made a thing none of its arguments names (``schedule_callback``
    with a phone and a time: the time is the call back's, not the phone's), else the
    call's subject (`call_subject`: "order 5521")."""
    thing = made_thing(name)
    argument_words = {w for a in arguments for w in str(a).lower().split("_")}
    if thing and not set(thing.split()) & argument_words:
        return f"your {thing}"
    return call_subject(arguments)


#: Words that say which day a value's numbers are on ("Friday 10 am", "paid on May 28"),
#: and that name a day or a month, not a thing a tool looks up (`respond`).
DAY_WORDS = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday today tomorrow tonight "
    "january february march april may june july august september october november "
    "december".split()
)


def half_said_values(answer: str, messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences that tell what an answer from results said only half of: a result's value
    holding a number ("paid on May 28") whose words the answer said ("paid") but not its
    number(s), or whose numbers it said ("10 am") but not the day they are on ("Friday 10
    am"). One sentence per such value, from its field and what the call was about
    (`value_sentence`: "The refund for order 5521 is paid on May 28."); none when the answer said the value
    whole, or none of it (a value left out was not asked about).

    Asked "Is order 6127 delivered, and has the refund for order 5521 been paid?", the
    1.5B answered "The refund for order 5521 has been paid." with the result's "paid on
    May 28" (bench h15, sessions 6 to 9, greedy): it took the caller's yes/no framing and
    left the date out. With a call back booked for "Friday 10 am", it said "... at 10
    am" (bench x07, session 11): a time on no day. A day left out counts also in a value
    that is the call's own argument (the time the write was done for).
    """
    said_numbers = set(re.findall(r"[0-9]+", answer))
    said_words = {_stem(w.lower()) for w in _WORD_RE.findall(answer)}
    said_days = {w.lower() for w in _WORD_RE.findall(answer)} & DAY_WORDS
    values: list[tuple[str, str, str, set[str], set[str], set[str]]] = []
    for name, arguments, result in _results_by_call(messages):
        argument_texts = {str(v) for v in arguments.values()}
        for field, value in result.items():
            if not isinstance(value, str) or field == "note":
                continue
            numbers = set(re.findall(r"[0-9]+", value))
            words = {
                _stem(w.lower())
                for w in _WORD_RE.findall(value)
                if len(w) >= 3 and w.lower() not in _FILLER
            }
            days = {w.lower() for w in _WORD_RE.findall(value)} & DAY_WORDS
            if numbers and words and (value not in argument_texts or days):
                values.append((field, value, call_about(name, arguments), numbers, words, days))
    # Words of the values said whole say nothing of another value: "July" of "paid on
    # July 14" is not "July 1", a due date left out (bench v06, session 10).
    whole = {
        w
        for _, _, _, numbers, words, days in values
        if numbers <= said_numbers and days <= said_days
        for w in words
    }
    added: list[str] = []
    for field, value, subject, numbers, words, days in values:
        if numbers <= said_numbers:
            half = not days <= said_days  # its time said, not its day
        else:
            half = bool((words & said_words) - whole)
        if half:
            added.append(value_sentence(field, subject, value))
    return added


def value_sentence(field: str, subject: str, value: object) -> str:
    """A result's value told in a sentence: "The refund for order 5521 is paid on May
    28.", "The time of your callback is Friday 10 am." (`call_about`)."""
    about = f" for {subject}" if subject else ""
    if subject.startswith("your "):
        about = f" of {subject}"
    verb = "are" if _plural(field) else "is"
    return f"The {field.replace('_', ' ')}{about} {verb} {value}."


def _plural(field: str) -> bool:
    """Whether a field's name is a plural noun ("hours", "recent_orders"; not "status",
    "address", "bonus")."""
    last = field.lower().split("_")[-1]
    return last.endswith("s") and not last.endswith(("ss", "us", "is"))


# ------------------------------------------------ the fact the answer left out

#: Words of a field's name that say which thing, not what about it ("order" of
#: ``order_number``): a field is asked for by its other words.
_KEY_WORDS = frozenset("id number no".split())


def _name_words(field: str) -> list[str]:
    return [w for w in field.lower().split("_") if w and w not in _KEY_WORDS]


def _said(value: str, answer_words: set[str], answer: str) -> bool:
    """Whether an answer says a value: verbatim, or half or more of its words (stemmed),
    numbers included ("awaiting collection" of "awaiting collection from the courier")."""
    if value.lower() in answer.lower():
        return True
    words = [w for w in re.findall(r"[A-Za-z]+|[0-9]+", value) if w.lower() not in _FILLER]
    said = [w in answer_words if w.isdigit() else _stem(w.lower()) in answer_words for w in words]
    return bool(words) and sum(said) * 2 >= len(words)


def _main_fields(function: Mapping[str, Any], result: Mapping[str, Any]) -> list[str]:
    """The result's fields the tool's description names, the first named first ("Look up
    an order: its status, items, total and estimated delivery date." -> ``status``)."""
    description = str(function.get("description", "")).lower()
    named = []
    for field in result:
        words = _name_words(str(field))
        at = description.find(" ".join(words)) if words else -1
        if at >= 0:
            named.append((at, str(field)))
    return [field for _, field in sorted(named)]


def untold_facts(
    answer: str,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]],
    *,
    main_fact: bool = True,
) -> list[str]:
    """Sentences that tell what an answer from results left out of each result not yet
    told (`turn_history.untold`): the fields the caller's latest words name (every word of the
    field's name said, "total" of "What was the total?"; not a field named only by
    words of the tool's or its arguments' names), else the tool's main
    fact (the field its description names first, `_main_fields`). One sentence per
    such value left out ("The status for order 11376 is shipped."); a value that is a
    call's argument, not text or a number, or a note is never one. Without `main_fact`
    (a follow-up on what an earlier answer told, `turn_history.looks_up_again`), only
    the fields the caller names.

    Asked "Can you check 11367, oh sorry, 11376?", the 1.5B answered with the order's
    items and the day it was placed, and not its status (bench k18, session 10), which
    ``lookup_order`` is described by first.
    """
    by_name = {
        str(t["function"].get("name")): t["function"]
        for t in tools
        if isinstance(t.get("function"), Mapping)
    }
    latest = next(
        (content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )
    caller = {_stem(w.lower()) for w in _WORD_RE.findall(latest)}
    answer_words = {_stem(w.lower()) for w in _WORD_RE.findall(answer)}
    answer_words |= set(re.findall(r"[0-9]+", answer))
    added: list[str] = []
    for name, arguments, payload in tool_payloads(messages, untold_only=True):
        result = payload.get("result")
        if payload.get("status") != "resolved" or not isinstance(result, dict):
            continue
        argument_texts = {str(v) for v in arguments.values()}
        told = {
            str(field): value
            for field, value in result.items()
            if isinstance(value, str | int | float)
            and not isinstance(value, bool)
            and str(value) not in argument_texts
            and field != "note"
            and str(value).strip()
        }
        # (a field named only by words of the tool's or its arguments' names says which
        # thing was looked up: "order" of ``order_number`` asks for nothing)
        which = set(_name_words(name)) | {w for a in arguments for w in _name_words(str(a))}
        asked = [
            f
            for f in told
            if set(_name_words(f)) - which and all(_stem(w) in caller for w in _name_words(f))
        ]
        main = _main_fields(by_name.get(name) or {}, told)[:1] if main_fact else []
        wanted = asked or main
        for field in wanted:
            value = str(told[field])
            if not _said(value, answer_words, answer):
                added.append(value_sentence(field, call_about(name, arguments), value))
    return added
