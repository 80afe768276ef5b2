"""What the caller hears when the LLM endpoint misbehaves: one turn per fault.

Usage: python bench/llm_faults.py [--realtime] [--cap-s 120] [--only NAME ...]

For each fault of ``voice_agent.bench.fault_server.FAULTS`` (plus a
context-window case) an agent (async mode, the product's default agent
configuration, the real OpenAI client over HTTP) gets one user turn answered
by the faulty server, then a second turn answered properly. It reports, in
milliseconds after the user's turn was committed: every piece of text the
caller was given (hold phrases, answer, apology), the longest silence before
the first of them and between them, when the turn was over, what the ledger
recorded for the turn's responses (finish reasons, errors, notes), and
whether the second turn was answered (the session went on).

By default time is virtual (``fsm.AutojumpClock``: the loop jumps to its next
timer whenever every task waits; the server's delays run on the same clock),
so a 35 s stall costs no wall time and the times are exact;
``--realtime`` runs on the wall clock (needed for code without an injectable
clock, i.e. the measurement *before* this work). ``--cap-s`` ends a turn that
never finishes (reported as ``"over the cap"``). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import io
import json
import sys
import time
from typing import Any

from fsm import Clock, MonotonicClock
from ledger import Ledger
from voice_agent.agent import Agent
from voice_agent.bench.fault_server import (
    ANSWER,
    FAULTS,
    FaultServer,
    answer,
    context_limited,
    looping_model,
    planning_model,
)
from voice_agent.config import AgentConfig, LlmConfig
from voice_agent.events import SessionEnded, TranscriptFinal
from voice_agent.llm import LlmClient
from voice_agent.output import TextOutput
from voice_agent.tools import ToolRegistry

FIRST = "Where is my order?"
SECOND = "Thanks. Please keep going: and when do you open?"
POLL_S = 0.02  # how often the driver checks whether the turn is over, clock seconds


def _turn_plan(fault: list[tuple[Any, ...]]):
    """The fault for the first user turn, a proper answer for the second."""

    def plan(index: int, body: dict[str, Any]) -> list[tuple[Any, ...]]:
        users = [m for m in body["messages"] if m["role"] == "user"]
        if users and users[-1]["content"] == SECOND:
            return answer("We open at nine.")
        return fault

    return plan


def _context_plan():
    """A server with a 16 KB request limit (it says 4,096 tokens); the call has a long history."""
    first = context_limited(16_000, 4096, answer(ANSWER))
    second = context_limited(16_000, 4096, answer("We open at nine."))

    def plan(index: int, body: dict[str, Any]) -> list[tuple[Any, ...]]:
        users = [m for m in body["messages"] if m["role"] == "user"]
        return (second if users and users[-1]["content"] == SECOND else first)(index, body)

    return plan


PLAN_READS = 9  # a retail plan: nine lookups, then one write


def _plan_tools(clock: Clock) -> ToolRegistry:
    """Nine read tools whose outcomes arrive one by one, 0.6 s apart (each after the
    previous follow-up has ended: no natural batching), and a write."""
    tools = ToolRegistry()

    def reader(i: int) -> Any:
        async def read() -> dict[str, int]:
            await clock.sleep(0.5 + 0.6 * i)
            return {"item": i}

        return read

    for i in range(PLAN_READS):
        tools.tool(name=f"read_{i}", description=f"Read item {i}.", kind="read")(reader(i))

    async def commit_order() -> dict[str, bool]:
        await clock.sleep(0.3)
        return {"committed": True}

    async def check() -> dict[str, str]:
        await clock.sleep(0.1)
        return {"status": "unknown"}

    tools.tool(name="commit_order", description="Commit the order.", kind="write")(commit_order)
    tools.tool(name="check", description="Check again.", kind="read")(check)
    return tools


def _plan_for(name: str) -> Any:
    if name == "context_overflow":
        return _context_plan()
    if name.startswith("long_plan"):
        reads = [f"read_{i}" for i in range(PLAN_READS)]
        return planning_model(reads, "commit_order", ttft_s=0.3)
    if name == "runaway_loop":
        return looping_model("check")
    return _turn_plan(FAULTS[name])


def _make_client(cfg: LlmConfig, clock: Any) -> LlmClient:
    if "clock" in inspect.signature(LlmClient).parameters:
        return LlmClient(cfg, clock=clock)
    return LlmClient(cfg)  # code before the clock was injectable: real time only


async def run_fault(name: str, *, clock: Clock, cap_s: float) -> dict[str, Any]:
    plan = _plan_for(name)
    async with FaultServer(plan, clock=clock) as server:
        cfg = LlmConfig(base_url=server.base_url, model="faulty")
        llm = _make_client(cfg, clock)
        ledger = Ledger(name, clock)
        printed = io.StringIO()
        mode = "sync" if name.endswith("_sync") else "async"
        config = AgentConfig(system_prompt="You are a test agent.", mode=mode)
        agent = Agent(config, llm, _plan_tools(clock), TextOutput(printed), ledger, clock)
        if name == "context_overflow":  # a long history first: 60 turns of ~400 bytes
            from ledger import entries as le

            for i in range(60):
                rid = f"h{i}"
                ledger.append(le.UserUtterance(turn_id=0, text=f"Question {i}: " + "x" * 300))
                ledger.append(
                    le.LlmRequestStarted(response_id=rid, reason="user_turn", mode="async")
                )
                ledger.append(le.AgentTextPlanned(response_id=rid, text="Answer " + "y" * 100))
                ledger.append(le.LlmResponseFinished(response_id=rid, finish_reason="stop"))
        task = asyncio.create_task(agent.run())
        wall0 = time.perf_counter()
        results = []
        try:
            for text in (FIRST, SECOND):
                start_len = len(ledger.entries)
                agent.post(TranscriptFinal(text=text))
                t0 = clock.now()
                await clock.sleep(0.05)
                over_cap = False
                while not agent.is_idle():
                    if clock.now() - t0 > cap_s:
                        over_cap = True
                        break
                    await clock.sleep(POLL_S)
                results.append(_turn_report(ledger, start_len, t0, clock.now(), over_cap))
        finally:
            agent.post(SessionEnded(reason="bench over"))
            try:
                await asyncio.wait_for(task, 10)
            except TimeoutError:
                task.cancel()
            await llm.aclose()
        first, second = results
        return {
            "fault": name,
            **first,
            "second_turn_answered": "nine" in second["heard_text"]
            or "everything" in second["heard_text"],
            "tool_calls": len([e for e in ledger.entries if e.type == "ToolCallStarted"]),
            "write_made": any(
                e.type == "ToolCallResolved" and e.call_id == "call_commit_order_1"
                for e in ledger.entries
            ),
            "llm_requests_turn1": first["llm_requests"],
            "requests": len(server.requests),
            "max_request_bytes": max(server.request_sizes, default=0),
            "wall_s": round(time.perf_counter() - wall0, 2),
        }


def _turn_report(
    ledger: Ledger, start: int, t0: float, t_end: float, over_cap: bool
) -> dict[str, Any]:
    entries = ledger.entries[start:]
    said = [(round((e.t - t0) * 1000), e.text) for e in entries if e.type == "AgentTextPlanned"]
    heard_text = " ".join(t for _, t in said)
    said = [
        (at, text if len(text) <= 80 else f"{text[:60]}… ({len(text)} chars)") for at, text in said
    ]
    gaps, last = [], 0
    for at, _ in said:
        gaps.append(at - last)
        last = at
    end_ms = round((t_end - t0) * 1000)
    if over_cap or not said:
        gaps.append(end_ms - last)
    finished = [
        {"finish_reason": e.finish_reason, "error": e.error}
        for e in entries
        if e.type == "LlmResponseFinished"
    ]
    notes = [e.text for e in entries if e.type == "Note"]
    requests = [e for e in entries if e.type == "LlmRequestStarted" and e.reason != "canned"]
    return {
        "heard": said,
        "heard_chars": len(heard_text),
        "heard_text": heard_text[:200],
        "longest_silence_ms": max(gaps) if gaps else end_ms,
        "turn_over_ms": None if over_cap else end_ms,
        "over_the_cap": over_cap,
        "ledger_finished": finished,
        "ledger_notes": notes,
        "llm_requests": len(requests),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realtime", action="store_true")
    parser.add_argument("--cap-s", type=float, default=120.0)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args(argv)
    names = args.only or [
        *FAULTS,
        "context_overflow",
        "long_plan_async",
        "long_plan_sync",
        "runaway_loop",
    ]
    if args.realtime:  # all at once: the waits overlap

        async def run_all() -> list[dict[str, Any]]:
            clock = MonotonicClock()
            return list(
                await asyncio.gather(*(run_fault(n, clock=clock, cap_s=args.cap_s) for n in names))
            )

        reports = asyncio.run(run_all())
    else:  # one virtual-time loop per fault
        from fsm import AutojumpClock  # (not in code before virtual time: use --realtime there)

        reports = []
        for n in names:
            clock = AutojumpClock()
            reports.append(clock.run(run_fault(n, clock=clock, cap_s=args.cap_s)))
    print(json.dumps({r["fault"]: r for r in reports}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
