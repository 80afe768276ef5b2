"""The oracle LLM server, over real HTTP with the openai client."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from bench_helpers import JumpClock, chain_scenario, one_tool_scenario

from fsm import AutojumpClock
from voice_agent.bench.oracle import OracleServer
from voice_agent.bench.scenario import Scenario

SYSTEM: Any = {"role": "system", "content": "You are an agent."}


async def ask(server: OracleServer, messages: list[Any]) -> dict[str, Any]:
    """Stream one completion; return text, calls and the raw tool-call deltas."""
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="none", max_retries=0)
    try:
        stream = await client.chat.completions.create(
            model="oracle", messages=messages, stream=True
        )
        calls: dict[int, dict[str, Any]] = {}
        text, deltas, finish = "", [], None
        async for chunk in stream:
            choice = chunk.choices[0]
            text += choice.delta.content or ""
            for d in choice.delta.tool_calls or []:
                deltas.append(d)
                call = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = call["id"] or d.id
                if d.function and d.function.name:
                    call["name"] += d.function.name
                if d.function and d.function.arguments:
                    call["arguments"] += d.function.arguments
            finish = choice.finish_reason or finish
        return {
            "text": text,
            "calls": [calls[i] for i in sorted(calls)],
            "deltas": deltas,
            "finish": finish,
        }
    finally:
        await client.close()


def assistant(text: str, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in calls
        ]
    return message


def tool(call_id: str, content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": json.dumps(content)}


def get_result(future: str, envelope: dict[str, Any]) -> list[dict[str, Any]]:
    pair_id = f"{future}-result"
    call = {"id": pair_id, "name": "get_result", "arguments": json.dumps({"call_id": future})}
    return [assistant("", [call]), tool(pair_id, envelope)]


USER: Any = {"role": "user", "content": "Where is order NW-1?"}


async def test_first_reply_says_filler_then_streams_the_call_in_deltas() -> None:
    async with OracleServer(one_tool_scenario(), JumpClock()) as server:
        reply = await ask(server, [SYSTEM, USER])
    assert reply["text"] == "Let me check."
    assert reply["finish"] == "tool_calls"
    assert reply["calls"] == [
        {"id": "call_1", "name": "get_order_status", "arguments": '{"order_id": "NW-1"}'}
    ]
    names = [d.function.name for d in reply["deltas"] if d.function and d.function.name]
    assert names == ["get_order_status"]
    assert len([d for d in reply["deltas"] if d.function and d.function.arguments]) >= 3


async def test_pending_placeholder_after_filler_gets_an_empty_reply() -> None:
    call = {"id": "call_1", "name": "get_order_status", "arguments": '{"order_id": "NW-1"}'}
    messages = [
        SYSTEM,
        USER,
        assistant("Let me check.", [call]),
        tool("call_1", {"status": "pending", "future": "call_1", "note": "running"}),
    ]
    async with OracleServer(one_tool_scenario(), JumpClock()) as server:
        reply = await ask(server, messages)
    assert reply["text"] == "" and reply["calls"] == [] and reply["finish"] == "stop"


async def test_answer_comes_only_after_the_late_result_arrives() -> None:
    call = {"id": "call_1", "name": "get_order_status", "arguments": '{"order_id": "NW-1"}'}
    base = [
        SYSTEM,
        USER,
        assistant("Let me check.", [call]),
        tool("call_1", {"status": "pending", "future": "call_1"}),
    ]
    late = get_result("call_1", {"status": "resolved", "result": {"status": "shipped"}})
    async with OracleServer(one_tool_scenario(), JumpClock()) as server:
        reply = await ask(server, base + late)
    assert reply["text"] == "It shipped and arrives Thursday."
    assert reply["calls"] == []


async def test_conventional_inline_result_is_a_result() -> None:
    call = {"id": "call_1", "name": "get_order_status", "arguments": '{"order_id": "NW-1"}'}
    messages = [
        SYSTEM,
        USER,
        assistant("Let me check.", [call]),
        tool("call_1", {"status": "shipped"}),
    ]
    async with OracleServer(one_tool_scenario(), JumpClock()) as server:
        reply = await ask(server, messages)
    assert reply["text"] == "It shipped and arrives Thursday."


async def test_call_is_not_made_before_its_input_was_spoken() -> None:
    partial = {"role": "user", "content": "Where is order"}
    async with OracleServer(one_tool_scenario(), JumpClock()) as server:
        early = await ask(server, [SYSTEM, partial])
        later = await ask(server, [SYSTEM, {"role": "user", "content": "Where is order NW-1"}])
    assert early["calls"] == [] and early["text"] == ""
    assert [c["name"] for c in later["calls"]] == ["get_order_status"]


async def test_dependent_call_waits_for_the_result_it_needs() -> None:
    user = {"role": "user", "content": "My phone is 555 0142, where is my order?"}
    async with OracleServer(chain_scenario(), JumpClock()) as server:
        first = await ask(server, [SYSTEM, user])
        assert [c["name"] for c in first["calls"]] == ["lookup_customer"]
        assert first["text"] == "Okay, let me find your account."
        history = [
            SYSTEM,
            user,
            assistant(first["text"], first["calls"]),
            tool(first["calls"][0]["id"], {"customer_id": "C-7", "name": "Dana"}),
        ]
        second = await ask(server, history)
    assert second["text"] == "Hi Dana."
    assert second["calls"][0]["name"] == "get_orders"
    assert json.loads(second["calls"][0]["arguments"]) == {"customer_id": "C-7"}
    assert second["calls"][0]["id"] != first["calls"][0]["id"]


async def test_hold_sentence_once_then_silence_until_something_changes() -> None:
    user = {"role": "user", "content": "My phone is 555 0142, where is my order?"}
    c1 = {"id": "call_1", "name": "lookup_customer", "arguments": '{"phone": "555 0142"}'}
    c2 = {"id": "call_2", "name": "get_orders", "arguments": '{"customer_id": "C-7"}'}
    history = [
        SYSTEM,
        user,
        assistant("Okay, let me find your account.", [c1]),
        tool("call_1", {"customer_id": "C-7", "name": "Dana"}),
        assistant("Hi Dana.", [c2]),
        tool("call_2", {"status": "pending", "future": "call_2"}),
    ]
    async with OracleServer(chain_scenario(), JumpClock()) as server:
        hold = await ask(server, history)
        assert hold["text"] == "Still checking, one moment."
        again = await ask(server, [*history, assistant(hold["text"])])
        assert again["text"] == ""
        done = await ask(
            server,
            [
                *history,
                assistant(hold["text"]),
                *get_result(
                    "call_2", {"status": "resolved", "result": {"orders": [{"item": "jacket"}]}}
                ),
            ],
        )
    assert done["text"] == "Your jacket is on its way."


async def test_failed_result_leads_to_an_apology() -> None:
    call = {"id": "call_1", "name": "get_order_status", "arguments": '{"order_id": "NW-1"}'}
    base = [
        SYSTEM,
        USER,
        assistant("Let me check.", [call]),
        tool("call_1", {"status": "pending", "future": "call_1"}),
    ]
    late = get_result("call_1", {"status": "timed_out", "timeout_s": 3})
    async with OracleServer(one_tool_scenario(), JumpClock()) as server:
        reply = await ask(server, base + late)
    assert "sorry" in reply["text"].lower() and "failed" in reply["text"]


async def test_unknown_user_text_gets_a_fixed_reply() -> None:
    async with OracleServer(one_tool_scenario(), JumpClock()) as server:
        reply = await ask(server, [SYSTEM, {"role": "user", "content": "Tell me a joke"}])
        assert server.exchanges[0].note == "user message matches no turn"
    assert reply["text"] == "Sorry, I didn't catch that."


async def test_timing_model_on_virtual_time() -> None:
    clock = JumpClock(start=10.0)
    async with OracleServer(one_tool_scenario(ttft_ms=300, tokens_per_s=50), clock) as server:
        await ask(server, [SYSTEM, USER])
        ex = server.exchanges[0]
    text_tokens = 4  # "Let me check." is 13 chars → 4 pieces of ≤4 chars
    call_tokens = 4 + 5  # "get_order_status" (16 chars) + '{"order_id": "NW-1"}' (20 chars)
    assert ex.received_at == 10.0
    assert ex.first_token_at == pytest.approx(10.3)
    assert ex.finished_at == pytest.approx(10.3 + (text_tokens + call_tokens - 1) / 50)


async def test_timing_model_over_http_streaming_and_non_streaming() -> None:
    clock = AutojumpClock.running()  # virtual time: the timing model is exact, however busy
    scenario: Scenario = one_tool_scenario(ttft_ms=200, tokens_per_s=100)
    async with OracleServer(scenario, clock) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        try:
            models = await client.models.list()
            assert [m.id for m in models.data] == ["oracle"]
            start = clock.now()
            stream = await client.chat.completions.create(
                model="oracle", messages=[SYSTEM, USER], stream=True
            )
            first = None
            async for _chunk in stream:
                first = first or clock.now() - start
            total = clock.now() - start
            start = clock.now()
            whole = await client.chat.completions.create(model="oracle", messages=[SYSTEM, USER])
            whole_s = clock.now() - start
        finally:
            await client.close()
    expected_total = 0.2 + 12 / 100
    assert first == pytest.approx(0.2)
    assert total == pytest.approx(expected_total)
    assert whole_s == pytest.approx(expected_total)
    message = whole.choices[0].message
    assert message.content == "Let me check."
    assert message.tool_calls
    call = message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_order_status"
    assert whole.choices[0].finish_reason == "tool_calls"


async def test_bad_request_is_a_400() -> None:
    async with OracleServer(one_tool_scenario(), JumpClock()) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="none", max_retries=0)
        try:
            with pytest.raises(openai.BadRequestError):
                await client.chat.completions.create(model="oracle", messages="nope")  # type: ignore[arg-type]
        finally:
            await client.close()


def test_a_transcript_with_small_recognition_errors_still_matches_its_turn() -> None:
    from voice_agent.bench.oracle_script import match_turn
    from voice_agent.bench.scenario import Scenario

    sc = Scenario.model_validate(
        {
            "name": "m",
            "turns": [
                {
                    "user": "Where is my order number 427?",
                    "answer": [{"say": "It shipped.", "expect": ["shipped"]}],
                },
                {"user": "Thank you, that is all.", "answer": [{"say": "Bye.", "expect": ["Bye"]}]},
            ],
        }
    )
    assert match_turn(sc, [{"role": "user", "content": "Where's my order number 427?"}]) == 0
    assert match_turn(sc, [{"role": "user", "content": "Thank you. That's all."}]) == 1
    assert match_turn(sc, [{"role": "user", "content": "Can I pay with a gift card?"}]) is None
