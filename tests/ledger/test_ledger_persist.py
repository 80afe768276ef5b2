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


# -- storage faults ------------------------------------------------------------------


class FlakyDisk:
    """`os.write` that fails with ENOSPC while `full` is set (after writing half the line)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import errno

        self.full = False
        real_write = os.write

        def write(fd: int, data: bytes | memoryview) -> int:
            if self.full:
                real_write(fd, bytes(data[: len(data) // 2]))  # a torn line, as a full disk does
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr("ledger.persist.os.write", write)


def test_a_full_disk_keeps_the_call_going_reports_once_and_writes_everything_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FlakyDisk(monkeypatch)
    path = tmp_path / "s.jsonl"
    reports: list[tuple[str, str]] = []
    ledger_box: list[Ledger] = []

    def on_status(text: str, level: str) -> None:
        reports.append((level, text))
        ledger_box[0].append(Note(text=text, level=level))  # type: ignore[arg-type]

    sink = JsonlSink(path, on_status=on_status)
    ledger = Ledger("s", ManualClock(), sinks=[sink])
    ledger_box.append(ledger)
    ledger.append(UserUtterance(turn_id=1, text="hello"))
    disk.full = True
    for i in range(5):  # appends never raise while the disk is full
        ledger.append(UserUtterance(turn_id=2 + i, text=f"turn {i}"))
    assert sink.pending >= 5 and sink.fault is not None
    assert [level for level, _ in reports] == ["error"]  # reported once
    assert "No space left" in reports[0][1]
    [kept] = load_jsonl(path)  # no torn line kept
    assert isinstance(kept, UserUtterance) and kept.text == "hello"
    disk.full = False
    ledger.append(UserUtterance(turn_id=9, text="after"))
    assert sink.pending == 0 and sink.fault is None
    assert [level for level, _ in reports] == ["error", "warning"]
    sink.close()
    loaded = load_jsonl(path)
    assert [e.seq for e in loaded] == list(range(len(ledger.entries)))  # nothing lost, in order
    assert any(isinstance(e, Note) and "No space left" in e.text for e in loaded)


def test_an_unusable_sessions_directory_is_reported_before_anything_starts(
    tmp_path: Path,
) -> None:
    from ledger import check_directory

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(LedgerError, match="not a directory"):
        check_directory(a_file)
    with pytest.raises(LedgerError, match="cannot create"):
        check_directory(a_file / "sessions")
    assert check_directory(tmp_path / "new" / "sessions").is_dir()


def _mount_tmpfs(where: Path, size: str, *options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(where)],
        capture_output=True,
    )
    return result.returncode == 0


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 64 KiB tmpfs (needs root and mount rights; skipped otherwise)."""
    where = tmp_path / "tiny"
    if not _mount_tmpfs(where, "64k"):
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_real_full_tmpfs_loses_nothing_once_space_comes_back(tiny_tmpfs: Path) -> None:
    filler = tiny_tmpfs / "filler"
    path = tiny_tmpfs / "s.jsonl"
    reports: list[str] = []
    sink = JsonlSink(path, on_status=lambda text, level: reports.append(level))
    ledger = Ledger("s", ManualClock(), sinks=[sink])
    ledger.append(UserUtterance(turn_id=1, text="before the disk fills"))
    with open(filler, "wb", buffering=0) as f:  # fill the file system
        try:
            while True:
                f.write(b"\0" * 1024)
        except OSError:
            pass
    for i in range(20):
        ledger.append(UserUtterance(turn_id=2, text=f"a long enough utterance number {i} " * 4))
    assert reports == ["error"] and sink.pending > 0
    filler.unlink()
    ledger.append(UserUtterance(turn_id=3, text="after"))
    assert reports == ["error", "warning"] and sink.pending == 0
    sink.close()
    assert len(load_jsonl(path)) == len(ledger.entries)


def test_a_read_only_sessions_directory_fails_the_start_up_check(tmp_path: Path) -> None:
    from ledger import check_directory

    where = tmp_path / "ro"
    if not _mount_tmpfs(where, "64k", "ro"):
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        with pytest.raises(LedgerError, match="cannot write in .*Read-only file system"):
            check_directory(where)
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
