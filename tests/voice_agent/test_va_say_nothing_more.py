"""A result that asks for no reply (`voice_agent.guidance.SAY_NOTHING_MORE`) starts no
follow-up: the engine says what happens itself, and the ledger still records the result.

The agent (real table, conversation, scheduler, ledger) runs on a scripted fake model
(`ScriptedModel`: the first request calls the tools it is given, every later one says a
fixed sentence) and virtual time (`AutojumpClock`): the tools' latencies are jumped, not
waited.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fsm import AutojumpClock
from ledger import Ledger, check_protocol
from voice_agent.agent import Agent
from voice_agent.config import AgentConfig
from voice_agent.events import SessionEnded, TranscriptFinal
from voice_agent.guidance import guidance, says_nothing_more
from voice_agent.llm import StreamFinished, TextDelta, ToolCallReady
from voice_agent.output import TextOutput
from voice_agent.tools import ToolRegistry

FOLLOW_UP = "Here is what I found."


class ScriptedModel:
    """Fake model: the first request calls `calls` ((name, arguments)), later ones say
    `FOLLOW_UP`; every request's messages are kept."""

    config = None

    def __init__(self, calls: list[tuple[str, dict[str, Any]]]) -> None:
        self.calls = calls
        self.requests: list[list[dict[str, Any]]] = []

    async def stream(self, messages: Any, tools: Any = None, **_: Any) -> Any:
        check_protocol(messages)
        self.requests.append(messages)
        await asyncio.sleep(0.2)  # time to first token
        if len(self.requests) == 1:
            for n, (name, arguments) in enumerate(self.calls):
                yield ToolCallReady(f"c{n}", name, json.dumps(arguments))
            yield StreamFinished("tool_calls")
            return
        yield TextDelta(FOLLOW_UP)
        yield StreamFinished("stop")

    async def prewarm(self, messages: Any, tools: Any) -> None:
        return None

    async def aclose(self) -> None:
        return None


def tools(lookup_s: float, notify_s: float) -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool(kind="read", timeout_s=30)
    async def lookup_order(order_number: str) -> dict[str, str]:
        """An order's status."""
        await asyncio.sleep(lookup_s)
        return {"order_number": order_number, "status": "shipped"}

    @registry.tool(kind="write", timeout_s=30)
    async def hand_over(reason: str) -> dict[str, Any]:
        """Hand the caller over (the engine tells them)."""
        await asyncio.sleep(notify_s)
        return guidance("the caller is told; say nothing more", say_nothing_more=True)

    return registry


def run_turn(
    calls: list[tuple[str, dict[str, Any]]], lookup_s: float = 0.5, notify_s: float = 0.5
) -> tuple[Ledger, ScriptedModel]:
    clock = AutojumpClock()
    ledger = Ledger("say-nothing-more", clock)
    model = ScriptedModel(calls)
    agent = Agent(
        AgentConfig(system_prompt="test", hold_after_s=30.0),
        model,  # type: ignore[arg-type]
        tools(lookup_s, notify_s),
        TextOutput(io.StringIO()),
        ledger,
        clock,
    )

    async def main() -> None:
        task = asyncio.create_task(agent.run())
        agent.post(TranscriptFinal(text="order 5091, and put me through please"))
        await asyncio.sleep(20.0)
        agent.post(SessionEnded(reason="test over"))
        await task

    clock.run(main())
    return ledger, model


def follow_ups(ledger: Ledger) -> list[Any]:
    return [e for e in ledger.entries if e.type == "LlmRequestStarted" and e.reason != "canned"][1:]


def test_a_result_that_asks_for_no_reply_starts_no_follow_up_and_is_recorded() -> None:
    ledger, model = run_turn([("hand_over", {"reason": "asked for a person"})])
    assert follow_ups(ledger) == []
    assert len(model.requests) == 1
    results = [e.result for e in ledger.entries if e.type == "ToolCallResolved"]
    assert [says_nothing_more(r) for r in results] == [True]
    # nothing is said after it
    assert [e for e in ledger.entries if e.type == "AgentTextPlanned"] == []


@settings(max_examples=25, deadline=None)
@given(
    lookup_s=st.floats(0.05, 3.0),
    notify_s=st.floats(0.05, 3.0),
)
def test_every_follow_up_reports_an_outcome_that_is_not_a_request_for_silence(
    lookup_s: float, notify_s: float
) -> None:
    """Beside a lookup, whichever arrives first: each follow-up starts after a lookup result
    it reports, none after the silent result alone; every result is in the ledger."""
    ledger, model = run_turn(
        [("lookup_order", {"order_number": "5091"}), ("hand_over", {"reason": "asked"})],
        lookup_s,
        notify_s,
    )
    resolved = {e.call_id: e for e in ledger.entries if e.type == "ToolCallResolved"}
    assert set(resolved) == {"c0", "c1"}
    starts = follow_ups(ledger)
    assert len(starts) == 1  # the lookup's report, never one for the silent result
    assert starts[0].seq > resolved["c0"].seq
    assert model.requests[-1][-1]["role"] == "tool"  # it reports a result
