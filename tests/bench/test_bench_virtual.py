"""The bench on virtual time: fast, repeatable, through real HTTP; and the scenario
format's per-argument tool cases, typed caller values and scenario folders."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pytest
from bench_helpers import scenario_from

from fsm import AutojumpClock
from voice_agent.bench.runner import main, run_bench, run_scenario, scenario_paths
from voice_agent.bench.scenario import ScenarioError, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "bench" / "scenarios"


def _without_wall(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_wall(v) for k, v in value.items() if not k.startswith("wall")}
    if isinstance(value, list):
        return [_without_wall(v) for v in value]
    return value


def _run(scenario: Any, mode: str) -> tuple[dict[str, Any], float, float]:
    clock = AutojumpClock()
    started = time.monotonic()
    result = clock.run(run_scenario(scenario, mode, clock=clock))  # type: ignore[arg-type]
    return result.to_json(), clock.now(), time.monotonic() - started


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_scenario_on_virtual_time_runs_well_under_its_duration_and_repeats_exactly(
    mode: str,
) -> None:
    scenario = load_scenario(SCENARIOS / "independent_tools.yaml")
    first, virtual_s, wall_s = _run(scenario, mode)
    second, _, _ = _run(scenario, mode)
    assert first["error"] is None and all(t["correct"] for t in first["turns"])
    assert virtual_s > 5.0  # the conversation lasts seconds of (virtual) time...
    assert wall_s < virtual_s / 2  # ...and runs in far less (generous: a loaded machine)
    assert json.dumps(_without_wall(first)) == json.dumps(_without_wall(second))
    # Real HTTP to the oracle: every request is in its log with its own timings.
    assert first["raw"]["oracle"] and all(e["finished_at"] for e in first["raw"]["oracle"])


PRICE_TOOL = {
    "name": "get_price",
    "description": "Price of a product by SKU and quantity.",
    "parameters": {
        "type": "object",
        "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"}},
        "required": ["sku", "quantity"],
    },
    "latency_ms": 400,
    "result": {"price": "unknown"},
    "cases": [
        {"when": {"sku": "A-1"}, "latency_ms": 300, "result": {"price": "5 dollars"}},
        {"when": {"sku": "B-2"}, "latency_ms": 2000, "result": {"price": "12 dollars"}},
        {"when": {"sku": "C-3", "quantity": 2.0}, "latency_ms": 700, "error": "out of stock"},
    ],
}


def price_scenario() -> dict[str, Any]:
    return {
        "name": "prices",
        "oracle": {"ttft_ms": 200, "tokens_per_s": 80},
        "tools": [PRICE_TOOL],
        "turns": [
            {
                "user": "What do 1 A-1, 1 B-2 and 2 C-3 cost?",
                "calls": [
                    {
                        "tool": "get_price",
                        "id": sku,
                        "arguments": {
                            "sku": f"{{{{user:{sku}}}}}",
                            "quantity": f"{{{{user:{q}}}}}",
                        },
                    }
                    for sku, q in (("A-1", 1), ("B-2", 1), ("C-3", 2))
                ],
                "answer": [
                    {
                        "say": "A-1 is {{calls.A-1.result.price}}.",
                        "needs": ["A-1"],
                        "expect": ["5 dollars"],
                    },
                    {
                        "say": "B-2 is {{calls.B-2.result.price}}.",
                        "needs": ["B-2"],
                        "expect": ["12 dollars"],
                    },
                    {
                        "say": "C-3 is out of stock.",
                        "needs": ["C-3"],
                        "when": "failure",
                        "expect": ["out of stock"],
                    },
                ],
            }
        ],
    }


def test_one_tool_answers_each_call_by_its_arguments_after_its_own_latency() -> None:
    scenario = scenario_from(price_scenario())
    assert scenario.call_fails("C-3") and not scenario.call_fails("A-1")
    assert scenario.static_results() == {
        "A-1": {"price": "5 dollars"},
        "B-2": {"price": "12 dollars"},
    }
    report, _, _ = _run(scenario, "async")
    assert report["error"] is None and report["turns"][0]["correct"], report["turns"]
    runs = {r["arguments"]["sku"]: r for r in report["raw"]["tool_invocations"]}
    assert {sku: r["case"] for sku, r in runs.items()} == {"A-1": 0, "B-2": 1, "C-3": 2}
    assert {sku: r["outcome"] for sku, r in runs.items()} == {
        "A-1": "returned",
        "B-2": "returned",
        "C-3": "raised",
    }
    took = {sku: round(r["end"] - r["start"], 6) for sku, r in runs.items()}
    assert took == {"A-1": 0.3, "B-2": 2.0, "C-3": 0.7}


def test_a_number_the_caller_says_reaches_the_tool_as_a_number() -> None:
    report, _, _ = _run(scenario_from(price_scenario()), "sync")
    quantities = {
        r["arguments"]["sku"]: r["arguments"]["quantity"] for r in report["raw"]["tool_invocations"]
    }
    assert quantities == {"A-1": 1, "B-2": 1, "C-3": 2}
    assert all(type(q) is int for q in quantities.values())


def test_a_caller_value_that_cannot_have_the_schemas_type_is_a_scenario_error() -> None:
    data = price_scenario()
    data["turns"][0]["calls"][0]["arguments"]["quantity"] = "{{user:a few}}"
    with pytest.raises(ValueError, match=r"turns\.0\.calls\.0\.arguments\.quantity"):
        scenario_from(data)


def test_a_folder_of_scenarios_runs_every_file(tmp_path: Path) -> None:
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "prices.yaml").write_text(json.dumps(price_scenario()))
    other = price_scenario() | {"name": "prices_again"}
    (folder / "prices_again.yml").write_text(json.dumps(other))
    (folder / "notes.txt").write_text("not a scenario")
    assert [p.name for p in scenario_paths([folder])] == ["prices.yaml", "prices_again.yml"]
    with pytest.raises(ScenarioError, match="no such file"):
        scenario_paths([tmp_path / "missing"])
    with pytest.raises(ScenarioError, match="no scenario files"):
        scenario_paths([_empty(tmp_path)])

    args = argparse.Namespace(
        scenarios=[str(folder)],
        modes="sync,async",
        json_out=str(tmp_path / "r.json"),
        out=None,
        repeat=1,
        schema=False,
        realtime=False,
        no_warmup=False,
    )
    assert main(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["clock"] == "virtual" and report["warmup"].startswith("first scenario")
    assert sorted({(s["scenario"], s["mode"]) for s in report["scenarios"]}) == [
        ("prices", "async"),
        ("prices", "sync"),
        ("prices_again", "async"),
        ("prices_again", "sync"),
    ]


def _empty(tmp_path: Path) -> Path:
    empty = tmp_path / "empty"
    empty.mkdir()
    return empty


def test_run_bench_on_a_virtual_clock_says_so(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(json.dumps(price_scenario()))
    clock = AutojumpClock()
    report = clock.run(run_bench([path], ["async"], None, None, clock=clock, warmup=False))
    assert report["clock"] == "virtual" and report["warmup"] == "none"
    assert report["errors"] == []
