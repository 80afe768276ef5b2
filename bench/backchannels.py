"""Backchannels versus interruptions while the agent talks, from the audio.

    .venv/bin/python bench/backchannels.py [--rate 16000] [--realtime]
        [--voices default|held-out|recheck|recheck5]
        [--json out.json]

Callers in espeak-ng voices (``bench/callers.py``) ask a question; while the
agent gives its long answer, they either give feedback ("yeah", "okay",
"right", "uh huh", "I see", ...) or interrupt ("Wait, I have a question.",
"Stop, that is wrong.", ...). Through the file transport (the fast stream
clock by default: the playback pause at the onset and the decisions are exact
in stream time; ``--realtime`` for wall-clock timing), with the real VAD,
Whisper, piper and the turn model against the oracle LLM. Reported:
backchannels that stopped the agent (a barge-in was posted), backchannels
recognised (recorded as such), interruptions missed (no barge-in), the stop
time of interruptions (onset → last audible agent sample) and the gap a
backchannel costs (the agent's voice paused at its onset → resumed). Each
item's row (``--json``) breaks its stop down, in ms from the onset: the VAD's
first speech frame (``vad_start_ms``), its confirmation, the agent's voice
paused (``voice_paused_ms``: the stop), the barge-in posted, and every
playback pause around it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import callers as cl  # noqa: E402
import voice_latency as vl  # noqa: E402

from fsm import MonotonicClock  # noqa: E402
from ledger import entries as le  # noqa: E402
from voice_agent.bench.oracle import MODEL_ID, OracleServer  # noqa: E402
from voice_agent.bench.runner import build_registry  # noqa: E402
from voice_agent.config import load_config  # noqa: E402
from voice_agent.transports.files import run_audio  # noqa: E402

BACKCHANNELS = ["Yeah.", "Okay.", "Right.", "Uh huh.", "I see.", "Sure.", "Yes.", "Got it."]
INTERRUPTIONS = [
    "Wait, I have a question.",
    "Stop, that is wrong.",
    "No, that is not what I asked.",
    "Hold on a second.",
    "Sorry, can you repeat that?",
    "Actually, I want to cancel.",
]
QUESTION = "Can you explain your return policy?"
ANSWER = (
    "Sure. Let me explain how that works. First we check your account and the order history. "
    "Then we look at the options that fit your situation best. After that we confirm everything "
    "by email, and you can always call us back if anything is unclear."
)
AFTER_QUESTION_S = 3.5  # the caller speaks this long after the question's end (mid-answer)
ROOM_S = 12.0  # from the question's end to the next question


def breakdown(onset_s: float, utts: list[Any], pauses: list[Any]) -> dict[str, Any]:
    """Where an item's stop time goes, in ms from its onset (stream time): the VAD's first
    speech frame (its start), the VAD's confirmation, the agent's voice paused (the stop),
    the barge-in posted, and every playback pause around the item (start, end, barge-in)."""

    def ms(t: float | None) -> float | None:
        return None if t is None else round((t - onset_s) * 1000, 1)

    first = min(utts, key=lambda u: u.speech_start_s) if utts else None
    near = [q for q in pauses if -0.5 < q.start_s - onset_s < 3.0]
    posted = [u.posted_start_s for u in utts if u.posted_start_s is not None]
    return {
        "vad_start_ms": ms(first.speech_start_s) if first else None,
        "vad_confirmed_ms": ms(first.detected_s) if first else None,
        "voice_paused_ms": ms(near[0].start_s) if near else None,
        "barge_in_posted_ms": ms(min(posted)) if posted else None,
        "playback_pauses_ms": [
            (ms(q.start_s), ms(q.end_s) if q.end_s is not None else None, q.barge_in) for q in near
        ],
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    rate = vl.RATE
    voices = {
        "held-out": cl.HELD_OUT_VOICES,
        "recheck": cl.RECHECK_VOICES,
        "recheck5": cl.RECHECK5_VOICES,
    }.get(args.voices, cl.VOICES)
    kinds = [("backchannel", t) for t in BACKCHANNELS] + [
        ("interruption", t) for t in INTERRUPTIONS
    ]
    kinds = [kinds[i] for i in np.random.default_rng(3).permutation(len(kinds))]
    chunks = [np.zeros(int(0.5 * rate), dtype=np.float32)]
    t = 0.5
    placed: list[dict[str, Any]] = []
    for k, (kind, text) in enumerate(kinds):
        voice = voices[k % len(voices)]
        q = cl.speak(QUESTION, voice, 165, rate)
        said = cl.speak(text, voice, 165, rate)
        gap = np.zeros(int(AFTER_QUESTION_S * rate), dtype=np.float32)
        rest = np.zeros(int((ROOM_S - AFTER_QUESTION_S) * rate) - len(said), dtype=np.float32)
        q_end = t + len(q) / rate
        placed.append(
            {
                "kind": kind,
                "text": text,
                "voice": voice,
                "onset_s": q_end + AFTER_QUESTION_S,
                "end_s": q_end + AFTER_QUESTION_S + len(said) / rate,
            }
        )
        chunks += [q, gap, said, rest]
        t = q_end + ROOM_S
    audio = np.concatenate(chunks)
    if args.rate == 8000:
        audio = cl.phone(audio, rate)
    turns = [(QUESTION, ANSWER)] + [(x, "Okay, go ahead.") for x in INTERRUPTIONS]
    scen = vl.scenario(turns, 300.0, "backchannels")
    tools = build_registry(scen, MonotonicClock(), [])
    async with OracleServer(scen) as oracle:
        config = load_config(
            None,
            environ={},
            overrides={
                "llm": {"base_url": oracle.base_url, "model": MODEL_ID, "max_retries": 0},
                "agent": {"mode": "async", "system_prompt": "You are a helpful agent."},
                "ledger": {"persist": False},
                "voice": {"sample_rate": args.rate},
            },
        )
        result = await run_audio(
            config, audio, 8000 if args.rate == 8000 else rate, realtime=args.realtime, tools=tools
        )
    agent = result.agent_audio
    if args.rate != rate:
        from peripherals.resample import resample

        agent = resample(agent, args.rate, rate)
    spans = vl.spans(agent, gap_s=0.3)
    rows = []
    for p in placed:
        before = [s for s in spans if s[0] < p["onset_s"]]
        speaking = bool(before) and before[-1][1] >= p["onset_s"] - 0.3
        utts = [u for u in result.utterances if abs(u.speech_start_s - p["onset_s"]) < 0.6]
        row = {
            **p,
            "agent_speaking": speaking,
            "barge_in_posted": any(u.posted_start_s is not None for u in utts),
            "recognised_backchannel": any(u.backchannel for u in utts),
            "heard": " | ".join(u.text for u in utts if u.text),
        }
        if speaking:
            row["stop_ms"] = round((before[-1][1] - p["onset_s"]) * 1000, 1)
        row.update(breakdown(p["onset_s"], utts, result.playback_pauses))
        pause = next(
            (q for q in result.playback_pauses if abs(q.start_s - p["onset_s"]) < 0.5), None
        )
        if pause is not None and pause.end_s is not None and not pause.barge_in:
            row["gap_ms"] = round((pause.end_s - pause.start_s) * 1000, 1)
        rows.append(row)
    bc = [r for r in rows if r["kind"] == "backchannel" and r["agent_speaking"]]
    it = [r for r in rows if r["kind"] == "interruption" and r["agent_speaking"]]
    notes = [e.text for e in result.entries if isinstance(e, le.Note) and "backchannel" in e.text]
    return {
        "settings": {"rate": args.rate, "realtime": args.realtime, "voices": voices},
        "backchannels": len(bc),
        "backchannels_that_stopped_the_agent": sum(r["barge_in_posted"] for r in bc),
        "backchannels_recognised": sum(r["recognised_backchannel"] for r in bc),
        "backchannel_gap_ms": vl.summary([r["gap_ms"] for r in bc if "gap_ms" in r]),
        "interruptions": len(it),
        "interruptions_missed": sum(not r["barge_in_posted"] for r in it),
        "interruption_stop_ms": vl.summary([r["stop_ms"] for r in it if "stop_ms" in r]),
        # onset → the agent's voice paused (the stop, on the stream clock; the stop above can
        # be shorter when the agent was between two words at the onset)
        "interruption_voice_paused_ms": vl.summary(
            [r["voice_paused_ms"] for r in it if r["voice_paused_ms"] is not None]
        ),
        "not_over_the_agent": [r["text"] for r in rows if not r["agent_speaking"]],
        "ledger_backchannel_notes": len(notes),
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, choices=(16000, 8000), default=16000)
    parser.add_argument("--realtime", action="store_true")
    parser.add_argument(
        "--voices", choices=("default", "held-out", "recheck", "recheck5"), default="default"
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    if not cl.espeak_available():
        print("bench: espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2, default=float)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
