"""The LLM client against a misbehaving OpenAI-compatible server, on virtual time.

The server (``voice_agent.bench.fault_server``) runs on 127.0.0.1 and its
delays run on the same ``ManualClock`` as the client's deadlines: a test waits
until the server has reached its stall (an event), then jumps the clock. No
test sleeps, and the times asserted are virtual, hence exact.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from fsm import ManualClock
from voice_agent.bench.fault_server import ANSWER, FAULTS, FaultServer, answer, context_limited
from voice_agent.config import LlmConfig
from voice_agent.llm import (
    LlmClient,
    LlmContextOverflow,
    LlmError,
    StreamFinished,
    TextDelta,
    ToolCallReady,
)

REAL_WAIT_S = 20.0  # generous bound on real time for a step to happen (never reached when green)


def make_client(server: FaultServer, clock: ManualClock, **kw: Any) -> LlmClient:
    kw.setdefault("retry_backoff_s", 0.5)
    kw.setdefault("max_retries", 0)
    return LlmClient(LlmConfig(base_url=server.base_url, model="m", **kw), clock=clock)


async def consume(llm: LlmClient, got: list, messages: list[dict] | None = None) -> None:
    async for item in llm.stream(messages or [{"role": "user", "content": "hi"}]):
        got.append(item)


async def stalled(server: FaultServer) -> None:
    await asyncio.wait_for(server.stalled.wait(), REAL_WAIT_S)
    server.stalled.clear()


async def sleeping(clock: ManualClock, until: float | None = None) -> None:
    """Wait (in real time, as a sync point) until the only thing left is a sleep on the clock
    ending at ``until`` (a backoff), or any sleep when ``until`` is None."""

    async def wait() -> None:
        while clock.next_deadline is None or (until is not None and clock.next_deadline != until):
            await asyncio.sleep(0.001)

    await asyncio.wait_for(wait(), REAL_WAIT_S)


async def finished(task: asyncio.Task) -> None:
    await asyncio.wait_for(asyncio.shield(task), REAL_WAIT_S)


def text_of(items: list) -> str:
    return "".join(i.text for i in items if isinstance(i, TextDelta))


async def test_headers_then_nothing_fails_at_the_first_token_deadline_after_one_retry():
    clock = ManualClock()
    async with FaultServer(FAULTS["headers_then_stall"], clock=clock) as server:
        llm = make_client(server, clock, first_token_timeout_s=4.0, max_retries=1)
        got: list = []
        task = asyncio.create_task(consume(llm, got))
        await stalled(server)
        await clock.advance(4.0)  # attempt 1 gives up; backoff 0.5 s
        await sleeping(clock, until=4.5)
        await clock.advance(0.5)  # attempt 2
        await stalled(server)
        await clock.advance(4.0)
        with pytest.raises(LlmError, match="no response from the LLM within 4.0s"):
            await finished(task)
        await llm.aclose()
    assert clock.now() == 8.5 and len(server.requests) == 2 and got == []


@pytest.mark.parametrize("fault", ["keepalive_forever", "role_then_stall"])
async def test_keepalives_and_role_chunks_are_not_a_first_token(fault):
    clock = ManualClock()
    async with FaultServer(FAULTS[fault], clock=clock, keepalive_s=0.5) as server:
        llm = make_client(server, clock, first_token_timeout_s=3.0)
        task = asyncio.create_task(consume(llm, []))
        await stalled(server)
        for _ in range(6):  # keep-alives arrive every 0.5 s of virtual time
            await clock.advance(0.5)
        with pytest.raises(LlmError, match="no response from the LLM within 3.0s"):
            await finished(task)
        await llm.aclose()


@pytest.mark.parametrize("fault", ["stall_after_text", "keepalive_after_text"])
async def test_a_stream_that_stalls_after_some_text_fails_at_the_stall_deadline(fault):
    clock = ManualClock()
    async with FaultServer(FAULTS[fault], clock=clock) as server:
        llm = make_client(server, clock, stall_timeout_s=5.0, max_retries=2)
        got: list = []
        task = asyncio.create_task(consume(llm, got))
        await stalled(server)
        for _ in range(10):
            await clock.advance(0.5)
        with pytest.raises(LlmError, match="stalled for 5.0s"):
            await finished(task)
        await llm.aclose()
    assert text_of(got)  # the text came through before the stall
    assert len(server.requests) == 1  # no retry once something was said


async def test_timeout_s_is_the_whole_request_deadline_not_a_per_read_timeout():
    """A slow first byte (35 s) under a 10 s request deadline: one failure at 10 s, no retry."""
    clock = ManualClock()
    async with FaultServer(FAULTS["slow_first_byte"], clock=clock) as server:
        llm = make_client(server, clock, timeout_s=10.0, first_token_timeout_s=30.0, max_retries=3)
        task = asyncio.create_task(consume(llm, []))
        await asyncio.wait_for(server.received.wait(), REAL_WAIT_S)
        await sleeping(clock)
        for _ in range(20):
            await clock.advance(0.5)
            if task.done():
                break
        with pytest.raises(LlmError, match="took longer than 10.0s"):
            await finished(task)
        await llm.aclose()
    assert clock.now() == 10.0 and len(server.requests) == 1


async def test_a_clean_close_mid_sentence_is_not_an_answer():
    clock = ManualClock()
    async with FaultServer(FAULTS["close_mid_sentence"], clock=clock) as server:
        llm = make_client(server, clock, max_retries=2)
        got: list = []
        with pytest.raises(LlmError, match="ended without finishing \\(after 14 characters\\)"):
            await consume(llm, got)
        await llm.aclose()
    assert text_of(got) == "Your order has"
    assert not any(isinstance(i, StreamFinished) for i in got)


@pytest.mark.parametrize("fault", ["empty_close", "malformed_sse", "truncated_json"])
async def test_a_broken_stream_before_any_output_is_retried(fault):
    clock = ManualClock()
    async with FaultServer([FAULTS[fault], answer(ANSWER)], clock=clock) as server:
        llm = make_client(server, clock, max_retries=1)
        got: list = []
        task = asyncio.create_task(consume(llm, got))
        await sleeping(clock, until=0.5)  # the backoff after the broken attempt
        await clock.advance(0.5)
        await finished(task)
        await llm.aclose()
    assert text_of(got) == ANSWER and len(server.requests) == 2


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("empty_close", "ended without finishing \\(before any output\\)"),
        ("malformed_sse", "malformed chunk"),
        ("truncated_json", "ended without finishing|malformed chunk"),
        ("error_event_mid_stream", "reported an error mid-stream: internal error"),
    ],
)
async def test_a_broken_stream_that_stays_broken_says_what_happened(fault, message):
    clock = ManualClock()
    async with FaultServer(FAULTS[fault], clock=clock) as server:
        llm = make_client(server, clock, max_retries=0)
        with pytest.raises(LlmError, match=message):
            await consume(llm, [])
        await llm.aclose()


async def test_a_finish_without_done_ends_the_answer_after_a_short_grace():
    clock = ManualClock()
    async with FaultServer(FAULTS["stall_after_finish"], clock=clock) as server:
        llm = make_client(server, clock)
        got: list = []
        task = asyncio.create_task(consume(llm, got))
        await stalled(server)
        await clock.advance(1.0)
        await finished(task)
        await llm.aclose()
    assert text_of(got) == ANSWER and got[-1] == StreamFinished("stop", None)


async def test_max_tokens_is_enforced_even_when_the_server_ignores_it():
    clock = ManualClock()
    async with FaultServer(FAULTS["ignores_max_tokens"], clock=clock) as server:
        llm = make_client(server, clock, max_tokens=50)
        got: list = []
        await consume(llm, got)
        await llm.aclose()
    words = text_of(got).split()
    assert 0 < len(words) <= 50
    assert got[-1] == StreamFinished("length", None, truncated=True)


async def test_a_call_cut_by_the_cap_is_dropped_and_complete_ones_are_kept():
    long_args = json.dumps({"note": "z" * 400})
    script = [
        ("headers",),
        ("role",),
        ("call", 0, "c1", "first", '{"a": 1}'),
        ("call", 1, "c2", "second", long_args[:150]),
        ("call", 1, None, None, long_args[150:]),
        ("finish", "tool_calls"),
        ("done",),
    ]
    clock = ManualClock()
    async with FaultServer(script, clock=clock) as server:
        llm = make_client(server, clock, max_tokens=40)
        got: list = []
        await consume(llm, got)
        await llm.aclose()
    calls = [i for i in got if isinstance(i, ToolCallReady)]
    assert [(c.name, c.arguments) for c in calls] == [("first", '{"a": 1}')]
    assert got[-1].finish_reason == "length"


async def test_429_waits_for_retry_after_on_the_clock():
    clock = ManualClock()
    async with FaultServer([FAULTS["rate_limited"], answer(ANSWER)], clock=clock) as server:
        llm = make_client(server, clock, max_retries=2, retry_backoff_s=0.1)
        got: list = []
        task = asyncio.create_task(consume(llm, got))
        await sleeping(clock, until=2.0)
        await clock.advance(1.9)
        assert len(server.requests) == 1  # not before Retry-After: 2
        await clock.advance(0.1)
        await finished(task)
        await llm.aclose()
    assert text_of(got) == ANSWER and clock.now() == 2.0


async def test_a_retry_after_beyond_the_request_deadline_fails_at_once():
    clock = ManualClock()
    late = [("status", 429, {"error": {"message": "slow down"}}, {"Retry-After": "60"})]
    async with FaultServer(late, clock=clock) as server:
        llm = make_client(server, clock, max_retries=3, timeout_s=20.0)
        with pytest.raises(LlmError, match="would pass the request's 20.0s deadline"):
            await consume(llm, [])
        await llm.aclose()
    assert clock.now() == 0.0 and len(server.requests) == 1


def history(turns: int) -> list[dict]:
    messages: list[dict] = [{"role": "system", "content": "You are a test agent."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"Question {i}: " + "x" * 300})
        messages.append({"role": "assistant", "content": "Answer " + "y" * 100})
    messages.append({"role": "user", "content": "Where is my order?"})
    return messages


async def test_a_context_length_error_is_recovered_from_once_and_not_repeated():
    clock = ManualClock()
    plan = context_limited(16_000, 4096, answer(ANSWER))
    async with FaultServer(plan, clock=clock) as server:
        llm = make_client(server, clock, context_tokens=None)  # the window is unknown
        assert llm.context_window is None
        messages = history(60)
        for turn in range(5):
            messages = history(60 + turn)
            got: list = []
            await consume(llm, got, messages)
            assert text_of(got) == ANSWER
        await llm.aclose()
    # one overflow, learned from the error's stated limit; every later request fits
    assert llm.context_window == 4096
    sizes = server.request_sizes
    assert len(sizes) == 6 and sizes[0] > 16_000 and all(s <= 16_000 for s in sizes[1:])
    last = server.requests[-1]["messages"]
    assert last[-1] == {"role": "user", "content": "Where is my order?"}
    assert "Earlier in this call" in last[0]["content"]


async def test_an_embedded_server_style_overflow_in_the_stream_is_recognised():
    clock = ManualClock()

    def plan(index: int, body: dict) -> list:
        if len(json.dumps(body["messages"])) > 6_000:
            return [
                ("headers",),
                ("role",),
                ("error_event", "prompt has 5120 tokens; the context holds 2048"),
            ]
        return answer(ANSWER)

    async with FaultServer(plan, clock=clock) as server:
        llm = make_client(server, clock, max_tokens=100)
        got: list = []
        await consume(llm, got, history(40))
        await llm.aclose()
    assert text_of(got) == ANSWER and llm.context_window == 2048


async def test_an_overflow_that_persists_after_refitting_is_an_error_not_a_loop():
    clock = ManualClock()
    always: list[Any] = [
        (
            "status",
            400,
            {
                "error": {
                    "message": "maximum context length is 100 tokens",
                    "code": "context_length_exceeded",
                }
            },
            {},
        )
    ]
    async with FaultServer(always, clock=clock) as server:
        llm = make_client(server, clock, max_retries=3)
        with pytest.raises(LlmContextOverflow):
            await consume(llm, [], history(3))
        await llm.aclose()
    assert len(server.requests) == 2
