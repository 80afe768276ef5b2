"""What the conversation holds for the reply: this turn's calls and values, and the
outcomes still to tell.

Plain functions over OpenAI messages (dicts) that `respond` uses to decide
what a reply may still call and say. Two spans of the conversation, each
defined once:

- **this turn** (`calls_this_turn`): since the caller last spoke. The argument
  values its calls already used, and what the caller's latest request can ground.
- **untold** (`untold`): since the caller or the model last said something (the
  engine's own words, `ledger.render.ENGINE_SPEAKER`, tell nothing). The
  outcomes there are the ones the reply tells (`outcomes_to_tell`, the answer
  note, `answer_words`' checks), or follows (guidance), or leaves to the engine
  (writes held for the caller's yes).

The engine's ``get_result`` calls (a late result's fetch) are not calls of
their own here: they stand for the call they answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ledger.render import ENGINE_SPEAKER
from voice_agent.guidance import NOTE, is_guidance
from voice_agent.local_llm.chat_format import (
    RESULT_FETCH_TOOL,
    ChatFormatError,
    calls_by_id,
    content_text,
)
from voice_agent.local_llm.grounding import grounding_sources, value_grounded


def argument_values(arguments_text: str) -> set[str]:
    """The string and number values of a call's arguments, normalised (case, spacing)."""
    try:
        arguments = json.loads(arguments_text) if arguments_text.strip() else {}
    except json.JSONDecodeError:
        return set()
    values: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        else:
            text = " ".join(str(value).lower().split())
            if text:
                values.add(text)

    if isinstance(arguments, dict):
        walk(arguments)
    return values


def values_used_this_turn(messages: Sequence[Mapping[str, Any]]) -> set[str]:
    """Argument values of the calls made since the caller last spoke."""
    values: set[str] = set()
    for _, arguments in calls_this_turn(messages):
        values |= argument_values(arguments)
    return values


def calls_this_turn(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(name, arguments) of the calls made since the caller last spoke."""
    calls: list[tuple[str, str]] = []
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping) and function.get("name") != RESULT_FETCH_TOOL:
                    calls.append((str(function.get("name")), str(function.get("arguments", ""))))
    return calls


#: Tool-message statuses that carry no outcome yet (the engine's placeholders).
_NO_OUTCOME_YET = ("pending", "awaiting_confirmation")


def _untold_start(messages: Sequence[Mapping[str, Any]]) -> int:
    """Index of the first message after the caller's or the agent's last words.

    The engine's own words (an assistant message named `ENGINE_SPEAKER`: a hold phrase,
    the apology) tell nothing: a result that came before them is still to tell.
    """
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") == "user":
            return index + 1
        if message.get("role") == "assistant" and message.get("name") != ENGINE_SPEAKER:
            try:
                if content_text(message.get("content")).strip():
                    return index + 1
            except ChatFormatError:
                continue
    return 0


def untold(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The messages since the caller or the agent last said something (an assistant
    message with words): the outcomes among them are the ones the reply has to tell.

    In ``async`` mode one turn's answer takes several generations: the engine asks
    again for each outcome that arrives after the agent spoke about the earlier ones
    (a ``get_result`` pair after the agent's words). Told to tell every answer since
    the caller spoke, the 1.5B told the first result again, word for word, before the
    new one (spoken call s06, session 9). The calls of the turn (`calls_this_turn`)
    still count from the caller's words: a value they gave serves one request.
    """
    return list(messages[_untold_start(messages) :])


