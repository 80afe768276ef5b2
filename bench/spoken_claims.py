"""The claims an answer makes, checked against the tool results it was given (issue 11).

`embedded_questions.score` counts a number no result or caller gave as invented. A
false claim holds no number: asked "Has order 3815 been sent out yet?" with the status
"packed and waiting for the courier", the 1.5B said "order 3815 has been sent out";
after a cancel that ran, "Sure, I can cancel order 4096 for you." (bench x09, x13,
session 11). `invented_claims` finds two kinds, by general rules over the results'
fields and a small vocabulary of state words (`STATES`), never a question's sentence:

- **a state claim no result supports**: a word of a state (sent, shipped, delivered,
  paid, cancelled, refunded, open, closed, done, scheduled, ...) said as a fact (`claims`:
  not negated, not asked, not a promise or a future) when no tool result in the context
  says that state (`supported`): a result's text value holding one of its words, a flag
  of its name that is true, a field the state is about (a store's ``hours`` for "open"),
  or, for the states a write brings about (`DONE`), a write that ran.
- **a write's outcome told wrongly**: a write that ran and succeeded but the answer does
  not tell it done (a promise, "I can cancel order 4096", or nothing of it); a write that
  failed or waits for the caller's yes told as done is a state claim no result supports.
- **a reason no result gives** (`invented_reasons`): a causal clause ("because ...",
  "since it ...", "as it ...", "due to ...") with a word that neither a result nor the
  caller said. After ``{"error": "that order cannot be cancelled"}`` the 1.5B said "I
  can't cancel order 2058 because it hasn't been shipped yet." (bench o09, session 14).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from voice_agent.guidance import is_guidance

#: The states a claim can be of, each with the words that say it. A word of a state is
#: supported by a result that says any word of the same state ("shipped" supports "sent
#: out": the same state in the caller's words).
STATES: dict[str, tuple[str, ...]] = {
    "shipped": ("sent", "shipped", "dispatched", "on its way", "on the way"),
    "delivered": ("delivered", "arrived"),
    "paid": ("paid", "refunded", "credited"),
    "cancelled": ("cancelled", "canceled"),
    "open": ("open", "closed"),
    "done": (
        "done", "completed", "processed", "scheduled", "booked", "arranged", "confirmed",
        "issued", "changed", "updated", "created", "opened", "submitted", "placed", "set up",
    ),
}  # fmt: skip
#: The states a write brings about: an answer that claims one tells a write done.
DONE = frozenset({"done", "cancelled", "paid"})
#: Words of a field's name that make the field about a state: a store's ``hours`` say
#: when it is open or closed, whatever words they hold.
STATE_FIELDS: dict[str, tuple[str, ...]] = {"open": ("hours", "open", "opening", "closing")}

_WORD_TO_STATE = {word: state for state, words in STATES.items() for word in words}
_STATE_WORD = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, _WORD_TO_STATE), key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
#: Where a clause ends: a claim is judged within its clause.
_CLAUSE_END = re.compile(r"[,;:]|\bbut\b|\bhowever\b", re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
#: Words before a state word in its clause that make it no claim of a fact: a negation
#: ("has not shipped"), a modal or a promise ("will be delivered", "I can cancel", "I'll
#: have it cancelled"), a condition ("once it is delivered"), a process ("being
#: processed").
_NOT_A_CLAIM = frozenset(
    "not never no cannot can could will would shall should may might must let going if "
    "whether once until unless when before being wants want like".split()
)
_NOT_A_CLAIM_ENDINGS = ("n't", "'ll", "'d")
#: Words that report what follows them ("I can confirm that it has shipped", "I'm happy
#: to tell you your order was delivered", "I see it was paid"): what is reported is
#: judged from them on, so a modal or an infinitive before them ("can", "to") takes
#: nothing from the claim; a negation before them does ("I can't confirm that it has
#: shipped" claims nothing), and so does a question word after them ("I can check
#: whether it has shipped").
_REPORTS = re.compile(
    r"\b(?:confirm(?:ed|s)?|tell you|let you know|assure you|inform you|say|see|saw|"
    r"show(?:s|ed)?|found|find|know|verif(?:y|ied))\b(?:\s+(?:you|that))*",
    re.IGNORECASE,
)
_NEGATIONS = frozenset("not never no cannot".split())
#: Right before the state word: "to be delivered", "to get it shipped".
_INFINITIVE = re.compile(r"\bto (?:be|get|have)(?: \w+)?\s*$", re.IGNORECASE)
#: A promise of a write ("I can cancel", "I'll schedule", "let me book"): the write's
#: outcome told as something still to do.
_PROMISE = re.compile(
    r"\b(?:i|we)\s*(?:can|could|will|would|'ll|'d|am going to|are going to|shall)(?!n?'t)\b"
    r"|\blet me\b|\bwould you like me to\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Claim:
    """A state word said as a fact: the word as said, its state, and its sentence."""

    word: str
    state: str
    sentence: str


def claims(spoken: str) -> list[Claim]:
    """The state words `spoken` says as facts: in a sentence that is not a question, with
    no negation, modal, promise or condition before them in their clause (`_NOT_A_CLAIM`)
    and not "to be ..." ("It is expected to be delivered on Friday"). What a clause
    reports ("I can confirm that it has shipped", `_REPORTS`) is judged from the
    reporting words on, unless they are negated."""
    found: list[Claim] = []
    for sentence_match in _SENTENCE.finditer(spoken):
        sentence = sentence_match.group().strip()
        if not sentence or sentence.endswith("?"):
            continue
        for match in _STATE_WORD.finditer(sentence):
            before = _CLAUSE_END.split(sentence[: match.start()])[-1]
            reports = list(_REPORTS.finditer(before))
            if reports:  # judged from what reports it on (`_REPORTS`)
                lead = re.findall(r"[a-z']+", before[: reports[-1].start()].lower())
                if any(w in _NEGATIONS or w.endswith("n't") for w in lead):
                    continue  # "I can't confirm that it has shipped"
                before = before[reports[-1].end() :]
            words = re.findall(r"[a-z']+", before.lower())
            if any(w in _NOT_A_CLAIM or w.endswith(_NOT_A_CLAIM_ENDINGS) for w in words):
                continue
            if _INFINITIVE.search(before) or (words and words[0] == "to"):
                continue  # "to be delivered"; "To refund an order that has shipped, ..."
            if words and words[-1] == "you":
                continue  # what the caller did ("You paid $269.98 for the order.")
            word = match.group(1).lower()
            found.append(Claim(word, _WORD_TO_STATE[word], sentence))
    return found


#: A negated word inside a result's text ("not shipped yet"): it supports no claim.
_NEGATED_IN_VALUE = re.compile(
    r"(?:\b(?:not|never|no|cannot)|n't)\s+(?:(?:yet|be|been|longer)\s+)*[a-z]+", re.IGNORECASE
)


def result_texts(value: Any) -> Iterable[str]:
    """Every text inside a result (its strings, in dicts and lists, at any depth)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from result_texts(v)
    elif isinstance(value, list):
        for v in value:
            yield from result_texts(v)


