"""Turn metrics and mode summaries from hand-built recordings."""

from __future__ import annotations

import pytest
from bench_helpers import one_tool_scenario, scenario_from

from voice_agent.bench.metrics import (
    ForkRecord,
    Recording,
    ToolCallRecord,
    TurnMetrics,
    scenario_metrics,
    summarize,
    tool_calls_from_ledger,
)
from voice_agent.bench.sim import PlayedSentence, UserTurnRecord

EOS = 11.0


def recording(answer_start: float = 13.5, args: object = None, spec: bool = False) -> Recording:
    return Recording(
        user_turns=[
            UserTurnRecord(0, "Where is order NW-1?", 10.0, EOS, EOS + 0.25, barge_in=False)
        ],
        sentences=[
            PlayedSentence("r1", "Let me check.", 11.8, 12.8, "Let me check."),
            PlayedSentence(
                "r2",
                "It shipped and arrives Thursday.",
                answer_start,
                answer_start + 2.0,
                "It shipped and arrives Thursday.",
            ),
        ],
        tool_calls=[
            ToolCallRecord(
                "c1",
                "get_order_status",
                args if args is not None else {"order_id": "NW-1"},
                "read",
                12.0,
                13.0,
                "resolved",
                speculative=spec,
            ),
        ],
        decodes=[],
        session_end=20.0,
    )


def test_latencies_are_relative_to_end_of_speech() -> None:
    [m] = scenario_metrics(one_tool_scenario(), "async", recording())
    assert m.first_audio_ms == pytest.approx(800)
    assert m.answer_audio_ms == pytest.approx(2500)
    assert m.complete_answer_ms == pytest.approx(2500)  # one sentence carries everything
    assert m.turn_done_ms == pytest.approx(4500)
    assert m.tool_calls[0]["start_ms"] == pytest.approx(1000) and m.tool_calls[0][
        "end_ms"
    ] == pytest.approx(2000)
    assert m.correct and m.calls_ok and m.facts_heard == {"It shipped and arrives Thursday.": True}


def test_dead_air_counts_whole_gaps_longer_than_a_second() -> None:
    [short] = scenario_metrics(one_tool_scenario(), "async", recording(answer_start=13.5))
    [long] = scenario_metrics(one_tool_scenario(), "async", recording(answer_start=14.3))
    assert short.dead_air_ms == 0  # gaps 0.8 s and 0.7 s
    assert long.dead_air_ms == pytest.approx(1500)  # the 1.5 s gap counts whole


def test_wrong_arguments_and_unheard_facts_are_incorrect() -> None:
    rec = recording(args={"order_id": "NW-2"})
    rec.sentences.pop()
    [m] = scenario_metrics(one_tool_scenario(), "sync", rec)
    assert not m.calls_ok and m.missing_calls == ["get_order_status"]
    assert m.unexpected_calls == ["get_order_status"]
    assert m.facts_heard == {"It shipped and arrives Thursday.": False}
    assert m.answer_audio_ms is None and m.complete_answer_ms is None
    assert not m.correct


def test_interrupted_sentence_counts_only_heard_words() -> None:
    rec = recording()
    rec.sentences[1] = PlayedSentence(
        "r2", "It shipped and arrives Thursday.", 13.5, 14.0, "It shipped", interrupted=True
    )
    [m] = scenario_metrics(one_tool_scenario(), "async", rec)
    assert m.facts_heard == {"It shipped and arrives Thursday.": False}


