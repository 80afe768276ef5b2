"""Issue 11's first table, asked the way a newcomer asks it: ``voice-agent chat``.

    nice -n 10 .venv/bin/python bench/chat_questions.py [--runs 3] [--only d01,d06]
                                                        [--patient] [--json OUT]

Each question of the issue's first table (ids of ``bench/questions/questions.yaml``,
split ``tune``) is typed into a fresh ``voice-agent chat`` process on the
embedded defaults (the product's own command, which starts its own embedded
server, as a newcomer's does), the whole table ``--runs`` times: the issue
saw the same question give different results from one session to the next.
What happened is read back from each session's ledger and scored as
`bench/spoken_calls.py` scores a spoken call (the question set's scoring):
right tools with right arguments, answer right, invented writes, invented
facts, narrations, no answer (hold phrases and the apology are not an
answer). ``--patient`` raises the LLM deadlines through the environment (as a
user can) so a busy machine does not turn answers into apologies.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import spoken_calls as sc  # noqa: E402

from ledger.persist import load_jsonl  # noqa: E402
from voice_agent.config import load_config  # noqa: E402

#: The issue's first table, in its order: d17 is "a call-back request", d09 the
#: self-correction "4417 — sorry, 4471".
FIRST_TABLE = ["d01", "d06", "d02", "d11", "d07", "d17", "d09", "d03", "d14"]
#: `--patient`: the deadlines of bench/spoken_calls.py, as environment variables.
PATIENT_ENV = {
    **{f"VOICE_AGENT__LLM__{k.upper()}": str(v) for k, v in sc.PATIENT_LLM.items()},
    **{f"VOICE_AGENT__AGENT__{k.upper()}": str(v) for k, v in sc.PATIENT_AGENT.items()},
}
#: A chat that has not finished in this long is stopped and scored as it stands (s).
CHAT_TIMEOUT_S = 1800
#: How long a chat stopped by SIGTERM gets to end its session (a write in flight gets
#: SESSION_END_WRITE_GRACE_S, 10 s, of it) before it is killed (s).
STOP_GRACE_S = 30


def questions(only: str = "") -> list[dict[str, Any]]:
    data = yaml.safe_load((ROOT / "bench" / "questions" / "questions.yaml").read_text())
    by_id = {q["id"]: q for q in data["questions"] if q["id"] in FIRST_TABLE}
    ids = [i for i in FIRST_TABLE if not only or i in only.split(",")]
    return [{**by_id[i], "voice": "typed"} for i in ids]


def ask(question: dict[str, Any], ledgers: Path, patient: bool) -> tuple[list[Any], str]:
    """Type the question into a fresh ``voice-agent chat``; its ledger's entries and output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VOICE_AGENT__LEDGER__DIRECTORY": str(ledgers)}
    if patient:
        env.update(PATIENT_ENV)
    command = [str(Path(sys.executable).parent / "voice-agent"), "chat"]
    chat = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        out, err = chat.communicate(question["say"] + "\n", timeout=CHAT_TIMEOUT_S)
        output = out + err
    except subprocess.TimeoutExpired:  # scored as it stands: its ledger has it
        # (hostile9) SIGTERM, not subprocess.run's SIGKILL: the chat ends as Ctrl-C does and
        # its ledger records SessionEnded (SIGKILL left "no end recorded"); killed only if
        # it has not ended STOP_GRACE_S later
        chat.terminate()
        try:
            out, err = chat.communicate(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            chat.kill()
            out, err = chat.communicate()
        output = out + err + "\n(stopped: no end after the timeout)"
    found = re.search(r"^ledger: (\S+)", output, re.MULTILINE)
    if not found:
        return [], output
    path = Path(found.group(1))
    return load_jsonl(path if path.is_absolute() else ROOT / path), output


#: How a persisted ledger writes a masked number (ledger redaction): its last digits kept.
_REDACTED = re.compile(r"\[redacted \*+(\d+)\]")


def unmask(calls: list[dict[str, Any]], question: dict[str, Any]) -> None:
    """Put back, in `calls`, an argument the persisted ledger masked ("[redacted ****7788]")
    when the question's expected call has a value ending in those digits; the session's
    ledger never holds the caller's phone number in full, so it is scored by its tail."""
    for call in calls:
        for name, value in call["arguments"].items():
            masked = _REDACTED.fullmatch(str(value))
            for expected in question.get("calls") or []:
                want = str(expected.get("args", {}).get(name, ""))
                digits = re.sub(r"\D", "", want)
                if masked and expected["name"] == call["name"] and digits.endswith(masked[1]):
                    call["arguments"][name] = want


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="times the table is asked")
    parser.add_argument("--only", default="", help="comma-separated question ids")
    parser.add_argument("--patient", action="store_true", help="raise the LLM deadlines")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    tools = sc._demo_score_tools()
    canned = sc.canned_phrases(load_config(None, environ={}))
    report: dict[str, Any] = {"patient": args.patient, "runs": []}
    with tempfile.TemporaryDirectory(prefix="chat-questions-") as tmp:
        for run in range(1, args.runs + 1):
            outcomes = []
            for question in questions(args.only):
                load = os.getloadavg()[0]
                t0 = time.monotonic()
                entries, output = ask(question, Path(tmp), args.patient)
                out = sc.outcome_from_entries(question, entries, run, tools, canned)
                if any(_REDACTED.search(json.dumps(c)) for c in out.calls):
                    unmask(out.calls, question)
                    sc.score_outcome(out, question, tools)
                out.wall_s = round(time.monotonic() - t0, 1)
                outcomes.append(out)
                flags = ("T" if out.calls_ok else "-") + ("A" if out.answer_ok else "-")
                flags += "W!" if out.invented_write else ""
                print(
                    f"run {run} {question['id']} [{flags}] {question['say']!r}: calls={out.calls} "
                    f"said={out.spoken!r} errors={out.errors} ({out.wall_s} s, load {load:.1f})",
                    flush=True,
                )
            summary = sc.summarise(outcomes)
            print(f"run {run}: {json.dumps(summary)}", flush=True)
            report["runs"].append({"summary": summary, "calls": [asdict(o) for o in outcomes]})
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