def _fields(value: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k), v
            yield from _fields(v)
    elif isinstance(value, list):
        for v in value:
            yield from _fields(v)


def supported(state: str, results: Iterable[Any], writes_done: Iterable[str] = ()) -> bool:
    """Whether a result says `state`: a text value holds one of its words (not negated),
    a field named by one of its words is true, a field it is about is there
    (`STATE_FIELDS`); or a write that ran (`writes_done`, tool names) brought it about:
    any write is "done" ("I've booked your call back"), and a write is the state its
    name's words start ("cancelled" after ``cancel_order``)."""
    words = STATES[state]
    if state == "done":  # a thing shipped, paid or cancelled has been processed, is done
        words = tuple(w for s, ws in STATES.items() if s != "open" for w in ws)
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, words)) + r")\b", re.IGNORECASE)
    for name in writes_done:
        if state == "done" or any(
            w.startswith(part) for part in name.lower().split("_") if len(part) >= 4 for w in words
        ):
            return True
    for result in results:
        for text in result_texts(result):
            if pattern.search(_NEGATED_IN_VALUE.sub(" ", text)):
                return True
        for name, value in _fields(result):
            name_words = name.lower().split("_")
            if value not in (None, "", False) and any(w in words for w in name_words):
                return True  # ``"cancelled": true``, ``"placed_on": "2026-11-02"``
            if value not in (None, "", False) and any(
                w in STATE_FIELDS.get(state, ()) for w in name_words
            ):
                return True
    return False


