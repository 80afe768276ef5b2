"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tool-fault tests.

Not a language model: a fake that decides each reply with a Python function of
the request's messages, so a test controls exactly which tool calls the
"model" makes, and the agent under test talks to it over real HTTP through its
real OpenAI client.

The default policy (:func:`echo_policy`) answers a user message from a table
(text → tool calls) and answers tool results by reading them out, so what the
caller hears shows what the model was told (``resolved``, ``pending``, ...).
"""

from __future__ import annotations

import itertools
import json
import socket
from collections.abc import Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """One assistant reply: some text and/or tool calls ``(name, arguments JSON)``."""

    text: str = ""
    calls: Sequence[tuple[str, str]] = ()


Policy = Callable[[list[dict[str, Any]]], Reply]


def _tool_summary(message: Mapping[str, Any]) -> str:
    try:
        content = json.loads(message.get("content") or "{}")
    except json.JSONDecodeError:
        return str(message.get("content"))
    status = content.get("status", "?")
    if status == "resolved":
        return f"done: {json.dumps(content.get('result'))}"
    if status == "failed":
        return f"failed: {content.get('error')}"
    return status.replace("_", " ")


def echo_policy(table: Mapping[str, Reply]) -> Policy:
    """User text → the table's reply; tool results → "Result: <status of each>."."""

    def policy(messages: list[dict[str, Any]]) -> Reply:
        tail: list[dict[str, Any]] = []
        for message in reversed(messages):
            if message["role"] != "tool":
                break
            tail.append(message)
        if tail:
            return Reply(
                text="Result: " + "; ".join(_tool_summary(m) for m in reversed(tail)) + "."
            )
        last = messages[-1]
        if last["role"] == "user":
            return table.get(last["content"].strip(), Reply(text="Okay."))
        return Reply(text="Okay.")

    return policy


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "scripted",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "scripted",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n".encode()


@dataclass
class ScriptedModel:
    """The running server: ``base_url`` for the client, ``requests`` it received."""

    base_url: str
    requests: list[list[dict[str, Any]]] = field(default_factory=list)


@asynccontextmanager
async def scripted_model(policy: Policy):
    """Serve ``policy`` on 127.0.0.1 (a free port) until the block ends."""
    ids = itertools.count(1)
    state = ScriptedModel(base_url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body["messages"]
        state.requests.append(messages)
        reply = policy(messages)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if reply.text:
            await response.write(_chunk({"role": "assistant", "content": reply.text}))
        for index, (name, arguments) in enumerate(reply.calls):
            call = {
                "index": index,
                "id": f"call_{next(ids):08d}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            await response.write(_chunk({"tool_calls": [call]}))
        await response.write(_chunk({}, "tool_calls" if reply.calls else "stop"))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    state.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield state
    finally:
        await runner.cleanup()
