"""A scripted OpenAI-compatible chat server on 127.0.0.1 for tool-fault tests.

Not a language model: a fake that decides each reply with a Python function of
the request's messages, so a test controls exactly which tool calls the
"model" makes, and the agent under test talks to it over real HTTP through its
real OpenAI client.

The default policy (:func:`echo_policy`) answers a user message from a table
(text → tool calls) and answers tool results by reading them out, so what the
caller hears shows what the model was told (``resolved``, ``pending``, ...).
:func:`phone_policy` plays the customer-service phone profile's model.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
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


_NUMBER_WORDS = r"(?:\d|zero|oh|one|two|three|four|five|six|seven|eight|nine|for|to)"


def phone_policy(messages: list[dict[str, Any]]) -> Reply:
    """A fake model for the phone profile's tools: the caller's words for an order number go
    to the tools verbatim (the product normalises them); results are read back."""
    last = messages[-1]
    if last["role"] == "tool":
        result = json.loads(last["content"]).get("result", {})
        if result.get("found") is False:
            return Reply(text=f"I couldn't find order {result['heard']}. Could you repeat it?")
        if "status" in result:
            return Reply(text=f"Order {' '.join(result['order_number'])} is {result['status']}.")
        if result.get("cancelled"):
            return Reply(text="Done. Your order is cancelled and refunded.")
        return Reply(text="Okay.")
    text = last["content"].lower()
    spoken = re.search(rf"((?:{_NUMBER_WORDS}[\s,.-]*)+)", text.replace("number is", " "))
    heard = spoken.group(1).strip(" ,.") if spoken else ""
    if "cancel" in text and heard:
        return Reply(calls=[("cancel_order", json.dumps({"order_number": heard}))])
    if ("order" in text or "keypad" in text) and heard:
        return Reply(
            text="Let me check. ", calls=[("lookup_order", json.dumps({"order_number": heard}))]
        )
    if "human" in text or "person" in text:
        return Reply(calls=[("transfer_to_human", json.dumps({"reason": "asked for a person"}))])
    return Reply(text="Okay.")


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
async def scripted_model(policy: Policy, *, ttft_s: float = 0.0):
    """Serve ``policy`` on 127.0.0.1 (a free port) until the block ends; each reply starts
    ``ttft_s`` after its request (a model's time to first token)."""
    ids = itertools.count(1)
    state = ScriptedModel(base_url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        messages = body["messages"]
        state.requests.append(messages)
        reply = policy(messages)
        if ttft_s > 0:
            await asyncio.sleep(ttft_s)
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
