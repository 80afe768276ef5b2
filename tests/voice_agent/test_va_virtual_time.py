"""Engine tests run on an auto-advancing clock (tests/conftest.py): a conversation whose
waits add up to minutes runs in well under its duration, with exact tool times."""

from __future__ import annotations

import copy
import time

import openai.resources.chat  # noqa: F401  # the client's cold import, paid at collection
import pytest
from test_va_engine import TWO_TOOLS, scenario

from fsm import AutojumpClock
from voice_agent.bench.oracle import OracleServer
from voice_agent.bench.runner import build_registry

SLOW = copy.deepcopy(TWO_TOOLS)
SLOW["oracle"] = {"ttft_ms": 2000, "tokens_per_s": 5}  # a slow model: seconds per sentence
SLOW["tools"][0].update(latency_ms=120_000, timeout_s=300)  # a two-minute backend
SLOW["tools"][1].update(latency_ms=45_000, timeout_s=300)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_conversation_of_minutes_runs_in_a_fraction_of_it(make_agent, mode) -> None:
    clock = AutojumpClock.running()  # every async engine test gets one
    sc = scenario(SLOW)
    invocations: list = []
    started_real, started = time.monotonic(), clock.now()
    async with OracleServer(sc, clock) as oracle:
        async with make_agent(
            oracle.base_url, build_registry(sc, clock, invocations), mode=mode
        ) as h:
            h.say(sc.turns[0].user)
            await h.idle(timeout=600)
    virtual_s, real_s = clock.now() - started, time.monotonic() - started_real
    heard = " ".join(e.text for e in h.entries("AgentTextPlayed"))
    assert "shipped" in heard and "sunny" in heard
    assert virtual_s > 120  # the two-minute tool was waited for, on the clock...
    assert real_s < virtual_s / 4  # ...and not in real time (generous: a loaded machine)
    took = {r["name"]: r["end"] - r["start"] for r in invocations}
    assert took == {"get_order_status": pytest.approx(120.0), "get_weather": pytest.approx(45.0)}
