"""Why a preemptive answer was kept or dropped, turn by turn, on the turn-taking callers.

    .venv/bin/python bench/preemption.py [--rates 16000,8000] [--voices default|held-out|
                                         recheck|recheck5|recheck6] [--kinds question,...]
                                         [--fast] [--json out.json]

Runs the same recording through the same pipeline as ``bench/turn_latency.py`` (the file
transport, real Silero VAD, faster-whisper, piper, the turn model, the oracle LLM at
``--ttft-ms``) and reads, for every caller turn that got a final transcript, the pause forks
(preemptive answers) the agent opened for it in the ledger:

- ``adopted``: a pause fork's answer became the turn's answer (its first token was ready early);
- ``no_fork``: no pause of the turn was answered early (the turn ended before the early
  transcript came, or the transcript was empty or not worth answering);
- ``resumed``: the caller spoke again after the last answered pause (the final has more
  words), and the turn's final pause was not answered early (the turn ended before its
  early transcript came: the final is that same decode, so nothing was lost by it);
- ``differs``: the last pause fork was not adopted and its text differs from the final
  (``trivially``: case, punctuation, fillers or a repeated word only, by
  :func:`same_request`);
- ``same_text``: the texts are equal but the fork was not adopted (something else happened).

Plus the questions' voice-to-voice p50/p95 as ``bench/turn_latency.py`` measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import callers as cl  # noqa: E402
import turn_latency as tl  # noqa: E402
import voice_latency as vl  # noqa: E402

from ledger import entries as le  # noqa: E402

# -- when two transcripts ask the same (case, punctuation, fillers, a repeated word, digits
# written as words or figures differ; any other word or digit does not)
# Sounds that carry no request ("um", "uh"); never a content word like "like" or "well".
FILLERS = frozenset("um umm uh uhh er erm ehm ah hmm mm mhm".split())
_NUMBER_WORDS = tl._DIGIT  # spoken digits ("oh" for zero) as figures
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_DECIMAL = re.compile(r"(\d)\.(\d)")


def request_words(text: str) -> list[str]:
    """The words a request is made of: lower case, punctuation, fillers and immediate
    repeats dropped, digits one by one ("427", "4-2-7", "four two seven" -> "4 2 7")."""
    words: list[str] = []
    text = _DECIMAL.sub(r"\1 point \2", text.lower())  # "4.5" is not "45"
    for token in _TOKEN.findall(text.replace(",", " ").replace("-", " ")):
        token = _NUMBER_WORDS.get(token, token)
        if token in FILLERS:
            continue
        pieces = list(token) if token.isdigit() else [token]
        for piece in pieces:
            if not (words and words[-1] == piece and not piece.isdigit()):
                words.append(piece)
    return words


def same_request(early: str, final: str) -> bool:
    """``early`` and ``final`` differ at most in case, punctuation, fillers, a repeated word
    or how digits are written: an answer to one answers the other. A repeated digit counts
    ("3 3" is not "3"), and so does every other word."""
    a, b = request_words(early), request_words(final)
    return bool(a) and a == b


def turn_forks(entries: list[Any]) -> dict[int, dict[str, Any]]:
    """Per user turn id: its pause forks (id, transcript) in order, and the adopted one."""
    out: dict[int, dict[str, Any]] = {}
    for e in entries:
        if isinstance(e, le.ForkOpened) and e.trigger == "pause" and e.turn_id is not None:
            out.setdefault(e.turn_id, {"forks": [], "adopted": None})["forks"].append(
                (e.fork_id, e.transcript)
            )
        elif isinstance(e, le.ForkAdopted) and e.whole:
            for rec in out.values():
                if any(fid == e.fork_id for fid, _ in rec["forks"]):
                    rec["adopted"] = e.fork_id
    return out


def classify(entries: list[Any]) -> list[dict[str, Any]]:
    """One row per final user turn: why its preemptive answer was kept or not."""
    forks = turn_forks(entries)
    rows = []
    for e in entries:
        if not (isinstance(e, le.UserUtterance) and e.final):
            continue
        rec = forks.get(e.turn_id, {"forks": [], "adopted": None})
        row: dict[str, Any] = {"turn": e.turn_id, "final": e.text, "forks": len(rec["forks"])}
        if rec["adopted"] is not None:
            row["why"] = "adopted"
        elif not rec["forks"]:
            row["why"] = "no_fork"
        else:
            last = rec["forks"][-1][1]
            row["fork"] = last
            if " ".join(last.split()) == " ".join(e.text.split()):
                row["why"] = "same_text"
            elif same_request(last, e.text):
                row["why"] = "differs_trivially"
            elif len(request_words(e.text)) > len(request_words(last)):
                row["why"] = "resumed"  # the final covers more words: the caller went on
            else:
                row["why"] = "differs"
        rows.append(row)
    return rows


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    voices, items = _voice_set(args.voices)
    if args.kinds:
        items = [it for it in items if it.kind in args.kinds]
    report: dict[str, Any] = {"voices": voices, "items": len(items), "runs": {}}
    for rate in args.rates:
        audio16, placed = cl.build_recording(items, vl.RATE, tl.GAP_S)
        audio = cl.phone(audio16, vl.RATE) if rate == 8000 else audio16
        result, exchanges, _cpu, _wall = await tl.run_recording(
            audio, rate, "model", args.ttft_ms, f"pre{rate}", items, realtime=not args.fast
        )
        rows = tl.item_rows(result, exchanges, placed, rate)
        turns = classify(list(result.entries))
        counts: dict[str, int] = {}
        for t in turns:
            counts[t["why"]] = counts.get(t["why"], 0) + 1
        pre = vl.preemption(result)
        run = {
            "why": counts,
            "preemptive_adopted": pre["adopted"],
            "preemptive_dropped": pre["dropped"],
            "voice_to_voice_questions": tl.summarise(rows)["voice_to_voice_questions"],
            "turns": turns,
        }
        report["runs"][str(rate)] = run
        print(
            f"{rate}: {counts}, adopted {pre['adopted']} dropped {pre['dropped']}, "
            f"v2v questions {run['voice_to_voice_questions']}",
            file=sys.stderr,
        )
        for t in turns:
            if t["why"] not in ("adopted", "no_fork"):
                print(f"  {t['why']}: {t.get('fork')!r} -> {t['final']!r}", file=sys.stderr)
    return report


def _voice_set(name: str) -> tuple[list[str], list[cl.Item]]:
    if name == "recheck":
        return cl.RECHECK_VOICES, cl.recheck_items()
    if name == "recheck5":
        return cl.RECHECK5_VOICES, cl.recheck5_items()
    if name == "recheck6":
        return cl.RECHECK6_VOICES, cl.recheck6_items()
    voices = cl.HELD_OUT_VOICES if name == "held-out" else cl.VOICES
    return voices, cl.items_for(voices)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--rates", default="16000,8000")
    parser.add_argument(
        "--voices",
        choices=("default", "held-out", "recheck", "recheck5", "recheck6"),
        default="default",
    )
    parser.add_argument("--kinds", default="", help="only these item kinds (comma-separated)")
    parser.add_argument("--fast", action="store_true", help="the fast stream clock")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    args.kinds = [k for k in args.kinds.split(",") if k]
    if not cl.espeak_available():
        print("bench: espeak-ng is not installed (apt-get install espeak-ng)", file=sys.stderr)
        return 2
    report = asyncio.run(main_async(args))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    print(
        json.dumps(
            {k: {x: y for x, y in v.items() if x != "turns"} for k, v in report["runs"].items()},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
