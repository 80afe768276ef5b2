"""Run scenarios through the real engine against the oracle LLM.

Per (scenario, mode): start the ``OracleServer``; build the ``Agent`` with
its real ``LlmClient`` over HTTP to the oracle, the scenario's tools
(scripted: per call, the first ``cases`` entry whose ``when`` matches the
arguments, else the tool's own behaviour: sleep ``latency_ms`` on the clock,
then return ``result``, raise ``error`` or hang), a ``SimulatedSpeechOutput``
and a ``SimulatedUser``; run until the user has spoken every turn and the
agent is idle; compute metrics.

Time: by default the bench runs on virtual time (``fsm.AutojumpClock``): the
event loop jumps to the next deadline whenever every task waits, so a
scenario takes milliseconds, and the same scenario gives the same report
(apart from the ``wall_*`` stamps). Nothing is faked for it: the OpenAI
client still speaks HTTP and SSE to the oracle over a 127.0.0.1 socket, and
the kernel hands each write to the reader before the loop can jump.
``realtime=True`` (``--realtime``) runs on ``MonotonicClock`` and measures
the engine's own CPU overhead too (virtual time hides it: CPU work takes no
virtual time).

Fairness: before the first timed run, one untimed warm-up run of the first
scenario in every mode pays the process's cold start (imports, first client).

``run_bench`` runs many and writes the JSON report and the timelines.
``main(args)`` is what ``voice-agent bench`` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fsm import AutojumpClock, Clock, MonotonicClock, fail_after
from ledger import JsonlSink, Ledger
from ledger import entries as le
from voice_agent.agent import Agent
from voice_agent.bench.metrics import (
    Recording,
    TurnMetrics,
    decodes_from_oracle,
    forks_from_ledger,
    responses_from_ledger,
    scenario_metrics,
    summarize,
    tool_calls_from_ledger,
)
from voice_agent.bench.oracle import MODEL_ID, OracleServer
from voice_agent.bench.scenario import (
    Scenario,
    ScenarioError,
    ToolDef,
    load_scenario,
    scenario_json_schema,
)
from voice_agent.bench.sim import SimulatedSpeechOutput, SimulatedUser
from voice_agent.bench.timeline import write_timelines
from voice_agent.config import LlmConfig, Mode, load_config
from voice_agent.llm import LlmClient
from voice_agent.tools import ToolRegistry, ToolSpec

log = logging.getLogger(__name__)

MODES: tuple[Mode, ...] = ("sync", "async", "speculative")
DEFAULT_SCENARIO_DIR = Path("bench/scenarios")


class ScriptedToolError(RuntimeError):
    """Raised by a scenario tool that is scripted to fail (``error:``)."""


@dataclass
class ScenarioResult:
    """One run of one scenario in one mode."""

    scenario: str
    mode: str
    turns: list[TurnMetrics]
    recording: Recording
    oracle: list[dict[str, Any]]
    tool_invocations: list[dict[str, Any]]
    error: str | None = None
    ledger_path: str | None = None
    repeat: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0  # real seconds the run took (not deterministic: a wall-clock stamp)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: per-turn metrics plus the raw timings (clock seconds)."""
        rec = self.recording
        return {
            "scenario": self.scenario,
            "mode": self.mode,
            "repeat": self.repeat,
            "error": self.error,
            "ledger": self.ledger_path,
            "wall_s": round(self.wall_s, 3),
            "turns": [t.to_json() for t in self.turns],
            "raw": {
                "user_turns": [asdict(t) for t in rec.user_turns],
                "sentences": [asdict(s) for s in rec.sentences],
                "tool_calls": [asdict(c) for c in rec.tool_calls],
                "decodes": [asdict(d) for d in rec.decodes],
                "forks": [asdict(f) for f in rec.forks],
                "session_end": rec.session_end,
                "oracle": self.oracle,
                "tool_invocations": self.tool_invocations,
            },
        }


