"""The engine on the embedded local model: a real llama.cpp server, a real tool round trip."""

from __future__ import annotations

import json

import pytest

from voice_agent.config import load_config, render_system_prompt
from voice_agent.demo_tools import registry as demo_registry

pytestmark = pytest.mark.slow

DEFAULT_MODEL = load_config(environ={}).local_llm.model


async def test_the_default_local_model_calls_a_tool_and_answers_from_its_result(make_agent):
    from voice_agent.local_llm.launcher import LocalLlmServer

    async with LocalLlmServer(model=DEFAULT_MODEL, startup_timeout_s=180) as server:
        prompt = render_system_prompt(load_config(environ={}).agent)
        async with make_agent(
            server.base_url, demo_registry, mode="async", system_prompt=prompt
        ) as h:
            await h.agent.prewarm()
            h.say("What is the status of order 12345?")
            await h.idle(120)
    calls = h.entries("ToolCallStarted")
    assert calls, f"no tool call; the model said: {h.ledger.transcript()}"
    call = calls[0]
    assert call.name == "get_order_status"
    assert json.loads(call.arguments)["order_id"] == "12345"
    result = h.ledger.call(call.call_id).result
    heard = " ".join(e.text for e in h.entries("AgentTextPlayed")).lower()
    assert result["status"] in heard or result["estimated_delivery"].lower() in heard, heard
