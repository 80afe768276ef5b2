"""Offline sweep of the end-of-turn decision: where it would cut callers off, and how long
it makes finished callers wait, for the turn model + transcript rules versus a fixed silence.

    .venv/bin/python bench/turn_decisions.py [--voices default|held-out|recheck] [--json out.json]

No real-time pipeline: each caller item (``bench/callers.py``: espeak-ng voices,
questions, sentences paused mid-way, numbers read in groups) is cut at each of
its pauses and at its end; the turn model scores the audio up to that point
plus ``candidate_silence_ms`` of silence (16 kHz, and the 8 kHz μ-law phone
path), and :func:`decide` combines the score and the pitch contour with the
transcript so far (the reference text of the parts said, as an ideal ASR would
give it). ``model_auc_16k`` / ``_8k``: how well the model's score alone tells
the turn's ends from its pauses (0.5 is chance). A pause is
*cut off* when the decided silence is shorter than the caller's real pause;
at the end, the decided silence is the *wait* the caller gets before the turn
ends. Compared with ``vad``: a fixed ``--vad-ms`` silence, extended by the
unfinished-text rule as the plain ``detection: vad`` mode does. Because
nothing here runs against the clock, the figures do not depend on the
machine's load; what the pipeline adds on top (the pause detection lag, the
early decode) is measured by ``bench/turn_latency.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import callers as cl  # noqa: E402

from peripherals.prosody import final_contour  # noqa: E402
from peripherals.turn import SmartTurnDetector  # noqa: E402
from voice_agent.voice.endpointing import EndpointingRules, decide, likely_unfinished  # noqa: E402

RATE = 16000


def points(item: cl.Item, rate: int) -> list[tuple[np.ndarray, str, bool]]:
    """(audio up to a pause or the end, text so far, is_end) for each cut of the item."""
    x, starts = cl.render(item, rate)
    ends = []
    for i, start in enumerate(starts):
        nxt = starts[i + 1] if i + 1 < len(starts) else len(x)
        seg = x[start:nxt]
        audible = np.nonzero(np.abs(seg) > cl.AUDIBLE)[0]
        ends.append(start + (audible[-1] + 1 if len(audible) else len(seg)))
    return [
        (x[:end], " ".join(item.parts[: i + 1]), i == len(starts) - 1) for i, end in enumerate(ends)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voices", choices=("default", "held-out", "recheck"), default="default")
    parser.add_argument("--vad-ms", type=int, default=500)
    parser.add_argument("--unfinished-extra-ms", type=int, default=700)
    parser.add_argument(
        "--rule", action="append", default=[], help="override a rule: name=value (seconds, p)"
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.voices == "recheck":
        voices, items = cl.RECHECK_VOICES, cl.recheck_items()
    else:
        voices = cl.HELD_OUT_VOICES if args.voices == "held-out" else cl.VOICES
        items = cl.items_for(voices)
    overrides = dict(a.split("=", 1) for a in args.rule)
    rules = EndpointingRules(
        **{k: v if k == "mode" else float(v) for k, v in overrides.items()}  # type: ignore[arg-type]
    )
    candidate = rules.candidate_silence_s
    detectors = {16000: SmartTurnDetector(16000), 8000: SmartTurnDetector(8000)}
    rows: list[dict[str, Any]] = []
    for item in items:
        for audio, text, is_end in points(item, RATE):
            tail = np.concatenate([audio, np.zeros(int(candidate * RATE), dtype=np.float32)])
            row: dict[str, Any] = {
                "kind": item.kind,
                "voice": item.voice,
                "text": text,
                "end": is_end,
                "pause_s": None if is_end else item.pause_s,
            }
            for rate, det in detectors.items():
                x = tail if rate == RATE else cl.phone(tail, RATE)
                p = det.probability_done(x)
                d = decide(rules, p, text, contour=final_contour(x, rate))
                row[f"p_{rate // 1000}k"] = round(p, 3)
                row[f"model_{rate // 1000}k_s"] = d.silence_s
                row[f"reason_{rate // 1000}k"] = d.reason
            vad = args.vad_ms / 1000 + (
                args.unfinished_extra_ms / 1000 if likely_unfinished(text) else 0
            )
            row["vad_s"] = vad
            rows.append(row)
    report: dict[str, Any] = {"voices": voices, "items": len(items), "rules": vars(rules)}
    # How well the turn model alone tells a turn's end from a pause inside it: the chance
    # that an end scores above a pause (AUC; 0.5 is chance).
    for rate in detectors:
        ends = [r[f"p_{rate // 1000}k"] for r in rows if r["end"]]
        pauses = [r[f"p_{rate // 1000}k"] for r in rows if not r["end"]]
        pairs = [(e > q) + 0.5 * (e == q) for e in ends for q in pauses]
        report[f"model_auc_{rate // 1000}k"] = round(sum(pairs) / len(pairs), 3) if pairs else None
    for key in ("vad_s", "model_16k_s", "model_8k_s"):
        pauses = [r for r in rows if not r["end"]]
        cut = [r for r in pauses if r[key] < r["pause_s"]]
        waits = [r[key] for r in rows if r["end"]]
        by_kind = {}
        for kind in cl.KINDS:
            kp = [r for r in pauses if r["kind"] == kind]
            ke = [r[key] for r in rows if r["end"] and r["kind"] == kind]
            by_kind[kind] = {
                "pauses": len(kp),
                "cut_off": sum(r[key] < r["pause_s"] for r in kp),
                "wait_ms_median": round(statistics.median(ke) * 1000) if ke else None,
            }
        report[key.removesuffix("_s")] = {
            "pauses": len(pauses),
            "cut_off": len(cut),
            "items_cut": len({(r["kind"], r["voice"], r["text"].split()[0]) for r in cut}),
            "wait_ms_median_at_end": round(statistics.median(waits) * 1000),
            "wait_ms_mean_at_end": round(statistics.fmean(waits) * 1000),
            "by_kind": by_kind,
        }
    report["rows"] = rows
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
