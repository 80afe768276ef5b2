"""Faults found by the session-8 hostile review (shapes no earlier suite tried).

The agent runs against the real OpenAI client over HTTP to a scripted server on
127.0.0.1; the chat command, its signals and the ledger file are the real ones.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from test_va_hostile7 import _write_registry, refund_chat_mid_write

from fsm import ManualClock
from ledger import Ledger, load_jsonl
from ledger import entries as le
from voice_agent.scheduler import SESSION_END_WRITE_GRACE_S, ToolScheduler

# --- a second interrupt while the session waits for a write ------------------------


async def test_a_second_interrupt_while_a_write_is_awaited_records_its_effect_unknown():
    """The session's end waits for a write in flight; cancelled again while it waits (a
    second Ctrl-C), it used to leave the write recorded as plain "cancelled" (or nothing).
    Now it stops waiting, records the write's effect as unknown, and is still cancelled."""
    clock = ManualClock()
    applied: list[str] = []
    ledger = Ledger("s", clock)
    sched = ToolScheduler(_write_registry(clock, 3600.0, applied), ledger, lambda e: None, clock)
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    sched.start(call_id="call_1", response_id="r1", name="refund", arguments='{"order": "5"}')
    await clock.advance(0.5)
    closing = asyncio.ensure_future(sched.aclose())
    await clock.advance(SESSION_END_WRITE_GRACE_S / 2)
    assert not closing.done()
    closing.cancel()  # the second interrupt
    with pytest.raises(asyncio.CancelledError):
        await closing
    (outcome,) = [e for e in ledger.entries if isinstance(e, le.ToolCallCancelled)]
    assert "effect is unknown" in outcome.reason and "interrupted again" in outcome.reason
    assert applied == []


@pytest.mark.realtime  # a real process and its signals: the wall clock
@pytest.mark.parametrize(
    "signals",
    [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)],
    ids=["ctrl-c twice", "sigterm then ctrl-c"],
)
async def test_a_second_signal_mid_write_ends_at_once_and_the_ledger_says_what_is_known(
    tmp_path: Path, signals
):
    """Before: the second signal ended `voice-agent chat` with the write recorded as
    'cancelled' (as if it had not happened) and no end of session. Now the write is
    recorded as of unknown effect, then SessionEnded, and the process still ends at once
    (the tool is left waiting: it never finishes before the process is gone)."""
    async with refund_chat_mid_write(tmp_path) as (proc, writes, sessions):
        assert proc.stdout is not None
        proc.send_signal(signals[0])
        async with asyncio.timeout(120):  # the first signal: the session waits for the write
            while b"waiting up to" not in (line := await proc.stdout.readline()):
                assert line, "the process ended before it waited for the write"
        proc.send_signal(signals[1])
        try:
            async with asyncio.timeout(120):  # well under the write's grace: no waiting
                printed, _ = await proc.communicate()
        finally:
            (tmp_path / "writes.log.go").touch()  # the tool thread, if still alive, ends
    text = printed.decode()
    assert proc.returncode == 130, text
    assert writes.read_text().split() == ["start"]  # never applied while the process lived
    (session,) = sessions.glob("*.jsonl")
    entries = load_jsonl(session)
    (outcome,) = [
        e for e in entries if e.type.startswith("ToolCall") and e.type != "ToolCallStarted"
    ]
    assert isinstance(outcome, le.ToolCallCancelled) and "effect is unknown" in outcome.reason
    assert isinstance(entries[-1], le.SessionEnded) and entries[-1].reason == "interrupted"
    assert "Traceback" not in text


# --- `voice-agent ledger show DIRECTORY` ---------------------------------------------


def _session(path: Path, *, ended: str | None, torn: bool = False) -> None:
    from ledger import JsonlSink

    sink = JsonlSink(path)
    ledger = Ledger(path.stem, ManualClock(), sinks=[sink])
    ledger.append(
        le.SessionStarted(
            session_id=path.stem,
            started_at="2026-11-26T15:07:18+00:00",
            meta={"transport": "phone"},
        )
    )
    ledger.append(le.UserUtterance(turn_id=1, text="Where is my order?"))
    if ended is not None:
        ledger.append(le.SessionEnded(reason=ended))
    ledger.close()
    if torn:
        with open(path, "a") as file:
            file.write('{"type": "Note", "seq": 2, "t"')


