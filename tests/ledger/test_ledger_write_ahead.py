"""`Ledger.persisted`: when an entry (and every one before it) is in the session file (hostile9).

The engine waits for it before a write tool runs (write-ahead), so it must be done
exactly when the sink has handed the entry to the OS, never before, and must never
leave a waiter waiting for ever (a storage fault, a closed sink, no sink at all).
"""

from __future__ import annotations

import errno
import json
import os
import threading
from pathlib import Path

import pytest

from fsm.clock import ManualClock
from ledger import JsonlSink, Ledger
from ledger.entries import LlmRequestStarted, Note, ToolCallResolved, ToolCallStarted
from ledger.persist import INLINE_CHARS

WAIT_S = 60.0  # a safety net for a broken implementation, never the measure of a test


def _held_sink(path: Path) -> tuple[JsonlSink, threading.Event, threading.Event]:
    entered, release = threading.Event(), threading.Event()

    def slow_masker(text: str) -> str:  # fake: masking held until the test releases it
        if len(text) > INLINE_CHARS:
            entered.set()
            release.wait(WAIT_S)
        return text

    return JsonlSink(path, redactor=slow_masker), entered, release


def _with_large_result(ledger: Ledger) -> None:
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    ledger.append(
        ToolCallStarted(call_id="c1", response_id="r1", name="f", arguments="{}", kind="read")
    )
    ledger.append(ToolCallResolved(call_id="c1", result="y" * 3 * INLINE_CHARS))


def test_an_entry_queued_behind_a_large_one_is_persisted_only_once_in_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.jsonl"
    sink, entered, release = _held_sink(path)
    ledger = Ledger("s", ManualClock(), sinks=[sink])
    try:
        _with_large_result(ledger)
        intent = ledger.append(Note(text="write intent k1"))
        stored = ledger.persisted()
        assert entered.wait(WAIT_S)
        assert not stored.done()  # the intent waits behind the masking, not in the file
        assert "write intent" not in path.read_text()
        release.set()
        stored.result(WAIT_S)
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert lines[-1]["seq"] == intent.seq and lines[-1]["text"] == "write intent k1"
    finally:
        release.set()
        ledger.close()


def test_persisted_is_done_at_once_when_nothing_waits(tmp_path: Path) -> None:
    assert Ledger("s", ManualClock()).persisted().done()  # no sink
    ledger = Ledger("s", ManualClock(), sinks=[JsonlSink(tmp_path / "s.jsonl")])
    assert ledger.persisted().done()  # nothing appended
    ledger.append(Note(text="small"))
    assert ledger.persisted().done()  # written on append
    ledger.close()


def test_persisted_is_done_when_the_sink_closes_with_the_entry_still_queued(
    tmp_path: Path,
) -> None:
    sink, entered, release = _held_sink(tmp_path / "s.jsonl")
    ledger = Ledger("s", ManualClock(), sinks=[sink])
    _with_large_result(ledger)
    stored = ledger.persisted()
    assert entered.wait(WAIT_S) and not stored.done()
    closer = threading.Thread(target=ledger.close)
    closer.start()
    release.set()
    closer.join(WAIT_S)
    assert stored.done()