def _outcomes(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """(tool_call_id, outcome) of each tool message in `messages` that carries an outcome,
    in order: its JSON (an object or any value), or its text when it is no JSON (another
    client's plain text result); the engine's placeholders (`_NO_OUTCOME_YET`) are left
    out."""
    outcomes: list[tuple[str, Any]] = []
    for message in messages:
        if message.get("role") != "tool":
            continue
        call_id = str(message.get("tool_call_id"))
        try:
            text = content_text(message.get("content"))
        except ChatFormatError:
            outcomes.append((call_id, message.get("content")))
            continue
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            outcomes.append((call_id, text))
            continue
        if not isinstance(payload, dict) or payload.get("status") not in _NO_OUTCOME_YET:
            outcomes.append((call_id, payload))
    return outcomes


def calls_to_tell(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(name, arguments) of the calls whose outcomes are to be told (`outcomes_to_tell`);
    a late result's ``get_result`` stands for the call it answers."""
    calls = calls_by_id(messages)
    return [calls[i] for i, _ in _outcomes(untold(messages)) if i in calls]


def told_this_turn(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when the agent spoke after an outcome of this turn: a result it told (or
    could have), still in the conversation beside the ones to tell now."""
    start = max((i + 1 for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
    return len(_outcomes(messages[start:])) > len(_outcomes(untold(messages)))


def outcomes_to_tell(messages: Sequence[Mapping[str, Any]]) -> int:
    """How many tool messages the agent has not spoken about yet (`untold`) carry an
    outcome (a result or a failure; not the engine's "pending" or "awaiting
    confirmation")."""
    return len(_outcomes(untold(messages)))


def guidance_results(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    """The tools' guidance results when the outcomes not yet told (`untold`) carry
    nothing else; None when one carries something to tell or none has arrived yet.

    Guidance (`voice_agent.guidance`) is a result with no fact, only flags and a note
    for the agent (call control: ``{"ending": true, "note": "the call ends after your
    goodbye"}``).
    """
    results: list[dict[str, Any]] = []
    for _, payload in _outcomes(untold(messages)):
        if not isinstance(payload, dict) or payload.get("status") != "resolved":
            return None
        result = payload.get("result")
        if not isinstance(result, dict) or not is_guidance(result):
            return None
        results.append(result)
    return results or None


def guidance_notes(messages: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """The notes of the `guidance_results` (None when there are none)."""
    results = guidance_results(messages)
    return [r[NOTE] for r in results] if results else None


def results_note_kind(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """What the outcomes not yet told (`untold`) leave the reply to do.

    ``"answer"``: an outcome carries something to tell (a result with a fact,
    a failure, another client's plain text). ``"guidance"``: every outcome is
    guidance (`guidance_notes`). None: no outcome to tell (`outcomes_to_tell` is 0).
    """
    if guidance_notes(messages):
        return "guidance"
    return "answer" if outcomes_to_tell(messages) else None


def only_awaiting_confirmation(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when every tool message not yet told (`untold`) is a write held for the
    caller's yes.

    The engine reads such a write back to the caller itself ("Just to confirm:
    cancel order 4471. Shall I go ahead?"); whatever the model said on top of
    it could only repeat the question or contradict it (the 1.5B said "The
    order has been cancelled." right before the read-back).
    """
    seen = False
    for message in untold(messages):
        if message.get("role") != "tool":
            continue
        try:
            payload = json.loads(content_text(message.get("content")))
        except (json.JSONDecodeError, ChatFormatError):
            return False
        if not isinstance(payload, dict) or payload.get("status") != "awaiting_confirmation":
            return False
        seen = True
    return seen


def latest_request_sources(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    """What the caller's latest request can ground: their last words and the results since."""
    start = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=0)
    return grounding_sources(messages[start:], include_system=False)


def only_reuses(
    arguments_text: str, used: set[str], summaries: frozenset[str] = frozenset()
) -> bool:
    """True when every value of the call was already used by a call of this turn.

    A value the caller said once serves one request: the 1.5B, asked about a
    refund for order 2290, also looked up and *cancelled* order 2290. A call
    with no values (no arguments) is never a reuse. Arguments named in
    `summaries` (the model's own words, see `grounding.SUMMARY_KEYWORD`) bring
    no value: the 0.5B, after looking up order 30425, asked to refund it with
    the reason "I'm sorry, I can't refund this order."
    """
    try:
        arguments = json.loads(arguments_text) if arguments_text.strip() else {}
    except json.JSONDecodeError:
        return False
    if isinstance(arguments, dict) and summaries:
        arguments_text = json.dumps({k: v for k, v in arguments.items() if k not in summaries})
    values = argument_values(arguments_text)
    return bool(values) and values <= used


def latest_caller_words(messages: Sequence[Mapping[str, Any]]) -> str:
    """The text of the caller's last message ("" when there is none)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def tool_payloads(
    messages: Sequence[Mapping[str, Any]], *, untold_only: bool = False
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(tool name, the call's arguments, the tool message's JSON object) of each tool
    message in `messages` that holds an object (the engine's envelope: ``{"status":
    "resolved", "result": ...}``); another client's plain text or JSON list is left out.

    A late result the engine fetched with ``get_result({"call_id": ...})`` is given the
    name and arguments of the call it answers. With `untold_only`, only the tool
    messages the agent has not spoken about yet (`untold`) are taken.
    """
    calls = calls_by_id(messages)
    found: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    first = _untold_start(messages) if untold_only else 0
    for index, message in enumerate(messages):
        if message.get("role") != "tool" or index < first:
            continue
        try:
            payload = json.loads(content_text(message.get("content")))
        except (json.JSONDecodeError, ChatFormatError):
            continue
        if isinstance(payload, dict):
            name, arguments_text = calls.get(str(message.get("tool_call_id")), ("", ""))
            try:
                arguments = json.loads(arguments_text) if arguments_text.strip() else {}
            except json.JSONDecodeError:
                arguments = {}
            found.append((name, arguments if isinstance(arguments, dict) else {}, payload))
    return found


def result_fields(messages: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Tool name -> the field names its resolved results carried in `messages`
    (``{"get_account_balance": ["account_number", "balance", "due_date"]}``)."""
    fields: dict[str, list[str]] = {}
    for name, _, payload in tool_payloads(messages):
        result = payload.get("result")
        if name and isinstance(result, dict):
            known = fields.setdefault(name, [])
            known += [str(k) for k in result if str(k) not in known]
    return fields


def looks_up_again(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when the calls since the caller last spoke are about what an earlier caller
    turn gave (every value of theirs was said before, none in the latest words): a
    follow-up on something already answered ("When is that due?" after a balance;
    "And when will it arrive?" after an order's status)."""
    latest = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    if latest < 0:
        return False
    earlier = [content_text(m.get("content")) for m in messages[:latest] if m.get("role") == "user"]
    values = values_used_this_turn(messages)
    said_now = [content_text(messages[latest].get("content"))]
    return (
        bool(earlier)
        and bool(values)
        and all(value_grounded(v, earlier) and not value_grounded(v, said_now) for v in values)
    )
