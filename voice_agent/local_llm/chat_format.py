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
from collections.abc import Mapping, Sequence
from typing import Any

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
) -> str:
    """Render a whole conversation; the result is the text the model continues.

    A leading system message becomes the system turn (with tools appended);
    later system messages render as ordinary system turns.
    """
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
        if role in ("user", "system") or (role == "assistant" and not message.get("tool_calls")):
            out.append(f"{IM_START}{role}\n{content_text(message.get('content'))}{IM_END}\n")
        elif role == "assistant":
            out.append(_render_assistant_with_calls(message))
        elif role == "tool":
            if prev_role != "tool":
                out.append(f"{IM_START}user")
            out.append(
                f"\n<tool_response>\n{content_text(message.get('content'))}\n</tool_response>"
            )
            if next_role != "tool":
                out.append(f"{IM_END}\n")
        else:
            raise ChatFormatError(f"unknown message role: {role!r}")
    if add_generation_prompt:
        out.append(f"{IM_START}assistant\n")
    return "".join(out)


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
