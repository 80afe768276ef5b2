"""Per-turn latency and correctness metrics from a run's recordings.

All times are milliseconds relative to the turn's ``end_of_speech`` (the end
of the user's last word). Windows:

- the *turn window* runs from its end of speech to the next turn's speech
  start (or the end of the session); agent sentences starting in it belong
  to the turn;
- tool calls belong to the turn when they started between its speech start
  and the next turn's speech start (so speculative calls count);
- the *fact window* is the turn window, extended over the following turns
  while they are barge-ins (an interrupted turn's answer may come later).

Definitions (``None`` when the event did not happen):

- ``first_audio_ms``: first agent sentence starting in the turn window.
- ``answer_audio_ms``: start of the first sentence (fact window) that holds
  an ``expect`` string of an expected fact.
- ``complete_answer_ms``: the start of the sentence that completes the last
  expected fact (the sentence after which all of a fact's ``expect`` strings
  have been heard, maximised over the facts); it equals ``answer_audio_ms``
  when one sentence carries everything.
- ``turn_done_ms``: end of the last agent sentence in the turn window.
- ``dead_air_ms``: the sum of silent gaps longer than ``DEAD_AIR_MIN_S``
  between end of speech and turn done (end of the window when the agent
  never spoke); each such gap counts whole, not only its part beyond 1 s.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from voice_agent.bench.oracle import OracleExchange
from voice_agent.bench.scenario import Scenario
from voice_agent.bench.sim import PlayedSentence, UserTurnRecord
from voice_agent.bench.template import Unavailable, normalize_text

DEAD_AIR_MIN_S = 1.0  # silence longer than this while the user waits is dead air, s
LATENCY_KEYS = (
    "first_audio_ms",
    "answer_audio_ms",
    "complete_answer_ms",
    "turn_done_ms",
    "dead_air_ms",
)
BASELINE_MODE = "sync"


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call from the ledger (clock seconds; ``end`` None while pending)."""

    call_id: str
    name: str
    arguments: Any
    kind: str
    start: float
    end: float | None
    outcome: str  # resolved | failed | timed_out | cancelled | pending
    speculative: bool = False
    fork_id: str | None = None
    result: Any = None
    adopted_from: str | None = None  # a final call that adopted a fork's speculative call


@dataclass(frozen=True)
class DecodeRecord:
    """One oracle request/response (clock seconds)."""

    index: int
    start: float
    first_token: float | None
    end: float | None
    turn_index: int | None
    text: str
    calls: tuple[str, ...]
    cancelled: bool


@dataclass(frozen=True)
class ForkRecord:
    """Speculation bookkeeping from the ledger."""

    fork_id: str
    opened: float
    outcome: str  # adopted | discarded | open
    adopted_calls: tuple[str, ...] = ()
    tokens: int = 0  # completion tokens the fork generated (0 when it became the answer)
    whole: bool = False  # adopted whole: its generation became the turn's answer
    closed: float | None = None  # when it was adopted or discarded


@dataclass
class Recording:
    """Everything observed in one run of one scenario in one mode."""

    user_turns: list[UserTurnRecord]
    sentences: list[PlayedSentence]
    tool_calls: list[ToolCallRecord]
    decodes: list[DecodeRecord]
    forks: list[ForkRecord] = field(default_factory=list)
    session_end: float = 0.0
    responses: list[tuple[float, int]] = field(default_factory=list)  # (start, tokens) answers


@dataclass
class TurnMetrics:
    """The metrics of one user turn (ms relative to its end of speech)."""

    scenario: str
    mode: str
    turn: int
    user: str
    end_of_speech: float  # clock seconds
    first_audio_ms: float | None
    answer_audio_ms: float | None
    complete_answer_ms: float | None
    turn_done_ms: float | None
    dead_air_ms: float
    tool_calls: list[dict[str, Any]]
    calls_ok: bool
    missing_calls: list[str]
    unexpected_calls: list[str]
    writes_once: bool
    facts_heard: dict[str, bool]
    correct: bool
    speculation: dict[str, Any]
    heard: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def decodes_from_oracle(exchanges: Iterable[OracleExchange]) -> list[DecodeRecord]:
    """Decode intervals from the oracle's recorded exchanges."""
    return [
        DecodeRecord(
            e.index,
            e.received_at,
            e.first_token_at,
            e.finished_at,
            e.turn_index,
            e.text,
            tuple(c["name"] for c in e.calls),
            e.cancelled,
        )
        for e in exchanges
    ]