def test_speculative_write_is_never_correct() -> None:
    scenario = scenario_from(
        {
            "name": "w",
            "tools": [
                {
                    "name": "cancel_order",
                    "description": "d",
                    "kind": "write",
                    "result": {"ok": True},
                }
            ],
            "turns": [
                {
                    "user": "Cancel NW-1",
                    "calls": [{"tool": "cancel_order", "arguments": {"id": "{{user:NW-1}}"}}],
                    "answer": [
                        {
                            "say": "Done, it is cancelled.",
                            "needs": ["cancel_order"],
                            "expect": ["cancelled"],
                        }
                    ],
                }
            ],
        }
    )
    rec = Recording(
        user_turns=[UserTurnRecord(0, "Cancel NW-1", 0.0, 1.0, 1.25, barge_in=False)],
        sentences=[
            PlayedSentence("r", "Done, it is cancelled.", 2.0, 3.0, "Done, it is cancelled.")
        ],
        tool_calls=[
            ToolCallRecord(
                "s1", "cancel_order", {"id": "NW-1"}, "write", 0.5, 0.9, "resolved", True, "f1"
            ),
            ToolCallRecord("c1", "cancel_order", {"id": "NW-1"}, "write", 1.5, 1.9, "resolved"),
        ],
        decodes=[],
        forks=[ForkRecord("f1", 0.4, "discarded")],
        session_end=4.0,
    )
    [m] = scenario_metrics(scenario, "speculative", rec)
    assert m.writes_once and m.speculation["speculative_writes"] == 1
    assert m.speculation["forks_opened"] == 1 and m.speculation["wasted_tool_s"] == pytest.approx(
        0.4
    )
    assert not m.correct


def test_summary_has_medians_and_ratios_against_sync() -> None:
    turns: list[TurnMetrics] = []
    for mode, start in (("sync", 15.0), ("async", 13.5), ("speculative", 13.0)):
        turns += scenario_metrics(one_tool_scenario(), mode, recording(answer_start=start))
    summary = summarize(turns)
    assert summary["medians"]["sync"]["answer_audio_ms"] == pytest.approx(4000)
    assert summary["ratios"]["async/sync"]["answer_audio_ms"] == pytest.approx(
        2500 / 4000, abs=1e-3
    )
    assert summary["ratios"]["speculative/async"]["answer_audio_ms"] == pytest.approx(
        2000 / 2500, abs=1e-3
    )
    assert summary["per_scenario"]["t"]["async"]["correct_rate"] == 1.0


def test_tool_calls_are_read_from_ledger_entries() -> None:
    from fsm import ManualClock
    from ledger import Ledger
    from ledger.entries import LlmRequestStarted, ToolCallStarted, ToolCallTimedOut

    clock = ManualClock(start=5.0)
    ledger = Ledger("s", clock)
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    ledger.append(
        ToolCallStarted(call_id="c1", response_id="r1", name="t", arguments='{"a": 1}', kind="read")
    )
    [pending] = tool_calls_from_ledger(ledger.entries)
    assert pending.outcome == "pending" and pending.end is None and pending.arguments == {"a": 1}
    ledger.append(ToolCallTimedOut(call_id="c1", timeout_s=3.0))
    [done] = tool_calls_from_ledger(ledger.entries)
    assert done.outcome == "timed_out" and done.start == 5.0


def test_timeline_svg_has_rows_markers_and_an_index(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import xml.etree.ElementTree as ET

    from voice_agent.bench.metrics import DecodeRecord
    from voice_agent.bench.timeline import write_timelines

    rec = recording()
    rec.decodes.append(
        DecodeRecord(0, 11.3, 11.6, 11.9, 0, "Let me check.", ("get_order_status",), False)
    )
    turns = scenario_metrics(one_tool_scenario(), "async", rec)
    paths = write_timelines(tmp_path, [(turns, rec)])
    svg = (tmp_path / "t__async__turn0.svg").read_text()
    root = ET.fromstring(svg)  # well-formed
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for expected in (
        "user",
        "LLM #0",
        "tool get_order_status",
        "agent",
        "end of speech",
        "answer 2500 ms",
    ):
        assert expected in texts
    assert "#27ae60" in svg  # resolved call colour
    index = (tmp_path / "index.html").read_text()
    assert 'href="t__async__turn0.svg"' in index and paths[-1].name == "index.html"
