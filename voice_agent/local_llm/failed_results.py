"""A result that reports a failure, told in the result's own words (issue 11, grounding).

A tool that could not do what was asked says so in its result: an error
(``{"error": "no account with that number"}``), nothing found (``{"found": false,
"heard": "5 5 5 ...", "next_step": "read the number back ..."}``), or an outcome flag
that is false, with or without its reason (``{"cancelled": false, "reason": "the order
is already shipped and can no longer be cancelled"}``). Told to "tell the answer you
found", the models made one up: the 1.5B a bare refusal ("I'm sorry, but I can't help
with that.") and a reason no result gives ("I can't cancel order 2058 because it hasn't
been shipped yet."), the 0.5B the caller's account number as its balance ("The current
balance of account 60481 is $60481."; bench o07, o09, session 14). The fact the answer
is checked for (`answer_words.untold_facts`) is absent from such a result, so nothing
was added after it.

`untold_failures` finds each failure among the outcomes not yet told
(`turn_history.untold`), with the sentence that tells it (`Failure.sentence`: the
result's own error or reason, or what was not found or not done; never a reason of the
model's) and the step the result asks of the agent next (`Failure.next_step`: guidance,
never read out). `Responder._answer` says the sentences at once, with no model step; the
model speaks after them only for a next step or for the outcomes that did not fail.

What counts as a failure is general, never a tool's or an error's name: a non-empty
``error`` (text, or an object with a ``message``), ``found`` false, or a false outcome
flag (a true/false field whose name ends in "ed", as `write_outcomes` reads them) that
is the tool's own change (``cancelled`` of ``cancel_order``) or comes with a ``reason``.
A false flag of another name with no reason is a fact (``"delivered": false``), and a
result that is only call-control guidance is none (`voice_agent.guidance.is_guidance`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from voice_agent.guidance import is_guidance
from voice_agent.local_llm.turn_history import outcomes_to_tell, tool_payloads
from voice_agent.local_llm.write_outcomes import change_word, changed_thing

#: The first words of every failure's sentence: the caller hears an apology, then what
#: the result says.
APOLOGY = "Sorry, "


@dataclass(frozen=True)
class Failure:
    """A result that reports a failure: the tool, the sentence that tells it, and the step
    the result asks the agent to take next (None when it gives none)."""

    tool: str
    sentence: str
    next_step: str | None


def _text(value: Any) -> str:
    """A result's text as one line: a string, or an error object's ``message``."""
    if isinstance(value, Mapping):
        value = value.get("message")
    if not isinstance(value, str):
        return ""
    return " ".join(value.replace("_", " ").split()).strip(" .!")


def _as_said(text: str) -> str:
    """A result's text as the rest of a sentence after `APOLOGY`: its first letter lower
    unless it starts a name or an acronym ("No account ..." -> "no account ..."), and a
    bare "no ..." / "nothing ..." given its verb ("there is no account with that
    number", "there are no agents ...")."""
    if text[:1].isupper() and text[1:2].islower():
        text = text[:1].lower() + text[1:]
    bare = re.match(r"(?:no|nothing)\b(?: (\w+))?", text)
    if bare:  # "no agents ..." -> "there are no agents ..."
        plural = (bare.group(1) or "").endswith("s") and not bare.group(1).endswith("ss")
        text = f"there {'are' if plural else 'is'} {text}"
    return text


def _subject(arguments: Mapping[str, Any], heard: str) -> str:
    """What was not found, as the call named it: its first argument's value, with what
    the value is when it holds a number (``{"order_id": "4417"}``: "order 4417";
    ``{"phone_number": ...}``: "phone number ..."), as the tool heard it (``heard``: "5 5
    5 8 ...") when the result gives that."""
    for name, value in arguments.items():
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            value = heard or str(value)
            if not re.search(r"\d", value):
                return value
            words = [w for w in str(name).split("_") if w and w.lower() != "id"]
            return " ".join([*words, value])
    return heard or "that"


def _lowered(subject: str) -> str:
    """A sentence's subject inside a sentence: "Order 2058" -> "order 2058"."""
    return subject[:1].lower() + subject[1:] if subject[1:2].islower() else subject


def _false_flag(name: str, result: Mapping[str, Any], reason: str) -> str | None:
    """The outcome flag of `result` that is false and says the call's change did not
    happen: the tool's own change (``cancelled`` of ``cancel_order``) or any flag given
    with a reason. None when there is none."""
    verb = name.lower().split("_")[0]
    for field, value in result.items():
        if value is not False or not str(field).lower().endswith("ed"):
            continue
        word = change_word(str(field))
        if reason or (verb and (word.startswith(verb) or verb.startswith(word))):
            return str(field)
    return None


def failure(
    name: str, arguments: Mapping[str, Any], result: Any, *, named: bool = False
) -> Failure | None:
    """The failure `result` (of the call `name` with `arguments`) reports, or None when it
    reports none (see the module docstring). When `named` (other outcomes are told beside
    it), the sentence names what the call was about, unless it does already: "Sorry,
    account number 55120: there is no account with that number." (After "What's the
    balance on account 88301, and on account 55120?", "there is no account with that
    number" alone does not say which; bench er02, session 15.)"""
    if not isinstance(result, Mapping) or is_guidance(result):
        return None
    error, reason = _text(result.get("error")), _text(result.get("reason"))
    next_step = _text(result.get("next_step")) or None
    flag = _false_flag(name, result, reason)
    if error:
        told = _as_said(error)
    elif result.get("found") is False:
        heard = _text(result.get("heard"))
        told = _as_said(reason) if reason else f"I couldn't find {_subject(arguments, heard)}"
    elif reason and flag is not None:
        told = _as_said(reason)  # "the order is already shipped and can no longer be ..."
    elif flag is not None:
        change = flag.lower().split("_")[-1]  # "changed" of ``address_changed``
        told = f"{_lowered(changed_thing(name, arguments))} has not been {change}"
    else:
        return None
    subject = _subject(arguments, "")
    if named and arguments and subject.lower() not in told.lower():
        told = f"{subject}: {told}"
    return Failure(name, f"{APOLOGY}{told}.", next_step)


def untold_failures(messages: Sequence[Mapping[str, Any]]) -> list[Failure]:
    """The failures the resolved outcomes not yet told (`turn_history.untold`) report, in
    their order; each names its call's subject when there are several outcomes."""
    found: list[Failure] = []
    payloads = tool_payloads(messages, untold_only=True)
    for name, arguments, payload in payloads:
        if payload.get("status") != "resolved":
            continue
        told = failure(name, arguments, payload.get("result"), named=len(payloads) > 1)
        if told is not None:
            found.append(told)
    return found


def only_failures(failures: Sequence[Failure], messages: Sequence[Mapping[str, Any]]) -> bool:
    """Whether `failures` (`untold_failures` of `messages`) are every outcome not yet told
    (`turn_history.outcomes_to_tell`): then nothing but the failures is to be told."""
    return bool(failures) and len(failures) == outcomes_to_tell(messages)
