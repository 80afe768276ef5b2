"""The engine on a real local model: a real llama.cpp server, a real tool round trip.

It runs on the 0.5B model: it makes this call reliably, while the default 1.5B
sometimes describes the call in prose instead of making it (about 2 runs in 5
on this question; see docs/design.md), which would make the test flaky
without saying anything about the engine.
"""

from __future__ import annotations

import json

import pytest

from voice_agent.config import load_config, render_system_prompt
from voice_agent.demo_tools import registry as demo_registry

pytestmark = [pytest.mark.slow, pytest.mark.realtime]  # a model server process

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


async def test_a_local_model_calls_a_tool_and_its_result_reaches_the_next_generation(make_agent):
    from voice_agent.local_llm.launcher import LocalLlmServer

    async with LocalLlmServer(model=MODEL, startup_timeout_s=180) as server:
        prompt = render_system_prompt(load_config(environ={}).agent)
        # Greedy decoding: the same prompt gets the same answer (up to float noise).
        # A real model on a shared 2-core machine may be slow: generous bounds (the
        # silence deadline's behaviour is tested on virtual time in test_va_llm_reliability).
        async with make_agent(
            server.base_url,
            demo_registry,
            mode="async",
            system_prompt=prompt,
            temperature=0.0,
            llm_deadline_s=300.0,
            llm_kw={"first_token_timeout_s": 300.0, "timeout_s": 600.0},
        ) as h:
            await h.agent.prewarm()
            h.say("What is the status of order 12345?")
            await h.idle(900)  # generous: at load 20+ one 0.5B request took minutes
    calls = h.entries("ToolCallStarted")
    assert calls, f"no tool call; the model said: {h.ledger.transcript()}"
    call = calls[0]
    assert call.name == "get_order_status"
    assert json.loads(call.arguments)["order_id"] == "12345"
    assert h.ledger.call(call.call_id).status == "resolved"
    # The result was rendered into a later request, and the model then said something.
    resolved = next(e for e in h.ledger.entries if e.type == "ToolCallResolved")
    later = [e for e in h.entries("LlmRequestStarted") if e.seq > resolved.seq]
    assert later, "no generation after the result"
    assert any(e.response_id == later[0].response_id for e in h.entries("AgentTextPlanned"))
