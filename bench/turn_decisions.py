"""Offline sweep of the end-of-turn decision: where it would cut callers off, and how long
it makes finished callers wait, for the turn model + transcript rules versus a fixed silence.

    .venv/bin/python bench/turn_decisions.py [--voices default|held-out|recheck|recheck5]
                                             [--asr [--cache cues.json]] [--rule name=value]
                                             [--json out.json]

No real-time pipeline: each caller item (``bench/callers.py``: espeak-ng voices,
questions, sentences paused mid-way, numbers read in groups) is cut at each of
its pauses and at its end; the turn model scores the audio up to that point
plus ``candidate_silence_ms`` of silence (16 kHz, and the 8 kHz μ-law phone
path), and :func:`decide` combines the score and the pitch contour with the
transcript so far (the reference text of the parts said, as an ideal ASR would
give it) or, with ``--asr``, the product's own early decode of that audio (Whisper
tiny.en as ``voice.asr_*`` configures it, at 16 kHz and on the 8 kHz phone path): what
the decision really reads, missing full stops, "..." and dropped "?" included. The
cues (transcripts, scores, pitch slopes) are cached with ``--cache`` so a rule change
replays in a second (``--rule name=value``, several allowed). ``model_auc_16k`` / ``_8k``: how well the model's score alone tells
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


LEAD_S = 0.2  # silence before the speech in the early decode's audio (the VAD's pre-roll)
TAIL_S = 0.06  # silence after it: the decode starts on the quiet tail ~50 ms after the end


class _Slope:
    """A contour reduced to what :func:`decide` reads (cached cues carry only this)."""

    def __init__(self, end_slope: float) -> None:
        self.end_slope = end_slope


def voice_set(name: str) -> tuple[list[str], list[cl.Item]]:
    """The voices and caller items of a ``--voices`` set (never the lead's blind set)."""
    if name == "recheck":
        return cl.RECHECK_VOICES, cl.recheck_items()
    if name == "recheck5":
        return cl.RECHECK5_VOICES, cl.recheck5_items()
    voices = cl.HELD_OUT_VOICES if name == "held-out" else cl.VOICES
    return voices, cl.items_for(voices)


def measure_cues(items: list[cl.Item], candidate_s: float, asr: Any) -> list[dict[str, Any]]:
    """Every pause and end of every item: the model's score, the pitch slope and the
    transcript (the reference, or ``asr``'s early decode) at 16 and 8 kHz."""
    from peripherals.resample import resample

    detectors = {16000: SmartTurnDetector(16000), 8000: SmartTurnDetector(8000)}
    rows: list[dict[str, Any]] = []
    for item in items:
        for audio, text, is_end in points(item, RATE):
            tail = np.concatenate([audio, np.zeros(int(candidate_s * RATE), dtype=np.float32)])
            row: dict[str, Any] = {
                "kind": item.kind,
                "voice": item.voice,
                "wpm": item.wpm,
                "reference": text,
                "end": is_end,
                "pause_s": None if is_end else item.pause_s,
            }
            for rate, det in detectors.items():
                x = tail if rate == RATE else cl.phone(tail, RATE)
                k = f"{rate // 1000}k"
                row[f"p_{k}"] = round(det.probability_done(x), 4)
                contour = final_contour(x, rate)
                row[f"slope_{k}"] = None if contour is None else round(contour.end_slope, 2)
                if asr is None:
                    row[f"text_{k}"] = text
                    continue
                heard = np.concatenate(
                    [
                        np.zeros(int(LEAD_S * RATE), dtype=np.float32),
                        audio,
                        np.zeros(int(TAIL_S * RATE), dtype=np.float32),
                    ]
                )
                if rate != RATE:
                    heard = resample(cl.phone(heard, RATE), 8000, RATE)  # as the ASR hears it
                row[f"text_{k}"] = asr._decode_blocking(heard, 1).text
            rows.append(row)
    return rows


def decide_rows(
    rows: list[dict[str, Any]], rules: EndpointingRules, adapt: bool = True
) -> list[dict[str, Any]]:
    """The decision at every cached point (``adapt``: an item's earlier pauses are the
    caller's own pauses, as the per-caller floor sees them within a call)."""
    out = []
    earlier: list[float] = []
    for row in rows:
        row = dict(row)
        for k in ("16k", "8k"):
            slope = row[f"slope_{k}"]
            d = decide(
                rules,
                row[f"p_{k}"],
                row[f"text_{k}"],
                contour=None if slope is None else _Slope(slope),
                caller_pause_s=max(earlier) if adapt and earlier else None,
            )
            row[f"model_{k}_s"] = d.silence_s
            row[f"reason_{k}"] = d.reason
            row[f"cue_{k}"] = d.cue
            row[f"evidence_{k}"] = d.evidence
        earlier = [] if row["end"] else [*earlier, row["pause_s"]]
        out.append(row)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--voices", choices=("default", "held-out", "recheck", "recheck5"), default="default"
    )
    parser.add_argument("--vad-ms", type=int, default=500)
    parser.add_argument("--unfinished-extra-ms", type=int, default=700)
    parser.add_argument(
        "--rule", action="append", default=[], help="override a rule: name=value (seconds, p)"
    )
    parser.add_argument(
        "--asr", action="store_true", help="the product's early decode, not the reference text"
    )
    parser.add_argument("--cache", help="cues read from / written to this JSON file")
    parser.add_argument("--show", action="store_true", help="print every point's decision")
    parser.add_argument("--json")
    args = parser.parse_args()
    voices, items = voice_set(args.voices)
    overrides = dict(a.split("=", 1) for a in args.rule)
    rules = EndpointingRules(
        **{  # type: ignore[arg-type]
            k: v if k == "mode" else None if v == "none" else float(v) for k, v in overrides.items()
        }
    )
    cache = Path(args.cache) if args.cache else None
    if cache is not None and cache.exists():
        cues = json.loads(cache.read_text())
    else:
        asr = None
        if args.asr:
            from peripherals.asr import WhisperStreamingAsr
            from voice_agent.config import VoiceConfig

            cfg = VoiceConfig()
            asr = WhisperStreamingAsr(
                cfg.asr_model,
                cpu_threads=1,
                window_s=cfg.asr_window_s,
                window_pad=cfg.asr_window_pad,
            )
        cues = {
            "voices": voices,
            "asr": args.asr,
            "rows": measure_cues(items, rules.candidate_silence_s, asr),
        }
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(cues, indent=1))
    rows = decide_rows(cues["rows"], rules)
    for row in rows:
        row["vad_s"] = args.vad_ms / 1000 + (
            args.unfinished_extra_ms / 1000 if likely_unfinished(row["text_16k"]) else 0
        )
    report: dict[str, Any] = {
        "voices": voices,
        "items": len(items),
        "transcript": "asr" if cues["asr"] else "reference",
        "rules": {k: v for k, v in vars(rules).items() if k in overrides},
    }
    # How well the turn model alone tells a turn's end from a pause inside it: the chance
    # that an end scores above a pause (AUC; 0.5 is chance).
    for k in ("16k", "8k"):
        ends = [r[f"p_{k}"] for r in rows if r["end"]]
        pauses = [r[f"p_{k}"] for r in rows if not r["end"]]
        pairs = [(e > q) + 0.5 * (e == q) for e in ends for q in pauses]
        report[f"model_auc_{k}"] = round(sum(pairs) / len(pairs), 3) if pairs else None
    for key in ("vad_s", "model_16k_s", "model_8k_s"):
        pauses = [r for r in rows if not r["end"]]
        cut = [r for r in pauses if r[key] < r["pause_s"]]
        waits = [r[key] for r in rows if r["end"]]
        qwaits = [r[key] for r in rows if r["end"] and r["kind"] == "question"]
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
            "items_cut": len({(r["kind"], r["voice"], r["reference"].split()[0]) for r in cut}),
            "wait_ms_median_at_end": round(statistics.median(waits) * 1000),
            "wait_ms_mean_at_end": round(statistics.fmean(waits) * 1000),
            "questions_wait_ms_p95": round(float(np.percentile(qwaits, 95)) * 1000)
            if qwaits
            else None,
            "ends_waiting_800ms_or_more": sum(w >= 0.8 for w in waits),
            "by_kind": by_kind,
        }
    if args.show:
        for r in rows:
            for k in ("16k", "8k"):
                bad = r[f"model_{k}_s"] < r["pause_s"] if not r["end"] else r[f"model_{k}_s"] >= 0.7
                print(
                    f"{'!' if bad else ' '} {k:3} {'END ' if r['end'] else 'PAUSE'} "
                    f"{r[f'model_{k}_s']:.2f}s {r[f'cue_{k}']:13} ev {r[f'evidence_{k}']:+.2f} "
                    f"p {r[f'p_{k}']:.2f} {r[f'text_{k}']!r}",
                    file=sys.stderr,
                )
    report["rows"] = rows
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
