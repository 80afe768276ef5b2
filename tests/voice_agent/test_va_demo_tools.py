"""The demo tools (voice_agent/demo_tools.py) say coherent things, and the call-back is
read back and runs only on the caller's yes.

The tools run without their simulated latency; the call-back goes through the real
agent (table, scheduler, ledger, confirmations) driven by a scripted in-process model
(a fake, named as such) on virtual time.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from fsm import AutojumpClock
from ledger import Ledger, check_protocol
from ledger.entries import ToolCallResolved
from voice_agent import demo_tools
from voice_agent.agent import Agent
from voice_agent.config import AgentConfig
from voice_agent.events import SessionEnded, TranscriptFinal
from voice_agent.llm import StreamFinished, TextDelta, ToolCallReady
from voice_agent.output import TextOutput

WEEKDAYS = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}


@pytest.fixture(autouse=True)
def no_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_tools, "LATENCY_S", dict.fromkeys(demo_tools.LATENCY_S, 0.0))


def run_tool(name: str, **arguments: Any) -> Any:
    async def call() -> Any:
        return await demo_tools.registry.get(name).fn(**arguments)

    return asyncio.run(call())


def test_an_order_names_one_date_for_what_it_is() -> None:
    """Delivered: when it was delivered, and no estimate (z01 read both as "delivered and
    estimated to be delivered on Thursday"); out for delivery: today; else a weekday."""
    seen = set()
    for number in range(1000, 1200):
        result = run_tool("get_order_status", order_id=str(number))
        status = result["status"]
        seen.add(status)
        if status == "delivered":
            assert result["delivered_on"] in WEEKDAYS and "estimated_delivery" not in result
        elif status == "out for delivery":
            assert result["estimated_delivery"] == "today" and "delivered_on" not in result
        else:
            assert result["estimated_delivery"] in WEEKDAYS and "delivered_on" not in result
    assert seen == {"processing", "shipped", "out for delivery", "delivered"}
    assert run_tool("get_order_status", order_id="58213") == run_tool(
        "get_order_status", order_id="58213"
    )  # the same order says the same thing every time


def test_an_order_number_is_read_by_its_digits_and_one_without_any_is_asked_again() -> None:
    assert run_tool("get_order_status", order_id="4,417") == run_tool(
        "get_order_status", order_id="four four one seven"
    )
    assert run_tool("get_order_status", order_id="4,417")["order_id"] == "4417"
    for heard in ("", "my last order"):
        result = run_tool("get_order_status", order_id=heard)
        assert result["found"] is False and "status" not in result
        assert "order number" in result["next_step"]


@pytest.mark.parametrize(
    "city", ["Boston", "salt lake city", "Portland, Oregon", "St. Louis", "Winston-Salem"]
)
def test_a_city_gets_its_stores_hours_however_it_is_spaced(city: str) -> None:
    result = run_tool("get_store_hours", city=city)
    assert result["city"] == city and result["hours"].endswith("pm, Monday to Saturday")
    assert run_tool("get_store_hours", city=f"  {city}  ")["hours"] == result["hours"]


@pytest.mark.parametrize("heard", ["the weather", "", "   ", "my house", "near me", "12345"])
def test_what_is_not_a_place_name_gets_no_hours_but_a_question(heard: str) -> None:
    result = run_tool("get_store_hours", city=heard)
    assert result["found"] is False and "hours" not in result
    assert "which city" in result["next_step"]


@pytest.mark.parametrize(
    ("phone", "spelled"),
    [
        ("5552017788", "5 5 5, 2 0 1, 7 7 8 8"),
        ("555 201 7788", "5 5 5, 2 0 1, 7 7 8 8"),
        ("five five five, oh one four two", "5 5 5, 0 1 4 2"),
        ("1 555 201 7788", "1, 5 5 5, 2 0 1, 7 7 8 8"),
        ("my mobile", "my mobile"),
    ],
)
def test_the_call_back_is_read_back_digit_by_digit(phone: str, spelled: str) -> None:
    spec = demo_tools.registry.get("schedule_callback")
    assert spec.needs_confirmation
    arguments = spec.parse_arguments(json.dumps({"phone": phone, "time": "tomorrow 10 am"}))
    assert spec.read_back(arguments) == f"schedule a call back to {spelled} for tomorrow 10 am"


class CallBackCaller:
    """Fake model: a number before "tomorrow" → schedule_callback(its digits, 'tomorrow 10 am');
    a tool result → "Done: <result>"; anything else → "Okay."."""

    def __init__(self) -> None:
        self.ids = 0

    async def stream(self, messages, tools=None, *, tool_choice=None):  # type: ignore[no-untyped-def]
        check_protocol(messages)
        await asyncio.sleep(0.3)  # time to first token
        last = messages[-1]
        if last["role"] == "tool":
            yield TextDelta(f"Done: {last['content']}")
            yield StreamFinished("stop")
            return
        number = last["content"].split(" tomorrow")[0]
        digits = "".join(c for c in number if c.isdigit())
        if not digits:
            yield TextDelta("Okay.")
            yield StreamFinished("stop")
            return
        self.ids += 1
        arguments = json.dumps({"phone": digits, "time": "tomorrow 10 am"})
        yield ToolCallReady(f"call_{self.ids}", "schedule_callback", arguments)
        yield StreamFinished("tool_calls")

    async def prewarm(self, messages, tools):  # type: ignore[no-untyped-def]
        return None


def on_the_demo(script: Callable[[Callable[[str], Awaitable[None]]], Awaitable[None]]) -> Ledger:
    """Run ``script(say)`` against an agent on the demo tools, on virtual time."""
    clock = AutojumpClock()
    ledger = Ledger("demo-test", clock)

    async def main() -> None:
        agent = Agent(AgentConfig(system_prompt="test", hold_after_s=5.0), CallBackCaller(),  # type: ignore[arg-type]
                      demo_tools.registry, TextOutput(io.StringIO()), ledger, clock)  # fmt: skip
        task = asyncio.create_task(agent.run())

        async def say(text: str) -> None:
            agent.post(TranscriptFinal(text=text))
            await asyncio.sleep(5.0)

        try:
            await script(say)
        finally:
            agent.post(SessionEnded(reason="test over"))
            await task

    clock.run(main())
    return ledger


def booked(ledger: Ledger) -> list[dict[str, Any]]:
    """The call-backs that ran (their results carry a confirmation code)."""
    results = [e.result for e in ledger.entries if isinstance(e, ToolCallResolved)]
    return [r for r in results if isinstance(r, dict) and "confirmation" in r]


def test_a_call_back_runs_only_after_the_caller_hears_the_number_and_says_yes() -> None:
    async def script(say: Callable[[str], Awaitable[None]]) -> None:
        await say("Call me back on 555 201 7789 tomorrow at 10 am.")  # misheard: 7789
        await say("No, that's wrong.")
        await say("Call me back on 555 201 7788 tomorrow at 10 am.")
        await say("Yes, that's right.")

    ledger = on_the_demo(script)
    heard = " ".join(e.text for e in ledger.entries if e.type == "AgentTextPlayed")
    assert (
        "Just to confirm: schedule a call back to 5 5 5, 2 0 1, 7 7 8 9 for tomorrow 10 am. "
        "Shall I go ahead?" in heard
    )
    assert "7 7 8 8 for tomorrow 10 am. Shall I go ahead?" in heard
    [result] = booked(ledger)  # the misheard number booked nothing; the right one once
    runs = [
        e
        for e in ledger.entries
        if e.type == "ToolCallStarted" and e.call_id.endswith("-confirmed")
    ]
    assert [json.loads(e.arguments)["phone"] for e in runs] == ["5552017788"]
    assert result["confirmation"].startswith("CB-")
