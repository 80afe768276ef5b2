"""Voice-to-voice latency, barge-in stop time, CPU and ASR accuracy, measured from the audio.

    .venv/bin/python bench/voice_latency.py [--ttft-ms 300] [--preemptive both|on|off]
                                            [--json out/voice_latency.json]

Callers are synthesized with piper (10 utterances × 2 speaking rates), placed
on a timeline with room for the answers, and answered by the real pipeline
(Silero VAD, streaming faster-whisper, piper) through the file transport in
real time, against the oracle LLM (``--ttft-ms`` to first token). Each
scenario's turn texts are the offline Whisper transcripts of its utterances,
so the oracle recognises them; the answers are one short sentence.

Per turn, from the audio: end of speech (the last audible sample of the
caller's utterance, ground truth) → the first audible sample of the agent in
the output timeline. Breakdown from the pipeline's own records:
``endpointing`` (true end of speech → the VAD declares the end),
``asr_final`` (VAD end → final transcript posted), ``llm_ttft`` (request →
first token, at the oracle), ``tts_first_audio`` (first token → first agent
audio: first chunk complete, synthesized, played), and
``other`` (the rest: event dispatch, HTTP). With preemptive generation the
request starts at the caller's pause, so ``llm_ttft`` overlaps
``endpointing``: ``llm_head_start`` (request → final transcript) says by how
much, ``after_final`` (final transcript → first audio) what is left, and
``other`` is not computed for those turns. ``preemptive`` counts the turns
whose preemptive generation was adopted (ledger notes) and those dropped.
``--preemptive both`` (default) runs the questions with the engine's
preemptive generation off, then on, in one run: the before/after figures.

Barge-in: callers interrupt long answers; stop time = caller's speech onset →
last audible agent sample; ``pause`` = onset → the input paused the agent's
voice (stream time), ``detect`` = onset → the barge-in was confirmed
(``UserSpeechStarted``, after ``voice.min_barge_in_ms``). ``spurious_pauses``
counts pauses of the agent's voice that were no barge-in (they are short gaps).
CPU: process user+system time over wall time during the runs (1.0 = one core).
Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fsm import MonotonicClock  # noqa: E402
from ledger import entries as le  # noqa: E402
from peripherals.resample import resample  # noqa: E402
from peripherals.wer import word_error_rate  # noqa: E402
from voice_agent.bench.oracle import MODEL_ID, OracleServer  # noqa: E402
from voice_agent.bench.runner import build_registry  # noqa: E402
from voice_agent.bench.scenario import Scenario  # noqa: E402
from voice_agent.config import Config, load_config  # noqa: E402
from voice_agent.transports.files import AudioRunResult, run_audio  # noqa: E402

RATE = 16000
UTTERANCES = [
    "Hi, I would like to check on my delivery.",
    "Can you tell me when the store opens tomorrow?",
    "I need to change the address on my account.",
    "What is your return policy for shoes?",
    "My package arrived damaged yesterday.",
    "Can I speak to someone about a refund?",
    "Do you have this jacket in a larger size?",
    "How long does shipping usually take?",
    "I forgot my password and cannot log in.",
    "Thank you, that is all I needed today.",
]
SPEEDS = (1.0, 1.25)  # piper length_scale: normal and slower speech
SHORT_ANSWER = "Sure, I can help you with that."
LONG_ANSWER = (
    "Let me explain how that works in detail. First we check your account and the order history. "
    "Then we look at the options that fit your situation best. After that we confirm everything "
    "by email, and you can always call us back if anything is unclear."
)
INTERRUPTION = "Wait, I have another question."
GAP_AFTER_S = 4.0  # silence after each utterance: room for the answer (s)
BARGE_AFTER_S = 3.5  # the interruption starts this long after the question ends (s)
AUDIBLE = 0.01  # |sample| above this is audible (full scale 1.0)


@functools.cache
def _voice() -> Any:
    from piper import PiperVoice

    from peripherals.models import resolve_tts_voice

    ref = resolve_tts_voice()
    return PiperVoice.load(ref.model_path, ref.config_path)


def synthesize(text: str, length_scale: float) -> np.ndarray:
    from piper import SynthesisConfig

    chunks = list(_voice().synthesize(text, syn_config=SynthesisConfig(length_scale=length_scale)))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return resample(audio, chunks[0].sample_rate, RATE) * 0.5


@functools.cache
def _whisper() -> Any:
    from faster_whisper import WhisperModel

    from peripherals.models import resolve_asr_model

    return WhisperModel(
        resolve_asr_model().location, device="cpu", compute_type="int8", cpu_threads=2
    )


def offline_transcript(x: np.ndarray) -> str:
    segments, _ = _whisper().transcribe(
        x,
        language="en",
        beam_size=1,
        temperature=0.0,
        condition_on_previous_text=False,
        without_timestamps=True,
    )
    return " ".join(s.text.strip() for s in segments)


@dataclass
class Placed:
    text: str
    start_s: float
    end_s: float
    kind: str  # "question" | "interruption"


def build_recording(
    items: list[tuple[float, str, float, str]], total_s: float
) -> tuple[np.ndarray, list[Placed]]:
    out = np.zeros(int(total_s * RATE), dtype=np.float32)
    placed = []
    for at, text, scale, kind in items:
        x = synthesize(text, scale)
        i = int(at * RATE)
        out[i : i + len(x)] += x[: len(out) - i]
        audible = np.nonzero(np.abs(x) > AUDIBLE)[0]
        placed.append(Placed(text, at + audible[0] / RATE, at + audible[-1] / RATE, kind))
    return out, placed


def spans(x: np.ndarray, gap_s: float = 0.4) -> list[tuple[float, float]]:
    idx = np.nonzero(np.abs(x) > AUDIBLE)[0]
    if len(idx) == 0:
        return []
    breaks = np.nonzero(np.diff(idx) > gap_s * RATE)[0]
    starts = [idx[0], *idx[breaks + 1]]
    ends = [*idx[breaks], idx[-1]]
    return [(s / RATE, e / RATE) for s, e in zip(starts, ends, strict=True)]


def scenario(turns: list[tuple[str, str]], ttft_ms: float, name: str) -> Scenario:
    return Scenario.model_validate(
        {
            "name": name,
            "oracle": {"ttft_ms": ttft_ms, "tokens_per_s": 60},
            "turns": [
                {"user": user, "answer": [{"say": say, "expect": [say.split()[0]]}]}
                for user, say in turns
            ],
        }
    )


VOICE_OVERRIDES: dict[str, Any] = {}  # --min-silence-ms / --min-barge-in-ms


def config_for(base_url: str, preemptive: bool = True) -> Config:
    return load_config(
        None,
        environ={},
        overrides={
            "llm": {"base_url": base_url, "model": MODEL_ID, "max_retries": 0},
            "agent": {
                "mode": "async",
                "system_prompt": "You are a helpful agent.",
                "preemptive_generation": preemptive,
            },
            "ledger": {"persist": False},
            "voice": VOICE_OVERRIDES,
        },
    )


async def run_one(
    audio: np.ndarray, scen: Scenario, preemptive: bool = True
) -> tuple[AudioRunResult, list[Any], float, float]:
    tools = build_registry(scen, MonotonicClock(), [])
    async with OracleServer(scen) as oracle:
        ru0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        config = config_for(oracle.base_url, preemptive)
        result = await run_audio(config, audio, RATE, realtime=True, tools=tools)
        ru1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        exchanges = list(oracle.exchanges)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return result, exchanges, cpu, wall1 - wall0


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return round(v[min(len(v) - 1, int(round(q * (len(v) - 1))))], 1)


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": pct(values, 0.5),
        "p95": pct(values, 0.95),
        "mean": round(statistics.fmean(values), 1) if values else None,
    }


def turn_metrics(
    result: AudioRunResult, exchanges: list[Any], placed: list[Placed]
) -> list[dict[str, Any]]:
    """One row per question: latency from the audio plus its breakdown."""
    out_spans = spans(result.agent_audio)
    rows = []
    utts = [u for u in result.utterances if not u.dropped]
    for p in (q for q in placed if q.kind == "question"):
        first = next((s for s, _ in out_spans if s > p.end_s), None)
        u = next((u for u in utts if abs(u.speech_start_s - p.start_s) < 0.5), None)
        row: dict[str, Any] = {
            "text": p.text,
            "end_of_speech_s": round(p.end_s, 3),
            "heard": u.text if u else None,
        }
        if first is None or u is None or u.ended_at is None or u.final_at is None:
            row["error"] = "no answer or no utterance"
            rows.append(row)
            continue
        first_clock = result.t0 + first
        # A preemptive request arrives after the last pause, an ordinary one after the final.
        asked_after = (u.paused_at if u.pause_posted_at is not None else u.final_at) or u.final_at
        exchange = next((e for e in exchanges if e.received_at >= asked_after - 0.01), None)
        row["voice_to_voice_ms"] = round((first - p.end_s) * 1000, 1)
        row["endpointing_ms"] = round((u.ended_s - p.end_s) * 1000, 1)  # type: ignore[operator]
        row["asr_final_ms"] = round((u.final_at - u.ended_at) * 1000, 1)
        row["asr_decode_ms"] = round((u.decode_s or 0) * 1000, 1)
        row["asr_speculative"] = u.final_speculative
        row["after_final_ms"] = round((first_clock - u.final_at) * 1000, 1)
        row["pause_posted"] = u.pause_posted_at is not None
        if exchange is not None and exchange.first_token_at is not None:
            row["llm_ttft_ms"] = round((exchange.first_token_at - exchange.received_at) * 1000, 1)
            row["tts_first_audio_ms"] = round((first_clock - exchange.first_token_at) * 1000, 1)
            head_start = u.final_at - exchange.received_at
            row["llm_head_start_ms"] = round(max(0.0, head_start) * 1000, 1)
            if head_start <= 0:
                row["other_ms"] = round(
                    row["voice_to_voice_ms"]
                    - row["endpointing_ms"]
                    - row["asr_final_ms"]
                    - row["llm_ttft_ms"]
                    - row["tts_first_audio_ms"],
                    1,
                )
        rows.append(row)
    return rows


def barge_metrics(result: AudioRunResult, placed: list[Placed]) -> list[dict[str, Any]]:
    out_spans = spans(result.agent_audio, gap_s=0.3)
    rows = []
    for p in (q for q in placed if q.kind == "interruption"):
        before = [s for s in out_spans if s[0] < p.start_s]
        if not before or before[-1][1] < p.start_s:
            rows.append({"onset_s": p.start_s, "error": "the agent was not speaking at the onset"})
            continue
        stop = before[-1][1]
        u = next((u for u in result.utterances if abs(u.speech_start_s - p.start_s) < 0.5), None)
        row: dict[str, Any] = {
            "onset_s": round(p.start_s, 3),
            "stop_ms": round((stop - p.start_s) * 1000, 1),
        }
        if u is not None and u.posted_start_s is not None:
            row["detect_ms"] = round((u.posted_start_s - p.start_s) * 1000, 1)
            row["after_detect_ms"] = round((stop - u.posted_start_s) * 1000, 1)
        pause = next((q for q in result.playback_pauses if abs(q.start_s - p.start_s) < 0.5), None)
        if pause is not None:
            row["pause_ms"] = round((pause.start_s - p.start_s) * 1000, 1)
            row["confirmed"] = pause.barge_in
        rows.append(row)
    return rows


def preemption(result: AudioRunResult) -> dict[str, Any]:
    """How many turns adopted a preemptive generation, and how far ahead it started (ms)."""
    notes = [e.text for e in result.entries if isinstance(e, le.Note)]
    adopted = [n for n in notes if "(pause) adopted whole" in n]
    ahead = [float(n.rsplit("started ", 1)[1].split("s ")[0]) * 1000 for n in adopted]
    pause_forks = {
        e.fork_id for e in result.entries if isinstance(e, le.ForkOpened) and e.trigger == "pause"
    }
    return {
        "adopted": len(adopted),
        "dropped": sum(
            1
            for e in result.entries
            if isinstance(e, le.ForkDiscarded) and e.fork_id in pause_forks
        ),
        "ahead_ms": ahead,
    }


def spurious_pauses(result: AudioRunResult) -> list[float]:
    """Durations (ms) of pauses of the agent's voice that were no barge-in."""
    return [
        round(((p.end_s or p.start_s) - p.start_s) * 1000, 1)
        for p in result.playback_pauses
        if not p.barge_in
    ]


