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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from voice_agent.bench.template import (
    CallRef,
    TemplateError,
    Unavailable,
    UserRef,
    coercible,
    parse_expression,
    references,
    render_arguments,
)
from voice_agent.config import ConfigError, load_yaml_file

__all__ = [
    "ExpectedCall",
    "Fact",
    "OracleTiming",
    "PeripheralTiming",
    "Scenario",
    "ScenarioError",
    "ToolBehaviour",
    "ToolCase",
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
    # --- speculation behaviours (helper spec): how the oracle errs and what it dares
    hasty: bool = Field(
        False,
        description="On a partial transcript, call with what was heard so far: a {{user:...}} "
        "value of several words of which only the first were heard is sent as heard (a prefix "
        "of the digits). Per call: ExpectedCall.hasty.",
    )
    reference_futures: bool = Field(
        False,
        description="When the agent's system prompt says calls may name pending futures, pass a "
        "pending (or same-response) call's id as an argument instead of waiting for its result "
        "(what AsyncFC reports models do). Per call: ExpectedCall.reference_futures.",
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


class ToolBehaviour(_Frozen):
    """What one invocation of a scenario tool does: wait ``latency_ms``, then
    return ``result``, raise ``error`` or hang."""

    latency_ms: float
    result: Any = None
    error: str | None = None
    hang: bool = False

    @property
    def fails(self) -> bool:
        """True when the invocation raises or hangs (its outcome is not a result)."""
        return self.error is not None or self.hang


def _one_behaviour(model: BaseModel, error: str | None, hang: bool) -> None:
    behaviours = ["result" in model.model_fields_set, error is not None, hang]
    if sum(behaviours) > 1:
        raise ValueError("give only one of 'result', 'error' or 'hang: true'")


class ToolCase(_Frozen):
    """How the tool answers calls whose arguments match ``when``.

    ``when`` matches when every key it names is in the call's arguments with
    an equal JSON value (``5`` equals ``5.0``; other arguments are free).
    Fields left out are the tool's own (its ``latency_ms``; its behaviour
    when the case names none of ``result`` / ``error`` / ``hang``).
    """

    when: dict[str, Any] = Field(description="Argument values this case answers (a subset).")
    latency_ms: float | None = Field(None, ge=0, description="Default: the tool's latency_ms.")
    result: Any = None
    error: str | None = None
    hang: bool = False

    @model_validator(mode="after")
    def _one(self) -> ToolCase:
        _one_behaviour(self, self.error, self.hang)
        return self

    def matches(self, arguments: dict[str, Any]) -> bool:
        """True when every ``when`` value equals the argument of the same name."""
        return all(k in arguments and _same(arguments[k], v) for k, v in self.when.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


class ToolDef(_Frozen):
    """A tool the agent can call, and what it does in the bench.

    Exactly one behaviour: ``result`` (returned after ``latency_ms``),
    ``error`` (raised after ``latency_ms``) or ``hang: true`` (never returns).
    ``cases`` answer particular arguments differently (first match wins; the
    tool's own behaviour answers the rest), so one tool can be called several
    times with different arguments and give different results after
    different latencies.
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
    cases: list[ToolCase] = Field(
        default_factory=list,
        description="Per-arguments behaviours, tried in order before the tool's own.",
    )

    @model_validator(mode="after")
    def _one_behaviour(self) -> ToolDef:
        _one_behaviour(self, self.error, self.hang)
        return self

    @property
    def fails(self) -> bool:
        """True when the tool's own behaviour raises or hangs."""
        return self.error is not None or self.hang

    def behaviour(self, arguments: dict[str, Any]) -> ToolBehaviour:
        """What a call with ``arguments`` does: the first matching case, else the tool's own."""
        own = ToolBehaviour(
            latency_ms=self.latency_ms, result=self.result, error=self.error, hang=self.hang
        )
        for case in self.cases:
            if not case.matches(arguments):
                continue
            named = {"result", "error", "hang"} & case.model_fields_set
            return ToolBehaviour(
                latency_ms=self.latency_ms if case.latency_ms is None else case.latency_ms,
                result=case.result if named else own.result,
                error=case.error if named else own.error,
                hang=case.hang if named else own.hang,
            )
        return own

    def case_index(self, arguments: dict[str, Any]) -> int | None:
        """Index of the case that answers ``arguments``, or None (the tool's own behaviour)."""
        return next((i for i, c in enumerate(self.cases) if c.matches(arguments)), None)


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
    # --- speculation behaviours (helper spec)
    partial_arguments: dict[str, Any] | None = Field(
        None,
        description="What the oracle calls with on a partial transcript when `arguments` cannot be "
        "filled yet but these can (a wrong early guess: the first city named, the number before "
        "a self-correction).",
    )
    hasty: bool | None = Field(None, description="Overrides oracle.hasty for this call.")
    reference_futures: bool | None = Field(
        None, description="Overrides oracle.reference_futures for this call."
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
                if call.partial_arguments is not None:
                    problems.extend(
                        _check_refs(call.partial_arguments, declared, f"{where}.partial_arguments")
                    )
                if call.tool in known_tools:
                    problems.extend(
                        _check_types(call.arguments, self.tool(call.tool), f"{where}.arguments")
                    )
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
        """True when the expected call raises or hangs (by the case its arguments meet)."""
        return self.call_behaviour(call_id).fails

    def call_behaviour(self, call_id: str) -> ToolBehaviour:
        """What the expected call does when made with its scripted arguments.

        The arguments are filled from the scripted results of earlier calls and
        everything the caller says; a call that cannot be filled (it needs a
        failing call's result) gets the tool's own behaviour.
        """
        return self._scripted()[call_id]

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
            call_id: behaviour.result
            for call_id, behaviour in self._scripted().items()
            if not behaviour.fails
        }

    def scripted_arguments(self, call: ExpectedCall, results: dict[str, Any]) -> dict[str, Any]:
        """``call``'s arguments filled from ``results`` (by call id) and all the caller says,
        typed by the tool's schema; raises ``template.Unavailable`` when a result is missing."""

        def result_of(call_id: str) -> Any:
            if call_id not in results:
                raise Unavailable(call_id)
            return results[call_id]

        return render_arguments(
            call.arguments,
            self.tool(call.tool).parameters,
            result_of=result_of,
            user_text=" ".join(t.user for t in self.turns),
        )

    def _scripted(self) -> dict[str, ToolBehaviour]:
        behaviours: dict[str, ToolBehaviour] = {}
        results: dict[str, Any] = {}
        for turn in self.turns:
            for call in turn.calls:
                tool = self.tool(call.tool)
                try:
                    behaviour = tool.behaviour(self.scripted_arguments(call, results))
                except Unavailable:
                    behaviour = tool.behaviour({})
                behaviours[call.call_id] = behaviour
                if not behaviour.fails:
                    results[call.call_id] = behaviour.result
        return behaviours


def _check_types(arguments: dict[str, Any], tool: ToolDef, where: str) -> list[str]:
    """A ``{{user:...}}`` value must read as its parameter's type (a number for a number)."""
    props = tool.parameters.get("properties") or {}
    problems = []
    for name, value in arguments.items():
        if not isinstance(value, str) or not isinstance(props.get(name), dict):
            continue
        try:
            ref = parse_expression(value.strip()[2:-2].strip()) if _whole(value) else None
        except TemplateError:
            continue
        if isinstance(ref, UserRef) and not coercible(ref.text, props[name]):
            problems.append(
                f"{where}.{name}: the caller's {ref.text!r} is not a {props[name].get('type')}"
            )
    return problems


def _whole(value: str) -> bool:
    text = value.strip()
    return text.startswith("{{") and text.endswith("}}") and text.count("{{") == 1


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
        data = load_yaml_file(path)  # one line naming the file and line (hostile9)
    except ConfigError as exc:
        raise ScenarioError(str(exc)) from None
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