def build_registry(
    scenario: Scenario, clock: Clock, invocations: list[dict[str, Any]]
) -> ToolRegistry:
    """The scenario's tools as engine tools; every invocation is appended to ``invocations``."""
    registry = ToolRegistry()
    for tool in scenario.tools:
        registry.add(
            ToolSpec(
                name=tool.name,
                description=tool.description,
                parameters=tool.parameters,
                fn=_scripted(tool, clock, invocations),
                kind=tool.kind,
                on_interrupt=tool.on_interrupt,
                timeout_s=tool.timeout_s,
            )
        )
    return registry


def _scripted(tool: ToolDef, clock: Clock, invocations: list[dict[str, Any]]) -> Callable[..., Any]:
    async def scripted_tool(**arguments: Any) -> Any:
        behaviour = tool.behaviour(arguments)
        record: dict[str, Any] = {
            "name": tool.name,
            "arguments": arguments,
            "case": tool.case_index(arguments),
            "start": clock.now(),
            "end": None,
            "outcome": "running",
        }
        invocations.append(record)
        try:
            await clock.sleep(behaviour.latency_ms / 1000)
            if behaviour.hang:
                await asyncio.Event().wait()  # never set: runs until the engine cancels it
            if behaviour.error is not None:
                record["outcome"] = "raised"
                raise ScriptedToolError(behaviour.error)
            record["outcome"] = "returned"
            return behaviour.result
        except asyncio.CancelledError:
            record["outcome"] = "cancelled"
            raise
        finally:
            record["end"] = clock.now()

    scripted_tool.__name__ = tool.name
    return scripted_tool


async def run_scenario(
    scenario: Scenario,
    mode: Mode,
    out_dir: Path | None = None,
    *,
    clock: Clock | None = None,
    repeat: int = 0,
) -> ScenarioResult:
    """Run ``scenario`` once in ``mode``; never raises for an engine failure
    (it is reported in ``error`` with the metrics of what did happen)."""
    clock = clock or MonotonicClock()
    wall_start = time.perf_counter()
    invocations: list[dict[str, Any]] = []
    registry = build_registry(scenario, clock, invocations)
    session_id = f"bench-{scenario.name}-{mode}-{repeat}"
    sinks = []
    ledger_path: Path | None = None
    if out_dir is not None:
        _make_dir(out_dir)
        ledger_path = out_dir / f"{scenario.name}__{mode}__{repeat}.ledger.jsonl"
        ledger_path.unlink(missing_ok=True)  # a run's ledger, not appended to an earlier run's
        sinks.append(JsonlSink(ledger_path))
    ledger = Ledger(session_id, clock, sinks=sinks)
    ledger.append(
        le.SessionStarted(
            session_id=session_id,
            started_at=datetime.now(UTC).isoformat(),
            meta={"mode": mode, "transport": "bench", "scenario": scenario.name},
        )
    )
    output = SimulatedSpeechOutput(scenario.peripherals, clock)
    error: str | None = None
    async with OracleServer(scenario, clock) as oracle:
        llm = LlmClient(
            LlmConfig.model_validate({"base_url": oracle.base_url, "model": MODEL_ID}), clock=clock
        )
        # The product's own agent settings (configs/default.yaml + VOICE_AGENT__AGENT__* overrides),
        # with the scenario's mode and system prompt.
        config = load_config().agent.model_copy(
            update={"mode": mode, "system_prompt": scenario.system_prompt}
        )
        # The oracle stands for a hosted model: a fork's request costs this machine nothing
        # (it listens on loopback only because it runs here).
        config = config.model_copy(
            update={"speculation": config.speculation.model_copy(update={"fork_llm": "remote"})}
        )
        agent = Agent(config, llm, registry, output, ledger, clock)
        user = SimulatedUser(scenario, agent.post, clock, agent.is_idle)
        try:
            async with fail_after(clock, scenario.timeout_s):
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(output.run(), name="bench-output")
                    user_task = tg.create_task(user.run(), name="bench-user")
                    await (
                        agent.run()
                    )  # returns after the user's SessionEnded (or the agent ends itself)
                    if not user_task.done():
                        error = f"the agent ended before the user finished (state {agent.state})"
                        user_task.cancel()
                    await output.aclose()
        except* TimeoutError:
            error = f"timed out after {scenario.timeout_s} s"
        except* Exception as group:
            error = "; ".join(f"{type(e).__name__}: {e}" for e in group.exceptions)
            log.error("bench run %s/%s failed: %s", scenario.name, mode, error)
        finally:
            await agent.aclose()
            await output.aclose()
            await llm.aclose()
            ledger.close()
            for sink in sinks:
                sink.close()
        session_end = clock.now()
        recording = Recording(
            user_turns=user.turns,
            sentences=output.sentences,
            tool_calls=tool_calls_from_ledger(ledger.entries),
            decodes=decodes_from_oracle(oracle.exchanges),
            forks=forks_from_ledger(ledger.entries),
            session_end=session_end,
            responses=responses_from_ledger(ledger.entries),
        )
        exchanges = [e.to_json() for e in oracle.exchanges]
    trace = agent.trace
    return ScenarioResult(
        scenario=scenario.name,
        mode=mode,
        turns=scenario_metrics(scenario, mode, recording),
        recording=recording,
        oracle=exchanges,
        tool_invocations=invocations,
        error=error,
        ledger_path=str(ledger_path) if ledger_path else None,
        repeat=repeat,
        wall_s=time.perf_counter() - wall_start,
        extra={
            # The engine's own overhead: post → dispatch start, and time inside actions.
            "engine_queued_ms": [r.queued_s * 1000 for r in trace],
            "engine_action_ms": [r.duration_s * 1000 for r in trace],
        },
    )


