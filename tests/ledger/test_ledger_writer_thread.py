"""Large entries are masked and written off the appending thread, in order, once (hostile8).

The session file's masking ran inside `Ledger.append`, on the event loop: 0.2-5 s
per MB of text, so a tool returning 2 MB stalled the call for seconds (16.6 s
measured: bench/bad_input.py --loop-lag). A large entry now goes to a writer
thread, and its masking to a helper process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fsm.clock import ManualClock
from ledger import JsonlSink, Ledger, load_jsonl, redact_entry
from ledger.entries import LlmRequestStarted, Note, ToolCallResolved, ToolCallStarted
from ledger.helper_process import _CHILD as CHILD
from ledger.helper_process import HelperProcess
from ledger.persist import INLINE_CHARS

WAIT_S = 60.0  # a safety net for a broken implementation, never the measure of a test


def _call(ledger: Ledger) -> None:
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    ledger.append(
        ToolCallStarted(call_id="c1", response_id="r1", name="f", arguments="{}", kind="read")
    )


def test_appending_a_large_entry_does_not_wait_for_its_masking(tmp_path: Path) -> None:
    """Before: `append` returned only once the redactor had finished (here: never, until
    the safety net). Now it returns while the masking still runs; what follows waits
    behind it in the file, and each entry is written once."""
    entered, release = threading.Event(), threading.Event()
    masked_on: list[threading.Thread] = []

    def slow_redactor(text: str) -> str:
        if len(text) > INLINE_CHARS:
            masked_on.append(threading.current_thread())
            entered.set()
            release.wait(WAIT_S)
        return text.replace("secret", "******")

    path = tmp_path / "s.jsonl"
    sink = JsonlSink(path, redactor=slow_redactor)
    ledger = Ledger("s", ManualClock(), sinks=[sink])
    _call(ledger)
    ledger.append(ToolCallResolved(call_id="c1", result="secret " + "x" * 2 * INLINE_CHARS))
    ledger.append(Note(text="after the result"))
    try:
        assert entered.wait(WAIT_S)
        assert not release.is_set() and sink.pending == 2  # append came back mid-masking
        assert masked_on[0] is not threading.current_thread()
    finally:
        release.set()
    ledger.close()
    written = load_jsonl(path)
    assert [e.seq for e in written] == list(range(len(ledger.entries)))
    assert written == [redact_entry(e, slow_redactor) for e in ledger.entries]
    assert sink.pending == 0


def test_a_large_entry_is_masked_by_the_default_redactor_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real redactor, through the helper process: the card in a 1 MB result is
    masked, the entries around it keep their order, the number read over two
    utterances after it is still masked piece by piece. (The masking takes 0.8 s at
    load 12 and more beside a heavier load: its budget is widened to the safety net,
    as the budget is not what this test checks.)"""
    from ledger.entries import UserUtterance

    monkeypatch.setattr("ledger.persist.MASK_BUDGET_S", WAIT_S)
    path = tmp_path / "s.jsonl"
    ledger = Ledger("s", ManualClock(), sinks=[JsonlSink(path)])
    ledger.append(UserUtterance(turn_id=1, text="my card is 4111"))
    _call(ledger)
    blob = "order history " * 80_000 + " card 4111 1111 1111 1111 on file"
    ledger.append(ToolCallResolved(call_id="c1", result={"history": blob}))
    ledger.append(UserUtterance(turn_id=2, text="1111 1111 1111"))
    ledger.close()
    text = path.read_text()
    assert "4111 1111 1111 1111" not in text and "1111 1111 1111" not in text
    written = load_jsonl(path)
    assert [e.seq for e in written] == list(range(len(ledger.entries)))
    resolved = written[3]
    assert isinstance(resolved, ToolCallResolved)
    assert resolved.result == {"history": redact_entry(ledger.entries[3]).result["history"]}  # type: ignore[union-attr, index, call-overload]


