"""Shared helpers for the bench tests (imported by path-local name)."""

from __future__ import annotations

import asyncio
from typing import Any

from voice_agent.bench.scenario import Scenario


class JumpClock:
    """Virtual time where ``sleep`` jumps forward at once (deterministic timing)."""

    def __init__(self, start: float = 100.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


def scenario_from(data: dict[str, Any]) -> Scenario:
    return Scenario.model_validate(data)


ORDER_TOOL = {
    "name": "get_order_status",
    "description": "Order status by number.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    "latency_ms": 1000,
    "result": {"status": "shipped", "eta": "Thursday"},
}


def one_tool_scenario(**oracle: Any) -> Scenario:
    return scenario_from(
        {
            "name": "t",
            "oracle": {"ttft_ms": 300, "tokens_per_s": 50, **oracle},
            "tools": [ORDER_TOOL],
            "turns": [
                {
                    "user": "Where is order NW-1?",
                    "filler": "Let me check.",
                    "calls": [
                        {"tool": "get_order_status", "arguments": {"order_id": "{{user:NW-1}}"}}
                    ],
                    "answer": [
                        {
                            "say": "It shipped and arrives Thursday.",
                            "needs": ["get_order_status"],
                            "expect": ["Thursday"],
                        }
                    ],
                }
            ],
        }
    )


def chain_scenario() -> Scenario:
    return scenario_from(
        {
            "name": "chain",
            "tools": [
                {
                    "name": "lookup_customer",
                    "description": "d",
                    "result": {"customer_id": "C-7", "name": "Dana"},
                },
                {
                    "name": "get_orders",
                    "description": "d",
                    "result": {"orders": [{"item": "jacket"}]},
                },
            ],
            "turns": [
                {
                    "user": "My phone is 555 0142, where is my order?",
                    "filler": "Okay, let me find your account.",
                    "calls": [
                        {
                            "tool": "lookup_customer",
                            "id": "customer",
                            "arguments": {"phone": "{{user:555 0142}}"},
                        },
                        {
                            "tool": "get_orders",
                            "id": "orders",
                            "arguments": {"customer_id": "{{calls.customer.result.customer_id}}"},
                        },
                    ],
                    "answer": [
                        {
                            "say": "Hi {{calls.customer.result.name}}.",
                            "needs": ["customer"],
                            "expect": ["Dana"],
                        },
                        {
                            "say": "Your {{calls.orders.result.orders.0.item}} is on its way.",
                            "needs": ["orders"],
                            "expect": ["jacket"],
                        },
                    ],
                }
            ],
        }
    )