async def latency_runs(ttft_ms: float, preemptive: bool) -> dict[str, Any]:
    """Both speaking rates with the engine's preemptive generation on or off."""
    turns: list[dict[str, Any]] = []
    cpu_total = wall_total = 0.0
    false_barge_ins = 0
    wers: list[float] = []
    adopted = dropped = 0
    ahead: list[float] = []
    spurious: list[float] = []
    for scale in SPEEDS:
        items, t = [], 0.5
        for text in UTTERANCES:
            items.append((t, text, scale, "question"))
            t += len(synthesize(text, scale)) / RATE + GAP_AFTER_S
        audio, placed = build_recording(items, t)
        seg = [offline_transcript(synthesize(p.text, scale)) for p in placed]
        scen = scenario([(s, SHORT_ANSWER) for s in seg], ttft_ms, f"latency_{int(scale * 100)}")
        result, exchanges, cpu, wall = await run_one(audio, scen, preemptive)
        cpu_total, wall_total = cpu_total + cpu, wall_total + wall
        rows = turn_metrics(result, exchanges, placed)
        for row in rows:
            row["length_scale"] = scale
            if row.get("heard") is not None:
                wers.append(word_error_rate(row["text"], row["heard"]))
        turns.extend(rows)
        false_barge_ins += sum(
            1 for e in result.entries if isinstance(e, le.AgentTextPlayed) and e.interrupted
        )
        pre = preemption(result)
        adopted, dropped, ahead = (
            adopted + pre["adopted"],
            dropped + pre["dropped"],
            ahead + pre["ahead_ms"],
        )
        spurious += spurious_pauses(result)
    ok = [r for r in turns if "voice_to_voice_ms" in r]
    keys = (
        "voice_to_voice_ms",
        "endpointing_ms",
        "asr_final_ms",
        "asr_decode_ms",
        "llm_ttft_ms",
        "llm_head_start_ms",
        "after_final_ms",
        "tts_first_audio_ms",
        "other_ms",
    )
    return {
        "voice_to_voice": {k: summary([r[k] for r in ok if k in r]) for k in keys},
        "preemptive": {
            "enabled": preemptive,
            "turns": len(ok),
            "adopted": adopted,
            "dropped": dropped,
            "ahead_ms": summary(ahead),
        },
        "turns_failed": [r for r in turns if "voice_to_voice_ms" not in r],
        "false_barge_ins": false_barge_ins,
        "spurious_pauses_ms": spurious,
        "asr_wer": {"mean": round(statistics.fmean(wers), 3) if wers else None, "n": len(wers)},
        "cpu": (cpu_total, wall_total),
        "turns": turns,
    }


