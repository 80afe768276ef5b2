"""Faults found by a hostile review of issues 8 and 10 (shapes the earlier suites did not try).

Each test drives the whole agent (FSM, ledger, scheduler, the real OpenAI
client over HTTP to a misbehaving server on 127.0.0.1) on ``AutojumpClock``:
nothing sleeps in real time.
"""

from __future__ import annotations

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
