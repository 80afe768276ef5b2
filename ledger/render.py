"""Rendering the ledger as OpenAI chat-completions messages, and checking the result.

The rules (docs/INTERFACES.md), applied in ledger order:

- a final `UserUtterance` -> `{"role": "user", "content": text}` at its position;
  partial utterances are not rendered.
- a response that produced text or non-speculative calls -> one assistant
  message at the position of its `LlmRequestStarted`: `content` is the model's
  own words of the played text if an `AgentTextPlayed` exists (an
  interruption therefore renders only what was heard, possibly `""`), else of
  the planned chunks joined by single spaces; `tool_calls` lists its
  non-speculative calls in order (the key is absent when there are none).
  Right after it, one tool message per call: the outcome when it was recorded
  before the first model request (an `LlmRequestStarted` that is not the
  engine's `canned` words: no model sees those) following the call's start,
  else a pending placeholder naming the future. The message is left out when
  the response has neither words of the model's nor calls.
- the engine's own words in a response (chunks planned as `canned`: a hold
  phrase, the apology, an acknowledgement, a greeting) -> an assistant message
  of their own named `ENGINE_SPEAKER`, right before the response's own message
  (`engine_speech`, the one place that decides how they are shown): a call's
  tool messages must follow the call directly, and the outcomes came after the
  engine's words (a hold while the model stalled, the engine's "doing that
  now" before the confirmed write it runs), so a request never ends on them
  where it used to end on a result.
- an outcome that came after its placeholder was shown to a model's request
  is reported at the outcome's position by a synthetic pair: an assistant call
  of `get_result({"call_id": ...})` with id `"<call_id>-result"` and its tool
  message holding the outcome.
- speculative calls are never rendered; a final call adopted from a fork
  takes the speculative call's outcome, counted from the later of the
  outcome and the adoption (before the adoption the final call was pending).

Every block (user message, response with its tool messages, synthetic pair) is
self-contained, so the protocol holds after every append. A rendering shown to
a model's request is a prefix of every later rendering as long as each earlier
response had finished before that request; the one exception is a response
whose played text is recorded later (a barge-in): its `content` becomes the
model's words heard, and its engine message the engine's words heard (none
when the caller heard none of them).
"""

from __future__ import annotations

import bisect
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from ledger.entries import (
    Entry,
    LlmRequestStarted,
    Outcome,
    ToolCallCancelled,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallTimedOut,
    UserUtterance,
)
from ledger.state import RESULT_SUFFIX, CallRecord, LedgerState, ResponseRecord

__all__ = [
    "ENGINE_SPEAKER",
    "GET_RESULT_TOOL",
    "PENDING_NOTE",
    "ProtocolError",
    "check_protocol",
    "engine_speech",
    "outcome_payload",
    "render_messages",
    "render_state",
    "transcript_state",
]

GET_RESULT_TOOL = "get_result"
"""Name of the built-in tool whose synthetic call reports a late outcome."""

PENDING_NOTE = (
    "This call is still running in the background. Its result will be added to this "
    "conversation when it arrives; do not call it again. A call that needs its result "
    "can take the future's id as that argument's value and will wait for it."
)
"""The note in a pending placeholder."""

ENGINE_SPEAKER = "engine"
"""The `name` of an assistant message that holds the engine's own words (`engine_speech`)."""

Message = dict[str, Any]


class ProtocolError(ValueError):
    """A message list breaks the OpenAI tool-calling protocol (see `check_protocol`)."""


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def outcome_payload(outcome: Outcome) -> dict[str, Any]:
    """The JSON object a tool message carries for an outcome."""
    match outcome:
        case ToolCallResolved():
            return {"status": "resolved", "result": outcome.result}
        case ToolCallFailed():
            return {"status": "failed", "error": outcome.error}
        case ToolCallTimedOut():
            return {"status": "timed_out", "timeout_s": outcome.timeout_s}
        case ToolCallCancelled():
            return {"status": "cancelled", "reason": outcome.reason}


def _tool_call(call_id: str, name: str, arguments: str) -> Message:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _is_late(call: CallRecord, model_request_seqs: list[int]) -> bool:
    """True if the call's placeholder was (or will stay) what a model's request sees."""
    settled = call.outcome_seq
    index = bisect.bisect_right(model_request_seqs, call.started.seq)
    next_request = model_request_seqs[index] if index < len(model_request_seqs) else None
    if settled is None:
        return False
    return next_request is not None and settled > next_request


def engine_speech(text: str) -> Message:
    """How the engine's own words (a hold phrase, the apology, a read-back) are shown to
    the model: an assistant message of their own, named `ENGINE_SPEAKER`.

    They are what the caller heard from the agent, so they stay in the conversation
    (the caller may answer them: "Are you still there?"), but they are not the model's:
    the `name` field (the OpenAI protocol's way to tell participants of one role apart)
    says so to any server, and the model's own messages never carry them. So "told" can
    be read from the model's words alone: a result that came before an apology and was
    never told is still untold after it.
    """
    return {"role": "assistant", "name": ENGINE_SPEAKER, "content": text}


def _response_block(response: ResponseRecord, state: LedgerState, late: set[str]) -> list[Message]:
    calls = [state.calls[call_id] for call_id in response.call_ids]
    canned = response.canned_text
    block = [engine_speech(canned)] if canned else []
    if not response.produced_text and not calls:
        return block
    assistant: Message = {"role": "assistant", "content": response.model_text}
    if calls:
        assistant["tool_calls"] = [
            _tool_call(c.started.call_id, c.started.name, c.started.arguments) for c in calls
        ]
    block.append(assistant)
    for call in calls:
        call_id = call.started.call_id
        outcome = call.future.outcome
        if outcome is None or call_id in late:
            content = {"status": "pending", "future": call_id, "note": PENDING_NOTE}
        else:
            content = outcome_payload(outcome)
        block.append({"role": "tool", "tool_call_id": call_id, "content": _dumps(content)})
    return block