async def main_async(ttft_ms: float, barge_ins: int, preemptive: str) -> dict[str, Any]:
    settings = {"off": [False], "on": [True], "both": [False, True]}[preemptive]
    runs = {
        ("preemptive_on" if p else "preemptive_off"): await latency_runs(ttft_ms, p)
        for p in settings
    }
    cpu_total = sum(r["cpu"][0] for r in runs.values())
    wall_total = sum(r["cpu"][1] for r in runs.values())
    # Barge-ins: a question that gets a long answer, interrupted mid-answer.
    items, t = [], 0.5
    question = UTTERANCES[3]
    qlen = len(synthesize(question, 1.0)) / RATE
    for _ in range(barge_ins):
        items.append((t, question, 1.0, "question"))
        items.append((t + qlen + BARGE_AFTER_S, INTERRUPTION, 1.0, "interruption"))
        t += qlen + BARGE_AFTER_S + 2.0 + GAP_AFTER_S + 2.0
    audio, placed = build_recording(items, t)
    q_text = offline_transcript(synthesize(question, 1.0))
    i_text = offline_transcript(synthesize(INTERRUPTION, 1.0))
    scen = scenario(
        [(q_text, LONG_ANSWER), (i_text, "Okay, go ahead.")] * barge_ins, ttft_ms, "barge_in"
    )
    result, _, cpu, wall = await run_one(audio, scen)
    cpu_total, wall_total = cpu_total + cpu, wall_total + wall
    barges = barge_metrics(result, placed)
    for run in runs.values():
        del run["cpu"]
    cfg = config_for("http://x")
    return {
        "settings": {
            "oracle_ttft_ms": ttft_ms,
            "speeds": list(SPEEDS),
            "utterances": len(UTTERANCES),
            "transport": "files --realtime",
            "vad_min_silence_ms": cfg.voice.vad_min_silence_ms,
            "min_barge_in_ms": cfg.voice.min_barge_in_ms,
        },
        **runs,
        "barge_in_stop_ms": summary([r["stop_ms"] for r in barges if "stop_ms" in r]),
        "barge_in_pause_ms": summary([r["pause_ms"] for r in barges if "pause_ms" in r]),
        "barge_in_detect_ms": summary([r["detect_ms"] for r in barges if "detect_ms" in r]),
        "barge_in_after_detect_ms": summary(
            [r["after_detect_ms"] for r in barges if "after_detect_ms" in r]
        ),
        "barge_ins": barges,
        "barge_in_run_spurious_pauses_ms": spurious_pauses(result),
        "cpu_cores_used": round(cpu_total / wall_total, 2) if wall_total else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--ttft-ms", type=float, default=300.0, help="oracle time to first token (ms)"
    )
    parser.add_argument("--barge-ins", type=int, default=6, help="interruptions to measure")
    parser.add_argument(
        "--preemptive",
        choices=("both", "on", "off"),
        default="both",
        help="engine preemptive generation for the questions (both: off, then on)",
    )
    parser.add_argument("--min-silence-ms", type=int, help="override voice.vad_min_silence_ms")
    parser.add_argument("--min-barge-in-ms", type=int, help="override voice.min_barge_in_ms")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    if args.min_silence_ms is not None:
        VOICE_OVERRIDES["vad_min_silence_ms"] = args.min_silence_ms
    if args.min_barge_in_ms is not None:
        VOICE_OVERRIDES["min_barge_in_ms"] = args.min_barge_in_ms
    report = asyncio.run(main_async(args.ttft_ms, args.barge_ins, args.preemptive))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
