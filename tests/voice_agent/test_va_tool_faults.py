"""Misbehaving tools: futures always resolve, writes happen once, no tool freezes the agent.

Deadlines run on a ManualClock (the test jumps time); only the blocked-loop
and thread tests use real time, with generous bounds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import pytest

from fsm import ManualClock, MonotonicClock
from ledger import Ledger, check_protocol
from ledger import entries as le
from voice_agent.events import ToolCallFailed, ToolCallResolved
from voice_agent.scheduler import ToolScheduler
from voice_agent.tools import ToolContext, ToolRegistry

# How long the blocking tools below block (s): long enough that a loop stalled by them
# stands out from a loaded machine's scheduling delays (half a second at load 20).
BLOCK_S = 2.0


class Harness:
    """A scheduler on a ManualClock, with the events it posted."""

    def __init__(self, registry: ToolRegistry, clock: Any | None = None) -> None:
        self.clock = clock or ManualClock()
        self.ledger = Ledger("s", self.clock)
        self.events: list[Any] = []
        self.sched = ToolScheduler(registry, self.ledger, self.events.append, self.clock)
        self.ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
        self.n = 0

    def call(self, name: str, arguments: dict[str, Any] | str, call_id: str | None = None) -> str:
        self.n += 1
        call_id = call_id or f"call_{self.n:08d}"
        raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
        self.sched.start(call_id=call_id, response_id="r1", name=name, arguments=raw)
        return call_id

    async def advance(self, seconds: float, step: float = 0.25) -> None:
        for _ in range(round(seconds / step)):
            await self.clock.advance(step)

    def notes(self) -> list[str]:
        return [e.text for e in self.ledger.entries if isinstance(e, le.Note)]


# ---------------------------------------------------------------- 1.4 futures resolve
def lookup_registry() -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool(timeout_s=5)
    async def lookup(order_id: str) -> dict:
        """Look up an order."""
        return {"order_id": order_id, "status": "shipped"}

    @reg.tool(timeout_s=1)
    async def broken(order_id: str) -> dict:
        """Fails."""
        raise RuntimeError("backend down")

    return reg


async def test_a_call_naming_its_own_future_fails_at_once_saying_so():
    h = Harness(lookup_registry())
    c = h.call("lookup", {"order_id": "call_00000001"})
    view = h.ledger.call(c)
    assert view.status == "failed"
    assert "own result" in (view.error or "")
    assert [type(e) for e in h.events] == [ToolCallFailed]


async def test_a_call_naming_a_future_that_does_not_exist_fails_saying_so():
    h = Harness(lookup_registry())
    c = h.call("lookup", {"order_id": "call_9f8e7d6c5b4a"})
    assert h.ledger.call(c).status == "failed"
    assert "does not exist" in (h.ledger.call(c).error or "")
    # a literal that merely starts like an id stays a literal
    c2 = h.call("lookup", {"order_id": "call_forwarding"})
    await h.advance(0.5)
    assert h.ledger.call(c2).result == {"order_id": "call_forwarding", "status": "shipped"}
    await h.sched.aclose()


@pytest.mark.parametrize(
    ("first_tool", "ended"),
    [("broken", "failed (RuntimeError: backend down)"), ("hang", "timed out after 1 s")],
)
async def test_a_call_depending_on_a_failed_future_fails_naming_it(first_tool, ended):
    reg = lookup_registry()
    clock = ManualClock()

    @reg.tool(timeout_s=1)
    async def hang(order_id: str) -> dict:
        """Never answers."""
        await clock.sleep(3600)
        return {}

    h = Harness(reg, clock)
    first = h.call(first_tool, {"order_id": "1"})
    second = h.call("lookup", {"order_id": first})
    await h.advance(1.5)
    assert h.ledger.call(second).status == "failed"
    assert h.ledger.call(second).error == f"it needs {first}, which {ended}"
    assert h.ledger.call(second).started.depends_on == [first]
    await h.sched.aclose()


async def test_a_call_depending_on_a_cancelled_future_fails_naming_it():
    clock = ManualClock()
    reg = lookup_registry()

    @reg.tool(timeout_s=10)
    async def slow(order_id: str) -> dict:
        """Slow."""
        await clock.sleep(5)
        return {"order_id": "7"}

    h = Harness(reg, clock)
    first = h.call("slow", {"order_id": "1"})
    second = h.call("lookup", {"order_id": first})
    await h.advance(0.25)
    assert h.sched.cancel(first, "the user interrupted")
    await h.advance(0.25)
    assert (
        h.ledger.call(second).error
        == f"it needs {first}, which was cancelled (the user interrupted)"
    )
    assert not h.sched.pending()


def test_every_future_resolves_whatever_the_calls_refer_to():
    """Random call graphs (own, earlier, later, unknown ids; failing, hanging, stubborn
    tools): after the longest deadline every call has exactly one outcome."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    behaviours = st.sampled_from(["ok", "raise", "hang", "stubborn"])
    refs = st.one_of(st.none(), st.integers(0, 7), st.just("own"), st.just("unknown"))

    from voice_agent.tools import spec_from_function

    box: dict[str, ManualClock] = {}
    reg = ToolRegistry()  # built once: pydantic models are slow to create
    for kind in ("read", "write"):
        for name in ("ok", "raise", "hang", "stubborn"):

            async def tool(x: str, _b: str = name) -> dict:
                clock = box["clock"]
                if _b == "raise":
                    raise ValueError("no")
                if _b == "hang":
                    await clock.sleep(10_000)
                if _b == "stubborn":
                    for _ in range(3):
                        try:
                            await clock.sleep(10_000)
                        except asyncio.CancelledError:
                            pass
                return {"x": x}

            reg.add(
                spec_from_function(
                    tool, name=f"{kind}_{name}", kind=kind, timeout_s=1, abandon_after_s=2
                )
            )

    @settings(max_examples=40, deadline=None)
    @given(
        st.lists(
            st.tuples(behaviours, refs, st.sampled_from(["read", "write"])), min_size=1, max_size=8
        )
    )
    def check(plan):
        async def run() -> None:
            clock = box["clock"] = ManualClock()
            h = Harness(reg, clock)
            ids = [f"call_{i:08d}" for i in range(1, len(plan) + 1)]
            for index, (behaviour, ref, kind) in enumerate(plan):
                if ref is None:
                    value = "v"
                elif ref == "own":
                    value = ids[index]
                elif ref == "unknown":
                    value = "call_77777777x"
                else:
                    value = ids[ref % len(ids)]
                h.call(f"{kind}_{behaviour}", {"x": value}, call_id=ids[index])
            await h.advance(4 * len(plan) + 5, step=5)
            assert not h.sched.pending(), h.ledger.entries
            for call_id in ids:
                assert h.ledger.call(call_id).status != "pending"
            await h.sched.aclose()

        asyncio.run(run())

    check()


