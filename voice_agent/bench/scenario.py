"""Scenario files: what the simulated user says, what the tools do, and
what the scripted oracle LLM answers. Validated once, frozen.

A scenario is YAML (see ``bench/README.md`` for the field-by-field guide).
``load_scenario(path)`` parses and validates it; errors name the file and the
field path. ``scenario_json_schema()`` is the published JSON schema.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voice_agent.bench.template import CallRef, TemplateError, references

__all__ = [
    "ExpectedCall",
    "Fact",
    "OracleTiming",
    "PeripheralTiming",
    "Scenario",
    "ScenarioError",
    "ToolDef",
    "Turn",
    "load_scenario",
    "scenario_json_schema",
]


class ScenarioError(ValueError):
    """A scenario file cannot be read or is invalid; the message names the
    file and each offending field."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OracleTiming(_Frozen):
    """The oracle LLM's timing model and its fixed phrases."""

    ttft_ms: float = Field(300.0, ge=0, description="Request received → first token, ms.")
    tokens_per_s: float = Field(
        60.0,
        gt=0,
        description="Decode speed after the first token; text and tool-call JSON both cost tokens.",
    )
    tokenizer: Literal["chars4", "words"] = Field(
        "chars4", description="How text is counted: ~4 characters per token, or one token per word."
    )
    hold_sentence: str = Field(
        "Still checking, one moment.",
        description="Said when nothing can be answered yet, calls are pending and the filler was said.",
    )


class PeripheralTiming(_Frozen):
    """Simulated ASR/TTS timing (transcript level)."""

    asr_final_delay_ms: float = Field(
        250.0, ge=0, description="End of speech → final transcript, ms."
    )
    asr_partial_interval_ms: float = Field(
        200.0, gt=0, description="Cadence of partial transcripts, ms."
    )
    tts_first_audio_ms: float = Field(
        120.0,
        ge=0,
        description="Sentence text available → its first audio (when the speaker is free), ms.",
    )
    speaking_rate_wpm: float = Field(
        160.0, gt=0, description="Agent speaking rate, words per minute."
    )
    user_speaking_rate_wpm: float = Field(
        160.0,
        gt=0,
        description="User speaking rate, words per minute (when a turn gives no speaking_ms).",
    )


class ToolDef(_Frozen):
    """A tool the agent can call, and what it does in the bench.

    Exactly one behaviour: ``result`` (returned after ``latency_ms``),
    ``error`` (raised after ``latency_ms``) or ``hang: true`` (never returns).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    description: str
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON schema of the arguments object.",
    )
    kind: Literal["read", "write"] = "read"
    on_interrupt: Literal["cancel", "continue", "continue_and_report"] = "continue_and_report"
    timeout_s: float = Field(10.0, gt=0)
    latency_ms: float = Field(500.0, ge=0)
    result: Any = None
    error: str | None = Field(None, description="When set, the tool raises with this message.")
    hang: bool = Field(False, description="When true, the tool never returns (it must time out).")

    @model_validator(mode="after")
    def _one_behaviour(self) -> ToolDef:
        behaviours = [
            "result" in self.model_fields_set,
            self.error is not None,
            self.hang,
        ]
        if sum(behaviours) > 1:
            raise ValueError("give only one of 'result', 'error' or 'hang: true'")
        return self

    @property
    def fails(self) -> bool:
        """True when the tool raises or hangs (its outcome is not a result)."""
        return self.error is not None or self.hang


class ExpectedCall(_Frozen):
    """A call the oracle makes once its argument values are available."""

    tool: str
    id: str | None = Field(
        None,
        description="Name used in templates and facts; defaults to the tool name. Unique in the scenario.",
    )
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="Argument values; strings may hold {{user:...}} / {{calls.<id>.result...}} templates.",
    )

    @property
    def call_id(self) -> str:
        """The id facts and templates use for this call."""
        return self.id or self.tool


class Fact(_Frozen):
    """One sentence of the answer, said once the results it needs arrived."""

    say: str = Field(description="The sentence; may hold templates.")
    needs: list[str] = Field(
        default_factory=list, description="Expected call ids whose outcomes it needs."
    )
    when: Literal["success", "failure"] = Field(
        "success",
        description="success: said when every needed call resolved; failure: said when a needed call "
        "failed, timed out or was cancelled (an apology).",
    )
    expect: list[str] = Field(
        min_length=1,
        description="Strings that must appear (case-insensitive) in what the user heard.",
    )

    @property
    def on_failure(self) -> bool:
        """True for an apology fact (``when: failure``)."""
        return self.when == "failure"


class Turn(_Frozen):
    """One user turn and the oracle's script for it."""

    user: str = Field(min_length=1, description="What the user says (the final transcript).")
    speaking_ms: float | None = Field(
        None,
        gt=0,
        description="How long the user speaks; default: words at user_speaking_rate_wpm.",
    )
    gap_before_ms: float = Field(
        0.0,
        ge=0,
        description="Silence after the agent finished the previous turn, before speaking.",
    )
    barge_in_after_ms: float | None = Field(
        None,
        ge=0,
        description="Start this many ms after the previous turn's end of speech, without waiting "
        "for the agent (an interruption).",
    )
    filler: str | None = Field(None, description="Said before the first calls of the turn.")
    calls: list[ExpectedCall] = Field(default_factory=list)
    answer: list[Fact] = Field(default_factory=list)

    def speech_ms(self, timing: PeripheralTiming) -> float:
        """The user's speaking time for this turn, ms."""
        if self.speaking_ms is not None:
            return self.speaking_ms
        words = max(1, len(self.user.split()))
        return words * 60_000.0 / timing.user_speaking_rate_wpm