async def run_bench(
    paths: Sequence[str | Path],
    modes: Sequence[Mode],
    json_out: str | Path | None,
    out_dir: str | Path | None,
    *,
    repeat: int = 1,
    clock: Clock | None = None,
    warmup: bool = True,
) -> dict[str, Any]:
    """Run every scenario in every mode (one at a time: timings must not
    compete for the CPU); write the JSON report and the timelines; return
    the report.

    ``clock`` is the time of every run (default real time; ``main`` runs on
    an ``AutojumpClock`` unless ``--realtime``). ``warmup`` first runs the
    first scenario once in every mode, untimed, so the process's cold start
    is not charged to the first timed run (sync, which always runs first).
    ``paths`` may name folders: every ``*.yaml`` / ``*.yml`` in them runs.
    """
    clock = clock or MonotonicClock()
    scenarios = [load_scenario(p) for p in scenario_paths(paths)]
    results: list[ScenarioResult] = []
    out = Path(out_dir) if out_dir is not None else None
    wall_start = time.perf_counter()
    if warmup and scenarios:
        for mode in modes:
            log.info("bench: warm-up %s / %s (untimed)", scenarios[0].name, mode)
            await run_scenario(scenarios[0], mode, None, clock=clock, repeat=-1)
    for scenario in scenarios:
        for n in range(repeat):
            for mode in modes:
                log.info("bench: %s / %s (run %d)", scenario.name, mode, n)
                results.append(await run_scenario(scenario, mode, out, clock=clock, repeat=n))
    turns = [t for r in results for t in r.turns]
    report = {
        "modes": list(modes),
        "clock": "virtual" if isinstance(clock, AutojumpClock) else "real",
        "warmup": "first scenario once per mode, untimed" if warmup else "none",
        "scenarios": [r.to_json() for r in results],
        "summary": summarize(turns),
        "engine": engine_overhead(results),
        "errors": [f"{r.scenario}/{r.mode}: {r.error}" for r in results if r.error],
        "wall_s": round(time.perf_counter() - wall_start, 3),
    }
    if out is not None:
        write_timelines(out, [(r.turns, r.recording) for r in results if r.repeat == 0])
    if json_out is not None:
        _write_json(Path(json_out), report)
    return report


