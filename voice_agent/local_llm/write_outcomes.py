"""A change the tools made, told as done: an answer after a write says what happened.

After ``cancel_order`` ran and returned ``{"cancelled": true, ...}``, the 1.5B answered
"Sure, I can cancel order 4096 for you." (bench x13, session 11): the caller heard a
promise of what was already done, and never that it was done. `untold_outcomes` finds
the outcomes of this turn's results (`turn_history.untold`) that an answer did not tell,
and gives a sentence for each, said after the answer:

- an **outcome flag**, a true/false field whose name says a change ("cancelled",
  "refunded", "changed", "updated": it ends in "ed"; a result that is only call-control
  guidance has none, `voice_agent.guidance.is_guidance`): a true one is told when a
  sentence of the answer says the change's word ("cancel" of "cancelled"), or a word
  of any change done (`_DONE_STARTS`: "updated", "done"), as a fact,
  else "Order 4096 has been cancelled." follows; a false one must not be said as a fact
  (the answer tells why from the result's reason), else "Order 4096 has not been
  cancelled." follows;
- a **promise of a done call** without such a flag ("I can schedule a call back for
  you" after ``schedule_callback`` returned): the answer offers to do what the tool's
  name says (its first word, a verb not of reading, `answer_words.READING_VERBS`) with a
  modal before it ("I can", "I'll", "let me"). Then "Your callback has been scheduled.".

Each sentence names what was changed as a person would (`changed_thing`): the order
itself for ``cancel_order`` ("Order 4096"), the thing for the order when the tool
changes part of it ("The delivery address for order 7781" for
``update_delivery_address``), and the caller's own thing when no argument names it
("Your callback": its phone number is not what was scheduled).

A result that failed (an ``error``, a false flag) is told before the answer, in its own
words (`failed_results`); only its flag is checked here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from peripherals.text_chunker import SENTENCE_MARKS
from voice_agent.guidance import is_guidance
from voice_agent.local_llm.answer_words import READING_VERBS, call_about, made_thing
from voice_agent.local_llm.turn_history import tool_payloads

#: Words before a change's word in its sentence that make it no fact: a negation, a
#: modal, a promise, a condition.
_NOT_A_FACT = frozenset(
    "not never no cannot can could will would shall should may might must let going if "
    "whether once until unless want like".split()
)
_NOT_A_FACT_ENDINGS = ("n't", "'ll", "'d")
#: Starts of words that tell any change done ("The address has been updated" for a
#: ``changed`` flag, "All done").
_DONE_STARTS = ("done", "updat", "chang", "complet", "process", "booked", "schedul", "went through")
#: A promise before a verb ("I can", "we'll", "I am going to", "let me").
_PROMISE_BEFORE = (
    r"\b(?:(?:i|we)\s*(?:can|could|will|would|'ll|'d|shall|am going to|are going to)"
    r"(?:\s+(?:now|also|just|certainly|definitely|gladly))?|let me|happy to|glad to)\s+"
)
_SENTENCE = re.compile(rf"[^{SENTENCE_MARKS}]+[{SENTENCE_MARKS}]*")  # the chunker's marks


def change_word(field: str) -> str:
    """The start of a change's word that every form of it has: "cancel" of "cancelled",
    "refund" of "refunded", "chang" of "changed" (and of ``address_changed``)."""
    word = field.lower().split("_")[-1]
    return re.sub(r"(?:led|ed|d)$", "", word) if len(word) > 5 else word


def _said_as_fact(answer: str, word: str) -> bool:
    """Whether a sentence of `answer` says a word starting `word` as a fact: not asked,
    and with no negation, modal or promise before it (`_NOT_A_FACT`)."""
    for sentence in _SENTENCE.findall(answer):
        if sentence.strip().endswith("?"):
            continue
        for match in re.finditer(rf"\b{re.escape(word)}\w*", sentence, re.IGNORECASE):
            before = re.findall(r"[a-z']+", sentence[: match.start()].lower())
            if not any(w in _NOT_A_FACT or w.endswith(_NOT_A_FACT_ENDINGS) for w in before):
                return True
    return False


def _participle(verb: str) -> str:
    if verb.endswith("e"):
        return verb + "d"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ied"
    return verb + "ed"


def changed_thing(name: str, arguments: Mapping[str, Any]) -> str:
    """What a change was made to, as a sentence's subject: the call's subject when the
    tool's thing is in it ("Order 4096" for ``cancel_order``), the thing for the
    subject when not ("The delivery address for order 7781" for
    ``update_delivery_address``), the caller's thing when no argument names it ("Your
    callback" for ``schedule_callback``; `answer_words.call_about`)."""
    about = call_about(name, arguments)
    thing = made_thing(name)
    if thing and about and not about.startswith("your "):
        if not set(thing.split()) <= set(about.lower().split()):
            about = f"the {thing} for {about}"
    about = about or (f"the {thing}" if thing else "it")
    return about[:1].upper() + about[1:]


def _promised(answer: str, name: str, arguments: Mapping[str, Any]) -> str | None:
    """The sentence "<thing> has been <verb>ed." when `answer` promises what the tool
    `name` does ("I can schedule ..." for ``schedule_callback``: "Your callback has been
    scheduled."), else None."""
    verb = name.lower().split("_")[0]
    if verb in READING_VERBS or not made_thing(name):
        return None
    if not re.search(_PROMISE_BEFORE + re.escape(verb) + r"\b", answer, re.IGNORECASE):
        return None
    return f"{changed_thing(name, arguments)} has been {_participle(verb)}."


def untold_outcomes(answer: str, messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences that tell the outcome of each change this turn's results report and
    `answer` did not tell (see the module docstring), in the results' order."""
    added: list[str] = []
    for name, arguments, payload in tool_payloads(messages, untold_only=True):
        result = payload.get("result")
        if payload.get("status") != "resolved" or not isinstance(result, dict):
            continue
        if is_guidance(result):
            continue
        flags = [
            (str(field), value)
            for field, value in result.items()
            if isinstance(value, bool) and str(field).lower().endswith("ed")
        ]
        subject = changed_thing(name, arguments)
        for field, done in flags:
            said = _said_as_fact(answer, change_word(field))
            if done and not said:
                said = any(_said_as_fact(answer, start) for start in _DONE_STARTS)
            if said is not done:
                change = field.lower().split("_")[-1]  # "changed" of ``address_changed``
                added.append(f"{subject} has {'' if done else 'not '}been {change}.")
        if not flags and not result.get("error"):
            promise = _promised(answer, name, arguments)
            if promise is not None:
                added.append(promise)
    return added
