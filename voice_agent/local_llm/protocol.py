"""The OpenAI chat-completions wire format: request validation and response bodies.

Only what the local server supports is accepted; anything else is a
`BadRequest` whose message says which field is wrong (the server answers it
with HTTP 400 in OpenAI's error shape).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voice_agent.local_llm.engine import DEFAULT_TEMPERATURE, DEFAULT_TOP_P, SamplingParams

#: OpenAI allows at most 4 stop sequences.
_MAX_STOP_SEQUENCES = 4


class BadRequest(ValueError):
    """The request is not a chat-completions request this server can serve."""


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat-completions request."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = True
    stream: bool = False
    include_usage: bool = False
    sampling: SamplingParams = SamplingParams()
    #: stream progress reports while the model works (llama.cpp's request field)
    return_progress: bool = False


def parse_chat_request(body: Any) -> ChatRequest:
    """Validate a decoded JSON body; raise `BadRequest` naming the offending field."""
    if not isinstance(body, Mapping):
        raise BadRequest("the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in (
            "system",
            "developer",
            "user",
            "assistant",
            "tool",
        ):
            raise BadRequest(f"messages[{i}] has no valid 'role'")
    messages = [
        {**m, "role": "system"} if m.get("role") == "developer" else dict(m) for m in messages
    ]
    if body.get("n", 1) != 1:
        raise BadRequest("only n=1 is supported")
    response_format = body.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise BadRequest("'response_format' other than text is not supported")
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, Mapping) for t in tools):
        raise BadRequest("'tools' must be a list of objects")
    stream_options = body.get("stream_options") or {}
    return ChatRequest(
        messages=messages,
        tools=[dict(t) for t in tools],
        tool_choice=body.get("tool_choice") or "auto",
        parallel_tool_calls=bool(body.get("parallel_tool_calls", True)),
        stream=_bool(body, "stream"),
        include_usage=bool(
            isinstance(stream_options, Mapping) and stream_options.get("include_usage")
        ),
        return_progress=body.get("return_progress") is True,
        sampling=SamplingParams(
            temperature=_number(body, "temperature", DEFAULT_TEMPERATURE, 0.0, 2.0),
            top_p=_number(body, "top_p", DEFAULT_TOP_P, 0.0, 1.0),
            max_tokens=_max_tokens(body),
            stop=_stop(body.get("stop")),
            seed=_seed(body.get("seed")),
        ),
    )


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def chunk(
    cid: str, created: int, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    """One ``chat.completion.chunk`` with a single choice."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def timings(
    first_token_s: float | None, total_s: float, completion_tokens: int, decode_path: str
) -> dict[str, Any]:
    """Server-side timings of one generation, sent next to ``usage`` (as llama-server does).

    ``predicted_per_second`` counts the tokens after the first over the time
    after the first; the client cannot time that itself when a tool call's
    first delta comes only once its name is decoded.
    """
    decode_s = total_s - first_token_s if first_token_s is not None else 0.0
    per_second = (
        (completion_tokens - 1) / decode_s if completion_tokens > 1 and decode_s > 0 else None
    )
    return {
        "first_token_ms": None if first_token_s is None else round(first_token_s * 1e3, 1),
        "total_ms": round(total_s * 1e3, 1),
        "predicted_n": completion_tokens,
        "predicted_per_second": None if per_second is None else round(per_second, 2),
        "decode_path": decode_path,
    }


def tool_call_start(index: int, call_id: str, name: str) -> dict[str, Any]:
    """The first streamed delta of a call: index, id, type and name (sent once)."""
    return {
        "tool_calls": [
            {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
        ]
    }


def tool_call_arguments(index: int, arguments: str) -> dict[str, Any]:
    return {"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}


def completion(
    cid: str,
    model: str,
    text: str,
    calls: Sequence[tuple[str, str, str]],
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
) -> dict[str, Any]:
    """A non-streamed ``chat.completion``; `calls` are (id, name, arguments)."""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            for call_id, name, args in calls
        ]
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def error_body(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _bool(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be a boolean")
    return value


def _number(body: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise BadRequest(f"'{key}' must be a number in [{low}, {high}]")
    return float(value)


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadRequest("'max_tokens' must be a positive integer")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise BadRequest("'stop' must be a string or a list of strings")
    if len(stops) > _MAX_STOP_SEQUENCES:
        raise BadRequest(f"'stop' takes at most {_MAX_STOP_SEQUENCES} sequences")
    return tuple(stops)


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("'seed' must be an integer")
    return value % (2**31)
