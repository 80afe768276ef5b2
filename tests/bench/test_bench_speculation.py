"""Speculation in the bench: the oracle's ways of being wrong or daring, and every
speculation scenario run against the oracle over HTTP in all three modes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fsm import AutojumpClock
from voice_agent.bench.oracle_script import plan_reply
from voice_agent.bench.runner import run_scenario
from voice_agent.bench.scenario import Scenario, load_scenario
from voice_agent.modes import FUTURES_NOTE
from voice_agent.speculation import PARTIAL_NOTE

SCENARIOS = Path(__file__).resolve().parents[2] / "bench" / "scenarios"
SPECULATION_SCENARIOS = (
    "early_key_lookup",
    "two_lookups",
    "self_correction",
    "write_request",
    "no_speculation",
    "hasty_prefix",
    "dependent_chain_futures",
)

CHAIN = Scenario.model_validate(
    {
        "name": "chain",
        "oracle": {"reference_futures": True},
        "tools": [
            {"name": "find", "description": "d", "result": {"customer_id": "C1"},
             "parameters": {"type": "object", "properties": {"phone": {"type": "string"}}}},
            {"name": "orders", "description": "d", "result": {"orders": []},
             "parameters": {"type": "object", "properties": {"customer_id": {"type": "string"}}}},
        ],
        "turns": [
            {
                "user": "my phone is 555 0100 what about my orders",
                "calls": [
                    {"tool": "find", "id": "c", "arguments": {"phone": "{{user:555 0100}}"}},
                    {"tool": "orders", "id": "o",
                     "arguments": {"customer_id": "{{calls.c.result.customer_id}}"}},
                ],
                "answer": [{"say": "Done.", "needs": ["o"], "expect": ["Done"]}],
            }
        ],
    }
)  # fmt: skip


def _user(text: str, *, partial: bool = False, system: str = "s") -> list[dict[str, Any]]:
    content = f"{text}\n\n{PARTIAL_NOTE}" if partial else text
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def test_on_a_partial_transcript_a_hasty_oracle_calls_with_the_digits_heard_so_far() -> None:
    scenario = load_scenario(SCENARIOS / "hasty_prefix.yaml")
    reply = plan_reply(scenario, _user("My phone number is 503 555", partial=True))
    [call] = reply.calls
    assert json.loads(call.arguments) == {"phone": "503 555"}
    # the same words as a final transcript: no guess, the model waits for the number
    assert plan_reply(scenario, _user("My phone number is 503 555")).calls == ()
    full = plan_reply(scenario, _user("My phone number is 503 555 0142 and", partial=True))
    assert json.loads(full.calls[0].arguments) == {"phone": "503 555 0142"}


def test_partial_arguments_are_the_early_guess_and_the_final_transcript_corrects_them() -> None:
    scenario = load_scenario(SCENARIOS / "self_correction.yaml")
    early = plan_reply(scenario, _user("Hi, I need the status of my order 4417", partial=True))
    assert json.loads(early.calls[0].arguments) == {"order_id": "4417"}
    final = plan_reply(scenario, _user(scenario.turns[0].user))
    assert json.loads(final.calls[0].arguments) == {"order_id": "4471"}


def test_a_model_told_about_futures_names_the_pending_call_in_the_same_response() -> None:
    messages = _user(CHAIN.turns[0].user, system=f"s\n\n{FUTURES_NOTE}")
    reply = plan_reply(CHAIN, messages)
    assert [c.name for c in reply.calls] == ["find", "orders"]
    assert json.loads(reply.calls[1].arguments) == {"customer_id": "@call:c"}
    # not told (the sync baseline's prompt): it waits for the first result
    assert [c.name for c in plan_reply(CHAIN, _user(CHAIN.turns[0].user)).calls] == ["find"]


def test_a_pending_future_is_named_by_its_id_in_a_later_response() -> None:
    messages = _user(CHAIN.turns[0].user, system=f"s\n\n{FUTURES_NOTE}") + [
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_9", "type": "function",
             "function": {"name": "find", "arguments": '{"phone": "555 0100"}'}}]},
        {"role": "tool", "tool_call_id": "call_9",
         "content": json.dumps({"status": "pending", "future": "call_9"})},
    ]  # fmt: skip
    [call] = plan_reply(CHAIN, messages).calls
    assert json.loads(call.arguments) == {"customer_id": "call_9"}


@pytest.mark.parametrize("name", SPECULATION_SCENARIOS)
def test_every_speculation_scenario_is_answered_correctly_in_every_mode(name: str) -> None:
    scenario = load_scenario(SCENARIOS / f"{name}.yaml")

    async def all_modes() -> dict[str, object]:
        return {m: await run_scenario(scenario, m, clock=clock) for m in MODES}  # type: ignore[arg-type]

    MODES = ("sync", "async", "speculative")
    clock = AutojumpClock()
    results = clock.run(all_modes())
    for mode, result in results.items():
        assert result.error is None, (mode, result.error)  # type: ignore[attr-defined]
        for turn in result.turns:  # type: ignore[attr-defined]
            assert turn.correct, (mode, turn.turn, turn.heard, turn.missing_calls)
            assert turn.speculation["speculative_writes"] == 0
            if mode != "speculative":
                assert turn.speculation["forks_opened"] == 0 or mode == "async"
    spec = results["speculative"].turns  # type: ignore[attr-defined]
    if name in ("early_key_lookup", "two_lookups", "hasty_prefix", "self_correction"):
        assert any(t.speculation["adopted_calls"] for t in spec)
        assert all(
            s.answer_audio_ms < a.answer_audio_ms
            for s, a in zip(spec, results["async"].turns, strict=True)  # type: ignore[attr-defined]
            if a.answer_audio_ms is not None
        )
    for s, a in zip(spec, results["async"].turns, strict=True):  # type: ignore[attr-defined]
        # speculation never makes the caller wait longer for the first sound
        if a.first_audio_ms is not None:
            assert s.first_audio_ms is not None and s.first_audio_ms <= a.first_audio_ms
        assert (s.dead_air_ms or 0) <= (a.dead_air_ms or 0)
    if name in ("self_correction", "hasty_prefix"):
        assert any(t.speculation["discarded_calls"] for t in spec)
    if name == "write_request":
        invoked = [i for i in results["speculative"].tool_invocations]  # type: ignore[attr-defined]
        assert len(invoked) == 1 and invoked[0]["start"] > spec[0].end_of_speech


def test_with_futures_async_reports_the_chain_once_its_last_link_resolves() -> None:
    """The first result feeds the pending second call: no follow-up for it alone (that
    buys a "still checking" the answer queues behind); one report when the chain ends."""
    scenario = load_scenario(SCENARIOS / "dependent_chain_futures.yaml")
    clock = AutojumpClock()

    async def both() -> dict[str, object]:
        return {m: await run_scenario(scenario, m, clock=clock) for m in ("sync", "async")}

    results = clock.run(both())
    sync, asy = results["sync"], results["async"]
    assert asy.error is None and sync.error is None  # type: ignore[attr-defined]
    assert len(asy.oracle) == 2  # type: ignore[attr-defined]  # the answer and one report
    assert len(sync.oracle) == 3  # type: ignore[attr-defined]  # one request per link
    [a], [s] = asy.turns, sync.turns  # type: ignore[attr-defined]
    assert a.correct and a.answer_audio_ms < s.answer_audio_ms


def test_when_the_chains_last_link_fails_one_report_carries_both_outcomes() -> None:
    data = CHAIN.model_dump(exclude_unset=True)
    data["tools"][0].update(latency_ms=300)
    data["tools"][1].pop("result")
    data["tools"][1].update(latency_ms=900, error="orders service down (HTTP 503)")
    data["turns"][0]["answer"] = [
        {"say": "Sorry, the orders service is down.", "needs": ["o"], "when": "failure",
         "expect": ["Sorry"]},
        {"say": "Done.", "needs": ["o"], "expect": ["Done"]},
    ]  # fmt: skip
    scenario = Scenario.model_validate(data)
    clock = AutojumpClock()
    result = clock.run(run_scenario(scenario, "async", clock=clock))
    assert result.error is None
    [turn] = result.turns
    assert turn.correct, turn.heard
    assert len(result.oracle) == 2  # the answer, then one report of the chain and its failure
