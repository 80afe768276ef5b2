"""Speculation on the voice path: async vs speculative, measured from the audio.

    .venv/bin/python bench/voice_speculation.py [--llm oracle|embedded] [--repeat 3]
        [--cpu-blind] [--callers 3] [--gap-s 7] [--ttft-ms 300] [--json out.json]

Callers are synthesized with piper (deterministic: noise off): each asks for a
lookup whose key (an order number, an account number, a city) comes early in a
long sentence. The recording runs through the real pipeline (Silero VAD,
streaming faster-whisper whose LocalAgreement-committed partials are what
forks open on, the end-of-turn model, piper) in real time, against the oracle
LLM (``--llm oracle``: a scripted OpenAI-compatible server standing for a
hosted model; its turn texts and call keys come from the offline Whisper
transcript of each caller, and a caller whose key Whisper does not write as
expected is skipped and reported) or the embedded model (``--llm embedded``:
the product's own local server, ``--model``, with the product's prompt; its
requests run on this machine's cores, so forks compete with the ASR and the
CPU-aware fork policy applies).

Modes run interleaved (the order rotates per repeat), so their ratios come
from one stretch of machine load: ``async``, ``speculative`` and, with
``--cpu-blind``, ``speculative-cpu-blind`` (the fork policy told the LLM is
remote: it never holds a fork back for the CPU; the before of the CPU-aware
policy).

Per caller, from the audio: ``voice_to_voice_ms`` (the caller's last audible
sample → the agent's first audible sample) and ``answer_ms`` (→ the first
audible agent sample after the sentence carrying the looked-up fact was
planned). Per mode: their p50/p95, the ASR's final decode (its own duration:
what a fork competing for the CPU slows down), the speculation accounting from
the ledger (forks, speculative calls, adopted, forks held back for the CPU),
and the process CPU (user+system over wall; 1.0 = one core; the embedded
server's process not included). Prints JSON; ratios speculative/async of the
p50s.
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

import voice_latency  # noqa: E402
from voice_latency import (  # noqa: E402
    RATE,
    build_recording,
    offline_transcript,
    spans,
)

from fsm import MonotonicClock  # noqa: E402
from ledger import entries as le  # noqa: E402
from voice_agent.bench.oracle import MODEL_ID, OracleServer  # noqa: E402
from voice_agent.bench.runner import build_registry  # noqa: E402
from voice_agent.bench.scenario import Scenario  # noqa: E402
from voice_agent.config import Config, load_config, render_system_prompt  # noqa: E402
from voice_agent.transports.files import AudioRunResult, run_audio  # noqa: E402

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


def synthesize(text: str, length_scale: float) -> np.ndarray:
    """The caller's speech with piper's noise off: the same audio on every run and machine."""
    from piper import SynthesisConfig

    from peripherals.resample import resample

    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(voice_latency._voice().synthesize(text, syn_config=config))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return resample(audio, chunks[0].sample_rate, RATE) * 0.5


# build_recording (voice_latency's) places the callers with this synthesis too
voice_latency.synthesize = synthesize

GAP_AFTER_S = 7.0  # silence after each caller (oracle): room for the answer, seconds
EMBEDDED_GAP_AFTER_S = 15.0  # the embedded model answers slower (two requests per lookup)
MODES = ("async", "speculative")
CPU_BLIND = "speculative-cpu-blind"


def build(
    ttft_ms: float, n_callers: int, gap_s: float
) -> tuple[np.ndarray, list[Any], Scenario, list[str], list[Any]]:
    items, turns, tools, skipped, used = [], [], [], [], []
    at = 1.0
    for text, tool, arg, pattern, latency, result, say, _ in CALLERS[:n_callers]:
        heard = offline_transcript(synthesize(text, 1.0))
        m = re.search(pattern, heard)
        if m is None:
            skipped.append(f"{tool}: Whisper wrote {heard!r}, no key matching {pattern}")
            continue
        used.append((text, tool, arg, pattern, latency, result, say, _))
        items.append((at, text, 1.0, "question"))
        at += len(synthesize(text, 1.0)) / RATE + gap_s
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


def config_for(mode: str, llm: dict[str, Any], system_prompt: str) -> Config:
    """The product's config with ``mode`` (``speculative-cpu-blind``: speculative whose fork
    policy takes the LLM for remote) and the LLM endpoint ``llm``."""
    speculation: dict[str, Any] = {}
    if mode == CPU_BLIND:
        speculation["fork_llm"] = "remote"
    elif llm.get("model") == MODEL_ID:
        speculation["fork_llm"] = "remote"  # the oracle stands for a hosted model
    return load_config(
        None,
        environ={},
        overrides={
            "llm": llm,
            "agent": {
                "mode": "speculative" if mode == CPU_BLIND else mode,
                "system_prompt": system_prompt,
                "speculation": speculation,
            },
            "ledger": {"persist": False},
        },
    )


async def run_mode(
    audio: np.ndarray, scenario: Scenario, mode: str, llm: dict[str, Any], system_prompt: str
) -> tuple[AudioRunResult, float]:
    tools = build_registry(scenario, MonotonicClock(), [])
    config = config_for(mode, llm, system_prompt)
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
        "partial_forks": sum(isinstance(x, le.ForkOpened) and x.trigger == "partial" for x in e),
        "speculative_calls": sum(x.speculative for x in starts),
        "adopted_calls": len(adopted),
        "speculative_writes": sum(x.speculative and x.kind == "write" for x in starts),
        "turns_with_forks_held_back": sum(
            isinstance(x, le.Note) and x.text.startswith("fork held back") for x in e
        ),
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


async def run_all(
    args: argparse.Namespace,
    audio: np.ndarray,
    placed: list[Any],
    scenario: Scenario,
    callers: list[Any],
    llm: dict[str, Any],
    system_prompt: str,
) -> dict[str, Any]:
    modes = [*MODES, *([CPU_BLIND] if args.cpu_blind else [])]
    report: dict[str, Any] = {}
    for repeat in range(args.repeat):
        shift = repeat % len(modes)  # rotate the order: drift in the machine's load spreads
        for mode in modes[shift:] + modes[:shift]:
            result, cpu = await run_mode(audio, scenario, mode, llm, system_prompt)
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
            entry = report.setdefault(
                mode, {"rows": [], "cpu": [], "accounting": [], "asr_final_decode_ms": []}
            )
            entry["rows"] += rows
            entry["cpu"].append(round(cpu, 2))
            entry["accounting"].append(accounting(result))
            entry["asr_final_decode_ms"] += [
                round(u.decode_s * 1000) for u in result.utterances if u.decode_s is not None
            ]
            print(f"{mode} run {repeat}: {rows} cpu {cpu:.2f}", file=sys.stderr)
    return report


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    gap = args.gap_s or (EMBEDDED_GAP_AFTER_S if args.llm == "embedded" else GAP_AFTER_S)
    audio, placed, scenario, skipped, callers = build(args.ttft_ms, args.callers, gap)
    report: dict[str, Any] = {"llm": args.llm, "skipped": skipped, "load_before": _load()}
    if args.llm == "oracle":
        async with OracleServer(scenario) as oracle:
            llm = {"base_url": oracle.base_url, "model": MODEL_ID, "max_retries": 0}
            report["modes"] = await run_all(
                args, audio, placed, scenario, callers, llm, "You are a helpful agent."
            )
    else:
        from voice_agent.local_llm.launcher import LocalLlmServer

        base = load_config(None, environ={})
        model = args.model or base.local_llm.model
        report["model"] = model
        async with LocalLlmServer(
            model=model, threads=base.local_llm.threads, ctx=base.local_llm.ctx,
            startup_timeout_s=600,
        ) as server:  # fmt: skip
            llm = {
                "base_url": server.base_url,
                "model": server.model_name,
                "max_retries": 0,
                "temperature": 0.0,
                "context_tokens": base.local_llm.ctx,
                # a loaded 2-core machine stalls a local stream for seconds: generous limits
                "timeout_s": 120,
                "first_token_timeout_s": 60,
                "stall_timeout_s": 60,
            }
            report["modes"] = await run_all(
                args, audio, placed, scenario, callers, llm, render_system_prompt(base.agent)
            )
    report["load_after"] = _load()
    for entry in report["modes"].values():
        rows = entry["rows"]
        entry["voice_to_voice_ms"] = pcts(
            [r["voice_to_voice_ms"] for r in rows if r["voice_to_voice_ms"] is not None]
        )
        entry["answer_ms"] = pcts([r["answer_ms"] for r in rows if r["answer_ms"] is not None])
        entry["answered"] = f"{sum(r['answer_ms'] is not None for r in rows)}/{len(rows)}"
        entry["asr_final_decode"] = pcts(entry.pop("asr_final_decode_ms"))
    a = report["modes"]["async"]
    ratios: dict[str, Any] = {}
    for mode, entry in report["modes"].items():
        if mode == "async":
            continue
        ratios[mode] = {
            f"{k}_{q}": round(entry[k][q] / a[k][q], 3)
            for k in ("voice_to_voice_ms", "answer_ms", "asr_final_decode")
            for q in ("p50", "p95")
            if entry[k].get(q) and a[k].get(q)
        }
    report["over_async"] = ratios
    return report


def _load() -> str:
    import os

    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def emit_report(report: dict[str, Any], json_path: str | None) -> None:
    """Print ``report`` as JSON and also write it to ``json_path`` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llm", choices=("oracle", "embedded"), default="oracle")
    parser.add_argument("--model", help="embedded model (default: the config's local_llm.model)")
    parser.add_argument("--ttft-ms", type=float, default=300.0, help="oracle time to first token")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--callers", type=int, default=len(CALLERS), help="first N callers")
    parser.add_argument("--gap-s", type=float, default=0.0, help="silence after each caller")
    parser.add_argument(
        "--cpu-blind", action="store_true", help="also run speculative with the CPU policy off"
    )
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    emit_report(asyncio.run(main_async(args)), args.json)


if __name__ == "__main__":
    main()
