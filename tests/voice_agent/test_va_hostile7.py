"""Faults found by the session-7 hostile review (shapes no earlier suite tried).

The agent runs on ``AutojumpClock`` against the real OpenAI client over HTTP to
a scripted server on 127.0.0.1; the chat command and the ledger file are the
real ones.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

from test_va_llm_reliability import APOLOGY, run_call

from ledger import JsonlSink, load_jsonl
from ledger import entries as le
from voice_agent.bench.fault_server import FaultServer, answer
from voice_agent.config import load_config
from voice_agent.transports.text import run_chat

LONE = "\udcff"  # what Python's surrogateescape makes of an undecodable byte 0xff


def test_a_lone_surrogate_in_what_the_caller_said_does_not_poison_the_session():
    """'hi <0xff> there' typed on a terminal in the C.UTF-8 locale: every later request of
    the session failed to encode ('surrogates not allowed') and got the apology."""
    call = run_call(answer("Your order ships on Friday."), [f"hi {LONE} there", "where is it?"])
    for turn in (0, 1):
        heard = [text for _, text in call.heard(turn)]
        assert heard == ["Your order ships on Friday."], (turn, heard)
    assert not [e for e in call.entries("Note") if e.level == "error"]
    sent = call.server.requests[-1]["messages"]
    assert any("hi \ufffd there" in str(m.get("content")) for m in sent), sent


def test_half_a_surrogate_pair_from_the_server_does_not_poison_the_session():
    """A server escaping half a UTF-16 pair in its JSON ('\\ud83d'): the text reached the
    ledger and every later request failed to encode."""
    chunk = {"choices": [{"index": 0, "delta": {"content": "Sure \\ud83d."}}]}
    first = [
        ("headers",),
        ("role",),
        ("raw", b"data: " + json.dumps(chunk).replace("\\\\", "\\").encode() + b"\n\n"),
        ("finish", "stop"),
        ("done",),
    ]

    def plan(index: int, body: dict) -> list:
        return first if index == 0 else answer("We open at nine.")

    call = run_call(plan, ["hello", "when do you open?"])
    assert [text for _, text in call.heard(1)] == ["We open at nine."]
    assert APOLOGY not in [text for _, text in call.heard(0)]
    assert not [e for e in call.entries("Note") if e.level == "error"]


def test_the_session_file_keeps_an_entry_holding_a_lone_surrogate(tmp_path: Path):
    """The entry used to be refused (UnicodeEncodeError out of the sink: a traceback, the
    caller's utterance missing from the file); now it is written with U+FFFD for the
    undecodable character."""
    path = tmp_path / "s.jsonl"
    sink = JsonlSink(path)
    sink.write(le.UserUtterance(seq=1, t=0.0, turn_id=1, text=f"hi {LONE} there", final=True))
    sink.write(le.UserUtterance(seq=2, t=1.0, turn_id=2, text="next", final=True))
    sink.close()
    path.read_bytes().decode("utf-8")  # strict: the file is UTF-8
    texts = [e.text for e in load_jsonl(path)]  # type: ignore[union-attr]
    assert texts == ["hi \ufffd there", "next"]


def test_chat_reads_bytes_its_encoding_cannot_decode(tmp_path: Path):
    """A Latin-1 line piped into `voice-agent chat` under a strict UTF-8 locale ended the
    chat with 'unexpected error: ExceptionGroup'; the next line was never answered."""

    async def main() -> str:
        async with FaultServer(answer("Your order ships on Friday.")) as server:
            config = load_config(
                environ={},
                overrides={
                    "llm": {"base_url": server.base_url, "model": "m", "max_retries": 0},
                    "ledger": {"persist": True, "directory": str(tmp_path)},
                },
            )
            stdin = io.TextIOWrapper(
                io.BytesIO(b"caf\xe9 au lait\nwhere is my order?\n"), encoding="utf-8"
            )
            out = io.StringIO()
            assert await run_chat(config, stdin=stdin, stdout=out) == 0
            return out.getvalue()

    printed = asyncio.run(main())
    assert printed.count("agent> Your order ships on Friday.") == 2, printed
    assert "you> caf\ufffd au lait" in printed
    (session,) = tmp_path.glob("*.jsonl")
    said = [e.text for e in load_jsonl(session) if isinstance(e, le.UserUtterance)]
    assert said == ["caf\ufffd au lait", "where is my order?"]
