"""Turn-taking benchmark: voice-to-voice latency per stage, early cut-offs and WER,
on callers in voices that are not the agent's, at 16 kHz and on the 8 kHz μ-law phone path.

    .venv/bin/python bench/turn_latency.py [--rates 16000,8000] [--detection vad,model]
                                           [--asr-window-s 30,10] [--voices held-out]
                                           [--kinds question,clause] [--fast]
                                           [--variants "new;old:asr_tail_decode=false"]
                                           [--ttft-ms 300] [--answers sure|varied]
                                           [--json out.json]

Same harness as ``bench/voice_latency.py``: the file transport in real time,
the real Silero VAD, faster-whisper, piper (the agent's voice) and the turn
model, against the oracle LLM (``--ttft-ms`` to first token). The callers
(``bench/callers.py``: espeak-ng voices at two speaking rates) ask twelve
questions, say six sentences with a pause in the middle, read four
numbers in groups, say four statements with a number and a comma pause
(``clause``) and ask four questions that end in a number
(``number_question``). Every (rate, detection) pair answers the same recording
in one run, so ``vad`` (the fixed-silence rule, as before) and ``model``
(Smart Turn + transcript cues) compare as ratios under the same load.

Per item, from the audio and the pipeline's records, in ms after the
caller's true end of speech (the last audible sample of the item):
``pause_detected`` (the VAD's SpeechPaused: the early decode starts),
``text_ready`` (the early transcript), ``scored`` (the turn model's score),
``decided`` (the end-of-turn decision applied), ``decode_started`` (the
end-of-turn decode started: on the quiet tail or at the pause), ``turn_ended``
(the VAD ended the segment: stream time, so also meaningful with ``--fast``),
``final`` (TranscriptFinal), ``llm_request`` (the oracle
received the request), ``llm_first_token``, ``tts_started`` / ``tts_done``
(piper started / finished the answer's first chunk; for a held answer,
``voice.tts_prepare_held``, before the turn ended; none when the first chunk played
from ``voice.tts_phrase_cache``: ``first_chunk`` says ``kept`` or ``synthesized``),
``first_audio`` (= voice to voice). ``cut_off``: the turn was ended before the caller's last part began.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import callers as cl  # noqa: E402
import voice_latency as vl  # noqa: E402

from fsm import MonotonicClock  # noqa: E402
from peripherals.resample import resample  # noqa: E402
from peripherals.wer import word_error_rate  # noqa: E402
from voice_agent.bench.oracle import MODEL_ID, OracleServer  # noqa: E402
from voice_agent.bench.runner import build_registry  # noqa: E402
from voice_agent.config import deep_merge, load_config  # noqa: E402
from voice_agent.transports.files import run_audio  # noqa: E402

GAP_S = 3.2  # silence after each item: room for the answer (s)
SHORT_ANSWER = "Sure, I can help with that."
# --answers varied: answers whose first words differ (piper's lead-in silence before the first
# word is 0 ms for "Sure," and 30-65 ms for most others; "Yes," ends its clause in one token)
VARIED_ANSWERS = (
    "Sure, I can help with that.",
    "Okay, let me check that for you.",
    "Yes, I can do that for you.",
    "Of course, one moment please.",
    "Let me look into that for you.",
    "I'm sorry, let me see what I can do.",
)
_DIGIT = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}


def normalise(text: str) -> str:
    """Digits as single digit words either way ("427" / "four two seven" → "4 2 7")."""
    words = re.findall(r"[a-z0-9']+", text.lower().replace("-", " "))
    out: list[str] = []
    for w in words:
        w = _DIGIT.get(w, w)
        out.extend(list(w) if w.isdigit() else [w])
    return " ".join(out)


async def run_recording(
    audio,
    rate: int,
    detection: str,
    ttft_ms: float,
    name: str,
    items,
    realtime: bool = True,
    asr_window_s: float | None = None,
    voice_overrides: dict[str, Any] | None = None,
    answers: tuple[str, ...] = (SHORT_ANSWER,),
):  # type: ignore[no-untyped-def]
    scen = vl.scenario(
        [(it.text, answers[k % len(answers)]) for k, it in enumerate(items)], ttft_ms, name
    )
    tools = build_registry(scen, MonotonicClock(), [])
    async with OracleServer(scen) as oracle:
        config = load_config(
            None,
            environ={},
            overrides={
                "llm": {"base_url": oracle.base_url, "model": MODEL_ID, "max_retries": 0},
                "agent": {"mode": "async", "system_prompt": "You are a helpful agent."},
                "ledger": {"persist": False},
                "voice": deep_merge(
                    {
                        "sample_rate": rate,
                        "turn": {"detection": detection},
                        **({} if asr_window_s is None else {"asr_window_s": asr_window_s}),
                    },
                    voice_overrides or {},
                ),
            },
        )
        ru0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        with TtsProbe() as probe:
            result = await run_audio(config, audio, rate, realtime=realtime, tools=tools)
        ru1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
        exchanges = list(oracle.exchanges)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    result.tts_calls = probe.calls  # type: ignore[attr-defined]
    return result, exchanges, cpu, wall1 - wall0


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000, 1)


class TtsProbe:
    """Clock times of every piper synthesis in this process: (started, first audio out, text).

    Installed around ``PiperTts.synthesize`` for the bench run only, so the first token
    -> first audio stretch splits into the wait for the first chunk, its synthesis and the
    rest (writing, playing)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float, str]] = []

    def __enter__(self) -> TtsProbe:
        from peripherals.tts import PiperTts

        self._cls, self._orig = PiperTts, PiperTts.synthesize
        orig, calls = self._orig, self.calls

        async def synthesize(tts, text, sample_rate=None):  # type: ignore[no-untyped-def]
            started, first = time.monotonic(), True
            async for chunk in orig(tts, text, sample_rate):
                if first:
                    calls.append((started, time.monotonic(), text))
                    first = False
                yield chunk

        PiperTts.synthesize = synthesize  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self._cls.synthesize = self._orig  # type: ignore[method-assign]


