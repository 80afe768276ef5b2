"""The LLM client over real HTTP against small scripted servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from web_helpers import serving

from voice_agent.config import LlmConfig
from voice_agent.llm import LlmClient, LlmError, StreamFinished, TextDelta, ToolCallReady


def sse(delta: dict | None = None, finish: str | None = None) -> bytes:
    chunk = {
        "id": "x",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


Script = Callable[[web.Request, web.StreamResponse, int], "asyncio.Future[None]"]


async def serve(handler) -> AsyncIterator[str]:
    """A chat-completions endpoint answered by ``handler``; yields its ``/v1`` base URL."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    async with serving(app) as base:
        yield f"{base}/v1"


def client(url: str, **kw) -> LlmClient:
    cfg = LlmConfig(base_url=url, model="m", retry_backoff_s=0.01, **kw)
    return LlmClient(cfg)


async def collect(llm: LlmClient, events: list | None = None) -> list:
    items = []
    async for item in llm.stream(
        [{"role": "user", "content": "hi"}],
        [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    ):
        items.append(item)
        if events is not None:
            events.append((asyncio.get_running_loop().time(), item))
    return items


async def start_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    return resp


async def test_repeated_function_names_are_not_concatenated_and_ids_are_made_up():
    async def handler(request):
        resp = await start_stream(request)
        await resp.write(sse({"role": "assistant", "content": "Let me "}))
        await resp.write(sse({"content": "check."}))
        for piece in [
            '{"order',
            '_id": "1',
            '2"}',
        ]:  # llama.cpp style: the name in every delta, no id
            await resp.write(
                sse(
                    {
                        "tool_calls": [
                            {"index": 0, "function": {"name": "get_order", "arguments": piece}}
                        ]
                    }
                )
            )
        await resp.write(
            sse(
                {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_b",
                            "function": {"name": "get_hours", "arguments": ""},
                        }
                    ]
                }
            )
        )
        await resp.write(
            sse({"tool_calls": [{"index": 1, "function": {"arguments": '{"city": "Paris"}'}}]})
        )
        await resp.write(sse(finish="tool_calls"))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async for url in serve(handler):
        items = await collect(client(url))
    text = "".join(i.text for i in items if isinstance(i, TextDelta))
    calls = [i for i in items if isinstance(i, ToolCallReady)]
    assert text == "Let me check. "  # a boundary ends the text segment when the calls begin
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_order", {"order_id": "12"}),
        ("get_hours", {"city": "Paris"}),
    ]
    assert calls[0].call_id.startswith("call_") and calls[1].call_id == "call_b"
    assert isinstance(items[-1], StreamFinished) and items[-1].finish_reason == "tool_calls"


async def test_a_call_is_yielded_as_soon_as_its_json_is_complete():
    async def handler(request):
        resp = await start_stream(request)
        await resp.write(
            sse(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "a", "arguments": '{"x": 1}'}}
                    ]
                }
            )
        )
        await asyncio.sleep(0.3)  # the model keeps generating for a while
        await resp.write(sse({"content": "more"}))
        await resp.write(sse(finish="tool_calls"))
        return resp

    events: list = []
    async for url in serve(handler):
        t0 = asyncio.get_running_loop().time()
        await collect(client(url), events)
    ready_at = next(t for t, i in events if isinstance(i, ToolCallReady)) - t0
    done_at = next(t for t, i in events if isinstance(i, StreamFinished)) - t0
    assert done_at - ready_at >= 0.25


async def test_retryable_errors_are_retried_with_backoff_before_any_output():
    attempts = []

    async def handler(request):
        attempts.append(1)
        if len(attempts) < 3:
            return web.json_response({"error": {"message": "overloaded"}}, status=503)
        resp = await start_stream(request)
        await resp.write(sse({"content": "ok"}))
        await resp.write(sse(finish="stop"))
        return resp

    async for url in serve(handler):
        items = await collect(client(url, max_retries=2))
    assert len(attempts) == 3
    assert [i.text for i in items if isinstance(i, TextDelta)] == ["ok"]


async def test_a_client_error_is_not_retried_and_says_what_happened():
    attempts = []

    async def handler(request):
        attempts.append(1)
        return web.json_response({"error": {"message": "bad model"}}, status=400)

    async for url in serve(handler):
        with pytest.raises(LlmError, match="HTTP 400") as info:
            await collect(client(url, max_retries=3))
    assert len(attempts) == 1 and not info.value.retryable


async def test_a_dead_endpoint_fails_with_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LlmError, match="cannot reach the LLM endpoint"):
        await collect(client(f"http://127.0.0.1:{port}/v1", max_retries=1, connect_timeout_s=1))


async def test_no_first_token_in_time_is_a_retryable_timeout():
    async def handler(request):
        resp = await start_stream(request)
        await asyncio.sleep(2)
        return resp

    async for url in serve(handler):
        with pytest.raises(LlmError, match="no response from the LLM within 0.2s"):
            await collect(client(url, max_retries=0, first_token_timeout_s=0.2))


async def test_cancelling_mid_stream_closes_the_connection():
    disconnected = asyncio.Event()

    async def handler(request):
        resp = await start_stream(request)
        try:
            for i in range(100):
                await resp.write(sse({"content": f"w{i} "}))
                await asyncio.sleep(0.02)
        except (ConnectionResetError, asyncio.CancelledError):
            disconnected.set()
            raise
        return resp

    async for url in serve(handler):
        llm = client(url)
        got = []

        async def consume():
            async for item in llm.stream([{"role": "user", "content": "hi"}]):
                got.append(item)

        task = asyncio.create_task(consume())
        while len(got) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(disconnected.wait(), 2)
        await llm.aclose()
    assert len(got) < 20


@pytest.mark.parametrize("names", [True, False])
async def test_the_engines_mark_on_a_message_is_sent_unless_the_endpoint_rejects_it(names):
    """`name` marks the engine's own words (ledger.render.ENGINE_SPEAKER); an endpoint that
    rejects the key gets the same messages without it."""
    bodies = []

    async def handler(request):
        bodies.append(await request.json())
        resp = await start_stream(request)
        await resp.write(sse({"content": "ok"}))
        await resp.write(sse(finish="stop"))
        return resp

    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "name": "engine", "content": "One moment."},
    ]
    async for url in serve(handler):
        async for _ in client(url, message_names=names).stream(messages, None):
            pass
    sent = bodies[0]["messages"]
    assert [m["content"] for m in sent] == ["hi", "One moment."]
    assert ("name" in sent[1]) is names
    assert messages[1]["name"] == "engine"  # the caller's list is left as it was