def scenario_paths(paths: Sequence[str | Path]) -> list[Path]:
    """``paths`` with every folder replaced by its ``*.yaml`` / ``*.yml`` files, sorted.

    Raises ScenarioError for a path that does not exist or a folder without scenarios.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
            if not inside:
                raise ScenarioError(f"{path}: no scenario files (*.yaml, *.yml) in this folder")
            found.extend(inside)
        elif path.exists():
            found.append(path)
        else:
            raise ScenarioError(f"{path}: no such file or folder")
    return found


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 3)


def engine_overhead(results: Sequence[ScenarioResult]) -> dict[str, Any]:
    """Event dispatch latency (post → handling) and action time over every event of every run."""
    queued = [v for r in results for v in r.extra.get("engine_queued_ms", [])]
    action = [v for r in results for v in r.extra.get("engine_action_ms", [])]
    return {
        "events": len(queued),
        "dispatch_latency_ms": {"p50": _percentile(queued, 0.5), "p99": _percentile(queued, 0.99)},
        "action_ms": {"p50": _percentile(action, 0.5), "p99": _percentile(action, 0.99)},
    }


def _make_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


def main(args: argparse.Namespace) -> int:
    """``voice-agent bench``: ``scenarios`` (files or folders), ``modes``, ``json_out``, ``out``,
    ``repeat``, ``schema``, ``realtime``, ``no_warmup``."""
    if getattr(args, "schema", False):
        print(json.dumps(scenario_json_schema(), indent=2))
        return 0
    paths = list(args.scenarios) or [DEFAULT_SCENARIO_DIR]
    modes = [m.strip() for m in str(args.modes).split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        print(f"unknown mode(s) {unknown}; choose from {list(MODES)}", file=sys.stderr)
        return 2
    realtime = bool(getattr(args, "realtime", False))
    virtual = AutojumpClock()
    clock: Clock = MonotonicClock() if realtime else virtual

    async def bench() -> dict[str, Any]:
        return await run_bench(
            paths,
            modes,  # type: ignore[arg-type]  # checked against MODES above
            args.json_out,
            args.out,
            repeat=max(1, args.repeat),
            clock=clock,
            warmup=not getattr(args, "no_warmup", False),
        )

    try:
        report = asyncio.run(bench()) if realtime else virtual.run(bench())
    except ScenarioError as exc:
        print(f"voice-agent: {exc}", file=sys.stderr)
        return 2
    _print_summary(report)
    return 1 if report["errors"] else 0


def _print_summary(report: dict[str, Any]) -> None:
    keys = (
        "first_audio_ms",
        "answer_audio_ms",
        "complete_answer_ms",
        "turn_done_ms",
        "dead_air_ms",
    )

    def cell(v: float | None, fmt: str) -> str:
        return f"{'-' if v is None else format(v, fmt):>9}"

    print(
        f"{'scenario':<18} {'mode':<12} " + " ".join(f"{k[:-3][:9]:>9}" for k in keys) + "  correct"
    )
    modes = report["modes"]
    for scenario, per_mode in report["summary"]["per_scenario"].items():
        for mode in modes:
            med = per_mode.get(mode)
            if med:
                cells = " ".join(cell(med[k], ".0f") for k in keys)
                print(f"{scenario:<18} {mode:<12} {cells}  {med['correct_rate']}")
        base = per_mode.get(modes[0])
        for mode in modes[1:]:
            med = per_mode.get(mode)
            if base and med:
                ratios = [
                    med[k] / base[k] if med[k] is not None and base[k] else None for k in keys
                ]
                print(
                    f"{scenario:<18} {mode + '/' + modes[0]:<12} "
                    + " ".join(cell(r, ".2f") for r in ratios)
                )
    for mode, med in report["summary"]["medians"].items():
        cells = " ".join(cell(med[k], ".0f") for k in keys)
        print(f"{'(all turns)':<18} {mode:<12} {cells}  {med['correct_rate']}")
    engine = report.get("engine")
    if engine:
        d, a = engine["dispatch_latency_ms"], engine["action_ms"]
        print(
            f"engine: {engine['events']} events, dispatch latency p50 {d['p50']} ms / p99 {d['p99']} ms, "
            f"action time p50 {a['p50']} ms / p99 {a['p99']} ms"
        )
    print(
        f"{len(report['scenarios'])} runs on {report['clock']} time in {report['wall_s']} s wall "
        f"(warm-up: {report['warmup']})"
    )
    for error in report["errors"]:
        print(f"error: {error}", file=sys.stderr)
