"""Against a hosted OpenAI-compatible endpoint: standard streamed tool_calls.

Skipped unless OPENAI_API_KEY is set (this machine has no internet). Run with
``OPENAI_API_KEY=sk-... make test`` (optionally OPENAI_BASE_URL and
VOICE_AGENT_TEST_OPENAI_MODEL, default gpt-4o-mini).
"""

from __future__ import annotations

import json
import os

import pytest

from voice_agent.tools import ToolRegistry

pytestmark = pytest.mark.skipif(
    not os.environ.get("OPENAI_API_KEY"), reason="needs OPENAI_API_KEY (and internet access)"
)


async def test_a_hosted_model_calls_the_tool_and_answers_from_the_result(make_agent, monkeypatch):
    registry = ToolRegistry()

    @registry.tool(timeout_s=5)
    async def get_order_status(order_id: str) -> dict:
        """Look up the shipping status of an order by its number."""
        return {"order_id": order_id, "status": "out for delivery"}

    base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    model = os.environ.get("VOICE_AGENT_TEST_OPENAI_MODEL", "gpt-4o-mini")
    async with make_agent(
        base_url, registry, mode="async", api_key=os.environ["OPENAI_API_KEY"], model=model
    ) as h:
        h.say("What is the status of order 4417?")
        await h.idle(60)
    [call] = h.entries("ToolCallStarted")
    assert call.name == "get_order_status" and json.loads(call.arguments)["order_id"] == "4417"
    assert "delivery" in " ".join(e.text for e in h.entries("AgentTextPlayed")).lower()
