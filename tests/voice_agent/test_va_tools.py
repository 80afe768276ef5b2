"""Tools: schema from type hints, validation, and the scheduler's outcomes."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Literal

import pytest
from pydantic import Field

from fsm import Event, MonotonicClock
from ledger import Ledger, check_protocol
from ledger import entries as le
from voice_agent.scheduler import ToolScheduler
from voice_agent.tools import ToolArgumentsError, ToolRegistry, ToolSpec


class DemoRegistry(ToolRegistry):
    """The tools below; ``refunds`` counts how often the write tool really ran."""

    refunds = 0


def make_registry() -> DemoRegistry:
    reg = DemoRegistry()

    @reg.tool(kind="read", timeout_s=1)
    async def order_status(
        order_id: Annotated[str, Field(description="digits only")], verbose: bool = False
    ) -> dict:
        """Look up an order.

        Longer text that is not part of the description."""
        await asyncio.sleep(0.01)
        return {"order_id": order_id, "status": "shipped"}

    @reg.tool(kind="read", timeout_s=0.05)
    async def slow() -> str:
        """Never returns in time."""
        await asyncio.sleep(10)
        return "late"

    @reg.tool(kind="read")
    async def broken(x: int) -> int:
        """Always raises."""
        raise RuntimeError(f"backend down for {x}")

    @reg.tool(kind="write", timeout_s=1)
    def refund(order_id: str, amount: float, unit: Literal["usd", "eur"] = "usd") -> str:
        """A synchronous tool runs in a worker thread."""
        reg.refunds += 1
        return f"refunded {amount} {unit} on {order_id}"

    return reg


def test_schema_comes_from_type_hints_and_docstring():
    reg = make_registry()
    schema = reg.get("order_status").openai_schema()
    fn = schema["function"]
    assert fn["name"] == "order_status"
    assert fn["description"] == "Look up an order."
    params = fn["parameters"]
    assert params["required"] == ["order_id"]
    assert params["properties"]["order_id"] == {"type": "string", "description": "digits only"}
    assert params["properties"]["verbose"]["type"] == "boolean"
    assert reg.get("refund").parameters["properties"]["unit"]["enum"] == ["usd", "eur"]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ('{"order_id": 5', "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("{}", "order_id"),
        ('{"order_id": "1", "colour": "red"}', "colour"),
    ],
)
def test_invalid_arguments_are_reported_with_the_problem(raw, problem):
    spec = make_registry().get("order_status")
    with pytest.raises(ToolArgumentsError, match=problem):
        spec.parse_arguments(raw)


def test_explicit_schema_tools_are_checked_too():
    spec = ToolSpec(
        name="t",
        description="d",
        parameters={
            "type": "object",
            "properties": {"n": {"type": "integer"}, "c": {"type": "string", "enum": ["a"]}},
            "required": ["n"],
            "additionalProperties": False,
        },
        fn=lambda **kw: kw,
    )
    assert spec.parse_arguments('{"n": 3}') == {"n": 3}
    for raw, msg in [
        ('{"n": true}', "expected integer"),
        ('{"c": "a"}', "missing"),
        ('{"n": 1, "z": 1}', "unexpected"),
        ('{"n": 1, "c": "b"}', "one of"),
    ]:
        with pytest.raises(ToolArgumentsError, match=msg):
            spec.parse_arguments(raw)


def test_duplicate_tool_names_are_rejected():
    reg = make_registry()
    with pytest.raises(ValueError, match="already registered"):
        reg.add(reg.get("slow"))


async def run_calls(calls: list[tuple[str, str]], *, turn_split: int | None = None):
    reg = make_registry()
    ledger = Ledger("s", MonotonicClock())
    events: list[Event] = []
    sched = ToolScheduler(reg, ledger, events.append, MonotonicClock())
    ledger.append(le.UserUtterance(turn_id=1, text="hi"))
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    for i, (name, args) in enumerate(calls):
        if turn_split is not None and i == turn_split:
            sched.new_turn(2)
        sched.start(call_id=f"c{i}", response_id="r1", name=name, arguments=args)
    ledger.append(le.LlmResponseFinished(response_id="r1", finish_reason="tool_calls", error=None))
    for _ in range(200):
        if not sched.pending():
            break
        await asyncio.sleep(0.01)
    await sched.aclose()
    return reg, ledger, events


async def test_every_failure_kind_becomes_an_outcome_the_model_reads():
    reg, ledger, events = await run_calls(
        [
            ("order_status", '{"order_id": "42"}'),
            ("slow", "{}"),
            ("broken", '{"x": 3}'),
            ("order_status", '{"order_id": 42'),
            ("no_such_tool", "{}"),
        ]
    )
    status = {c: ledger.call(c).status for c in ("c0", "c1", "c2", "c3", "c4")}
    assert status == {
        "c0": "resolved",
        "c1": "timed_out",
        "c2": "failed",
        "c3": "failed",
        "c4": "failed",
    }
    assert ledger.call("c0").result == {"order_id": "42", "status": "shipped"}
    assert "backend down for 3" in ledger.call("c2").error
    assert "invalid arguments" in ledger.call("c3").error
    assert "no tool named 'no_such_tool'" in ledger.call("c4").error
    assert sorted(e.call_id for e in events) == ["c0", "c1", "c2", "c3", "c4"]
    messages = ledger.render_messages("sys")
    check_protocol(messages)
    tool_contents = [json.loads(m["content"]) for m in messages if m["role"] == "tool"]
    assert [c["status"] for c in tool_contents] == [
        "resolved",
        "timed_out",
        "failed",
        "failed",
        "failed",
    ]


async def test_a_repeated_write_in_one_turn_runs_once_but_every_call_is_answered():
    reg, ledger, _ = await run_calls(
        [("refund", '{"order_id": "1", "amount": 5}'), ("refund", '{"amount": 5, "order_id": "1"}')]
    )
    assert reg.refunds == 1
    assert ledger.call("c0").result == ledger.call("c1").result == "refunded 5.0 usd on 1"


async def test_the_same_write_in_a_new_turn_after_it_succeeded_is_answered_already_done():
    reg = make_registry()
    ledger = Ledger("s", MonotonicClock())
    sched = ToolScheduler(reg, ledger, lambda e: None, MonotonicClock())
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    sched.start(
        call_id="c0", response_id="r1", name="refund", arguments='{"order_id": "1", "amount": 5}'
    )
    while sched.pending():
        await asyncio.sleep(0.01)
    sched.new_turn(2)
    sched.start(
        call_id="c1", response_id="r1", name="refund", arguments='{"order_id": 1, "amount": 5.0}'
    )
    while sched.pending():
        await asyncio.sleep(0.01)
    assert reg.refunds == 1
    assert ledger.call("c1").result == {
        "already_done": True,
        "by_call": "c0",
        "result": "refunded 5.0 usd on 1",
    }
    await sched.aclose()


async def test_the_same_write_in_a_new_turn_joins_the_first_while_it_still_runs():
    reg, ledger, _ = await run_calls(
        [
            ("refund", '{"order_id": "1", "amount": 5}'),
            ("refund", '{"order_id": 1, "amount": 5.0}'),
        ],
        turn_split=1,
    )
    assert reg.refunds == 1
    assert ledger.call("c1").result == ledger.call("c0").result


async def test_cancel_records_the_reason():
    reg = make_registry()
    ledger = Ledger("s", MonotonicClock())
    events: list[Event] = []
    sched = ToolScheduler(reg, ledger, events.append, MonotonicClock())
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    sched.start(call_id="c0", response_id="r1", name="slow", arguments="{}")
    await asyncio.sleep(0.01)
    cancelled, silent = sched.on_interrupt()
    assert cancelled == ["c0"] and silent == []
    await asyncio.sleep(0.01)
    view = ledger.call("c0")
    assert view.status == "cancelled"
    assert isinstance(view.outcome, le.ToolCallCancelled)
    assert view.outcome.reason == "the user interrupted"
    await sched.aclose()


async def test_a_call_naming_another_calls_future_waits_for_its_result():
    reg = ToolRegistry()
    order: list[str] = []

    @reg.tool
    async def lookup_customer(phone: str) -> dict:
        """Find a customer."""
        await asyncio.sleep(0.1)
        order.append("lookup")
        return {"customer_id": "C-7", "name": "Dana"}

    @reg.tool
    async def get_orders(customer_id: str) -> list:
        """Orders of a customer."""
        order.append(f"orders:{customer_id}")
        return ["jacket"]

    @reg.tool
    async def broken() -> str:
        """Fails."""
        raise RuntimeError("down")

    ledger = Ledger("s", MonotonicClock())
    sched = ToolScheduler(reg, ledger, lambda e: None, MonotonicClock())
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    sched.start(
        call_id="c1", response_id="r1", name="lookup_customer", arguments='{"phone": "5550142"}'
    )
    sched.start(
        call_id="c2", response_id="r1", name="get_orders", arguments='{"customer_id": "c1"}'
    )
    sched.start(call_id="c3", response_id="r1", name="broken", arguments="{}")
    sched.start(
        call_id="c4", response_id="r1", name="get_orders", arguments='{"customer_id": "c3"}'
    )
    for _ in range(100):
        if not sched.pending():
            break
        await asyncio.sleep(0.01)
    assert order == ["lookup", "orders:C-7"]
    assert ledger.call("c2").started.depends_on == ["c1"]
    assert ledger.call("c2").result == ["jacket"]
    assert ledger.call("c4").status == "failed" and "needs c3" in (ledger.call("c4").error or "")
    await sched.aclose()