def tool_calls_from_ledger(entries: Iterable[Any]) -> list[ToolCallRecord]:
    """Tool calls (start, outcome, end) from ledger entries (``type`` + ``t``)."""
    started: dict[str, Any] = {}
    ends: dict[str, tuple[float, str]] = {}
    results: dict[str, Any] = {}
    adopted: dict[str, tuple[str, float]] = {}  # final id → (speculative id, adoption time)
    outcome_types = {
        "ToolCallResolved": "resolved",
        "ToolCallFailed": "failed",
        "ToolCallTimedOut": "timed_out",
        "ToolCallCancelled": "cancelled",
    }
    for entry in entries:
        if entry.type == "ToolCallStarted":
            started[entry.call_id] = entry
        elif entry.type in outcome_types and entry.call_id not in ends:
            ends[entry.call_id] = (entry.t, outcome_types[entry.type])
            if entry.type == "ToolCallResolved":
                results[entry.call_id] = entry.result
        elif entry.type == "ForkAdopted":
            for final_id, spec_id in entry.adopted.items():
                adopted[final_id] = (spec_id, entry.t)
    records = []
    for call_id, entry in started.items():
        end, outcome = ends.get(call_id, (None, "pending"))
        source = adopted.get(call_id)
        if source is not None and source[0] in ends:  # it shares the speculative future
            spec_end, outcome = ends[source[0]]
            end = max(spec_end, source[1])
            results[call_id] = results.get(source[0])
        records.append(
            ToolCallRecord(
                call_id,
                entry.name,
                _parse(entry.arguments),
                entry.kind,
                entry.t,
                end,
                outcome,
                entry.speculative,
                entry.fork_id,
                results.get(call_id),
                source[0] if source is not None else None,
            )
        )
    return records


def responses_from_ledger(entries: Iterable[Any]) -> list[tuple[float, int]]:
    """(start, completion tokens) of every LLM answer (canned phrases excluded)."""
    started: dict[str, Any] = {}
    out = []
    for entry in entries:
        if entry.type == "LlmRequestStarted" and entry.by_model:
            started[entry.response_id] = entry
        elif entry.type == "LlmResponseFinished" and entry.response_id in started:
            out.append((started[entry.response_id].t, entry.completion_tokens or 0))
    return out


def forks_from_ledger(entries: Iterable[Any]) -> list[ForkRecord]:
    """Fork outcomes from ledger entries."""
    forks: dict[str, ForkRecord] = {}
    for entry in entries:
        if entry.type == "ForkOpened":
            forks[entry.fork_id] = ForkRecord(entry.fork_id, entry.t, "open")
        elif entry.type in ("ForkAdopted", "ForkDiscarded") and entry.fork_id in forks:
            fork = forks[entry.fork_id]
            adopted = tuple(entry.adopted.values()) if entry.type == "ForkAdopted" else ()
            outcome = "adopted" if entry.type == "ForkAdopted" else "discarded"
            whole = entry.type == "ForkAdopted" and getattr(entry, "whole", False)
            tokens = 0 if whole else (getattr(entry, "completion_tokens", None) or 0)
            forks[entry.fork_id] = ForkRecord(
                fork.fork_id, fork.opened, outcome, adopted, tokens, whole, entry.t
            )
    return list(forks.values())