# ---------------------------------------------------------------- 1.5 exactly once
def refund_registry(
    clock: ManualClock, *, latency_s: float, with_key: bool = False
) -> tuple[ToolRegistry, list[dict]]:
    reg = ToolRegistry()
    applied: list[dict] = []

    if with_key:

        @reg.tool(kind="write", idempotent=True, timeout_s=1, abandon_after_s=4)
        async def refund(order_id: str, amount: float, ctx: ToolContext) -> dict:
            """Refund (idempotent by key; the request, once sent, completes at the backend)."""
            until = clock.now() + latency_s
            while clock.now() < until:
                try:
                    await clock.sleep(until - clock.now())
                except asyncio.CancelledError:
                    pass
            if all(a["key"] != ctx.idempotency_key for a in applied):
                applied.append({"order_id": order_id, "amount": amount, "key": ctx.idempotency_key})
            return {"refunded": amount}

    else:

        @reg.tool(kind="write", timeout_s=1, abandon_after_s=4)
        async def refund(order_id: str, amount: float) -> dict:  # type: ignore[no-redef]
            """Refund (no idempotency; the request, once sent, completes at the backend)."""
            until = clock.now() + latency_s
            while clock.now() < until:
                try:
                    await clock.sleep(until - clock.now())
                except asyncio.CancelledError:
                    pass  # the backend goes on whatever the client does
            applied.append({"order_id": order_id, "amount": amount})
            return {"refunded": amount}

    return reg, applied