def test_ledger_show_of_a_directory_lists_its_sessions(tmp_path: Path, capsys):
    """Before: `voice-agent ledger show sessions/` said "no such file: sessions" (exit 2)."""
    from voice_agent.cli import main

    _session(tmp_path / "20261126T150718Z-aaaaaa.jsonl", ended="caller hung up")
    _session(tmp_path / "20261126T160000Z-bbbbbb.jsonl", ended=None, torn=True)
    (tmp_path / "notes.jsonl").write_text("not json\n")
    assert main(["ledger", "show", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("20261126T150718Z-aaaaaa.jsonl") and "caller hung up" in lines[0]
    assert "3 entries" in lines[0] and "phone" in lines[0]
    assert lines[1].startswith("20261126T160000Z-bbbbbb.jsonl") and "no end recorded" in lines[1]
    assert lines[2].startswith("notes.jsonl") and "not a session ledger" in lines[2]
    assert "3 session(s)" in lines[-1] and "ledger show FILE" in lines[-1]


def test_ledger_show_of_an_empty_or_missing_directory_says_what_to_pass(tmp_path: Path, capsys):
    from voice_agent.cli import main

    assert main(["ledger", "show", str(tmp_path)]) == 0
    assert "no session files" in capsys.readouterr().out
    assert main(["ledger", "show", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "no such file or directory" in err and "sessions directory" in err
    assert main(["ledger", "show", os.devnull]) == 2
    assert "is not a regular file" in capsys.readouterr().err


def test_ledger_show_of_a_file_that_is_not_a_ledger_says_so_in_one_line(tmp_path: Path, capsys):
    """Before: pydantic's whole report, with the file's bytes echoed on the terminal."""
    from voice_agent.cli import main

    binary = tmp_path / "photo.jsonl"
    binary.write_bytes(bytes(range(256)) * 40 + b"\n" + b"\x00" * 100)
    assert main(["ledger", "show", str(binary)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "corrupt ledger line" in err and "\x00" not in err
    assert "is it a session file?" in err and "errors.pydantic.dev" not in err


# --- `voice-agent run -i` of a device or a pipe --------------------------------------


def test_a_wav_input_that_never_ends_is_refused_not_read_whole(tmp_path: Path):
    """Before: `voice-agent run -i /dev/zero` read the device whole: all memory, then the
    kernel killed the process. Now its header is read first and refused."""
    import resource
    import subprocess

    def limit_memory() -> None:  # so that the old behaviour fails here, not the machine
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    done = subprocess.run(
        [sys.executable, "-c", "from voice_agent.voice.wavio import read_wav\n"
         "try:\n read_wav('/dev/zero')\nexcept Exception as e:\n print(type(e).__name__, e)"],
        capture_output=True, text=True, timeout=120, preexec_fn=limit_memory,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.stdout.startswith("WavError") and "no RIFF/WAVE header" in done.stdout, done


def test_a_wav_through_a_pipe_is_read_up_to_its_declared_size(tmp_path: Path):
    """A pipe with a WAV and then more bytes (`cat call.wav /dev/zero |`): the declared
    size is read, nothing past it; a streaming writer's unknown size reads to the end."""
    import threading

    import numpy as np

    from voice_agent.voice.wavio import read_wav, write_wav

    wav = tmp_path / "call.wav"
    write_wav(wav, np.zeros(1600, dtype=np.float32), 16000)
    data = wav.read_bytes()
    for tail, unknown in ((b"\0" * 1_000_000, False), (b"", True)):
        fifo = tmp_path / f"pipe{unknown}"
        os.mkfifo(fifo)
        sent = data if not unknown else data[:4] + b"\xff\xff\xff\xff" + data[8:]

        def feed(sent: bytes = sent, fifo: Path = fifo, tail: bytes = tail) -> None:
            with open(fifo, "wb") as out:
                try:
                    out.write(sent + tail)
                except BrokenPipeError:
                    pass  # the reader stopped at the declared size

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        samples, rate = read_wav(fifo)
        writer.join(60)
        assert rate == 16000 and len(samples) == 1600
