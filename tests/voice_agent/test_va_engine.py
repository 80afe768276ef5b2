"""The engine against the scripted oracle LLM over real HTTP, in both modes."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from aiohttp import web
from web_helpers import serving

from ledger import check_protocol
from voice_agent.bench.oracle import OracleServer
from voice_agent.bench.runner import build_registry
from voice_agent.bench.scenario import Scenario
from voice_agent.tools import ToolRegistry

TWO_TOOLS: dict[str, Any] = {
    "name": "two",
    "oracle": {"ttft_ms": 50, "tokens_per_s": 60},
    "tools": [
        {
            "name": "get_order_status",
            "description": "Order status.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
            "latency_ms": 300,
            "result": {"status": "shipped"},
        },
        {
            "name": "get_weather",
            "description": "Weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
            "latency_ms": 300,
            "result": {"forecast": "sunny"},
        },
    ],
    "turns": [
        {
            "user": "Where is order NW-9, and what is the weather in Oslo?",
            "filler": "Let me check both.",
            "calls": [
                {"tool": "get_order_status", "arguments": {"order_id": "{{user:NW-9}}"}},
                {"tool": "get_weather", "arguments": {"city": "{{user:Oslo}}"}},
            ],
            "answer": [
                {
                    "say": "Your order has shipped.",
                    "needs": ["get_order_status"],
                    "expect": ["shipped"],
                },
                {"say": "It is sunny in Oslo.", "needs": ["get_weather"], "expect": ["sunny"]},
            ],
        },
    ],
}


def scenario(data: dict) -> Scenario:
    return Scenario.model_validate(data)


async def run_two_tools(make_agent, mode: str):
    sc = scenario(TWO_TOOLS)
    invocations: list = []
    from fsm import MonotonicClock

    async with OracleServer(sc) as oracle:
        async with make_agent(
            oracle.base_url, build_registry(sc, MonotonicClock(), invocations), mode=mode
        ) as h:
            h.say(sc.turns[0].user)
            await h.idle()
            return h


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_both_modes_answer_with_every_fact_and_a_valid_context(make_agent, mode):
    h = await run_two_tools(make_agent, mode)
    heard = " ".join(e.text for e in h.entries("AgentTextPlayed"))
    assert "shipped" in heard and "sunny" in heard
    assert sorted(e.name for e in h.entries("ToolCallStarted")) == [
        "get_order_status",
        "get_weather",
    ]
    assert all(h.ledger.call(e.call_id).status == "resolved" for e in h.entries("ToolCallStarted"))
    check_protocol(h.ledger.render_messages("sys"))


async def test_async_starts_each_call_as_soon_as_its_json_is_complete(make_agent):
    h = await run_two_tools(make_agent, "async")
    first, second = h.entries("ToolCallStarted")
    r1_end = next(e for e in h.entries("LlmResponseFinished") if e.response_id == first.response_id)
    # The second call's JSON still had to be decoded (≈15 tokens at 60/s) when the first started.
    assert second.t - first.t > 0.1
    assert r1_end.t - first.t > 0.1


async def test_sync_starts_the_calls_together_when_the_response_is_complete(make_agent):
    h = await run_two_tools(make_agent, "sync")
    first, second = h.entries("ToolCallStarted")
    r1_end = next(e for e in h.entries("LlmResponseFinished") if e.response_id == first.response_id)
    assert abs(second.t - first.t) < 0.02 and abs(r1_end.t - first.t) < 0.02
    # One continuation after both results: the sync baseline reports everything at once.
    followups = [e for e in h.entries("LlmRequestStarted") if e.reason == "tool_results"]
    assert len(followups) == 1


LONG_ANSWER = {
    "name": "long",
    "oracle": {"ttft_ms": 30, "tokens_per_s": 25},
    "turns": [
        {
            "user": "Tell me about your return policy.",
            "answer": [
                {
                    "say": "You can return any item within thirty days. Items must be unused and in their box. "
                    "Refunds go back to the card you paid with. Shipping costs are not refunded. "
                    "Gift cards cannot be returned.",
                    "expect": ["thirty days"],
                }
            ],
        },
        {
            "user": "Actually, what are your opening hours?",
            "answer": [{"say": "We are open from nine to five.", "expect": ["nine to five"]}],
        },
    ],
}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_new_user_message_cancels_the_generation_and_keeps_only_what_was_said(
    make_agent, mode
):
    sc = scenario(LONG_ANSWER)
    async with OracleServer(sc) as oracle:
        async with make_agent(oracle.base_url, ToolRegistry(), mode=mode) as h:
            h.say(sc.turns[0].user)
            await h.until(lambda: "thirty days" in h.printed.getvalue())
            await asyncio.sleep(0.3)
            h.say(sc.turns[1].user)  # typed while the agent is still answering: a barge-in
            await h.idle()
            first_response = h.entries("LlmRequestStarted")[0].response_id
            finished = [
                e for e in h.entries("LlmResponseFinished") if e.response_id == first_response
            ]
            assert finished[0].finish_reason == "cancelled"
            [played] = [e for e in h.entries("AgentTextPlayed") if e.response_id == first_response]
            assert played.interrupted and "thirty days" in played.text
            assert "Gift cards" not in played.text
            messages = h.ledger.render_messages("sys")
            check_protocol(messages)
            assistant = [m["content"] for m in messages if m["role"] == "assistant"]
            assert assistant[0] == played.text  # the context keeps only what was said
            assert [m["content"] for m in messages if m["role"] == "user"][-1] == sc.turns[1].user
            assert "nine to five" in assistant[-1]


async def test_a_dead_llm_endpoint_gets_a_spoken_apology_and_the_session_goes_on(make_agent):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with make_agent(f"http://127.0.0.1:{port}/v1", ToolRegistry()) as h:
        h.say("Hello?")
        await h.idle()
        assert "Sorry, I'm having trouble" in h.printed.getvalue()
        notes = [e for e in h.entries("Note") if e.level == "error"]
        assert notes and "cannot reach the LLM endpoint" in notes[0].text
        [finished] = h.entries("LlmResponseFinished")
        assert finished.finish_reason == "error"
        assert h.agent.state == "listening"


async def test_a_malformed_tool_call_becomes_an_error_the_model_reads(make_agent):
    requests: list[list[dict]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        requests.append(body["messages"])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        def chunk(delta, finish=None):
            return (
                "data: "
                + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                + "\n\n"
            ).encode()

        if len(requests) == 1:
            await resp.write(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_x",
                                "function": {"name": "lookup", "arguments": '{"id": 12'},
                            }
                        ]
                    }
                )
            )
            await resp.write(chunk({}, "tool_calls"))
        else:
            await resp.write(chunk({"content": "Sorry, something went wrong with that lookup."}))
            await resp.write(chunk({}, "stop"))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    registry = ToolRegistry()

    @registry.tool
    async def lookup(id: int) -> str:
        """Look something up."""
        return "found"

    async with serving(app) as base, make_agent(f"{base}/v1", registry) as h:
        h.say("Look up item twelve.")
        await h.idle()
        assert h.ledger.call("call_x").status == "failed"
        assert "invalid arguments" in (h.ledger.call("call_x").error or "")
        tool_msgs = [m for m in requests[1] if m["role"] == "tool"]
        assert json.loads(tool_msgs[0]["content"])["status"] == "failed"
        assert "went wrong" in h.printed.getvalue()