def test_arguments_are_canonicalised_by_their_schema():
    reg, _ = refund_registry(ManualClock(), latency_s=0)
    spec = reg.get("refund")
    a = spec.canonical_arguments(spec.parse_arguments('{"order_id": "4417", "amount": 5}'))
    b = spec.canonical_arguments(spec.parse_arguments('{"amount": 5.0, "order_id": 4417}'))
    assert a == b == '{"amount":5.0,"order_id":"4417"}'
    assert "ctx" not in json.dumps(spec.parameters)


async def test_a_write_past_its_timeout_stays_pending_and_is_recorded_when_it_completes():
    clock = ManualClock()
    reg, applied = refund_registry(clock, latency_s=2.5)
    h = Harness(reg, clock)
    c = h.call("refund", {"order_id": "4417", "amount": 5})
    await h.advance(1.25)
    assert h.ledger.call(c).status == "pending"
    assert [type(e) for e in h.events] == [ToolCallFailed]
    assert "still running" in h.events[0].error
    assert any("overran its 1 s timeout" in n for n in h.notes())
    messages = h.ledger.render_messages("sys")
    check_protocol(messages)
    assert json.loads(messages[-1]["content"])["status"] == "pending"
    await h.advance(1.5)
    assert h.ledger.call(c).status == "resolved"
    assert isinstance(h.events[-1], ToolCallResolved)
    assert len(applied) == 1


async def test_the_same_write_asked_again_while_the_first_overruns_is_not_run_again():
    clock = ManualClock()
    reg, applied = refund_registry(clock, latency_s=2.5)
    h = Harness(reg, clock)
    first = h.call("refund", {"order_id": "4417", "amount": 5})
    await h.advance(1.25)
    h.sched.new_turn(2)
    second = h.call("refund", {"order_id": 4417, "amount": 5.0})
    await h.advance(2)
    assert len(applied) == 1
    assert h.ledger.call(second).result == h.ledger.call(first).result == {"refunded": 5.0}


async def test_an_abandoned_write_that_completes_later_is_noted_and_never_rerun():
    clock = ManualClock()
    reg, applied = refund_registry(clock, latency_s=7)
    h = Harness(reg, clock)
    first = h.call("refund", {"order_id": "4417", "amount": 5})
    await h.advance(5.25)  # timeout 1 s + abandon 4 s
    assert h.ledger.call(first).status == "timed_out"
    h.sched.new_turn(2)
    refused = h.call("refund", {"order_id": "4417", "amount": 5})
    await h.advance(0.25)
    assert h.ledger.call(refused).status == "failed"
    assert "may already have been applied" in (h.ledger.call(refused).error or "")
    await h.advance(2)  # the abandoned write completes after all
    assert len(applied) == 1
    assert any("finished after it was abandoned: resolved" in n for n in h.notes())
    h.sched.new_turn(3)
    shared = h.call("refund", {"order_id": "4417", "amount": 5.0})
    await h.advance(0.25)
    assert h.ledger.call(shared).result == {
        "already_done": True,
        "by_call": first,
        "result": {"refunded": 5.0},
    }
    assert len(applied) == 1


async def test_a_write_that_takes_the_key_is_retried_with_the_same_key_after_it_was_abandoned():
    clock = ManualClock()
    reg, applied = refund_registry(clock, latency_s=7, with_key=True)
    h = Harness(reg, clock)
    h.call("refund", {"order_id": "4417", "amount": 5})
    await h.advance(5.25)
    h.sched.new_turn(2)
    retry = h.call("refund", {"order_id": "4417", "amount": 5})
    await h.advance(8)
    assert h.ledger.call(retry).status in ("resolved", "timed_out")
    keys = {a["key"] for a in applied}
    assert len(keys) == 1 and len(applied) == 1
    assert any("attempt 2" in n for n in h.notes())


async def test_a_running_write_is_not_cancelled_by_a_barge_in():
    clock = ManualClock()
    reg, applied = refund_registry(clock, latency_s=0.5)
    h = Harness(reg, clock)
    c = h.call("refund", {"order_id": "1", "amount": 5})
    await h.advance(0.25)
    cancelled, silent = h.sched.on_interrupt()
    assert cancelled == [] and silent == []
    await h.advance(0.5)
    assert h.ledger.call(c).status == "resolved" and len(applied) == 1