def test_a_storage_fault_met_by_the_writer_thread_is_told_on_the_appending_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`on_status` appends to the ledger, which is not thread-safe: the writer thread
    keeps the news for the appending thread's next write (or close)."""
    import errno

    real_write = os.write
    full, faulted = threading.Event(), threading.Event()

    def write(fd: int, data: bytes | memoryview) -> int:
        if full.is_set():
            faulted.set()
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("ledger.persist.os.write", write)
    told: list[tuple[str, threading.Thread]] = []
    ledger_box: list[Ledger] = []

    def on_status(text: str, level: str) -> None:
        told.append((level, threading.current_thread()))  # type: ignore[arg-type]
        ledger_box[0].append(Note(text=text, level=level))  # type: ignore[arg-type]

    path = tmp_path / "s.jsonl"
    sink = JsonlSink(path, redactor=None, on_status=on_status)
    ledger = Ledger("s", ManualClock(), sinks=[sink])
    ledger_box.append(ledger)
    _call(ledger)
    full.set()
    ledger.append(ToolCallResolved(call_id="c1", result="x" * 4 * INLINE_CHARS))
    for i in range(3):
        ledger.append(Note(text=f"while full {i}"))
    assert faulted.wait(WAIT_S)
    full.clear()
    ledger.close()
    assert [level for level, _ in told] == ["error", "warning"]
    assert all(thread is threading.current_thread() for _, thread in told)
    written = load_jsonl(path)
    assert [e.seq for e in written] == list(range(len(ledger.entries)))
    assert any(isinstance(e, Note) and "No space left" in e.text for e in written)


def test_a_large_entry_written_without_a_redactor_is_never_clipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: with `redactor=None` the helper still got the masking budget, and a busy
    machine (the helper's start alone took over 3 s at load 16) had the entry written
    clipped although there was nothing to mask. Now only masking has a budget (here 0,
    always over)."""
    monkeypatch.setattr("ledger.persist.MASK_BUDGET_S", 0.0)
    path = tmp_path / "s.jsonl"
    ledger = Ledger("s", ManualClock(), sinks=[JsonlSink(path, redactor=None)])
    ledger.append(Note(text="y" * 2 * INLINE_CHARS))
    ledger.close()
    assert load_jsonl(path) == list(ledger.entries)


big_or_small = st.lists(st.booleans(), min_size=1, max_size=12)


@settings(max_examples=12, deadline=None)
@given(sizes=big_or_small)
def test_any_mix_of_large_and_small_entries_is_written_once_in_ledger_order(
    sizes: list[bool],
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "s.jsonl"
        ledger = Ledger("s", ManualClock(), sinks=[JsonlSink(path, redactor=None)])
        for index, large in enumerate(sizes):
            ledger.append(Note(text=f"{index} " + ("y" * 2 * INLINE_CHARS if large else "")))
        ledger.close()
        assert load_jsonl(path) == list(ledger.entries)


# -- the helper process --------------------------------------------------------------


def test_the_helper_process_runs_work_in_another_process_and_raises_its_errors() -> None:
    helper = HelperProcess("test")
    try:
        assert helper.run(os.getpid) != os.getpid()
        with pytest.raises(ValueError, match="invalid literal"):
            helper.run(int, "not a number")
        assert helper.run(os.getpid) != os.getpid()  # an error in the work is not a failure
    finally:
        helper.close()
        helper.close()
    assert helper.run(os.getpid) == os.getpid()  # after close: here


def test_the_helpers_start_is_not_counted_in_the_time_given_to_the_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: `timeout_s` ran from the child's launch, so a child slow to start (2-3.6 s
    at load 16) made quick work time out, and the session file had the entry clipped.
    Here the start takes twice the time the work is given; the work (a few milliseconds)
    still comes back from the child."""
    from ledger import helper_process

    monkeypatch.setattr(helper_process, "_CHILD", f"import time; time.sleep(3); {CHILD}")
    helper = HelperProcess("test")
    try:
        assert helper.run(os.getpid, timeout_s=1.5) != os.getpid()
    finally:
        helper.close()


def test_a_helper_that_does_not_start_is_killed_and_the_work_done_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import subprocess

    from ledger import helper_process

    children: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        children.append(real_popen(*args, **kwargs))  # type: ignore[call-overload]
        return children[-1]

    monkeypatch.setattr(helper_process, "_CHILD", "import time; time.sleep(600)")
    monkeypatch.setattr(helper_process, "START_TIMEOUT_S", 0.2)
    monkeypatch.setattr(helper_process.subprocess, "Popen", popen)
    helper = HelperProcess("test")
    try:
        assert helper.run(os.getpid, timeout_s=WAIT_S) == os.getpid()
        assert len(children) == 1 and children[0].poll() is not None  # killed, not left
        assert helper.run(os.getpid) == os.getpid()  # given up: no second child
        assert len(children) == 1
    finally:
        helper.close()


def test_work_the_helper_cannot_take_or_a_dead_helper_is_done_here() -> None:
    helper = HelperProcess("test")
    try:
        assert helper.run(lambda: os.getpid()) == os.getpid()  # a lambda cannot be pickled
        child = helper.run(os.getpid)
        assert child != os.getpid()
        os.kill(child, 9)
        assert helper.run(os.getpid) == os.getpid()  # the child died: done here, not lost
    finally:
        helper.close()
