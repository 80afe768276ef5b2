"""Speculation on the voice path: async vs speculative, measured from the audio.

    .venv/bin/python bench/voice_speculation.py [--ttft-ms 300] [--json out/voice_speculation.json]

Callers are synthesized with piper: each asks for a lookup whose key (an order
number, an account number, a city) comes early in a long sentence. The
recording runs through the real pipeline (Silero VAD, streaming faster-whisper
whose LocalAgreement-committed partials are what forks open on, piper) in real
time, against the oracle LLM, once with ``agent.mode: async`` and once with
``speculative``. The oracle's turn texts and the call keys are taken from the
offline Whisper transcript of each caller (so the oracle recognises what the
streaming ASR hears); a caller whose key Whisper does not write as expected is
skipped and reported.

Per caller, from the audio: ``voice_to_voice_ms`` (the caller's last audible
sample → the agent's first audible sample) and ``answer_ms`` (→ the first
audible agent sample after the sentence carrying the looked-up fact was
planned). Plus the speculation accounting from the ledger and the process CPU
(user+system over wall; 1.0 = one core) of each run. Prints JSON.

The embedded LLM is not run here (see docs/speculation.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from voice_latency import (  # noqa: E402
    RATE,
    build_recording,
    offline_transcript,
    spans,
    synthesize,
)

from fsm import MonotonicClock  # noqa: E402
from ledger import entries as le  # noqa: E402
from voice_agent.bench.oracle import MODEL_ID, OracleServer  # noqa: E402
from voice_agent.bench.runner import build_registry  # noqa: E402
from voice_agent.bench.scenario import Scenario  # noqa: E402
from voice_agent.config import load_config  # noqa: E402
from voice_agent.transports.files import run_audio  # noqa: E402

# (what the caller says, tool, argument, key pattern in the transcript, latency ms, result,
#  the answer sentence, a word of it that must be heard)
CALLERS = [
    (
        "Hi, I'm calling about order 4417, it was supposed to arrive on Monday and I still "
        "haven't seen it, so can you tell me where it is right now?",
        "get_order_status",
        "order_id",
        r"\b\d[\d,]{2,}\d\b",
        2500,
        {"status": "at the Denver depot", "eta": "tomorrow"},
        "Your order is at the Denver depot and arrives tomorrow.",
        "depot",
    ),
    (
        "My account number is 58213 and I would like to know my current balance and when the "
        "next payment is due, if that's possible.",
        "get_balance",
        "account",
        r"\b\d[\d,]{3,}\d\b",
        2000,
        {"balance": "$61.17", "due": "June 3"},
        "Your balance is $61.17, due on June 3.",
        "61",
    ),
    (
        "Could you check the weather in Denver for tomorrow, because I'm driving there early "
        "in the morning with my kids and I'm a bit worried about snow?",
        "get_weather",
        "city",
        r"\bDenver\b",
        1800,
        {"forecast": "light snow", "high_f": 31},
        "Tomorrow in Denver expect light snow with a high of 31.",
        "snow",
    ),
]
GAP_AFTER_S = 7.0  # silence after each caller: room for the answer (s)


def build(ttft_ms: float) -> tuple[np.ndarray, list[Any], Scenario, list[str], list[Any]]:
    items, turns, tools, skipped, used = [], [], [], [], []
    at = 1.0
    for text, tool, arg, pattern, latency, result, say, _ in CALLERS:
        heard = offline_transcript(synthesize(text, 1.0))
        m = re.search(pattern, heard)
        if m is None:
            skipped.append(f"{tool}: Whisper wrote {heard!r}, no key matching {pattern}")
            continue
        used.append((text, tool, arg, pattern, latency, result, say, _))
        items.append((at, text, 1.0, "question"))
        at += len(synthesize(text, 1.0)) / RATE + GAP_AFTER_S
        tools.append(
            {
                "name": tool,
                "description": f"Look up {arg}.",
                "parameters": {
                    "type": "object",
                    "properties": {arg: {"type": "string"}},
                    "required": [arg],
                },
                "latency_ms": latency,
                "result": result,
            }
        )
        turns.append(
            {
                "user": heard,
                "filler": "Let me look that up for you.",
                "calls": [{"tool": tool, "arguments": {arg: "{{user:" + m.group(0) + "}}"}}],
                "answer": [{"say": say, "needs": [tool], "expect": [say.split()[-1].strip(".")]}],
            }
        )
    audio, placed = build_recording(items, at + 1.0)
    scenario = Scenario.model_validate(
        {
            "name": "voice_speculation",
            "oracle": {"ttft_ms": ttft_ms, "tokens_per_s": 60},
            "tools": tools,
            "turns": turns,
        }
    )
    return audio, placed, scenario, skipped, used


async def run_mode(audio: np.ndarray, scenario: Scenario, mode: str) -> tuple[Any, float]:
    tools = build_registry(scenario, MonotonicClock(), [])
    async with OracleServer(scenario) as oracle:
        config = load_config(
            None,
            environ={},
            overrides={
                "llm": {"base_url": oracle.base_url, "model": MODEL_ID, "max_retries": 0},
                "agent": {"mode": mode, "system_prompt": "You are a helpful agent."},
                "ledger": {"persist": False},
            },
        )
        ru0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        result = await run_audio(config, audio, RATE, realtime=True, tools=tools)
        ru1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return result, cpu / max(1e-9, wall1 - wall0)


def per_caller(result: Any, placed: list[Any], callers: list[Any]) -> list[dict[str, Any]]:
    out_spans = spans(result.agent_audio, gap_s=0.25)
    planned = [e for e in result.entries if isinstance(e, le.AgentTextPlanned)]
    rows = []
    for p, caller in zip(placed, callers, strict=True):
        word = caller[7]
        first = next((s for s, _ in out_spans if s > p.end_s), None)
        said = next((e for e in planned if word in e.text and e.t - result.t0 > p.end_s), None)
        answer = None
        if said is not None:
            planned_s = said.t - result.t0
            # the sentence starts in the first audible span that ends after it was planned
            answer = next((max(s, planned_s) for s, e in out_spans if e > planned_s), None)
        rows.append(
            {
                "caller": caller[1],
                "voice_to_voice_ms": None if first is None else round((first - p.end_s) * 1000),
                "answer_ms": None if answer is None else round((answer - p.end_s) * 1000),
            }
        )
    return rows


def accounting(result: Any) -> dict[str, Any]:
    e = result.entries
    starts = [x for x in e if isinstance(x, le.ToolCallStarted)]
    adopted = {s for x in e if isinstance(x, le.ForkAdopted) for s in x.adopted.values()}
    return {
        "forks": sum(isinstance(x, le.ForkOpened) for x in e),
        "speculative_calls": sum(x.speculative for x in starts),
        "adopted_calls": len(adopted),
        "speculative_writes": sum(x.speculative and x.kind == "write" for x in starts),
        "fork_tokens": sum(
            x.completion_tokens or 0
            for x in e
            if isinstance(x, le.ForkAdopted | le.ForkDiscarded) and not getattr(x, "whole", False)
        ),
    }


def pcts(values: list[float]) -> dict[str, Any]:
    v = sorted(values)
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "p50": round(statistics.median(v)),
        "p95": round(v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))]),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    audio, placed, scenario, skipped, callers = build(args.ttft_ms)
    report: dict[str, Any] = {"skipped": skipped, "modes": {}}
    for mode in ("async", "speculative"):
        for repeat in range(args.repeat):
            result, cpu = await run_mode(audio, scenario, mode)
            rows = per_caller(result, placed, callers)
            said = [
                (round(e.t - result.t0, 2), e.text)
                for e in result.entries
                if isinstance(e, le.AgentTextPlanned)
            ]
            print(
                f"{mode}: planned {said}; ends {[round(p.end_s, 2) for p in placed]}",
                file=sys.stderr,
            )
            entry = report["modes"].setdefault(mode, {"rows": [], "cpu": [], "accounting": []})
            entry["rows"] += rows
            entry["cpu"].append(round(cpu, 2))
            entry["accounting"].append(accounting(result))
            print(f"{mode} run {repeat}: {rows} cpu {cpu:.2f}", file=sys.stderr)
    for entry in report["modes"].values():
        rows = entry["rows"]
        entry["voice_to_voice_ms"] = pcts(
            [r["voice_to_voice_ms"] for r in rows if r["voice_to_voice_ms"] is not None]
        )
        entry["answer_ms"] = pcts([r["answer_ms"] for r in rows if r["answer_ms"] is not None])
    a, s = report["modes"]["async"], report["modes"]["speculative"]
    if a["answer_ms"].get("p50") and s["answer_ms"].get("p50"):
        report["speculative_over_async"] = {
            k: round(s[k]["p50"] / a[k]["p50"], 3) for k in ("voice_to_voice_ms", "answer_ms")
        }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