class Scenario(_Frozen):
    """A benchmark scenario: timing, tools and turns."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    description: str = ""
    system_prompt: str = "You are a helpful customer-service voice agent."
    oracle: OracleTiming = Field(default_factory=lambda: OracleTiming.model_validate({}))
    peripherals: PeripheralTiming = Field(
        default_factory=lambda: PeripheralTiming.model_validate({})
    )
    tools: list[ToolDef] = Field(default_factory=list)
    turns: list[Turn] = Field(min_length=1)
    timeout_s: float = Field(120.0, gt=0, description="Hard limit for one run of the scenario, s.")

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        problems: list[str] = []
        tool_names = [t.name for t in self.tools]
        if len(set(tool_names)) != len(tool_names):
            problems.append("tools: duplicate tool names")
        known_tools = set(tool_names)
        declared: set[str] = set()
        if self.turns[0].barge_in_after_ms is not None:
            problems.append("turns.0.barge_in_after_ms: the first turn has nothing to interrupt")
        for ti, turn in enumerate(self.turns):
            for ci, call in enumerate(turn.calls):
                where = f"turns.{ti}.calls.{ci}"
                if call.tool not in known_tools:
                    problems.append(f"{where}.tool: unknown tool {call.tool!r}")
                if call.call_id in declared:
                    problems.append(f"{where}.id: duplicate call id {call.call_id!r}")
                problems.extend(_check_refs(call.arguments, declared, f"{where}.arguments"))
                declared.add(call.call_id)
            for fi, fact in enumerate(turn.answer):
                where = f"turns.{ti}.answer.{fi}"
                for need in fact.needs:
                    if need not in declared:
                        problems.append(
                            f"{where}.needs: {need!r} is not a call of this or an earlier turn"
                        )
                problems.extend(_check_refs(fact.say, declared, f"{where}.say"))
                if fact.on_failure and not fact.needs:
                    problems.append(f"{where}.when: a failure fact must name the calls it needs")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def tool(self, name: str) -> ToolDef:
        """The tool definition named ``name`` (KeyError if unknown)."""
        for tool in self.tools:
            if tool.name == name:
                return tool
        raise KeyError(name)

    def call(self, call_id: str) -> ExpectedCall:
        """The expected call with id ``call_id`` (KeyError if unknown)."""
        for turn in self.turns:
            for call in turn.calls:
                if call.call_id == call_id:
                    return call
        raise KeyError(call_id)

    def call_fails(self, call_id: str) -> bool:
        """True when the expected call's tool raises or hangs."""
        return self.tool(self.call(call_id).tool).fails

    def expected_facts(self, turn_index: int) -> list[Fact]:
        """The facts of a turn that the scripted tool outcomes lead to: success
        facts when all needed tools succeed, failure facts when one fails."""
        facts = []
        for fact in self.turns[turn_index].answer:
            failing = any(self.call_fails(n) for n in fact.needs)
            if (fact.on_failure) == failing:
                facts.append(fact)
        return facts

    def static_results(self) -> dict[str, Any]:
        """Scripted result per expected call id (failing calls are absent)."""
        return {
            call.call_id: self.tool(call.tool).result
            for turn in self.turns
            for call in turn.calls
            if not self.tool(call.tool).fails
        }


def _check_refs(value: Any, declared: set[str], where: str) -> list[str]:
    try:
        refs = references(value)
    except TemplateError as exc:
        return [f"{where}: {exc}"]
    return [
        f"{where}: template refers to {ref.call_id!r}, not an earlier call"
        for ref in refs
        if isinstance(ref, CallRef) and ref.call_id not in declared
    ]


def scenario_json_schema() -> dict[str, Any]:
    """The JSON schema of a scenario file (what ``voice-agent bench --schema`` prints)."""
    return Scenario.model_json_schema()


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a YAML scenario; raise ScenarioError naming the file
    and every invalid field (dotted path, e.g. ``turns.1.calls.0.tool``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(scenario)"
            lines.append(f"  {loc}: {err['msg']}")
        raise ScenarioError(f"{path}: invalid scenario:\n" + "\n".join(lines)) from exc


def words_duration_ms(text: str, wpm: float) -> float:
    """Time to speak ``text`` at ``wpm`` words per minute, ms (at least one word)."""
    return max(1, len(text.split())) * 60_000.0 / wpm


def count_tokens(text: str, tokenizer: Literal["chars4", "words"]) -> int:
    """Tokens ``text`` costs in the oracle's timing model."""
    if not text:
        return 0
    if tokenizer == "words":
        return len(text.split())
    return math.ceil(len(text) / 4)
