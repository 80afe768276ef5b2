"""The runner, end to end: real engine, real HTTP to the oracle, simulated peripherals.

Timings are scaled down so that a run takes about two seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_helpers import scenario_from

pytest.importorskip("voice_agent.agent")

from voice_agent.bench.runner import run_bench, run_scenario  # noqa: E402

FAST = {
    "name": "fast",
    "oracle": {"ttft_ms": 50, "tokens_per_s": 400},
    "peripherals": {
        "asr_final_delay_ms": 50,
        "asr_partial_interval_ms": 100,
        "tts_first_audio_ms": 30,
        "speaking_rate_wpm": 900,
    },
    "tools": [
        {
            "name": "get_order_status",
            "description": "Order status by number.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
            "latency_ms": 300,
            "result": {"status": "shipped", "eta": "Thursday"},
        }
    ],
    "turns": [
        {
            "user": "Where is order NW-1?",
            "speaking_ms": 400,
            "filler": "One moment.",
            "calls": [{"tool": "get_order_status", "arguments": {"order_id": "{{user:NW-1}}"}}],
            "answer": [
                {
                    "say": "It shipped and arrives Thursday.",
                    "needs": ["get_order_status"],
                    "expect": ["Thursday"],
                }
            ],
        }
    ],
    "timeout_s": 30,
}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_one_tool_turn_is_answered_correctly(mode: str, tmp_path: Path) -> None:
    result = await run_scenario(scenario_from(FAST), mode, tmp_path)  # type: ignore[arg-type]
    assert result.error is None
    [turn] = result.turns
    assert turn.correct, turn
    assert [c["name"] for c in turn.tool_calls] == ["get_order_status"]
    assert turn.first_audio_ms is not None and turn.answer_audio_ms is not None
    assert 0 < turn.first_audio_ms <= turn.answer_audio_ms <= turn.turn_done_ms  # type: ignore[operator]
    tool_call = turn.tool_calls[0]
    assert tool_call["end_ms"] - tool_call["start_ms"] >= 300
    assert turn.answer_audio_ms >= tool_call["end_ms"]  # the answer needs the result
    assert result.oracle and result.oracle[0]["calls"][0]["name"] == "get_order_status"


async def test_run_bench_writes_json_and_timelines(tmp_path: Path) -> None:
    path = tmp_path / "fast.yaml"
    path.write_text(json.dumps(FAST))  # JSON is YAML
    report = await run_bench([path], ["sync", "async"], tmp_path / "report.json", tmp_path / "svg")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"]["medians"]["async"]["correct_rate"] == 1.0
    assert "async/sync" in saved["summary"]["ratios"]
    assert report["errors"] == []
    assert (tmp_path / "svg" / "fast__sync__turn0.svg").is_file()
    assert (tmp_path / "svg" / "index.html").is_file()