def _late_pair(call: CallRecord) -> list[Message]:
    call_id = call.started.call_id
    outcome = call.future.outcome
    assert outcome is not None  # only settled calls are late
    synthetic_id = call_id + RESULT_SUFFIX
    return [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [_tool_call(synthetic_id, GET_RESULT_TOOL, _dumps({"call_id": call_id}))],
        },
        {
            "role": "tool",
            "tool_call_id": synthetic_id,
            "content": _dumps(outcome_payload(outcome)),
        },
    ]


def render_state(
    state: LedgerState, entries: Sequence[Entry], system_prompt: str | None
) -> list[Message]:
    """Render `entries` (already folded into `state`) as chat messages."""
    final_calls = [c for c in state.calls.values() if not c.started.speculative]
    late = {c.started.call_id for c in final_calls if _is_late(c, state.model_request_seqs)}
    late_at: dict[int, list[CallRecord]] = defaultdict(list)
    for call in final_calls:
        if call.started.call_id in late:
            settled = call.outcome_seq
            assert settled is not None
            late_at[settled].append(call)

    messages: list[Message] = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": system_prompt})
    for entry in entries:
        match entry:
            case UserUtterance(final=True):
                messages.append({"role": "user", "content": entry.text})
            case LlmRequestStarted():
                response = state.responses[entry.response_id]
                messages.extend(_response_block(response, state, late))
            case _:
                pass
        for call in sorted(late_at.get(entry.seq, ()), key=lambda c: c.started.seq):
            messages.extend(_late_pair(call))
    return messages


def render_messages(entries: Iterable[Entry], system_prompt: str | None = None) -> list[Message]:
    """Render a sequence of entries (e.g. a loaded session) as chat messages.

    Raises LedgerError if the entries break the ledger protocol.
    """
    state = LedgerState(session_id=None)
    items = list(entries)
    for entry in items:
        state.apply(entry)
    return render_state(state, items, system_prompt)


def transcript_state(state: LedgerState, entries: Sequence[Entry]) -> str:
    """`user: ...` / `agent: ...` lines in ledger order; the agent's played (else planned) text."""
    lines: list[str] = []
    for entry in entries:
        match entry:
            case UserUtterance(final=True):
                lines.append(f"user: {entry.text}")
            case LlmRequestStarted():
                text = state.responses[entry.response_id].text
                if text:
                    lines.append(f"agent: {text}")
            case _:
                pass
    return "\n".join(lines)


def check_protocol(messages: Sequence[Message]) -> None:
    """Raise ProtocolError unless `messages` follow the OpenAI tool-calling protocol.

    Checked: known roles; string `content` on user/system/tool messages and a
    string (never None) on assistant messages; `tool_calls` items of the form
    `{"id", "type": "function", "function": {"name", "arguments": str}}`, never
    an empty list; every tool_call id is unique across the conversation and
    answered by exactly one tool message, all of them directly after the
    assistant message (before any other message); every tool message answers
    a call of the assistant message just before its run; a system message only
    comes first.
    """
    seen_ids: set[str] = set()
    open_ids: list[str] = []
    opened_at = -1
    for index, message in enumerate(messages):
        role = message.get("role")
        where = f"message {index} ({role})"
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(message.get("content"), str):
                raise ProtocolError(f"{where}: content must be a string")
            if call_id not in open_ids:
                raise ProtocolError(
                    f"{where}: answers {call_id!r}, which is not an open call of the "
                    f"assistant message before it (open: {open_ids})"
                )
            open_ids.remove(call_id)
            continue
        if open_ids:
            raise ProtocolError(
                f"{where}: calls {open_ids} of message {opened_at} are not answered "
                "before the next non-tool message"
            )
        if role in ("user", "system"):
            if not isinstance(message.get("content"), str):
                raise ProtocolError(f"{where}: content must be a string")
            if role == "system" and index != 0:
                raise ProtocolError(f"{where}: a system message must come first")
        elif role == "assistant":
            if not isinstance(message.get("content"), str):
                raise ProtocolError(
                    f"{where}: content must be a string, got {message.get('content')!r}"
                )
            if "tool_calls" in message:
                open_ids = _check_tool_calls(message["tool_calls"], seen_ids, where)
                opened_at = index
        else:
            raise ProtocolError(f"{where}: unknown role")
    if open_ids:
        raise ProtocolError(f"calls {open_ids} of message {opened_at} are never answered")


def _check_tool_calls(tool_calls: object, seen_ids: set[str], where: str) -> list[str]:
    if not isinstance(tool_calls, list) or not tool_calls:
        raise ProtocolError(f"{where}: tool_calls must be a non-empty list")
    ids: list[str] = []
    for item in tool_calls:
        function = item.get("function") if isinstance(item, dict) else None
        if (
            not isinstance(item, dict)
            or set(item) != {"id", "type", "function"}
            or item["type"] != "function"
            or not isinstance(function, dict)
            or set(function) != {"name", "arguments"}
            or not isinstance(function["name"], str)
            or not isinstance(function["arguments"], str)
        ):
            raise ProtocolError(f"{where}: malformed tool_call {item!r}")
        call_id = item["id"]
        if not isinstance(call_id, str) or call_id in seen_ids:
            raise ProtocolError(f"{where}: tool_call id {call_id!r} repeats or is not a string")
        seen_ids.add(call_id)
        ids.append(call_id)
    return ids