def first_chunk(answer: str) -> str:
    """The first chunk the agent's voice cuts from ``answer`` (what piper says first)."""
    from peripherals.text_chunker import SentenceChunker
    from voice_agent.voice.output import FIRST_CHUNK_CHARS

    chunker = SentenceChunker(first_clause_after_chars=FIRST_CHUNK_CHARS)
    return (chunker.push(answer) or chunker.flush() or [answer])[0]


def item_rows(  # type: ignore[no-untyped-def]
    result, exchanges, placed: list[cl.Placed], rate: int, answers: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    out_spans = vl.spans(result.agent_audio) if rate == vl.RATE else _spans(result, rate)
    t0 = result.t0
    rows = []
    for k, p in enumerate(placed):
        nxt = placed[k + 1].start_s if k + 1 < len(placed) else float("inf")
        utts = [
            u
            for u in result.utterances
            if not u.dropped and p.start_s - 0.5 <= u.speech_start_s <= p.end_s + 0.1
        ]
        heard = " ".join(u.text for u in utts if u.text)
        last_part = p.part_starts_s[-1] if p.part_starts_s else None
        cut = any(
            u.ended_s is not None and u.text and last_part is not None and u.ended_s < last_part
            for u in utts
        )
        row: dict[str, Any] = {
            "kind": p.item.kind,
            "voice": p.item.voice,
            "wpm": p.item.wpm,
            "text": p.item.text,
            "heard": heard,
            "wer": round(word_error_rate(normalise(p.item.text), normalise(heard)), 3),
            "cut_off": cut,
            "turns": len(utts),
            # each turn the item became: its text and the decision that ended it
            "split": [
                {
                    "text": u.text,
                    "decision": u.turn.decision.reason
                    if u.turn is not None and u.turn.decision is not None
                    else None,
                    "p": None
                    if u.turn is None
                    or u.turn.decision is None
                    or u.turn.decision.probability is None
                    else round(u.turn.decision.probability, 3),
                    # every pause's decision (the last one ended the turn)
                    "pauses": []
                    if u.turn is None
                    else [
                        [
                            t,
                            d.reason,
                            None if d.probability is None else round(d.probability, 3),
                            d.cue,
                            d.evidence,
                            d.pitch,
                            d.silence_s,
                        ]
                        for t, d in u.turn.decisions
                    ],
                }
                for u in utts
            ],
        }
        first = next((s for s, _ in out_spans if p.end_s < s < nxt), None)
        last = next((u for u in reversed(utts) if u.speech_end_s is not None), None)
        if first is None or last is None or last.final_at is None:
            row["error"] = "no answer after the item"
            rows.append(row)
            continue
        end_clock = t0 + p.end_s

        def rel(clock_t: float | None, end_clock: float = end_clock) -> float | None:
            return None if clock_t is None else _ms(clock_t - end_clock)

        row["first_audio"] = _ms(first - p.end_s)
        row["pause_detected"] = rel(last.paused_at)
        row["decode_started"] = rel(last.early_decode_at)
        row["turn_ended"] = _ms(last.ended_s - p.end_s) if last.ended_s is not None else None
        row["final"] = rel(last.final_at)
        row["asr_decode"] = _ms(last.decode_s)
        tr = last.turn
        if tr is not None:
            row["text_ready"] = rel(tr.text_at)
            row["scored"] = rel(tr.scored_at)
            row["decided"] = rel(tr.decided_at)
            if tr.decision is not None:
                row["decision"] = tr.decision.reason
                row["probability"] = (
                    None if tr.decision.probability is None else round(tr.decision.probability, 3)
                )
            row["model_compute"] = _ms(tr.model_compute_s)
        asked_after = last.paused_at if last.pause_posted_at is not None else last.final_at
        ex = next((e for e in exchanges if e.received_at >= (asked_after or 0) - 0.01), None)
        if ex is not None and ex.first_token_at is not None:
            row["llm_request"] = rel(ex.received_at)
            row["llm_first_token"] = rel(ex.first_token_at)
            # the answer's first chunk: synthesis started / done (after the first token), or
            # played from the phrase cache (voice.tts_phrase_cache: no synthesis)
            opening = first_chunk(answers[k % len(answers)]) if answers else None
            synth = next(
                (
                    c
                    for c in getattr(result, "tts_calls", [])
                    if c[0] >= ex.first_token_at and opening in (None, c[2])
                ),
                None,
            )
            if synth is not None:
                row["tts_started"], row["tts_done"] = rel(synth[0]), rel(synth[1])
                row["first_chunk"] = "synthesized"
            elif opening is not None:
                row["first_chunk"] = "kept"
        rows.append(row)
    return rows


def _spans(result, rate: int) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
    from peripherals.resample import resample

    return vl.spans(resample(result.agent_audio, rate, vl.RATE))


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if "first_audio" in r]
    stages = (
        "first_audio",
        "pause_detected",
        "decode_started",
        "text_ready",
        "scored",
        "decided",
        "turn_ended",
        "final",
        "llm_request",
        "llm_first_token",
        "tts_started",
        "tts_done",
        "asr_decode",
        "model_compute",
    )
    by_kind = {}
    for kind in cl.KINDS:
        ks = [r for r in rows if r["kind"] == kind]
        by_kind[kind] = {
            "n": len(ks),
            "cut_off": sum(r["cut_off"] for r in ks),
            "wer": round(sum(r["wer"] for r in ks) / len(ks), 3) if ks else None,
            "first_audio": vl.summary([r["first_audio"] for r in ks if "first_audio" in r]),
        }
    decisions: dict[str, int] = {}
    for r in rows:
        if "decision" in r:
            decisions[r["decision"]] = decisions.get(r["decision"], 0) + 1
    uncut_questions = [r for r in ok if r["kind"] == "question"]
    return {
        # answers whose first chunk played from the phrase cache / was synthesised
        "first_chunk": {
            how: sum(r.get("first_chunk") == how for r in ok) for how in ("kept", "synthesized")
        },
        "voice_to_voice_questions": vl.summary([r["first_audio"] for r in uncut_questions]),
        "voice_to_voice_all_uncut": vl.summary([r["first_audio"] for r in ok if not r["cut_off"]]),
        "stages_questions_ms": {
            k: vl.summary([r[k] for r in uncut_questions if r.get(k) is not None]) for k in stages
        },
        "by_kind": by_kind,
        "decisions": decisions,
        "cut_off": sum(r["cut_off"] for r in rows),
        "wer": round(sum(r["wer"] for r in rows) / len(rows), 3) if rows else None,
        "failed": [r for r in rows if "first_audio" not in r],
    }


