"""Misbehaving tools against the real agent: what the caller hears, when, and what the ledger holds.

    PYTHONPATH=. .venv/bin/python bench/tool_faults.py [--json out.json]

Each case runs the real Agent (FSM, ledger, scheduler, the OpenAI client over
HTTP) in async mode against a *scripted* model server on 127.0.0.1 (a fake
that decides which tools to call; see voice_agent/bench/scripted_model.py) on
real time. It prints, per fault: what the agent said and at what ms after the
caller's turn, how many times a write was applied, the longest stall of the
event loop, and the tool outcomes in the ledger. Used for the before/after
figures of issue 10 (items 1.4-1.6); the same code runs on any revision.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fsm import MonotonicClock  # noqa: E402
from ledger import Ledger  # noqa: E402
from voice_agent.agent import Agent  # noqa: E402
from voice_agent.bench.scripted_model import Reply, echo_policy, scripted_model  # noqa: E402
from voice_agent.config import AgentConfig, LlmConfig  # noqa: E402
from voice_agent.events import SessionEnded, TranscriptFinal  # noqa: E402
from voice_agent.llm import LlmClient  # noqa: E402
from voice_agent.output import TextOutput  # noqa: E402
from voice_agent.tools import ToolRegistry  # noqa: E402

WAIT_S = 12.0  # how long one turn may take before we call it silence (s)


async def _loop_lag(stop: asyncio.Event, worst: list[float]) -> None:
    while not stop.is_set():
        t = time.monotonic()
        await asyncio.sleep(0.02)
        worst[0] = max(worst[0], time.monotonic() - t - 0.02)


async def run_case(
    registry: ToolRegistry,
    table: dict[str, Reply],
    turns: list[str],
    *,
    between: Callable[[int], Awaitable[None]] | None = None,
    mode: str = "async",
    gap_s: dict[int, float] | None = None,
    sinks: list[Any] | None = None,
) -> dict[str, Any]:
    """Run ``turns`` through the agent; return what was said (ms after each turn) and the ledger."""
    async with scripted_model(echo_policy(table)) as model:
        llm = LlmClient(LlmConfig(base_url=model.base_url, model="scripted", max_retries=0))
        ledger = Ledger("faults", MonotonicClock(), sinks=sinks or [])
        agent = Agent(
            AgentConfig(mode=mode, system_prompt="test"),  # type: ignore[arg-type]
            llm,
            registry,
            TextOutput(io.StringIO()),
            ledger,
        )
        task = asyncio.create_task(agent.run())
        stop, worst = asyncio.Event(), [0.0]
        lag = asyncio.create_task(_loop_lag(stop, worst))
        heard: list[dict[str, Any]] = []
        stalls: list[int] = []
        try:
            for index, text in enumerate(turns):
                worst[0] = 0.0
                start_len = len(ledger.entries)
                t0 = ledger._clock.now() if hasattr(ledger, "_clock") else time.monotonic()
                agent.post(TranscriptFinal(text=text))
                deadline = time.monotonic() + (gap_s or {}).get(index, WAIT_S)
                await asyncio.sleep(0.05)
                while time.monotonic() < deadline and not agent.is_idle():
                    await asyncio.sleep(0.02)
                idle = agent.is_idle()
                for entry in ledger.entries[start_len:]:
                    if entry.type == "AgentTextPlanned":
                        heard.append(
                            {
                                "turn": index + 1,
                                "ms": round((entry.t - t0) * 1000),
                                "said": entry.text,
                            }
                        )
                if not idle and index not in (gap_s or {}):
                    heard.append(
                        {"turn": index + 1, "ms": None, "said": f"(not idle after {WAIT_S:g} s)"}
                    )
                stalls.append(round(worst[0] * 1000))
                if between is not None:
                    await between(index)
        finally:
            stop.set()
            await lag
            agent.post(SessionEnded(reason="done"))
            try:
                await asyncio.wait_for(task, 10)
            except TimeoutError:
                heard.append({"turn": None, "ms": None, "said": "(agent did not stop in 10 s)"})
            await llm.aclose()
    outcomes = [
        {
            "type": e.type,
            **{
                k: v
                for k, v in e.model_dump().items()
                if k in ("call_id", "error", "result", "reason", "timeout_s", "text")
            },
        }
        for e in ledger.entries
        if e.type.startswith("ToolCall") and e.type != "ToolCallStarted" or e.type == "Note"
    ]
    return {
        "heard": heard,
        "loop_stall_ms": max(stalls, default=0),
        "loop_stall_ms_by_turn": stalls,
        "ledger": outcomes,
    }


# ---------------------------------------------------------------- the faults
def case_self_reference() -> tuple[ToolRegistry, dict[str, Reply], list[str]]:
    reg = ToolRegistry()

    @reg.tool(kind="read", timeout_s=2)
    async def lookup(order_id: str) -> dict:
        """Look up an order."""
        return {"order_id": order_id, "status": "shipped"}

    # The scripted server numbers calls call_00000001, 2, ...: the model refers to
    # the call it is making right now, to a future that does not exist, and to a
    # failed one.
    table = {
        "self": Reply(calls=[("lookup", json.dumps({"order_id": "call_00000001"}))]),
        "unknown": Reply(calls=[("lookup", json.dumps({"order_id": "call_99999999"}))]),
    }
    return reg, table, ["self", "unknown"]


def case_write_timeout(
    latency_s: float = 2.5,
) -> tuple[ToolRegistry, dict[str, Reply], list[str], list[int]]:
    reg = ToolRegistry()
    applied: list[int] = []

    @reg.tool(kind="write", timeout_s=1)
    def refund(order_id: str, amount: float) -> dict:
        """Refund an order (a slow synchronous backend)."""
        time.sleep(latency_s)
        applied.append(1)
        return {"refunded": amount, "order_id": order_id}

    table = {
        "refund 5 on order 4417": Reply(
            calls=[("refund", json.dumps({"order_id": "4417", "amount": 5}))]
        ),
        "did it work? please refund 5 on 4417": Reply(
            calls=[("refund", json.dumps({"order_id": "4417", "amount": 5.0}))]
        ),
        "once more: 5 on 4417": Reply(
            calls=[("refund", json.dumps({"order_id": 4417, "amount": 5}))]
        ),
    }
    return reg, table, list(table), applied


def case_blocking_async() -> tuple[ToolRegistry, dict[str, Reply], list[str]]:
    reg = ToolRegistry()

    @reg.tool(kind="read", timeout_s=1)
    async def slow_lookup(order_id: str) -> dict:
        """A tool that blocks the event loop (time.sleep inside async def)."""
        time.sleep(6)  # noqa: ASYNC251 - the fault under test
        return {"status": "shipped"}

    table = {"where is 1": Reply(calls=[("slow_lookup", '{"order_id": "1"}')])}
    return reg, table, list(table) + list(table)


def case_blocking_helper() -> tuple[ToolRegistry, dict[str, Reply], list[str]]:
    reg = ToolRegistry()

    def backend() -> dict:
        time.sleep(3)  # a synchronous client hidden in a helper
        return {"status": "shipped"}

    @reg.tool(kind="read", timeout_s=1)
    async def hidden_block(order_id: str) -> dict:
        """An async tool that calls blocking code through a helper."""
        return backend()

    table = {"where is 3": Reply(calls=[("hidden_block", '{"order_id": "3"}')])}
    return reg, table, list(table) + list(table)


def case_swallows_cancel() -> tuple[ToolRegistry, dict[str, Reply], list[str]]:
    reg = ToolRegistry()

    @reg.tool(kind="read", timeout_s=1)
    async def stubborn(order_id: str) -> dict:
        """A tool that ignores cancellation."""
        for _ in range(20):
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError:
                pass
        return {"status": "late"}

    table = {"where is 2": Reply(calls=[("stubborn", '{"order_id": "2"}')])}
    return reg, table, list(table)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    reg, table, turns = case_self_reference()
    results["1.4 future refers to itself / to an unknown future"] = await run_case(
        reg, table, turns
    )
    reg, table, turns, applied = case_write_timeout()

    async def settle(_: int) -> None:
        await asyncio.sleep(3)  # the late write finishes meanwhile

    result = await run_case(reg, table, turns, between=settle)
    result["writes_applied"] = len(applied)
    results[
        "1.5 sync write past its timeout, then asked again with 5.0, then with 4417 as a number"
    ] = result
    reg, table, turns, applied = case_write_timeout(latency_s=4.0)
    result = await run_case(reg, table, turns[:2], gap_s={0: 1.5})
    result["writes_applied"] = len(applied)
    results["1.5 sync write (4 s, timeout 1 s); asked again with 5.0 at +1.5 s while it runs"] = (
        result
    )
    reg, table, turns = case_blocking_async()
    results["1.6 time.sleep(6) inside an async tool (timeout 1 s), called twice"] = await run_case(
        reg, table, turns
    )
    reg, table, turns = case_blocking_helper()
    results[
        "1.6 blocking call (3 s) hidden in a helper of an async tool, called twice"
    ] = await run_case(reg, table, turns)
    reg, table, turns = case_swallows_cancel()
    results["1.6 async tool swallows CancelledError (timeout 1 s)"] = await run_case(
        reg, table, turns
    )
    disk = await disk_full_case()
    if disk is not None:
        results["1.7 disk full mid-call (64 KiB tmpfs filled after the first turn)"] = disk
    return results


async def disk_full_case() -> dict[str, Any] | None:
    """A ledger on a tiny tmpfs that fills up after the first turn (needs root; else None)."""
    import inspect

    from ledger import JsonlSink, load_jsonl

    where = Path(tempfile.mkdtemp(prefix="tiny-"))
    mounted = subprocess.run(  # noqa: ASYNC221 - set-up of a bench case
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        return None
    try:
        path = where / "s.jsonl"
        reports: list[str] = []
        kwargs: dict[str, Any] = {}
        if "on_status" in inspect.signature(JsonlSink).parameters:
            kwargs["on_status"] = lambda text, level: reports.append(f"{level}: {text}")
        sink = JsonlSink(path, **kwargs)
        reg = ToolRegistry()

        @reg.tool(kind="write", timeout_s=2)
        async def refund(order_id: str, amount: float) -> dict:
            """Refund."""
            return {"refunded": amount}

        table = {
            "hello": Reply(text="Hello, how can I help?"),
            "refund 5 on 4417": Reply(
                calls=[("refund", json.dumps({"order_id": "4417", "amount": 5}))]
            ),
            "thanks": Reply(text="You're welcome. " + "Is there anything else? " * 250),
        }

        async def fill(index: int) -> None:
            if index == 0:
                with open(where / "filler", "wb", buffering=0) as f:  # noqa: ASYNC230
                    try:
                        while True:
                            f.write(b"\0" * 1024)
                    except OSError:
                        pass

        result = await run_case(reg, table, list(table), between=fill, sinks=[sink])
        (where / "filler").unlink()
        try:
            sink.close()
        except OSError as exc:
            result["close_error"] = str(exc)
        result["entries_in_file_after_space_freed"] = len(load_jsonl(path))
        result["persistence_reports"] = reports
        return result
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)  # noqa: ASYNC221


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    results = asyncio.run(main_async(args))
    for name, result in results.items():
        print(f"== {name}")
        for line in result["heard"]:
            print(f"   turn {line['turn']} +{line['ms']} ms: {line['said']}")
        if "entries_in_file_after_space_freed" in result:
            print(
                f"   entries in the file at the end: {result['entries_in_file_after_space_freed']}"
            )
        if "writes_applied" in result:
            print(f"   writes applied: {result['writes_applied']}")
        print(f"   longest event-loop stall per turn: {result['loop_stall_ms_by_turn']} ms")
        for entry in result["ledger"]:
            print(f"   ledger: {json.dumps(entry)[:200]}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
