"""What the conversation since the caller last spoke holds: calls, values, outcomes.

Plain functions over OpenAI messages (dicts) that `respond` uses to decide
what a reply may still call and say: the argument values calls of this turn
already used, whether outcomes arrived, whether the only outcomes are writes
held for the caller's yes, and what the caller's latest request can ground.
The engine's ``get_result`` calls (a late result's fetch) are not calls of
their own here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from voice_agent.local_llm.chat_format import ChatFormatError, content_text
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
                if isinstance(function, Mapping) and function.get("name") != "get_result":
                    calls.append((str(function.get("name")), str(function.get("arguments", ""))))
    return calls


#: Tool-message statuses that carry no outcome yet (the engine's placeholders).
_NO_OUTCOME_YET = ("pending", "awaiting_confirmation")


def results_this_turn(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when a tool message since the caller last spoke carries an outcome to tell
    (a result or a failure; not the engine's "pending" or "awaiting confirmation")."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return False
        if message.get("role") == "tool":
            try:
                payload = json.loads(content_text(message.get("content")))
            except (json.JSONDecodeError, ChatFormatError):
                return True  # another client's plain text result
            if not isinstance(payload, dict) or payload.get("status") not in _NO_OUTCOME_YET:
                return True
    return False


def outcomes_this_turn(messages: Sequence[Mapping[str, Any]]) -> int:
    """How many tool messages since the caller last spoke carry an outcome (see
    `results_this_turn`)."""
    count = 0
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        if message.get("role") == "tool":
            try:
                payload = json.loads(content_text(message.get("content")))
            except (json.JSONDecodeError, ChatFormatError):
                count += 1
                continue
            if not isinstance(payload, dict) or payload.get("status") not in _NO_OUTCOME_YET:
                count += 1
    return count


def guidance_notes(messages: Sequence[Mapping[str, Any]]) -> list[str] | None:
    """The tools' guidance notes when the outcomes since the caller last spoke carry
    nothing else; None when one carries something to tell or none has arrived yet.

    Guidance is a result with no fact, only flags and a `note` for the agent (call
    control: ``{"ending": true, "note": "the call ends after your goodbye"}``).
    """
    notes: list[str] = []
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        if message.get("role") != "tool":
            continue
        try:
            payload = json.loads(content_text(message.get("content")))
        except (json.JSONDecodeError, ChatFormatError):
            return None
        if isinstance(payload, dict) and payload.get("status") in _NO_OUTCOME_YET:
            continue
        if isinstance(payload, dict) and payload.get("status") == "resolved":
            result = payload.get("result")
            if (
                isinstance(result, dict)
                and isinstance(result.get("note"), str)
                and all(isinstance(v, bool) or v is None for k, v in result.items() if k != "note")
            ):
                notes.append(result["note"])
                continue
        return None
    return notes or None


def results_note_kind(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """What the outcomes since the caller last spoke leave the reply to do.

    ``"answer"``: an outcome carries something to tell (a result with a fact,
    a failure, another client's plain text). ``"guidance"``: every outcome is
    guidance (`guidance_notes`). None: no outcome yet (`results_this_turn` is False).
    """
    if guidance_notes(messages):
        return "guidance"
    return "answer" if results_this_turn(messages) else None


def only_awaiting_confirmation(messages: Sequence[Mapping[str, Any]]) -> bool:
    """True when every tool message since the caller last spoke is a write held for their yes.

    The engine reads such a write back to the caller itself ("Just to confirm:
    cancel order 4471. Shall I go ahead?"); whatever the model said on top of
    it could only repeat the question or contradict it (the 1.5B said "The
    order has been cancelled." right before the read-back).
    """
    seen = False
    for message in reversed(messages):
        role = message.get("role")
        if role == "user":
            break
        if role == "tool":
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


def this_turn(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The messages since the caller last spoke."""
    turn: list[Mapping[str, Any]] = []
    for message in reversed(messages):
        if message.get("role") == "user":
            break
        turn.append(message)
    return turn[::-1]


def tool_payloads(
    messages: Sequence[Mapping[str, Any]],
) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(tool name, the call's arguments, the tool message's JSON object) of each tool
    message in `messages` that holds an object (the engine's envelope: ``{"status":
    "resolved", "result": ...}``); another client's plain text or JSON list is left out."""
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    found: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for message in messages:
        if message.get("role") == "assistant":
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping):
                    try:
                        args = json.loads(str(function.get("arguments") or "{}"))
                    except json.JSONDecodeError:
                        args = {}
                    calls[str(call.get("id"))] = (
                        str(function.get("name")),
                        args if isinstance(args, dict) else {},
                    )
        if message.get("role") != "tool":
            continue
        try:
            payload = json.loads(content_text(message.get("content")))
        except (json.JSONDecodeError, ChatFormatError):
            continue
        if isinstance(payload, dict):
            found.append((*calls.get(str(message.get("tool_call_id")), ("", {})), payload))
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