def _parse(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except (json.JSONDecodeError, TypeError):
        return arguments


def _ms(t: float | None, origin: float) -> float | None:
    return None if t is None else round((t - origin) * 1000.0, 1)


def _contains(haystack: str, needle: str) -> bool:
    return normalize_text(needle) in normalize_text(haystack)


def scenario_metrics(scenario: Scenario, mode: str, rec: Recording) -> list[TurnMetrics]:
    """Metrics for every turn the user spoke."""
    return [_turn(scenario, mode, rec, i) for i in range(len(rec.user_turns))]


def _turn(scenario: Scenario, mode: str, rec: Recording, i: int) -> TurnMetrics:
    turns = rec.user_turns
    user = turns[i]
    eos = user.end_of_speech
    end = turns[i + 1].speech_start if i + 1 < len(turns) else rec.session_end
    fact_end = end
    j = i + 1
    while j < len(turns) and turns[j].barge_in:
        fact_end = turns[j + 1].speech_start if j + 1 < len(turns) else rec.session_end
        j += 1
    in_turn = sorted((s for s in rec.sentences if eos <= s.start < end), key=lambda s: s.start)
    in_facts = sorted(
        (s for s in rec.sentences if eos <= s.start < fact_end), key=lambda s: s.start
    )

    facts = scenario.expected_facts(i)
    expects = [e for f in facts for e in f.expect]
    answer = next((s for s in in_facts if any(_contains(s.heard, e) for e in expects)), None)
    heard_so_far, fact_done, facts_heard = "", {}, {}
    for sentence in in_facts:
        heard_so_far += " " + sentence.heard
        for fact in facts:
            if fact.say not in fact_done and all(_contains(heard_so_far, e) for e in fact.expect):
                fact_done[fact.say] = sentence.start
    for fact in facts:
        facts_heard[fact.say] = fact.say in fact_done
    complete = max(fact_done.values()) if facts and len(fact_done) == len(facts) else None

    turn_done = max((s.end for s in in_turn), default=None)
    dead_air = _dead_air(eos, in_turn, turn_done if turn_done is not None else end)

    call_end = end
    calls = [c for c in rec.tool_calls if user.speech_start <= c.start < call_end]
    expected_args = _expected_calls(scenario, i)
    matched: set[str] = set()
    missing = []
    by_id = {c.call_id: c for c in rec.tool_calls}
    for call_id, (name, args) in expected_args.items():
        hit = next(
            (
                c
                for c in calls
                if not c.speculative  # what the answer called, not what a fork guessed
                and c.name == name
                and _resolved_arguments(c, by_id) == args
                and c.call_id not in matched
            ),
            None,
        )
        if hit is None:
            missing.append(call_id)
        else:
            matched.add(hit.call_id)
    unexpected = [c.name for c in calls if c.call_id not in matched and not c.speculative]
    writes_once = all(
        sum(
            1
            for c in rec.tool_calls
            if c.name == name and c.arguments == args and not c.speculative
        )
        == 1
        for name, args in expected_args.values()
        if scenario.tool(name).kind == "write"
    )
    speculation = _speculation(rec, calls, user.speech_start, call_end)
    adopted_ids = {c for f in rec.forks for c in f.adopted_calls}
    return TurnMetrics(
        scenario=scenario.name,
        mode=mode,
        turn=i,
        user=user.text,
        end_of_speech=eos,
        first_audio_ms=_ms(in_turn[0].start if in_turn else None, eos),
        answer_audio_ms=_ms(answer.start if answer else None, eos),
        complete_answer_ms=_ms(complete, eos),
        turn_done_ms=_ms(turn_done, eos),
        dead_air_ms=round(dead_air * 1000.0, 1),
        tool_calls=[
            {
                "call_id": c.call_id,
                "name": c.name,
                "arguments": c.arguments,
                "outcome": c.outcome,
                "speculative": c.speculative,
                "adopted": c.call_id in adopted_ids,
                "start_ms": _ms(c.start, eos),
                "end_ms": _ms(c.end, eos),
            }
            for c in calls
        ],
        calls_ok=not missing,
        missing_calls=missing,
        unexpected_calls=unexpected,
        writes_once=writes_once,
        facts_heard=facts_heard,
        correct=not missing
        and writes_once
        and all(facts_heard.values())
        and speculation["speculative_writes"] == 0,
        speculation=speculation,
        heard=" ".join(s.heard for s in in_turn),
    )


def _dead_air(eos: float, sentences: Sequence[PlayedSentence], until: float) -> float:
    total, cursor = 0.0, eos
    for sentence in sentences:
        if sentence.start - cursor > DEAD_AIR_MIN_S:
            total += sentence.start - cursor
        cursor = max(cursor, sentence.end)
    if until - cursor > DEAD_AIR_MIN_S:
        total += until - cursor
    return total


def _expected_calls(scenario: Scenario, i: int) -> dict[str, tuple[str, Any]]:
    """Expected (tool, arguments) per call id of turn ``i``, filled from the scripted results."""
    results = scenario.static_results()
    out = {}
    for call in scenario.turns[i].calls:
        try:
            out[call.call_id] = (call.tool, scenario.scripted_arguments(call, results))
        except Unavailable:
            continue  # needs a failing call's result: it cannot be made
    return out


def _resolved_arguments(call: ToolCallRecord, by_id: dict[str, ToolCallRecord]) -> Any:
    """The call's arguments with each value naming another call's future replaced by what
    the scheduler passed: that call's result (its field of the argument's name if any)."""
    if not isinstance(call.arguments, dict):
        return call.arguments
    out = {}
    for key, value in call.arguments.items():
        source = by_id.get(value) if isinstance(value, str) else None
        if source is not None and source.outcome == "resolved":
            result = source.result
            value = result[key] if isinstance(result, dict) and key in result else result
        out[key] = value
    return out


def _speculation(
    rec: Recording, calls: Sequence[ToolCallRecord], start: float, end: float
) -> dict[str, Any]:
    forks = [f for f in rec.forks if start <= f.opened < end]
    adopted = {c for f in forks for c in f.adopted_calls}
    speculative = [c for c in calls if c.speculative]
    discarded = [c for c in speculative if c.call_id not in adopted]
    main_tokens = sum(tokens for t, tokens in rec.responses if start <= t < end)
    return {
        "forks_opened": len(forks),
        "forks_adopted": sum(1 for f in forks if f.outcome == "adopted"),
        "forks_adopted_whole": sum(1 for f in forks if f.whole),
        "forks_discarded": sum(1 for f in forks if f.outcome == "discarded"),
        "speculative_calls": len(speculative),
        "adopted_calls": sum(1 for c in speculative if c.call_id in adopted),
        "discarded_calls": len(discarded),
        "wasted_tool_s": round(
            sum((c.end if c.end is not None else end) - c.start for c in discarded), 3
        ),
        "fork_tokens": sum(f.tokens for f in forks),
        "main_tokens": main_tokens,
        "speculative_writes": sum(1 for c in speculative if c.kind == "write"),
    }


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def summarize(turns: Sequence[TurnMetrics]) -> dict[str, Any]:
    """Per-mode (and per scenario and mode) medians, correctness rates, and ratios of
    the per-mode medians to the ``sync`` baseline (else the first mode) and
    speculative/async."""
    modes = list(dict.fromkeys(t.mode for t in turns))
    medians = {m: _medians([t for t in turns if t.mode == m]) for m in modes}
    per_scenario: dict[str, dict[str, Any]] = {}
    for t in turns:
        per_scenario.setdefault(t.scenario, {})
    for name in per_scenario:
        for m in modes:
            subset = [t for t in turns if t.scenario == name and t.mode == m]
            if subset:
                per_scenario[name][m] = _medians(subset)
    baseline = BASELINE_MODE if BASELINE_MODE in modes else (modes[0] if modes else None)
    pairs = [(m, baseline) for m in modes if baseline is not None and m != baseline]
    if "speculative" in modes and "async" in modes and baseline != "async":
        pairs.append(("speculative", "async"))
    ratios = {f"{a}/{b}": _ratios(medians[a], medians[b]) for a, b in pairs}
    return {"medians": medians, "per_scenario": per_scenario, "ratios": ratios}


def _medians(turns: Sequence[TurnMetrics]) -> dict[str, Any]:
    out: dict[str, Any] = {key: _median(getattr(t, key) for t in turns) for key in LATENCY_KEYS}
    out["turns"] = len(turns)
    out["correct_rate"] = round(sum(t.correct for t in turns) / len(turns), 3) if turns else None
    return out


def _ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in LATENCY_KEYS:
        if a.get(key) is None or not b.get(key):
            out[key] = None
        else:
            out[key] = round(a[key] / b[key], 3)
    return out
