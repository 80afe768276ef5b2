"""Faults found by a hostile review of issues 8 and 10 (shapes the earlier suites did not try).

Each test drives the whole agent (FSM, ledger, scheduler, the real OpenAI
client over HTTP to a misbehaving server on 127.0.0.1) on ``AutojumpClock``:
nothing sleeps in real time.
"""

from __future__ import annotations

import asyncio
import json

from test_va_llm_reliability import APOLOGY, run_call

from ledger import check_protocol
from voice_agent.bench.fault_server import answer
from voice_agent.tools import ToolRegistry


def _same_id_every_time(call_id: str, tool: str, arguments: str, final: str):
    """A server that names every tool call ``call_id`` (some local servers number calls
    per response), then answers once it has seen two outcomes."""

    def plan(index: int, body: dict) -> list:
        outcomes = [m for m in body["messages"] if m["role"] == "tool"]
        if len(outcomes) >= 2:
            return answer(final)
        call = ("call", 0, call_id, tool, arguments)
        return [("headers",), ("role",), call, ("finish", "tool_calls"), ("done",)]

    return plan


def test_a_tool_call_id_the_server_reuses_across_responses_is_renamed_not_fatal():
    tools = ToolRegistry()
    runs: list[str] = []

    @tools.tool(name="lookup", description="Look an order up.", kind="read")
    async def lookup(order: str) -> dict[str, str]:
        runs.append(order)
        return {"status": "shipped"}

    call = run_call(
        _same_id_every_time("call_0", "lookup", '{"order": "4417"}', "It has shipped."),
        ["Where is order 4417?"],
        tools=tools,
    )
    started = [e.call_id for e in call.entries("ToolCallStarted")]
    assert len(started) == 2 and len(set(started)) == 2 and started[0] == "call_0"
    assert runs and set(runs) == {"4417"}  # a repeated read may be answered from the first
    assert not [e for e in call.entries("Note") if "failed" in e.text]
    heard = [text for _, text in call.heard(0)]
    assert heard[-1] == "It has shipped." and APOLOGY not in heard
    # the rendered history pairs every tool result with its (renamed) call
    check_protocol(call.ledger.render_messages("sys"))


# ------------------------------------------- one write, the number formatted differently


def test_a_spoken_number_argument_is_one_intent_however_it_is_formatted():
    from voice_agent.phone.tools import registry

    for name in ("cancel_order", "open_ticket"):
        spec = registry.get(name)
        forms = ["4417", "4,417", "four four one seven", " 44-17 ", "forty-four seventeen"]
        extra = {"summary": "call me back"} if name == "open_ticket" else {}
        canon = {
            spec.canonical_arguments(spec.parse_arguments(json.dumps({"order_number": f, **extra})))
            for f in forms
        }
        assert len(canon) == 1, canon
    # a number that is not the same stays apart
    spec = registry.get("cancel_order")
    a, b = (spec.canonical_arguments({"order_number": n}) for n in ("4417", "4418"))
    assert a != b


async def test_the_same_phone_write_with_the_number_in_other_words_is_applied_once(
    tmp_path, monkeypatch
):
    import sqlite3

    from test_va_tool_faults import Harness

    monkeypatch.setenv("VOICE_AGENT_PHONE_DB", str(tmp_path / "shop.sqlite"))
    from voice_agent.phone import tools as phone

    db = sqlite3.connect(phone.database_path()) if phone.store() else None
    assert db is not None
    order = db.execute("SELECT id FROM orders WHERE status = 'processing' LIMIT 1").fetchone()[0]
    words = " ".join(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"][int(c)]
        for c in order
    )
    h = Harness(phone.registry)

    def answered() -> int:
        return len([e for e in h.ledger.entries if e.type in ("ToolCallResolved", "ToolCallFailed")])

    for n, number in enumerate((order, f"{order[:-3]},{order[-3:]}", words), 1):
        h.call("open_ticket", {"summary": "The caller wants a call back.", "order_number": number})
        # the tool runs SQLite on a worker thread: wait (real time, generous) for its outcome;
        # the tool's timeout is on the ManualClock, which never moves here
        for _ in range(3000):
            if answered() == n:
                break
            await asyncio.sleep(0.01)
    tickets = db.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
    audit = db.execute("SELECT COUNT(*) FROM audit WHERE action = 'open_ticket'").fetchone()[0]
    assert (tickets, audit) == (1, 1)
    results = [e for e in h.ledger.entries if e.type == "ToolCallResolved"]
    assert len(results) == 3  # every call answered, with the one ticket