def test_a_storage_fault_releases_the_waiter_with_the_entry_kept_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk keeps the lines in memory and says so in the ledger (session 7): the
    call goes on, so a write waiting for its intent is not held until the disk frees."""
    sink, entered, release = _held_sink(tmp_path / "s.jsonl")
    ledger = Ledger("s", ManualClock(), sinks=[sink])
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        if b"write intent" in bytes(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("ledger.persist.os.write", full)
    try:
        _with_large_result(ledger)
        ledger.append(Note(text="write intent k1"))
        stored = ledger.persisted()
        release.set()
        stored.result(WAIT_S)
        assert sink.fault is not None and sink.pending == 1
    finally:
        release.set()
        monkeypatch.undo()
        ledger.close()


# -- the masking of one entry is bounded (MASK_BUDGET_S) -----------------------------------

CARD = "4111 1111 1111 1111"


def test_an_entry_whose_masking_overruns_is_written_clipped_in_order_and_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: a large entry's masking had no bound (2 MB of `a1a1...`: 10-20 s on a loaded
    machine) and every later entry, a write's intent included, waited behind it. Now
    the helper gets MASK_BUDGET_S (here 0: always over), then the entry is written with
    its large fields cut to a masked head that says what was left out."""
    monkeypatch.setattr("ledger.persist.MASK_BUDGET_S", 0.0)
    path = tmp_path / "s.jsonl"
    ledger = Ledger("s", ManualClock(), sinks=[JsonlSink(path)])
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    ledger.append(
        ToolCallStarted(call_id="c1", response_id="r1", name="f", arguments="{}", kind="read")
    )
    big = f"card {CARD} on file. " + "a1" * 500_000
    ledger.append(ToolCallResolved(call_id="c1", result={"statement": big, "n": 1}))
    ledger.append(Note(text="write intent k1"))
    ledger.persisted().result(WAIT_S)
    ledger.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [0, 1, 2, 3]
    clipped = lines[2]["result"]["clipped"]
    assert "the rest is not in the session file" in clipped
    assert f"{len(json.dumps({'statement': big, 'n': 1})):,} characters" in clipped
    assert len(clipped) < 2 * INLINE_CHARS
    assert "4111" not in clipped and "1111 1111" not in clipped  # masked
    assert ledger.call("c1").result == {"statement": big, "n": 1}  # kept whole in memory


def test_a_clipped_head_never_ends_in_part_of_a_number() -> None:
    from ledger.persist import clipped_entry

    entry = ToolCallResolved(call_id="c1", result="x" * (INLINE_CHARS - 7) + CARD + "y" * 9000)
    clipped = clipped_entry(entry)
    assert isinstance(clipped, ToolCallResolved)
    head = clipped.result
    assert isinstance(head, str) and head.startswith("x" * (INLINE_CHARS - 7) + " …")
    small = ToolCallResolved(call_id="c1", result="short")
    assert clipped_entry(small) is small


# -- the session file deleted while the call runs --------------------------------------


@pytest.mark.parametrize("what", ["the file", "its directory"])
def test_a_session_file_deleted_mid_call_is_written_again_whole(tmp_path: Path, what: str) -> None:
    """Before: the sink went on writing into the deleted file: the ledger was lost from
    disk and nobody was told. Now the file is put back (its lines copied from the open
    descriptor), later entries follow, and the ledger gets a warning note."""
    import shutil

    directory = tmp_path / "sessions"
    directory.mkdir()
    path = directory / "s.jsonl"
    told: list[str] = []
    box: list[Ledger] = []

    def status(text: str, level: str) -> None:
        told.append(text)
        box[0].append(Note(text=text, level="warning"))

    ledger = Ledger("s", ManualClock(), sinks=[JsonlSink(path, on_status=status)])
    box.append(ledger)
    for i in range(3):
        ledger.append(Note(text=f"before {i}"))
    if what == "the file":
        path.unlink()
    else:
        shutil.rmtree(directory)
    ledger.append(Note(text="after"))
    ledger.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["seq"] for line in lines] == list(range(len(ledger)))
    assert [line.get("text") for line in lines][:4] == ["before 0", "before 1", "before 2", "after"]
    assert len(told) == 1 and "deleted while the call ran" in told[0]
    assert lines[-1]["text"] == told[0]


def test_a_deleted_session_file_whose_name_was_taken_is_restored_beside_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.jsonl"
    ledger = Ledger("s", ManualClock(), sinks=[JsonlSink(path)])
    ledger.append(Note(text="one"))
    path.unlink()
    path.write_text("someone else's file\n")
    ledger.append(Note(text="two"))
    ledger.close()
    assert path.read_text() == "someone else's file\n"
    restored = tmp_path / "s-restored.jsonl"
    assert [json.loads(line)["text"] for line in restored.read_text().splitlines()] == [
        "one",
        "two",
    ]
