"""Phone calls over the media-stream endpoint: latency, barge-in, capacity, CPU, memory.

Capacity, in one command (≤ 15 min: both LLMs, levels 1, 2, 3, … until the p95 degrades):

    .venv/bin/python bench/phone_load.py --capacity --llms oracle,local --turns 3 \
        --max-level 8 --budget-min 14 --json out/phone_capacity.json

Fixed levels of one LLM (and barge-in):

    .venv/bin/python bench/phone_load.py [--llm oracle|local] [--levels 1,2,3,4]
                                         [--turns 3] [--json out/phone_load.json]

One process runs ``voice-agent phone serve``'s server (a ``Worker`` with the
real Silero VAD, streaming faster-whisper and piper, models loaded once) and
N simulated Twilio callers (tests/voice/twilio_client.py: the Media Streams
protocol over a real WebSocket, 8 kHz μ-law, paced in real time). Each caller
asks ``--turns`` questions (piper voices), waits for the answer to finish,
pauses a second, asks the next. Calls start staggered over one second.

Per turn, from the audio the caller's side played: voice-to-voice = end of the
caller's speech (last audible frame it sent) → the first audible agent sample
it played. Per level: p50/p95 over all turns of all calls, CPU seconds per
minute of call (this process + the embedded LLM server, over call-minutes),
peak RSS (process + LLM server). ``sustained`` = the largest level whose p95
is within 20 % of level 1's. Barge-in (level 1, separate calls): the caller
speaks over a long answer; stop = caller's onset → the ``clear`` message
(and → the last agent audio it played).

``--llm oracle``: the scripted OpenAI-compatible oracle (300 ms to first
token, 60 tokens/s; answers one sentence) stands in for a remote LLM.
``--llm local``: the embedded llama.cpp model on this machine (it shares the
2 cores with ASR and TTS). Prints JSON.

``--capacity``: for each of ``--llms`` a fresh worker (models loaded, the
embedded LLM started for ``local``), a warm-up call, then 1, 2, 3, … calls
(up to ``--max-level``), stopping after the first level whose p95 is over
+20 % of one call's, or before a level that would not end within the LLM's
share of ``--budget-min`` (the one-call baseline asks twice ``--turns``
questions, as many as two calls, for a steadier p95). ``sustained_calls`` = the last level within +20 %
(every level before it too), with its p95; CPU seconds per call-minute (one
call; per level in the rows); memory per additional call (peak RSS slope over
the levels, the embedded LLM server included). The LLM-silence hold phrase is
pushed out (``agent.llm_hold_after_s``) so voice-to-voice is the answer's.
Each row carries the load average: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "voice"))

from twilio_client import TwilioCall  # noqa: E402
from voice_helpers import speech  # noqa: E402

from ledger import entries as le  # noqa: E402
from voice_agent.bench.oracle import MODEL_ID, OracleServer  # noqa: E402
from voice_agent.bench.scenario import Scenario  # noqa: E402
from voice_agent.config import Config, load_config  # noqa: E402
from voice_agent.transports.call import Call  # noqa: E402
from voice_agent.transports.media_stream import MediaStreamTransport  # noqa: E402
from voice_agent.transports.phone_server import PhoneServer  # noqa: E402
from voice_agent.worker import Worker  # noqa: E402

QUESTIONS = [
    ("What are your opening hours?", "We are open from nine to five, Monday to Friday."),
    ("Can I send a parcel to Canada?", "Yes, a parcel to Canada takes about a week."),
    ("How much does shipping to Canada cost?", "Shipping to Canada costs twelve dollars."),
    ("When are you open on Saturdays?", "On Saturdays we are open from ten to two."),
    ("I would like to cancel my subscription, please.", "Sure, I can help you cancel it."),
]
LONG_ANSWER = (
    "Your parcel left our warehouse in Denver on Monday morning. The carrier is United Parcel "
    "Service and the tracking number is in your email. It should arrive on Friday before noon."
)
INTERRUPTION = "Wait, I have another question."
ANSWER_TIMEOUT_S = 120.0
HOLD_OFF_S = 110.0  # LLM-silence hold phrase and deadline pushed out of the measurement (s)
DEGRADED = 1.2  # a level is sustained while its v2v p95 is within +20 % of one call's


def _scenario() -> Scenario:
    turns = [{"user": q, "answer": [{"say": a, "expect": [a.split()[1]]}]} for q, a in QUESTIONS]
    turns.append(
        {"user": "Where is my parcel?", "answer": [{"say": LONG_ANSWER, "expect": ["Denver"]}]}
    )
    return Scenario.model_validate(
        {"name": "phone_load", "oracle": {"ttft_ms": 300, "tokens_per_s": 60}, "turns": turns}
    )


def _config(base_url: str | None, ledger_dir: str, max_calls: int) -> Config:
    llm: dict[str, Any] = {"max_retries": 0}
    if base_url:
        llm.update({"base_url": base_url, "model": MODEL_ID})
    return load_config(
        None,
        environ={},
        overrides={
            "llm": llm,
            "agent": {
                "mode": "async",
                "system_prompt": "You are a helpful agent. Answer in one short sentence.",
                # v2v is measured to the answer: no "one moment" while the LLM is slow
                "llm_hold_after_s": HOLD_OFF_S,
                "llm_deadline_s": HOLD_OFF_S,
            },
            "ledger": {"directory": ledger_dir, "persist": True},
            "worker": {"max_calls": max_calls},
            "phone": {"port": 0},
        },
    )


class Usage:
    """CPU seconds and RSS of this process and its children (the embedded LLM server)."""

    def __init__(self) -> None:
        self.me = psutil.Process()

    def _procs(self) -> list[psutil.Process]:
        return [self.me, *self.me.children(recursive=True)]

    def cpu_s(self) -> float:
        total = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def rss_mb(self) -> float:
        total = 0
        for p in self._procs():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20


async def _wait_done(calls: dict[str, Call], sid: str) -> None:
    async with asyncio.timeout(ANSWER_TIMEOUT_S):
        while True:
            call = calls.get(sid)
            if call is not None and call.done():
                played = [e for e in call.agent.ledger.entries if isinstance(e, le.AgentTextPlayed)]
                if played and played[-1].seq > _wait_done.last.get(sid, -1):  # type: ignore[attr-defined]
                    _wait_done.last[sid] = played[-1].seq  # type: ignore[attr-defined]
                    return
            await asyncio.sleep(0.05)


_wait_done.last = {}  # type: ignore[attr-defined]


async def _one_call(
    server: PhoneServer,
    calls: dict[str, Call],
    n: int,
    turns: int,
    voices: dict[str, np.ndarray],
    delay: float,
) -> dict[str, Any]:
    sid = f"CA{n:032d}"
    v2v: list[float] = []
    async with TwilioCall(server.url, call_sid=sid, stream_sid=f"MZ{n:032d}") as caller:
        await caller.silence(0.3 + delay)
        for k in range(turns):
            q = QUESTIONS[(n + k) % len(QUESTIONS)][0]
            await caller.speak(voices[q], 16000)
            end = caller.speech_spans[-1][1]
            background = asyncio.ensure_future(caller.silence(ANSWER_TIMEOUT_S))
            try:
                await _wait_done(calls, sid)
                await asyncio.sleep(0.4)
            finally:
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
            first = caller.first_audio_after(end)
            if first is not None:
                v2v.append(first - end)
            await caller.silence(1.0)
        duration = caller.now()
        await caller.hang_up(timeout=60)
    return {"call": sid, "v2v_s": v2v, "duration_s": duration}


async def _barge_in(
    server: PhoneServer, calls: dict[str, Call], n: int, voices: dict[str, np.ndarray]
) -> dict[str, Any]:
    sid = f"CB{n:032d}"
    async with TwilioCall(server.url, call_sid=sid, stream_sid=f"MB{n:032d}") as caller:
        await caller.silence(0.3)
        await caller.speak(voices["Where is my parcel?"], 16000)
        end = caller.speech_spans[-1][1]
        background = asyncio.ensure_future(caller.silence(ANSWER_TIMEOUT_S))
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            while (first := caller.first_audio_after(end)) is None:
                await asyncio.sleep(0.02)
            while caller.now() < first + 1.5 + 0.3 * n:
                await asyncio.sleep(0.02)
        background.cancel()
        await asyncio.gather(background, return_exceptions=True)
        began = caller.now()  # the VAD may hear faint frames before the loudness onset
        await caller.speak(voices[INTERRUPTION], 16000)
        onset = caller.speech_spans[-1][0]
        await caller.silence(2.0)
        await caller.hang_up(timeout=60)
    clears = [t for t in caller.clears if t >= began]
    audible = [
        p.start + len(p.samples) / 8000
        for p in caller.played
        if p.start >= onset - 1
        and np.abs(p.samples).max(initial=0) > 0.01
        and p.start < onset + 1.5
    ]
    return {
        "clear_ms": (clears[0] - onset) * 1000 if clears else None,
        "last_audio_ms": (max(audible) - onset) * 1000 if audible else None,
    }


async def memory_only(args: argparse.Namespace) -> dict[str, Any]:
    """RSS as calls join one by one (each asks one question, then holds the line silent)."""
    usage = Usage()
    n = args.memory_only
    voices = {q: speech(q)[0] for q, _ in QUESTIONS}
    out: dict[str, Any] = {"rss_mb_by_calls": []}
    async with OracleServer(_scenario()) as oracle:
        config = _config(oracle.base_url, args.ledger_dir, n)
        out["rss_before_worker_mb"] = round(usage.rss_mb(), 1)
        async with Worker(config) as worker:
            calls: dict[str, Call] = {}

            def on_call(call: Call, transport: MediaStreamTransport) -> None:
                calls[transport.started.call_id] = call

            async with PhoneServer(worker, config.phone, on_call=on_call) as server:
                out["rss_mb_by_calls"].append(round(usage.rss_mb(), 1))
                callers = []
                holds = []
                for i in range(n):
                    caller = TwilioCall(
                        server.url, call_sid=f"CM{i:032d}", stream_sid=f"MM{i:032d}"
                    )
                    await caller.__aenter__()
                    callers.append(caller)
                    await caller.silence(0.3)
                    await caller.speak(voices[QUESTIONS[i % len(QUESTIONS)][0]], 16000)
                    hold = asyncio.ensure_future(caller.silence(600))
                    holds.append(hold)
                    await _wait_done(calls, caller.call_sid)
                    await asyncio.sleep(1.0)
                    out["rss_mb_by_calls"].append(round(usage.rss_mb(), 1))
                    print(out["rss_mb_by_calls"], file=sys.stderr, flush=True)
                for hold in holds:
                    hold.cancel()
                await asyncio.gather(*holds, return_exceptions=True)
                for caller in callers:
                    await caller.hang_up(timeout=60)
                    await caller.__aexit__(None, None, None)
    rss = out["rss_mb_by_calls"]
    out["rss_per_additional_call_mb"] = round((rss[-1] - rss[1]) / max(1, n - 1), 1)
    out["rss_first_call_mb"] = round(rss[1] - rss[0], 1)
    return out


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    return xs[min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))]


def _voices() -> dict[str, np.ndarray]:
    voices = {q: speech(q)[0] for q, _ in QUESTIONS}
    voices["Where is my parcel?"] = speech("Where is my parcel?")[0]
    voices[INTERRUPTION] = speech(INTERRUPTION)[0]
    return voices


async def _level(
    server: PhoneServer,
    calls: dict[str, Call],
    level: int,
    turns: int,
    voices: dict[str, np.ndarray],
    usage: Usage,
) -> dict[str, Any]:
    """``level`` simultaneous calls of ``turns`` questions each; one row of figures."""
    rng = random.Random(level)
    cpu0, t0 = usage.cpu_s(), time.monotonic()
    peak = [usage.rss_mb()]

    async def sample() -> None:
        while True:
            peak.append(usage.rss_mb())
            await asyncio.sleep(0.5)

    sampler = asyncio.ensure_future(sample())
    try:
        results = await asyncio.gather(
            *(
                _one_call(server, calls, level * 100 + i, turns, voices, rng.uniform(0, 1.0))
                for i in range(level)
            )
        )
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
    cpu = usage.cpu_s() - cpu0
    wall = time.monotonic() - t0
    call_min = sum(r["duration_s"] for r in results) / 60
    v2v = [x for r in results for x in r["v2v_s"]]
    row = {
        "calls": level,
        "turns": len(v2v),
        "v2v_p50_ms": round(1000 * statistics.median(v2v)) if v2v else None,
        "v2v_p95_ms": round(1000 * _pct(v2v, 0.95)) if v2v else None,  # type: ignore[operator]
        "v2v_max_ms": round(1000 * max(v2v)) if v2v else None,
        "cpu_s_per_call_minute": round(cpu / call_min, 1) if call_min else None,
        "cpu_s_per_turn": round(cpu / len(v2v), 2) if v2v else None,
        "cpu_cores_busy": round(cpu / wall, 2),
        "peak_rss_mb": round(max(peak), 1),
        "wall_s": round(wall, 1),
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def _summary(out: dict[str, Any]) -> None:
    """sustained calls, the p95 there, memory per additional call (from the rows)."""
    rows = out["levels"]
    base = rows[0]["v2v_p95_ms"] if rows else None
    for r in rows:
        r["p95_vs_one_call"] = (
            round(r["v2v_p95_ms"] / base, 2) if base and r["v2v_p95_ms"] else None
        )
    ok = []
    for r in rows:  # sustained: every level up to it within +20 %
        if r["p95_vs_one_call"] is None or r["p95_vs_one_call"] > DEGRADED:
            break
        ok.append(r)
    out["sustained_calls"] = ok[-1]["calls"] if ok else None
    out["v2v_p95_ms_at_sustained"] = ok[-1]["v2v_p95_ms"] if ok else None
    out["cpu_s_per_call_minute_one_call"] = rows[0]["cpu_s_per_call_minute"] if rows else None
    if len(rows) > 1:
        out["rss_per_additional_call_mb"] = round(
            (rows[-1]["peak_rss_mb"] - rows[0]["peak_rss_mb"])
            / (rows[-1]["calls"] - rows[0]["calls"]),
            1,
        )


async def measure(
    llm: str,
    levels: list[int],
    turns: int,
    *,
    ledger_dir: str,
    barge_in: int = 0,
    escalate: bool = False,
    deadline: float = float("inf"),
    voices: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """One worker, one LLM (``oracle`` or ``local``): the levels in order (``escalate``: stop
    after the first level whose p95 is over +20 % of one call's, or before a level that
    would not finish by ``deadline``, a time.monotonic() value)."""
    voices = voices or _voices()
    _wait_done.last = {}  # type: ignore[attr-defined]  # call ids repeat from one run to the next
    usage = Usage()
    out: dict[str, Any] = {"llm": llm, "turns_per_call": turns, "levels": []}
    t_start = time.monotonic()
    async with OracleServer(_scenario()) as oracle:
        base_url = oracle.base_url if llm == "oracle" else None
        config = _config(base_url, ledger_dir, max(levels))
        out["rss_before_models_mb"] = round(usage.rss_mb(), 1)
        async with Worker(config) as worker:
            calls: dict[str, Call] = {}

            def on_call(call: Call, transport: MediaStreamTransport) -> None:
                calls[transport.started.call_id] = call

            async with PhoneServer(worker, config.phone, on_call=on_call) as server:
                out["rss_idle_mb"] = round(usage.rss_mb(), 1)
                out["startup_s"] = round(time.monotonic() - t_start, 1)
                await _one_call(server, calls, 999, 1, voices, 0.0)  # warm-up (untimed)
                for level in levels:
                    rows = out["levels"]
                    if rows:  # a level lasts about as long as the last one, a little more per call
                        last = rows[-1]
                        needed = last["wall_s"] * (1 + 0.25 * (level - last["calls"]))
                        if time.monotonic() + needed > deadline:
                            out["stopped"] = f"time budget (before {level} calls)"
                            break
                    try:
                        async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                            # the baseline gets as many turns as two calls: its p95 is what
                            # every other level is compared with
                            n = 2 * turns if escalate and level == 1 else turns
                            row = await _level(server, calls, level, n, voices, usage)
                    except TimeoutError:
                        out["stopped"] = f"time budget (during {level} calls)"
                        break
                    rows.append(row)
                    base = rows[0]["v2v_p95_ms"]
                    if (
                        escalate
                        and base
                        and row["v2v_p95_ms"]
                        and row["v2v_p95_ms"] > DEGRADED * base
                    ):
                        out["stopped"] = (
                            f"p95 over +{round(100 * (DEGRADED - 1))} % at {level} calls"
                        )
                        break
                if barge_in and time.monotonic() < deadline:
                    stops = [await _barge_in(server, calls, i, voices) for i in range(barge_in)]
                    clear = [x["clear_ms"] for x in stops if x["clear_ms"] is not None]
                    out["barge_in"] = {
                        "runs": stops,
                        "clear_p50_ms": round(statistics.median(clear)) if clear else None,
                        "clear_max_ms": round(max(clear)) if clear else None,
                    }
    _summary(out)
    out["wall_s"] = round(time.monotonic() - t_start, 1)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    return await measure(
        args.llm,
        [int(x) for x in args.levels.split(",")],
        args.turns,
        ledger_dir=args.ledger_dir,
        barge_in=args.barge_in,
    ) | {"partials": args.partials, "load_average": list(os.getloadavg())}


async def capacity(args: argparse.Namespace) -> dict[str, Any]:
    """For each of ``--llms``: 1, 2, 3, … calls until the p95 degrades (or the time share
    runs out); the whole run ends within ``--budget-min``."""
    t0 = time.monotonic()
    llms = [x for x in args.llms.split(",") if x]
    voices = _voices()
    out: dict[str, Any] = {
        "budget_min": args.budget_min,
        "load_average_start": [round(x, 1) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "runs": {},
    }
    for i, llm in enumerate(llms):
        left = args.budget_min * 60 - (time.monotonic() - t0)
        share = left / (len(llms) - i)  # what is left, split over the LLMs still to run
        out["runs"][llm] = await measure(
            llm,
            list(range(1, args.max_level + 1)),
            args.turns,
            ledger_dir=args.ledger_dir,
            escalate=True,
            deadline=time.monotonic() + share,
            voices=voices,
        )
    out["load_average_end"] = [round(x, 1) for x in os.getloadavg()]
    out["wall_s"] = round(time.monotonic() - t0, 1)
    for llm, r in out["runs"].items():
        print(
            f"{llm}: sustained {r.get('sustained_calls')} calls (p95 {r.get('v2v_p95_ms_at_sustained')} ms, "
            f"one call {r['levels'][0]['v2v_p95_ms'] if r['levels'] else None} ms); "
            f"{r.get('cpu_s_per_call_minute_one_call')} CPU s per call-minute; "
            f"{r.get('rss_per_additional_call_mb')} MB per additional call; "
            f"stopped: {r.get('stopped', 'all levels done')}",
            file=sys.stderr,
            flush=True,
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--llm", choices=("oracle", "local"), default="oracle")
    p.add_argument("--levels", default="1,2,3,4")
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--barge-in", type=int, default=5, help="barge-in runs at level 1 (0: none)")
    p.add_argument("--ledger-dir", default="/tmp/phone_load_sessions")
    p.add_argument("--json", dest="json_out")
    p.add_argument("--memory-only", type=int, default=0, help="only RSS as N calls join one by one")
    p.add_argument(
        "--capacity",
        action="store_true",
        help="for each of --llms: 1, 2, 3, ... calls until the v2v p95 is over +20 %% of one "
        "call's; CPU per call-minute, memory per additional call; ends within --budget-min",
    )
    p.add_argument("--llms", default="oracle,local", help="with --capacity")
    p.add_argument("--max-level", type=int, default=8, help="with --capacity: most calls tried")
    p.add_argument("--budget-min", type=float, default=14.0, help="with --capacity (minutes)")
    p.add_argument(
        "--partials",
        choices=("idle", "always"),
        default="idle",
        help="idle: the worker's policy (partial decodes only while no decode waits); "
        "always: every partial (the before/after of that policy)",
    )
    args = p.parse_args()
    if args.partials == "always":
        from voice_agent.fair_executor import FairExecutor

        FairExecutor.backlog = lambda self: 0  # type: ignore[method-assign]
    if args.capacity:
        result = asyncio.run(capacity(args))
    else:
        result = asyncio.run(memory_only(args) if args.memory_only else run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(text)


if __name__ == "__main__":
    main()
