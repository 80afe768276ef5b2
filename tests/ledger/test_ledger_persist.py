"""JSON-lines persistence: round trip, redaction, torn writes, and a killed process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm.clock import ManualClock
from ledger import JsonlSink, Ledger, LedgerError, load_jsonl, redact_entry
from ledger.entries import (
    AgentTextPlanned,
    Entry,
    LlmRequestStarted,
    Note,
    SessionStarted,
    ToolCallResolved,
    ToolCallStarted,
    UserUtterance,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
texts = st.text(alphabet=st.sampled_from('0123456789 -abcé"\\\n\u2028\x85\r'), max_size=40)


def record(ledger: Ledger, user: str, agent: str, arguments: str, result: object) -> None:
    ledger.append(
        SessionStarted(
            session_id=ledger.session_id, started_at="2025-01-01T00:00:00Z", meta={"m": 1}
        )
    )
    ledger.append(UserUtterance(turn_id=1, text=user))
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    ledger.append(AgentTextPlanned(response_id="r1", text=agent))
    ledger.append(
        ToolCallStarted(call_id="c1", response_id="r1", name="f", arguments=arguments, kind="read")
    )
    ledger.append(ToolCallResolved(call_id="c1", result=result))  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(user=texts, agent=texts, arguments=texts, result=json_values)
def test_entries_written_by_the_sink_load_back_equal_after_redaction(
    user: str, agent: str, arguments: str, result: object
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "session.jsonl"
        sink = JsonlSink(path, durable=True)
        ledger = Ledger("s1", ManualClock(), sinks=[sink])
        record(ledger, user, agent, arguments, result)
        ledger.close()

        assert load_jsonl(path) == [redact_entry(entry) for entry in ledger.entries]
        assert ledger.entries[1] == UserUtterance(
            seq=1, t=0.0, turn_id=1, text=user
        )  # raw in memory


def test_the_file_holds_redacted_lines_and_memory_keeps_raw_text(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    ledger = Ledger("s1", ManualClock(), sinks=[JsonlSink(path)])
    ledger.append(UserUtterance(turn_id=1, text="card 4111 1111 1111 1111"))
    ledger.close()

    assert "4111" not in path.read_text()
    assert json.loads(path.read_text())["text"] == "card [redacted ****1111]"
    assert ledger.entries[0] == UserUtterance(
        seq=0, t=0.0, turn_id=1, text="card 4111 1111 1111 1111"
    )


def write_notes(path: Path, count: int) -> list[Entry]:
    ledger = Ledger("s1", ManualClock(), sinks=[JsonlSink(path)])
    for index in range(count):
        ledger.append(Note(text=f"note {index}"))
    ledger.close()
    return list(ledger.entries)


def test_a_torn_last_line_from_a_crash_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    entries = write_notes(path, 5)
    with open(path, "a", encoding="utf-8") as file:
        file.write('{"type": "Note", "seq": 5, "t": 0.0, "te')

    assert load_jsonl(path) == entries


def test_a_corrupt_line_in_the_middle_raises_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    write_notes(path, 4)
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:10]
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(LedgerError, match=r"s\.jsonl:2: corrupt ledger line"):
        load_jsonl(path)


def test_reopening_a_file_with_a_torn_tail_continues_on_a_clean_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    entries = write_notes(path, 3)
    with open(path, "a", encoding="utf-8") as file:
        file.write('{"type": "No')
    sink = JsonlSink(path)
    extra = Note(seq=3, t=1.0, text="after restart")
    sink.write(extra)
    sink.close()
    sink.close()

    assert load_jsonl(path) == [*entries, extra]
    with pytest.raises(LedgerError, match="closed"):
        sink.write(extra)


KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from fsm.clock import MonotonicClock
    from ledger import JsonlSink, Ledger
    from ledger.entries import Note

    ledger = Ledger("s1", MonotonicClock(), sinks=[JsonlSink(sys.argv[1])])
    for index in range(int(sys.argv[2])):
        ledger.append(Note(text=f"note {index}"))
    print("appended", flush=True)
    time.sleep(60)
    """
)


def test_a_process_killed_after_appending_loses_none_of_its_entries(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), "25"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "appended"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    assert process.returncode == -signal.SIGKILL
    assert [entry.text for entry in load_jsonl(path) if isinstance(entry, Note)] == [
        f"note {index}" for index in range(25)
    ]