def test_a_write_is_applied_at_most_once_whatever_the_interleaving():
    """Hypothesis: calls with equivalent arguments, time jumps, barge-ins, new turns and
    a session end, against a write that is fast, slow, overruns, hangs past abandonment or
    applies and then raises; with and without idempotency by key.

    Invariants: a new execution never starts while an earlier one may still be changing
    the world (unless it is a retry of the same intent by an idempotent tool); the
    backend applies each idempotency key at most once; every application is in the
    ledger (an outcome or a late note); every call ends with exactly one outcome.
    """
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from voice_agent.tools import spec_from_function

    variants = [
        {"order_id": "4417", "amount": 5},
        {"order_id": 4417, "amount": 5.0},
        {"amount": 5, "order_id": "4417"},
    ]
    ops = st.lists(
        st.one_of(
            st.tuples(st.just("call"), st.integers(0, 2)),
            st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1.0, 2.0, 5.0])),
            st.tuples(st.just("barge_in"), st.just(0)),
            st.tuples(st.just("new_turn"), st.just(0)),
        ),
        min_size=1,
        max_size=14,
    )

    @settings(max_examples=80, deadline=None)
    @given(ops, st.sampled_from([0.2, 1.5, 7.0, 100.0]), st.booleans(), st.booleans())
    def check(plan, latency, idempotent, raises):
        async def run() -> None:
            clock = ManualClock()
            executions: list[dict[str, Any]] = []  # key, start, end
            applied: list[str | None] = []

            async def refund(order_id: str, amount: float, ctx: ToolContext) -> dict:
                """Refund."""
                run = {"key": ctx.idempotency_key, "start": clock.now(), "end": None}
                executions.append(run)
                try:
                    await clock.sleep(latency)
                    if not (idempotent and ctx.idempotency_key in applied):
                        applied.append(ctx.idempotency_key)
                    if raises:
                        raise RuntimeError("applied, then the connection dropped")
                    return {"refunded": amount}
                finally:
                    run["end"] = clock.now()

            reg = ToolRegistry()
            reg.add(
                spec_from_function(
                    refund, kind="write", idempotent=idempotent, timeout_s=1, abandon_after_s=3
                )
            )
            h = Harness(reg, clock)
            turn = 1
            for op, arg in plan:
                if op == "call":
                    h.call("refund", variants[arg])
                elif op == "advance":
                    await h.advance(arg)
                elif op == "barge_in":
                    h.sched.on_interrupt()
                else:
                    turn += 1
                    h.sched.new_turn(turn)
            await h.advance(latency + 5, step=0.5)
            await h.sched.aclose()
            for entry in h.ledger.entries:
                if isinstance(entry, le.ToolCallStarted):
                    assert h.ledger.call(entry.call_id).status != "pending"
            if idempotent:
                assert len(applied) == len(set(applied)), applied
            for before, after in zip(executions, executions[1:], strict=False):
                if idempotent and before["key"] == after["key"]:
                    continue  # a retry of one intent: the backend deduplicates it
                assert before["end"] is not None and after["start"] >= before["end"], executions
            finished = [r for r in executions if r["end"] is not None]
            recorded = [
                e
                for e in h.ledger.entries
                if isinstance(e, le.ToolCallResolved | le.ToolCallFailed)
                or (isinstance(e, le.Note) and "finished after it was" in e.text)
            ]
            assert len(recorded) >= len(finished) if not idempotent else True

        asyncio.run(run())

    check()


# ---------------------------------------------------------------- 1.6 freezing
async def test_a_tool_that_swallows_cancellation_times_out_on_the_clock():
    clock = ManualClock()
    reg = ToolRegistry()
    stopped = []

    @reg.tool(timeout_s=1)
    async def stubborn(order_id: str) -> dict:
        """Ignores cancellation."""
        for _ in range(3):
            try:
                await clock.sleep(10)
            except asyncio.CancelledError:
                stopped.append(clock.now())
        return {"late": True}

    h = Harness(reg, clock)
    c = h.call("stubborn", {"order_id": "2"})
    await h.advance(1.25)
    assert h.ledger.call(c).status == "timed_out"
    assert stopped  # it was asked to stop; it did not, and nobody waited for it
    assert not h.sched.pending()
    await h.sched.aclose()


