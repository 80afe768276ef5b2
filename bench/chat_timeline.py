"""Where the seconds of one typed question go in ``voice-agent chat`` (issue 11, notool9).

Usage::

    .venv/bin/python bench/chat_timeline.py [--code DIR] [--config FILE] [--json OUT] "question"

Starts a fresh ``voice-agent chat`` process (the product's command: its own
embedded server, prewarm, greeting, stall watch) with ``--code``'s checkout
first on the path (default: this one), waits for the greeting, types the
question and ``/quit`` (a piped chat reads the next line only when the agent is
idle), and prints, in ms from the moment the line was written: each piece of
the agent's output as the chat printed it, then the session ledger's entries
from the caller's utterance on (hold phrases, each chunk planned for speech,
the response's end). Times are real time: say the load (printed), and compare
two checkouts run back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question")
    parser.add_argument("--code", type=Path, default=ROOT)
    parser.add_argument("--config", default="configs/customer_service_phone.yaml")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    code = args.code.resolve()
    sessions = Path(tempfile.mkdtemp(prefix="chat-timeline-"))
    env = dict(
        os.environ,
        PYTHONPATH=str(code),
        VOICE_AGENT__LEDGER__DIRECTORY=str(sessions),
        VOICE_AGENT_PHONE_DB=str(sessions / "phone.sqlite"),
    )
    chat = subprocess.Popen(
        [str(Path(sys.executable).parent / "voice-agent"), "chat", "--config", args.config],
        cwd=code, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert chat.stdin is not None and chat.stdout is not None
    seen, printed, sent_at, load = b"", [], None, None
    while True:
        ready, _, _ = select.select([chat.stdout], [], [], 900)
        piece = os.read(chat.stdout.fileno(), 4096) if ready else b""
        if not piece:
            break
        now = time.monotonic()
        seen += piece
        if sent_at is None:
            if b"Type /quit" in seen and b"agent> " in seen and seen.endswith(b"\n"):
                load = os.getloadavg()
                chat.stdin.write(f"{args.question}\n/quit\n".encode())
                chat.stdin.flush()
                sent_at = time.monotonic()
            continue
        printed.append((round((now - sent_at) * 1e3), piece.decode(errors="replace")))
    chat.wait(60)
    for ms, text in printed:
        print(f"{ms:7d} ms  {text!r}")
    rows = []
    for path in sessions.glob("*.jsonl"):
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        heard = next((e["t"] for e in entries if e["type"] == "UserUtterance"), None)
        for e in entries:
            if heard is not None and e["t"] >= heard:
                rest = {k: v for k, v in e.items() if k not in ("t", "type", "seq", "session_id")}
                rows.append((round((e["t"] - heard) * 1e3), e["type"], json.dumps(rest)[:140]))
    for ms, kind, detail in rows:
        print(f"  ledger {ms:7d} ms {kind:<22} {detail}")
    print(f"load at the question {load}, at the end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"printed": printed, "ledger": rows, "load": load}))


if __name__ == "__main__":
    main()
