"""Scenario files: validation, errors naming file and field, schema, templates."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_helpers import chain_scenario, one_tool_scenario, scenario_from

from voice_agent.bench.scenario import ScenarioError, load_scenario, scenario_json_schema
from voice_agent.bench.template import Unavailable, render

SCENARIOS = sorted((Path(__file__).parents[2] / "bench" / "scenarios").glob("*.yaml"))


def test_shipped_scenarios_all_load() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {
        "one_slow_tool",
        "independent_tools",
        "dependent_chain",
        "sequential",
        "failures",
        "barge_in",
    } <= names
    for path in SCENARIOS:
        scenario = load_scenario(path)
        assert scenario.name == path.stem
        assert all(scenario.expected_facts(i) for i in range(len(scenario.turns)))


def test_failure_facts_are_the_expected_ones_when_the_tool_fails() -> None:
    scenario = load_scenario(Path(SCENARIOS[0]).parent / "failures.yaml")
    facts = scenario.expected_facts(0)
    assert [f.when for f in facts] == ["failure"]


def test_error_names_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nturns:\n  - user: hi\n    calls:\n      - tool: nope\n    bogus: 1\n"
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert str(path) in message
    assert "turns.0.bogus" in message


def test_unknown_tool_and_forward_reference_are_rejected() -> None:
    with pytest.raises(ValueError) as info:
        scenario_from(
            {
                "name": "x",
                "tools": [{"name": "a", "description": "d"}],
                "turns": [
                    {
                        "user": "hi",
                        "calls": [
                            {"tool": "a", "arguments": {"v": "{{calls.b.result.x}}"}},
                            {"tool": "missing", "id": "b"},
                        ],
                    }
                ],
            }
        )
    assert "unknown tool 'missing'" in str(info.value)
    assert "refers to 'b'" in str(info.value)


def test_tool_with_two_behaviours_is_rejected() -> None:
    with pytest.raises(ValueError, match="only one of"):
        scenario_from(
            {
                "name": "x",
                "tools": [{"name": "a", "description": "d", "result": 1, "hang": True}],
                "turns": [{"user": "hi"}],
            }
        )


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"broken.yaml: line \d+, column \d+: not valid YAML"):
        load_scenario(path)


def test_json_schema_describes_turns_and_tools() -> None:
    schema = scenario_json_schema()
    assert "turns" in schema["properties"]
    assert "ToolDef" in schema["$defs"]
    assert schema["$defs"]["Fact"]["additionalProperties"] is False


def test_speaking_time_is_derived_from_words() -> None:
    scenario = one_tool_scenario()
    turn = scenario.turns[0]
    assert turn.speech_ms(scenario.peripherals) == pytest.approx(4 * 60_000 / 160)


def test_templates_keep_json_types_and_interpolate_in_text() -> None:
    results = {"customer": {"customer_id": 7, "orders": [{"item": "jacket"}]}}

    def result_of(call_id: str) -> object:
        if call_id not in results:
            raise Unavailable(call_id)
        return results[call_id]

    assert render("{{calls.customer.result.customer_id}}", result_of=result_of, user_text="") == 7
    assert (
        render("a {{calls.customer.result.orders.0.item}}!", result_of=result_of, user_text="")
        == "a jacket!"
    )
    assert render({"p": "{{user:555 0142}}"}, result_of=result_of, user_text="It's 555  0142") == {
        "p": "555 0142"
    }
    with pytest.raises(Unavailable):
        render("{{user:999}}", result_of=result_of, user_text="nothing")
    with pytest.raises(Unavailable):
        render("{{calls.other.result}}", result_of=result_of, user_text="")


def test_chain_scenario_static_results() -> None:
    assert chain_scenario().static_results()["customer"] == {"customer_id": "C-7", "name": "Dana"}
