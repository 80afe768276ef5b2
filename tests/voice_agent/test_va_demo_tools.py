"""The demo tools (voice_agent/demo_tools.py) say coherent things.

The tools run without their simulated latency.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from voice_agent import demo_tools

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