@pytest.mark.realtime  # the watchdog is a wall-time thread: a blocked loop is a real-time fault
async def test_an_async_tool_that_blocks_the_loop_is_named_and_then_runs_on_its_own_thread(caplog):
    reg = ToolRegistry()

    def backend(order_id: str) -> dict:  # a blocking helper: not visible in the tool's body
        time.sleep(BLOCK_S)
        return {"ok": order_id}

    @reg.tool(timeout_s=5)
    async def sleepy(order_id: str) -> dict:
        """Calls blocking code from async def: blocks whatever loop it runs on."""
        return backend(order_id)

    h = Harness(reg, MonotonicClock())
    caplog.set_level(logging.WARNING, logger="voice_agent.scheduler")
    first = h.call("sleepy", {"order_id": "1"})
    while h.sched.pending():
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    assert h.ledger.call(first).status == "resolved"
    assert "sleepy" in h.sched.isolated_tools()
    assert any(
        "sleepy" in r.getMessage() and "blocked the event loop" in r.getMessage()
        for r in caplog.records
    )
    assert any("sleepy" in n and "blocked the event loop" in n for n in h.notes())
    assert h.sched.isolated_tools() == {"sleepy"}
    # the second call runs on its own thread: the loop keeps ticking meanwhile
    second = h.call("sleepy", {"order_id": "2"})
    worst = 0.0
    while h.sched.pending():
        t = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - t)
    assert h.ledger.call(second).result == {"ok": "2"}
    assert worst < BLOCK_S * 0.75  # generous (a loaded machine): on the loop it would be BLOCK_S
    await h.sched.aclose()


async def test_hung_synchronous_tools_do_not_starve_the_others():
    release = threading.Event()
    reg = ToolRegistry()

    @reg.tool(timeout_s=0.3)
    def hung(n: int) -> int:
        """Blocks its thread."""
        release.wait(10)
        return n

    @reg.tool(timeout_s=5)
    def quick(n: int) -> int:
        """Returns at once."""
        return n * 2

    h = Harness(reg, MonotonicClock())
    try:
        for n in range(12):  # more than the default executor's workers on 2 cores
            h.call("hung", {"n": n})
        c = h.call("quick", {"n": 21})
        t0 = time.monotonic()
        while h.ledger.call(c).status == "pending" and time.monotonic() - t0 < 4:
            await asyncio.sleep(0.01)
        assert h.ledger.call(c).result == 42
    finally:
        release.set()
        await h.sched.aclose()


def test_a_quick_synchronous_tool_is_not_timed_out_by_virtual_time():
    """On an autojumping clock, time stands still while a tool's thread works (it is run
    through the loop's executor hook), so a 50 ms tool with a 1 s timeout resolves."""
    from fsm import AutojumpClock

    reg = ToolRegistry()

    @reg.tool(timeout_s=1)
    def quick(n: int) -> int:
        """Takes 50 ms of real time."""
        time.sleep(0.05)
        return n + 1

    clock = AutojumpClock()

    async def run() -> str:
        h = Harness(reg, clock)
        c = h.call("quick", {"n": 1})
        while h.sched.pending():
            await clock.sleep(0.01)
        await h.sched.aclose()
        return h.ledger.call(c).status

    assert clock.run(run()) == "resolved"


@pytest.mark.realtime  # measures how long the loop's own ticks take: a wall-time property
async def test_an_async_tool_calling_time_sleep_runs_on_its_own_thread_from_its_first_call():
    reg = ToolRegistry()

    @reg.tool(timeout_s=5)
    async def dozy(order_id: str) -> dict:
        """time.sleep inside async def, written in the tool itself."""
        time.sleep(BLOCK_S)  # noqa: ASYNC251 - the fault under test
        return {"ok": order_id}

    h = Harness(reg, MonotonicClock())
    c = h.call("dozy", {"order_id": "1"})
    worst = 0.0
    while h.sched.pending():
        t = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - t)
    assert h.ledger.call(c).result == {"ok": "1"}
    assert worst < BLOCK_S * 0.75  # generous (a loaded machine): on the loop it would be BLOCK_S
    assert any("dozy" in n and "calls time.sleep" in n for n in h.notes())
    await h.sched.aclose()
