"""Render OpenAI chat messages into a Qwen2.5 ChatML prompt.

This reproduces the chat template shipped in the Qwen2.5 GGUF files
(``tokenizer.chat_template``) without Jinja:

- tools go into the system turn as ``# Tools`` … ``<tools>`` one JSON schema
  per line ``</tools>`` plus the instruction to answer with
  ``<tool_call>\\n{"name": …, "arguments": …}\\n</tool_call>``;
- an assistant message with ``tool_calls`` renders its text (if any) and then
  one ``<tool_call>`` block per call, arguments as a JSON object;
- consecutive ``tool`` messages render as ``<tool_response>`` blocks inside a
  single user turn.

Messages are the OpenAI wire format (dicts). ``content`` may be null (an
assistant that only called tools) or a list of ``{"type": "text"}`` parts.
The prompt ends with the generation prompt ``<|im_start|>assistant\\n``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from voice_agent.guidance import NOTE, SAY_NOTHING_MORE

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"

#: Qwen's own default system prompt, used when the request has none (as the template does).
DEFAULT_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

_TOOLS_PREAMBLE = (
    "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_TOOLS_POSTAMBLE = (
    "\n</tools>\n\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
)

Message = Mapping[str, Any]


class ChatFormatError(ValueError):
    """A message cannot be rendered (unknown role, malformed tool call)."""


def content_text(content: Any) -> str:
    """The text of an OpenAI ``content`` field: a string, null, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts: list[str] = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            else:
                raise ChatFormatError(f"unsupported content part: {part!r}")
        return "".join(texts)
    raise ChatFormatError(f"unsupported content: {content!r}")


def to_json(value: Any) -> str:
    """JSON as the template's ``tojson`` writes it (", " and ": " separators, UTF-8 kept)."""
    return json.dumps(value, ensure_ascii=False)


def render_system(system_text: str | None, tools: Sequence[Mapping[str, Any]] | None) -> str:
    """The system turn, with the tool schemas when `tools` is non-empty."""
    text = DEFAULT_SYSTEM_PROMPT if system_text is None else system_text
    if tools:
        text += _TOOLS_PREAMBLE
        for tool in tools:
            text += "\n" + to_json(dict(tool))
        text += _TOOLS_POSTAMBLE
    return f"{IM_START}system\n{text}{IM_END}\n"


def render_tool_call(name: str, arguments: Any) -> str:
    """One ``<tool_call>`` block as the template writes it (no surrounding newline).

    `arguments` is the OpenAI string (parsed back into an object when it is
    JSON, so history looks like what the model writes) or an object.
    """
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError:
            pass  # keep the raw string: the template would write it as a JSON string too
    return f'{TOOL_CALL_OPEN}\n{{"name": "{name}", "arguments": {to_json(arguments)}}}\n{TOOL_CALL_CLOSE}'


def render_messages(
    messages: Sequence[Message],
    tools: Sequence[Mapping[str, Any]] | None = None,
    add_generation_prompt: bool = True,
    readable_results: bool = False,
) -> str:
    """Render a whole conversation; the result is the text the model continues.

    A leading system message becomes the system turn (with tools appended);
    later system messages render as ordinary system turns. With
    `readable_results`, tool messages are rendered by `readable_tool_result`
    and the engine's synthetic ``get_result`` calls are left out (their
    result names the call it answers).
    """
    calls = calls_by_id(messages) if readable_results else {}
    fetches = _result_fetch_ids(messages) if readable_results else set()
    if not messages:
        raise ChatFormatError("messages must not be empty")
    first = messages[0]
    has_system = first.get("role") == "system"
    out = [render_system(content_text(first.get("content")) if has_system else None, tools)]
    body = messages[1:] if has_system else messages
    for i, message in enumerate(body):
        role = message.get("role")
        prev_role = body[i - 1].get("role") if i > 0 else None
        next_role = body[i + 1].get("role") if i + 1 < len(body) else None
        if readable_results and role == "assistant" and _only_result_fetches(message):
            continue  # the tool message that follows names the call it reports
        if role in ("user", "system") or (role == "assistant" and not message.get("tool_calls")):
            out.append(f"{IM_START}{role}\n{content_text(message.get('content'))}{IM_END}\n")
        elif role == "assistant":
            out.append(_render_assistant_with_calls(message))
        elif role == "tool":
            if prev_role != "tool":
                out.append(f"{IM_START}user")
            text = content_text(message.get("content"))
            if readable_results:
                call_id = str(message.get("tool_call_id", ""))
                text = readable_tool_result(text, calls, call_id, late=call_id in fetches)
            out.append(f"\n<tool_response>\n{text}\n</tool_response>")
            if next_role != "tool":
                out.append(f"{IM_END}\n")
        else:
            raise ChatFormatError(f"unknown message role: {role!r}")
    if add_generation_prompt:
        out.append(f"{IM_START}assistant\n")
    return "".join(out)


#: The engine's built-in call that reports a late outcome (ledger.render.GET_RESULT_TOOL).
RESULT_FETCH_TOOL = "get_result"


def calls_by_id(messages: Sequence[Message]) -> dict[str, tuple[str, str]]:
    """tool_call id -> (name, arguments text) of every assistant call in `messages`.

    A ``get_result`` call maps to the call it fetches the result of.
    """
    calls: dict[str, tuple[str, str]] = {}
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping):
                continue
            name, arguments = str(function.get("name", "")), function.get("arguments", "")
            arguments = arguments if isinstance(arguments, str) else to_json(arguments)
            if name == RESULT_FETCH_TOOL:
                try:
                    target = json.loads(arguments).get("call_id")
                except (json.JSONDecodeError, AttributeError):
                    target = None
                if target in calls:
                    calls[str(call.get("id"))] = calls[target]
                    continue
            calls[str(call.get("id"))] = (name, arguments)
    return calls