def model_cost(rounds: int = 7) -> dict[str, Any]:
    """The turn model's cost against one Whisper decode of the same 3 s utterance, interleaved
    in one process (a ratio that survives the machine's load), and per second of audio; the
    Silero VAD's cost per 32 ms frame of it (it runs on every frame of the call)."""
    import statistics as st

    from peripherals.asr import WhisperStreamingAsr
    from peripherals.turn import SmartTurnDetector
    from peripherals.vad import SileroVad

    x, _ = cl.render(cl.Item("question", (cl.QUESTIONS[2],), cl.VOICES[0], 165), vl.RATE)
    x = np.concatenate([x, np.zeros(int(0.2 * vl.RATE), dtype=np.float32)])
    turn = {r: SmartTurnDetector(r) for r in (16000, 8000)}
    x8 = resample(x, vl.RATE, 8000)
    asr = WhisperStreamingAsr(cpu_threads=1)
    vad = SileroVad(vl.RATE)
    frames = [x[i : i + vad.frame_size] for i in range(0, len(x) - vad.frame_size, vad.frame_size)]
    model16, model8, whisper, vad_frame = [], [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        for frame in frames:
            vad.probability(frame)
        vad_frame.append((time.perf_counter() - t) / len(frames))
        t = time.perf_counter()
        turn[16000].probability_done(x)
        model16.append(time.perf_counter() - t)
        t = time.perf_counter()
        turn[8000].probability_done(x8)
        model8.append(time.perf_counter() - t)
        whisper.append(asr._decode_blocking(x, 1).decode_s)
    m16, m8, w = st.median(model16), st.median(model8), st.median(whisper)
    v = st.median(vad_frame)
    return {
        "rounds": rounds,
        "turn_model_ms_16k": round(m16 * 1000, 1),
        "turn_model_ms_8k": round(m8 * 1000, 1),
        "whisper_tiny_decode_ms": round(w * 1000, 1),
        "turn_model_over_decode": round(m16 / w, 3),
        "vad_ms_per_frame": round(v * 1000, 3),
        "vad_share_of_real_time": round(v / (vad.frame_size / vl.RATE), 4),
        "note": "one score per pause of >= candidate_silence; cost per second of audio = "
        "pauses per second x turn_model_ms (see each run's turn_model.cpu_s_per_audio_s)",
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    if args.voices == "recheck":
        voices, items = cl.RECHECK_VOICES, cl.recheck_items()
    elif args.voices == "recheck5":
        voices, items = cl.RECHECK5_VOICES, cl.recheck5_items()
    elif args.voices == "recheck6":
        voices, items = cl.RECHECK6_VOICES, cl.recheck6_items()
    elif args.voices == "recheck7":
        voices, items = cl.RECHECK7_VOICES, cl.recheck7_items()
    else:
        voices = cl.HELD_OUT_VOICES if args.voices == "held-out" else cl.VOICES
        items = cl.items_for(voices)
    if args.kinds:
        items = [it for it in items if it.kind in args.kinds]
    if args.limit:
        items = items[: args.limit]
    report: dict[str, Any] = {
        "settings": {
            "oracle_ttft_ms": args.ttft_ms,
            "voices": voices,
            "speeds_wpm": list(cl.SPEEDS_WPM),
            "items": len(items),
            "transport": "files (fast stream clock)" if args.fast else "files --realtime",
            "answers": args.answers,
        },
        "runs": {},
    }
    if args.cost:
        report["cost"] = model_cost()
        print(f"cost: {report['cost']}", file=sys.stderr)
    for rate in args.rates:
        audio16, placed = cl.build_recording(items, vl.RATE, GAP_S)
        audio = cl.phone(audio16, vl.RATE) if rate == 8000 else audio16
        runs = [(d, w, v) for d in args.detection for w in args.asr_window_s for v in args.variants]
        for detection, window, (variant, overrides) in runs:
            name = (
                f"{rate // 1000}k_{detection}"
                + ("" if window is None else f"_w{window:g}")
                + (f"_{variant}" if variant else "")
            )
            result, exchanges, cpu, wall = await run_recording(
                audio,
                rate,
                detection,
                args.ttft_ms,
                name,
                items,
                realtime=not args.fast,
                asr_window_s=window,
                voice_overrides=overrides,
                answers=VARIED_ANSWERS if args.answers == "varied" else (SHORT_ANSWER,),
            )
            answers = VARIED_ANSWERS if args.answers == "varied" else (SHORT_ANSWER,)
            rows = item_rows(result, exchanges, placed, rate, answers)
            run = summarise(rows)
            pre = vl.preemption(result)
            run["preemptive_adopted"], run["preemptive_dropped"] = pre["adopted"], pre["dropped"]
            scores = sum(u.turn.scores for u in result.utterances if u.turn is not None)
            model_s = sum(
                u.turn.model_compute_total_s for u in result.utterances if u.turn is not None
            )
            run["turn_model"] = {
                "scores": scores,
                "compute_s": round(model_s, 3),
                "per_score_ms": round(model_s / scores * 1000, 1) if scores else None,
                "cpu_s_per_audio_s": round(model_s / (len(audio) / rate), 5),
            }
            run["tail_decodes"] = {
                "started": sum(u.tail_decodes for u in result.utterances),
                "voided": sum(u.tail_decodes_voided for u in result.utterances),
            }
            run["cpu_cores"] = round(cpu / wall, 2)
            run["items"] = rows
            report["runs"][name] = run
            if args.json:  # after every run: a long benchmark keeps what it measured
                Path(args.json).parent.mkdir(parents=True, exist_ok=True)
                Path(args.json).write_text(json.dumps(report, indent=2))
            print(
                f"{name}: v2v questions {run['voice_to_voice_questions']}, "
                f"cut-offs {run['cut_off']}, wer {run['wer']}",
                file=sys.stderr,
            )
    return report


def parse_variants(spec: str) -> list[tuple[str, dict[str, Any]]]:
    """``"new;old:asr_tail_decode=false,turn.done_statement_silence_ms=200"`` →
    [(name, voice overrides)]; a dotted key is a nested field."""
    import yaml

    out: list[tuple[str, dict[str, Any]]] = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, settings = part.partition(":")
        overrides: dict[str, Any] = {}
        for kv in filter(None, (x.strip() for x in settings.split(","))):
            key, eq, value = kv.partition("=")
            if not eq or not key:
                raise ValueError(f"{kv!r} is not key=value")
            *path, leaf = key.strip().split(".")
            node = overrides
            for part_name in path:
                node = node.setdefault(part_name, {})
            node[leaf] = yaml.safe_load(value)
        out.append((name.strip(), overrides))
    return out or [("", {})]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--rates", default="16000,8000")
    parser.add_argument("--detection", default="vad,model")
    parser.add_argument(
        "--voices",
        choices=("default", "held-out", "recheck", "recheck5", "recheck6", "recheck7"),
        default="default",
    )
    parser.add_argument("--limit", type=int, default=0, help="only the first N items")
    parser.add_argument(
        "--kinds",
        default="",
        help=f"only these item kinds (comma-separated of {', '.join(cl.KINDS)})",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="the fast stream clock (waits for the pipeline): endpointing, cut-offs and WER "
        "without the machine's load; clock stages and voice-to-voice need real time",
    )
    parser.add_argument(
        "--asr-window-s",
        default="",
        help="comma-separated Whisper encoder windows to compare in one run (e.g. 30,10: the "
        "stock window vs the default); empty: the configured default only",
    )
    parser.add_argument(
        "--variants",
        default="",
        help="voice settings to compare in one run, ';'-separated NAME[:key=value,...] "
        "(voice config fields), e.g. 'new;old:asr_tail_decode=false,asr_final_threads=1'; "
        "empty: the configured defaults only",
    )
    parser.add_argument(
        "--answers",
        choices=("sure", "varied"),
        default="sure",
        help="the oracle's answers: 'Sure, I can help with that.' for every item (default, as "
        "in earlier sessions) or six answers in turn whose first words differ",
    )
    parser.add_argument("--cost", action="store_true", help="also time the turn model vs Whisper")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    args.detection = args.detection.split(",")
    args.kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(args.kinds) - set(cl.KINDS)
    if unknown:
        parser.error(f"--kinds: unknown {sorted(unknown)}; kinds are {', '.join(cl.KINDS)}")
    args.asr_window_s = [float(w) for w in args.asr_window_s.split(",") if w] or [None]
    try:
        args.variants = parse_variants(args.variants)
    except ValueError as exc:
        parser.error(f"--variants: {exc}")
    if not cl.espeak_available():
        print("bench: espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    summary = {
        name: {k: v for k, v in run.items() if k not in ("items", "failed")}
        for name, run in report["runs"].items()
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