def write_outcome(result: Any) -> str:
    """What a write's result says happened: "done", "failed" (an error, nothing found, a
    flag that is false: ``{"cancelled": false, "reason": ...}``), "held" (waiting for the
    caller's yes: any other ``status``) or "guidance" (call control: nothing to tell)."""
    if is_guidance(result):
        return "guidance"
    if not isinstance(result, Mapping):
        return "done"
    if result.get("error") or result.get("found") is False:
        return "failed"
    if any(v is False for v in result.values()):
        return "failed"
    if isinstance(result.get("status"), str):
        return "held"
    return "done"


def tells_done(spoken: str, result: Any, arguments: Mapping[str, Any]) -> bool:
    """Whether the answer tells a write done: it claims a state the write brings about
    (`DONE`: "has been cancelled", "I've scheduled"), or says a value the write returned
    that the caller did not give (a confirmation, a ticket: "CB-6682")."""
    if any(c.state in DONE for c in claims(spoken)):
        return True
    given = {str(v).lower() for v in arguments.values()}
    said = spoken.lower()
    return any(
        len(text) >= 4 and text.lower() not in given and text.lower() in said
        for name, text in _fields(result)
        if isinstance(text, str) and re.search(r"\d", text)
    )


#: Where a clause ends, for a value told about a thing: sentence marks, commas, semicolons.
_VALUE_CLAUSE = re.compile(r"[.!?;,]\s+|[.!?]$")
#: A number as told ("$38.75", "220.00", "12"): digits with their decimal or thousands marks.
_TOLD_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _told_numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _TOLD_NUMBER.findall(text)}


def misattributed_values(
    spoken: str, results: list[dict[str, Any]], calls: list[dict[str, Any]], caller: str = ""
) -> list[str]:
    """Numbers told about one call's thing that only another call's result holds: in a
    clause that names the key of one or more calls ("account 31580": a number in its
    arguments), a number none of their results, arguments or the caller's words hold,
    and another result does. Asked for a refund and a balance, the 0.5B said "the balance
    on account 31580 is $38.75", the refund's amount (bench z12, session 13): each number
    is in some result, so neither column caught it. Clauses are cut at commas too, so a
    clause without a key is never judged."""
    pending = list(calls)
    paired: list[tuple[set[str], set[str]]] = []  # (the call's keys, its result's numbers)
    for result in results:
        call = next((c for c in pending if c["name"] == result["name"]), None)
        if call is None:
            continue
        pending.remove(call)
        keys = {
            re.sub(r"\D", "", str(v))
            for v in call["arguments"].values()
            if re.search(r"\d", str(v)) and len(re.sub(r"\D", "", str(v))) >= 3
        }
        paired.append((keys, _told_numbers(json.dumps(result["result"]))))
    why: list[str] = []
    for clause in _VALUE_CLAUSE.split(spoken):
        digits = {re.sub(r"\D", "", n) for n in _told_numbers(clause)}
        named = [numbers for keys, numbers in paired if keys & digits]
        if not named:
            continue
        own = set().union(*named) | _told_numbers(caller)
        own |= {k for keys, _ in paired for k in keys}
        others = set().union(*(numbers for _, numbers in paired)) - own
        wrong = sorted(n for n in _told_numbers(clause) if n in others)
        if wrong:
            why.append(f"tells another result's {wrong} in {clause.strip()!r}")
    return why