def _result_fetch_ids(messages: Sequence[Message]) -> set[str]:
    """The ids of the engine's ``get_result`` calls in `messages`."""
    return {
        str(call.get("id"))
        for message in messages
        if message.get("role") == "assistant"
        for call in message.get("tool_calls") or ()
        if isinstance(call, Mapping)
        and isinstance(call.get("function"), Mapping)
        and call["function"].get("name") == RESULT_FETCH_TOOL
    }


def _only_result_fetches(message: Message) -> bool:
    calls = message.get("tool_calls") or ()
    return (
        bool(calls)
        and not content_text(message.get("content"))
        and all(
            isinstance(c, Mapping)
            and isinstance(c.get("function"), Mapping)
            and c["function"].get("name") == RESULT_FETCH_TOOL
            for c in calls
        )
    )


def tool_results_head(
    messages: Sequence[Message],
    tools: Sequence[Mapping[str, Any]] | None,
    calls: Sequence[tuple[str, str, str]],
) -> str:
    """The start of the prompt that follows a reply of `calls` ((id, name, arguments)):
    the conversation, the calls, and the readable result's head for the first of them
    (``get_order_status(order_id="58213")``), as `render_messages` with
    `readable_results` writes them once the results are there."""
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}
            for cid, name, arguments in calls
        ],
    }
    head = render_messages(
        [*messages, assistant], tools, add_generation_prompt=False, readable_results=True
    )
    _, name, arguments = calls[0]
    return f"{head}{IM_START}user\n<tool_response>\n{_call_label(name, arguments)}"


def _call_label(name: str, arguments: str) -> str:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return f"{name}({arguments})"
    if isinstance(args, dict):
        return f"{name}({', '.join(f'{k}={to_json(v)}' for k, v in args.items())})"
    return f"{name}({to_json(args)})"


def readable_tool_result(
    content: str, calls: Mapping[str, tuple[str, str]], call_id: str, late: bool = False
) -> str:
    """A tool message in the form a small model reads reliably.

    The engine's outcome envelope (``{"status": "resolved", "result": R}``,
    ``pending``, ``awaiting_confirmation``, ``failed``, ``timed_out``,
    ``cancelled``) is unwrapped into
    one line naming the call it answers (``get_order_status(order_id="58213")
    returned: {...}``), so a late result (fetched by the engine's
    ``get_result`` call, away from its call) cannot be taken for another's.
    With the result shown bare instead, the 1.5B answered "I can't help with
    that" after most lookups. Content that is not an envelope (another
    client's plain result) is shown as it is: labelling it made the 0.5B talk
    about function names.
    """
    name, arguments = calls.get(call_id, ("", ""))
    label = _call_label(name, arguments) if name else "the call"
    try:
        payload = json.loads(content)
    except json.JSONDecodeError:
        return f"{label} returned: {content}" if late else content
    status = payload.get("status") if isinstance(payload, dict) else None
    if status == "resolved" and "result" in payload:
        result = payload["result"]
        note = None
        if isinstance(result, dict) and isinstance(result.get(NOTE), str):
            # A tool's note is guidance for the agent ("say nothing more"); shown inside
            # the result, the 1.5B read it to the caller word for word. Its flag for the
            # server (`SAY_NOTHING_MORE`) is not shown: the note says it in words.
            note = result[NOTE]
            result = {k: v for k, v in result.items() if k not in (NOTE, SAY_NOTHING_MORE)}
        shown = result if isinstance(result, str) else to_json(result)
        text = f"{label} returned: {spoken_dates(shown)}"
        return (
            f"{text}\n(Guidance for you, never to be said to the caller: {note}.)" if note else text
        )
    if status == "pending" and ("future" in payload or "note" in payload):
        return (
            f"{label} is still running; its result will be added here when it arrives. "
            "Do not call it again."
        )
    if status == "awaiting_confirmation":
        return f"{label} is NOT done: it waits for the caller's yes, which the system asks for now."
    if status == "failed" and "error" in payload:
        return f"{label} failed: {payload.get('error', 'unknown error')}"
    if status == "timed_out" and "timeout_s" in payload:
        return f"{label} did not answer in time."
    if status == "cancelled" and "reason" in payload:
        return f"{label} was cancelled."
    return f"{label} returned: {content}" if late else content


# English names whatever the process locale (strftime's %A follows LC_TIME).
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")  # fmt: skip
_ISO_DATE_RE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


def spoken_dates(text: str) -> str:
    """ISO dates ("2026-11-27") written as a caller hears them ("Friday, November 27").

    A small model reads an ISO date out digit by digit or guesses its weekday;
    given the words it repeats them. The year is left out (a delivery or due
    date is near). Anything that is not a real date stays as it is.
    """

    def words(match: re.Match[str]) -> str:
        try:
            day = date(*map(int, match.groups()))
        except ValueError:
            return match.group(0)
        return f"{_WEEKDAYS[day.weekday()]}, {_MONTHS[day.month - 1]} {day.day}"

    return _ISO_DATE_RE.sub(words, text)


def _render_assistant_with_calls(message: Message) -> str:
    parts = [f"{IM_START}assistant"]
    text = content_text(message.get("content"))
    if text:
        parts.append("\n" + text)
    for call in message.get("tool_calls") or ():
        function = call.get("function", call) if isinstance(call, Mapping) else None
        if not isinstance(function, Mapping) or "name" not in function:
            raise ChatFormatError(f"malformed tool call: {call!r}")
        parts.append("\n" + render_tool_call(str(function["name"]), function.get("arguments", {})))
    parts.append(f"{IM_END}\n")
    return "".join(parts)
