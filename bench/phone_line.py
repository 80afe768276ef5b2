"""The customer-service phone line at 8 kHz: numbers, writes, voice-to-voice, CPU.

    .venv/bin/python bench/phone_line.py [--voices default|held-out] [--realtime N]
                                         [--ttft-ms 300] [--json out.json]

Callers in voices that are not the agent's (espeak-ng voices at two rates, and
piper's joe at two speeds), through the 8 kHz G.711 μ-law round trip, call the
profile (``configs/customer_service_phone.yaml``: its SQLite tools, its call
rules) over the file transport with the real VAD, Whisper and piper. The LLM
is the scripted fake of ``voice_agent.bench.scripted_model.phone_policy``: it
passes the caller's words for the number to the tools verbatim, so what is
measured is the product's recognition and normalisation, not a model's.

Per call (fast mode: the stream clock waits for the engine, so load does not
change what is recognised):
- ``number_right``: the lookup found the order the caller read out;
- ``cut_off``: the caller's one turn was split in two (the turn ended inside the number);
- ``wer_words``: word error rate of the final transcript on the words that are not digits
  (the digits are scored by ``number_right``);
- writes: calls that ask to cancel and answer yes / no; the audit table must hold exactly
  one cancellation per yes and none per no.
With ``--realtime N``, the first N lookups also run in real time against the scripted model
at ``--ttft-ms``: voice-to-voice from the audio (the caller's last audible sample to the
agent's first one), and CPU seconds per minute of call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import callers as cl  # noqa: E402
import numpy as np  # noqa: E402

from ledger import entries as le  # noqa: E402
from peripherals.wer import word_error_rate  # noqa: E402
from voice_agent.bench.scripted_model import phone_policy, scripted_model  # noqa: E402
from voice_agent.config import load_config  # noqa: E402
from voice_agent.phone.numbers import spoken_digits  # noqa: E402
from voice_agent.phone.store import Store  # noqa: E402
from voice_agent.transports.files import run_audio  # noqa: E402

RATE = 16000
PHONE = 8000
PROFILE = Path(__file__).resolve().parents[1] / "configs" / "customer_service_phone.yaml"
WORDS = "zero one two three four five six seven eight nine".split()
VOICES = {"default": ["en-us+m3", "en-gb+f3", "piper:1.0", "piper:1.25"],
          "held-out": ["en-029+m4", "en-us+m7", "en-gb-scotland+m1", "piper:0.9"]}  # fmt: skip
PHRASINGS = [
    "My order number is {spaced}.",
    "Hi, can you check order {words}, please?",
    "It's order number {pairs}.",
    "Um, the order is {oh}.",
]


def say_number(digits: str, style: str) -> str:
    if style == "spaced":
        return ", ".join(WORDS[int(d)] for d in digits)
    if style == "words":
        return " ".join(WORDS[int(d)] for d in digits)
    if style == "oh":
        return " ".join("oh" if d == "0" else WORDS[int(d)] for d in digits)
    # pairs: "forty four, seventeen" (odd lengths: the first digit alone)
    head, rest = (digits[0], digits[1:]) if len(digits) % 2 else ("", digits)
    tens = ["", "ten", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
    teens = (
        "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
    )
    out = [WORDS[int(head)]] if head else []
    for i in range(0, len(rest), 2):
        a, b = int(rest[i]), int(rest[i + 1])
        out.append(f"oh {WORDS[b]}" if a == 0 else teens[b] if a == 1 else
                   tens[a] if b == 0 else f"{tens[a]} {WORDS[b]}")  # fmt: skip
    return ", ".join(out)


def voice_audio(text: str, voice: str) -> np.ndarray:
    if voice.startswith("piper:"):
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "voice"))
        from voice_helpers import speech  # the agent's own voice, other speeds

        return speech(text, float(voice.split(":")[1]))[0]
    return cl.speak(text, voice, 150, RATE)


def call_audio(
    parts: list[tuple[float, str, str]], total_s: float
) -> tuple[np.ndarray, list[float]]:
    out = np.zeros(int(total_s * RATE), dtype=np.float32)
    ends = []
    for at, text, voice in parts:
        x = voice_audio(text, voice)
        i = int(at * RATE)
        out[i : i + len(x)] += x[: len(out) - i]
        audible = np.nonzero(np.abs(x) > cl.AUDIBLE)[0]
        ends.append(at + audible[-1] / RATE)
    return cl.phone(out, RATE), ends


async def answer(x: np.ndarray, db: Path, *, realtime: bool, ttft_s: float) -> Any:
    os.environ["VOICE_AGENT_PHONE_DB"] = str(db)
    async with scripted_model(phone_policy, ttft_s=ttft_s) as model:
        config = load_config(PROFILE, environ={}, overrides={
            "llm": {"base_url": model.base_url, "model": "scripted", "max_retries": 0},
            "agent": {"mode": "async", "greeting": None},
            "ledger": {"persist": False},
        })  # fmt: skip
        return await run_audio(config, x, PHONE, realtime=realtime)


def first_agent_audio_after(result: Any, t: float) -> float | None:
    a = result.agent_audio
    idx = np.nonzero(np.abs(a[int(t * PHONE) :]) > 0.01)[0]
    return None if len(idx) == 0 else t + idx[0] / PHONE


def digits_only(text: str) -> str:
    return re.sub(r"\d", " ", text)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="phone-bench-"))
    seed_db = Store(tmp / "seed.sqlite")
    rng = random.Random(2026)
    orders = [
        o["id"] for o in seed_db._db.execute("SELECT id FROM orders WHERE status != 'processing'")
    ]
    cancellable = [
        o["id"] for o in seed_db._db.execute("SELECT id FROM orders WHERE status = 'processing'")
    ]
    voices = VOICES[args.voices]
    lookups: list[dict[str, Any]] = []
    for i, (voice, phrasing) in enumerate((v, p) for v in voices for p in PHRASINGS):
        order = rng.choice(orders)
        style = re.search(r"\{(\w+)\}", phrasing).group(1)  # type: ignore[union-attr]
        text = phrasing.format(**{style: say_number(order, style)})
        if not args.accuracy:
            lookups.append({"voice": voice, "text": text, "order": order})
            continue
        x, (end,) = call_audio([(0.5, text, voice)], 10.0)
        result = await answer(x, tmp / f"l{i}.sqlite", realtime=False, ttft_s=0.0)
        finals = [e.text for e in result.entries if isinstance(e, le.UserUtterance) and e.final]
        calls = [
            e
            for e in result.entries
            if isinstance(e, le.ToolCallStarted) and e.name == "lookup_order"
        ]
        found = [e.result for e in result.entries if isinstance(e, le.ToolCallResolved)
                 and isinstance(e.result, dict) and e.result.get("order_number")]  # fmt: skip
        heard_digits = [spoken_digits(json.loads(c.arguments)["order_number"]) for c in calls]
        said_words = re.sub(r"\b(" + "|".join(WORDS + ["oh"]) + r")\b", " ", text.lower())
        heard_words = re.sub(
            r"\b(" + "|".join(WORDS + ["oh"]) + r")\b|\d", " ", " ".join(finals).lower()
        )
        lookups.append({
            "voice": voice, "text": text, "order": order, "finals": finals,
            "heard_digits": heard_digits,
            "number_right": any(f.get("order_number") == order for f in found),
            "cut_off": len(finals) > 1,
            "wer_words": word_error_rate(said_words, heard_words),
        })  # fmt: skip
        print(f"{voice:18s} {'OK ' if lookups[-1]['number_right'] else 'BAD'} {order:>6s} "
              f"heard={heard_digits} finals={finals}", flush=True)  # fmt: skip
    writes: list[dict[str, Any]] = []
    answers = ("Yes, please.", "No.")
    write_cases = [(v, a) for v in voices for a in answers] if args.accuracy else []
    for i, (voice, answer_text) in enumerate(write_cases):
        order = cancellable[i % len(cancellable)]
        x, _ = call_audio([(0.5, f"Please cancel order {say_number(order, 'words')}.", voice),
                           (10.0, answer_text, voice)], 17.0)  # fmt: skip
        db = tmp / f"w{i}.sqlite"
        await answer(x, db, realtime=False, ttft_s=0.0)
        audit = Store(db).audit()
        want = 1 if answer_text.startswith("Yes") else 0
        writes.append({"voice": voice, "answer": answer_text, "order": order,
                       "applied": len(audit), "expected": want})  # fmt: skip
        print(
            f"{voice:18s} cancel {order} + {answer_text!r}: applied {len(audit)} (want {want})",
            flush=True,
        )
    timing: list[dict[str, Any]] = []
    cpu_s = call_s = 0.0
    for i, row in enumerate(lookups[: args.realtime]):
        x, (end,) = call_audio([(0.5, row["text"], row["voice"])], 8.0)
        before = resource.getrusage(resource.RUSAGE_SELF)
        result = await answer(x, tmp / f"r{i}.sqlite", realtime=True, ttft_s=args.ttft_ms / 1000)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        call_s += result.input_s
        first = first_agent_audio_after(result, end)
        timing.append(
            {"voice": row["voice"], "v2v_ms": None if first is None else (first - end) * 1000}
        )
        print(f"{row['voice']:18s} realtime v2v {timing[-1]['v2v_ms']}", flush=True)
    v2v = sorted(t["v2v_ms"] for t in timing if t["v2v_ms"] is not None)
    scored = [r for r in lookups if "number_right" in r]
    summary = {
        "calls": len(scored),
        "numbers_right": sum(r["number_right"] for r in scored),
        "cut_off": sum(r["cut_off"] for r in scored),
        "wer_words_mean": float(np.mean([r["wer_words"] for r in scored])) if scored else None,
        "write_calls": len(writes),
        "writes_exactly_as_expected": sum(w["applied"] == w["expected"] for w in writes),
        "v2v_p50_ms": float(np.percentile(v2v, 50)) if v2v else None,
        "v2v_p95_ms": float(np.percentile(v2v, 95)) if v2v else None,
        "cpu_s_per_call_minute": cpu_s / (call_s / 60) if call_s else None,
        "load_average": os.getloadavg()[0],
    }
    return {"summary": summary, "lookups": lookups, "writes": writes, "timing": timing}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voices", choices=sorted(VOICES), default="default")
    parser.add_argument("--realtime", type=int, default=6, help="lookups also run in real time")
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument(
        "--no-accuracy",
        dest="accuracy",
        action="store_false",
        help="skip the fast-mode numbers and writes (only the real-time runs)",
    )
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    if not cl.espeak_available():
        print("phone_line: espeak-ng is needed for the callers (scripts/bootstrap installs it)")
        return 2
    report = asyncio.run(main_async(args))
    print(json.dumps(report["summary"], indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
