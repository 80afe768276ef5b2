"""Whisper's encoder window: WER and decode time with the short window vs the stock 30 s.

    .venv/bin/python bench/asr_window.py [--window-s 10] [--baseline-window-s 30] [--voices both]
                                         [--pad silence] [--baseline-pad zeros] [--json out.json]

Every caller turn of ``bench/callers.py`` (espeak-ng voices, questions, pausing
sentences, digit strings; the held-in and the held-out voices), at 16 kHz and
through the 8 kHz μ-law phone path, with 0.3 s of silence before (the voice
input's preroll) and 0.1 s after (the pause at which the final decode starts),
is decoded by ``WhisperStreamingAsr`` twice, interleaved: with ``window_s``
and with the stock 30 s window. Reports WER per rate and the decode-time ratio
(short / stock: a ratio survives the machine's load; absolute times do not).
``--pad`` / ``--baseline-pad`` choose what fills each window after the utterance
(``silence``: the log-mel of digital silence, the default; ``zeros``: zero features,
faster-whisper's padding); ``--voices recheck`` / ``recheck5`` use session 4's / session 5's re-check callers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import callers as cl  # noqa: E402
from turn_latency import normalise  # noqa: E402

from peripherals.asr import DEFAULT_WINDOW_PAD, FULL_WINDOW_S, WhisperStreamingAsr  # noqa: E402
from peripherals.resample import resample  # noqa: E402
from peripherals.wer import word_error_rate  # noqa: E402

RATE = 16000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--window-s", type=float, default=10.0)
    parser.add_argument(
        "--baseline-window-s",
        type=float,
        default=FULL_WINDOW_S,
        help="the window compared against (default Whisper's stock 30 s)",
    )
    parser.add_argument(
        "--voices",
        choices=("default", "held-out", "both", "recheck", "recheck5"),
        default="both",
    )
    parser.add_argument("--pad", choices=("silence", "zeros"), default=DEFAULT_WINDOW_PAD)
    parser.add_argument("--baseline-pad", choices=("silence", "zeros"), default=DEFAULT_WINDOW_PAD)
    parser.add_argument("--json")
    args = parser.parse_args()
    if not cl.espeak_available():
        print("bench: espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    voices = {
        "default": cl.VOICES,
        "held-out": cl.HELD_OUT_VOICES,
        "both": cl.VOICES + cl.HELD_OUT_VOICES,
        "recheck": cl.RECHECK_VOICES,
        "recheck5": cl.RECHECK5_VOICES,
    }[args.voices]
    stock = WhisperStreamingAsr(window_s=args.baseline_window_s, window_pad=args.baseline_pad)
    short = WhisperStreamingAsr(window_s=args.window_s, whisper=stock._model, window_pad=args.pad)
    stock._decode_blocking(np.zeros(RATE, np.float32) + 0.01, 1)  # warm-up
    out: dict[str, dict[str, list[float]]] = {
        f"{rate}": {"wer_stock": [], "wer_short": [], "s_stock": [], "s_short": []}
        for rate in (16000, 8000)
    }
    changed = []
    if args.voices == "recheck":
        items = cl.recheck_items()
    elif args.voices == "recheck5":
        items = cl.recheck5_items()
    else:
        items = [it for v in voices for it in cl.items_for([v], speeds=cl.SPEEDS_WPM[:1])]
    for item in items:
        x, _ = cl.render(item, RATE)
        for rate in (16000, 8000):
            y = resample(cl.phone(x, RATE), 8000, RATE) if rate == 8000 else x
            y = np.concatenate(
                [
                    np.zeros(int(0.3 * RATE), np.float32),
                    y,
                    np.zeros(int(0.1 * RATE), np.float32),
                ]
            )
            a = stock._decode_blocking(y, 1)
            b = short._decode_blocking(y, 1)
            ref = normalise(item.text)
            r = out[f"{rate}"]
            r["wer_stock"].append(word_error_rate(ref, normalise(a.text)))
            r["wer_short"].append(word_error_rate(ref, normalise(b.text)))
            r["s_stock"].append(a.decode_s)
            r["s_short"].append(b.decode_s)
            if a.text != b.text:
                changed.append({"rate": rate, "said": item.text, "stock": a.text, "short": b.text})
    report = {
        "window_s": args.window_s,
        "baseline_window_s": args.baseline_window_s,
        "pad": args.pad,
        "baseline_pad": args.baseline_pad,
        "voices": voices,
        **{
            rate: {
                "n": len(r["wer_stock"]),
                "wer_stock": round(float(np.mean(r["wer_stock"])), 3),
                "wer_short": round(float(np.mean(r["wer_short"])), 3),
                "decode_time_short_over_stock": round(sum(r["s_short"]) / sum(r["s_stock"]), 3),
                "median_decode_ms_stock": round(float(np.median(r["s_stock"])) * 1000, 1),
                "median_decode_ms_short": round(float(np.median(r["s_short"])) * 1000, 1),
            }
            for rate, r in out.items()
        },
        "texts_changed": len(changed),
    }
    if args.json:
        Path(args.json).write_text(json.dumps({**report, "changed": changed}, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