#: A causal clause, up to the end of its sentence or clause: "because ...", "due to ...",
#: "since" before a subject ("since it ...", not "since Monday") and "as it" / "as there"
#: ("as it has shipped"; not "as the caller gave it", "exactly as it is": a manner; not "as
#: soon as it ships": a time).
_REASON = re.compile(
    r"\b(?:because(?: of)?|due to|since (?=(?:it|its|it's|the|your|this|that|there|we|you|i|"
    r"they)\b)|(?<!exactly )(?<!just )(?<!soon )as (?=(?:it|it's|there|there's)\b))([^.!?;,]*)",
    re.IGNORECASE,
)
#: Words that carry no reason of their own: what a clause is built with.
_REASON_FILLER = frozenset(
    "a an the it its it's this that there these those we you your i they he she is are was "
    "were be been being has have had hasn't haven't isn't wasn't can't cannot couldn't "
    "doesn't didn't won't not no yet still already of to for in on at by with and or but "
    "so do does did will would can could may might must our my me us".split()
)


def _word_stem(word: str) -> str:
    return re.sub(r"(?<=\w{3})(ing|ed|es|s)$", "", word)


def invented_reasons(spoken: str, grounds: Iterable[str]) -> list[str]:
    """The causal clauses of `spoken` that hold a word no text of `grounds` (the results'
    values, the caller's words) holds, by stem ("shipped" for "ship"); fillers
    (`_REASON_FILLER`) carry no reason."""
    known = {_word_stem(w) for text in grounds for w in re.findall(r"[a-z']+", text.lower())}
    found = []
    for match in _REASON.finditer(spoken):
        words = re.findall(r"[a-z']+", match.group(1).lower())
        new = [w for w in words if w not in _REASON_FILLER and _word_stem(w) not in known]
        if new:
            found.append(match.group(0).strip())
    return found


def invented_claims(
    spoken: str,
    results: list[dict[str, Any]],
    earlier_results: list[Any],
    write_tools: set[str],
    calls: list[dict[str, Any]],
    caller: str = "",
) -> list[str]:
    """Why `spoken` makes a claim no result supports, tells a write's outcome wrongly,
    gives a reason no result or caller gives (`invented_reasons`), or
    tells a number about a thing whose result does not hold it (`misattributed_values`);
    empty when it does none. `results` are this question's ``{name, result}``,
    `earlier_results` those of its history, `write_tools` the names of the tools that
    change the world, `calls` this question's ``{name, arguments}``, `caller` what the
    caller said."""
    why: list[str] = misattributed_values(spoken, results, calls, caller)
    writes = [r for r in results if r["name"] in write_tools]
    outcomes = [write_outcome(r["result"]) for r in writes]
    context = [r["result"] for r in results] + list(earlier_results)
    done = [w["name"] for w, outcome in zip(writes, outcomes, strict=True) if outcome == "done"]
    unsupported = sorted({c.word for c in claims(spoken) if not supported(c.state, context, done)})
    if unsupported:
        why.append(f"claims no result supports: {unsupported}")
    grounds = [*result_texts(context), *(str(k) for r in context for k, _ in _fields(r)), caller]
    reasons = invented_reasons(spoken, grounds)
    if reasons:
        why.append(f"a reason no result gives: {reasons}")
    arguments: dict[str, Mapping[str, Any]] = {
        r["name"]: next((c["arguments"] for c in calls if c["name"] == r["name"]), {})
        for r in writes
    }
    for write, outcome in zip(writes, outcomes, strict=True):
        if outcome != "done" or tells_done(spoken, write["result"], arguments[write["name"]]):
            continue
        told = "told as a promise" if _PROMISE.search(spoken) else "not told"
        why.append(f"the {write['name']} that ran is {told}")
    return why
