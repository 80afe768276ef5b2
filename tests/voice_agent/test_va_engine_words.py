"""The engine's own words (hold phrases, the apology) do not count as telling a result.

The agent (real table, conversation, scheduler, ledger) runs on virtual time
(`AutojumpClock`) with a scripted fake model (`Reteller`, ``since="agent"``) that tells
exactly the outcomes the embedded server has it tell (`turn_history.untold`). Whatever
engine words come between a result and its report, every result reaches the caller.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fsm import AutojumpClock
from ledger import Ledger
from ledger.render import ENGINE_SPEAKER
from voice_agent.agent import Agent
from voice_agent.bench.reteller import Reteller
from voice_agent.config import AgentConfig
from voice_agent.events import SessionEnded, TranscriptFinal
from voice_agent.output import TextOutput
from voice_agent.tools import ToolRegistry

ORDER = "The order 5091 has shipped."
HOURS = "The Dallas store opens at 9 am."
CUSTOMER = "I found your account."
BALANCE = "Your balance is 42 dollars."


def registry(first_s: float, second_s: float) -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool(timeout_s=60)
    async def get_order_status(order_id: str) -> dict[str, str]:
        """An order's status."""
        await asyncio.sleep(first_s)
        return {"fact": ORDER}

    @reg.tool(timeout_s=60)
    async def get_store_hours(city: str) -> dict[str, str]:
        """A store's hours."""
        await asyncio.sleep(second_s)
        return {"fact": HOURS}

    @reg.tool(timeout_s=60)
    async def find_customer(phone: str) -> str:
        """The id of the customer with this phone number."""
        await asyncio.sleep(first_s)
        return "K-17"

    @reg.tool(timeout_s=60)
    async def get_balance(customer: str) -> dict[str, str]:
        """A customer's balance."""
        await asyncio.sleep(second_s)
        return {"fact": BALANCE}

    return reg


def run(
    calls: list[tuple[str, str]], first_s: float, second_s: float, *, stalls: int = 0
) -> tuple[Ledger, Reteller]:
    clock = AutojumpClock()
    ledger = Ledger("engine-words", clock)
    model = Reteller(
        clock,
        calls,
        lambda result: result["fact"] if isinstance(result, dict) else CUSTOMER,
        ttft_s=0.2,
        per_word_s=0.05,
        gap_s=0.1,
        since="agent",
        stalls=stalls,
    )
    agent = Agent(
        AgentConfig(system_prompt="test", mode="async"),
        model,  # type: ignore[arg-type]
        registry(first_s, second_s),
        TextOutput(io.StringIO()),
        ledger,
        clock,
    )

    async def main() -> None:
        task = asyncio.create_task(agent.run())
        agent.post(TranscriptFinal(text="can you check these for me?"))
        await asyncio.sleep(60.0)
        agent.post(SessionEnded(reason="test over"))
        await task

    clock.run(main())
    return ledger, model


def model_words(ledger: Ledger) -> str:
    return " ".join(e.text for e in ledger.entries if e.type == "AgentTextPlanned" and not e.canned)


@settings(max_examples=15, deadline=None)
@given(first_s=st.floats(0.05, 1.0), second_s=st.floats(9.0, 30.0))
def test_a_result_before_the_apology_is_still_told_with_the_next_one(
    first_s: float, second_s: float
) -> None:
    """The order's follow-up stalls until the engine apologises; the hours come after."""
    calls = [("get_order_status", '{"order_id": "5091"}'), ("get_store_hours", '{"city": "D"}')]
    ledger, _ = run(calls, first_s, second_s, stalls=1)
    assert any(
        e.type == "AgentTextPlanned" and e.text == AgentConfig().apology for e in ledger.entries
    )
    said = model_words(ledger)
    assert ORDER in said and HOURS in said


@settings(max_examples=15, deadline=None)
@given(first_s=st.floats(0.05, 1.0), second_s=st.floats(1.5, 10.0))
def test_a_result_another_call_waits_for_is_told_after_the_hold_phrases(
    first_s: float, second_s: float
) -> None:
    """The balance takes the customer's future: the customer's result waits for it, hold
    phrases are said meanwhile, and both are told."""
    calls = [("find_customer", '{"phone": "555 0100"}'), ("get_balance", '{"customer": "c1"}')]
    ledger, model = run(calls, first_s, second_s)
    assert any(e.type == "AgentTextPlanned" and e.canned for e in ledger.entries)
    said = model_words(ledger)
    assert CUSTOMER in said and BALANCE in said
    assert model.told.count(CUSTOMER) == 1


def test_the_hold_phrases_reach_the_model_as_the_engines_words() -> None:
    calls = [("find_customer", '{"phone": "555 0100"}'), ("get_balance", '{"customer": "c1"}')]
    ledger, _ = run(calls, 0.2, 4.0)
    messages: list[dict[str, Any]] = ledger.render_messages("test")
    engine = [m["content"] for m in messages if m.get("name") == ENGINE_SPEAKER]
    holds = set(AgentConfig().hold_phrases)
    assert engine and all(text in holds for text in engine)
    own = [m["content"] for m in messages if m["role"] == "assistant" and "name" not in m]
    assert not any(hold in text for text in own for hold in holds)
