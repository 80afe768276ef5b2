"""Stamping, call/response views, subscribers and sinks, rebuilding from entries."""

from __future__ import annotations

import pytest

from fsm.clock import ManualClock
from ledger import Ledger, LedgerError
from ledger.entries import (
    AgentTextPlanned,
    AgentTextPlayed,
    Entry,
    ForkAdopted,
    ForkOpened,
    LlmRequestStarted,
    LlmResponseFinished,
    Note,
    ToolCallCancelled,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallStarted,
    ToolCallTimedOut,
    UserUtterance,
)


async def test_append_stamps_consecutive_seq_and_the_clock_time() -> None:
    clock = ManualClock(start=100.0)
    ledger = Ledger("s1", clock)
    payload = Note(text="a")
    first = ledger.append(payload)
    await clock.advance(1.5)
    second = ledger.append(Note(text="b"))

    assert (first.seq, first.t) == (0, 100.0)
    assert (second.seq, second.t) == (1, 101.5)
    assert payload.seq == -1  # the caller's payload is not touched
    assert ledger.entries == (first, second)


def make_calls() -> Ledger:
    ledger = Ledger("s1", ManualClock())
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    for call_id in ("a", "b", "c", "d", "e"):
        ledger.append(
            ToolCallStarted(
                call_id=call_id, response_id="r1", name="f", arguments='{"x": 1}', kind="write"
            )
        )
    ledger.append(ToolCallResolved(call_id="a", result={"ok": True}))
    ledger.append(ToolCallFailed(call_id="b", error="ValueError: bad"))
    ledger.append(ToolCallTimedOut(call_id="c", timeout_s=2.0))
    ledger.append(ToolCallCancelled(call_id="d", reason="barge-in"))
    return ledger


def test_call_views_report_status_result_and_error() -> None:
    ledger = make_calls()
    views = {call_id: ledger.call(call_id) for call_id in "abcde"}

    assert [(v.status, v.result, v.error) for v in views.values()] == [
        ("resolved", {"ok": True}, None),
        ("failed", None, "ValueError: bad"),
        ("timed_out", None, "timed out after 2s"),
        ("cancelled", None, "cancelled: barge-in"),
        ("pending", None, None),
    ]
    view = views["a"]
    assert (view.name, view.arguments, view.kind, view.speculative, view.fork_id) == (
        "f",
        '{"x": 1}',
        "write",
        False,
        None,
    )
    assert (
        view.started.call_id == "a"
        and view.outcome is not None
        and view.outcome.type == "ToolCallResolved"
    )
    assert views["e"].outcome is None
    with pytest.raises(KeyError):
        ledger.call("zz")


def test_pending_calls_lists_one_view_per_running_future() -> None:
    ledger = make_calls()
    ledger.append(ForkOpened(fork_id="f1", transcript="x"))
    ledger.append(
        ToolCallStarted(
            call_id="s1",
            response_id="x",
            name="g",
            arguments="{}",
            kind="read",
            speculative=True,
            fork_id="f1",
        )
    )
    ledger.append(
        ToolCallStarted(call_id="g1", response_id="r1", name="g", arguments="{}", kind="read")
    )
    assert [v.call_id for v in ledger.pending_calls()] == ["e", "s1", "g1"]
    ledger.append(ForkAdopted(fork_id="f1", adopted={"g1": "s1"}))

    assert [v.call_id for v in ledger.pending_calls()] == ["e", "g1"]
    assert ledger.call("s1").adopted_by == "g1"


def test_response_views_carry_planned_and_played_text() -> None:
    ledger = Ledger("s1", ManualClock())
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="sync"))
    ledger.append(AgentTextPlanned(response_id="r1", text="Hello there. "))
    ledger.append(AgentTextPlanned(response_id="r1", text=" How can I help?"))
    ledger.append(LlmResponseFinished(response_id="r1", finish_reason="stop"))
    ledger.append(AgentTextPlayed(response_id="r1", text="Hello there.", interrupted=True))

    (view,) = ledger.responses()
    assert view == ledger.response("r1")
    assert view.planned_text == "Hello there. How can I help?"
    assert (view.played_text, view.interrupted, view.text) == ("Hello there.", True, "Hello there.")
    assert view.finished is not None and view.finished.finish_reason == "stop"


def test_transcript_lists_final_user_text_and_what_the_agent_said() -> None:
    ledger = Ledger("s1", ManualClock())
    ledger.append(UserUtterance(turn_id=1, text="hel", final=False))
    ledger.append(UserUtterance(turn_id=1, text="hello"))
    ledger.append(LlmRequestStarted(response_id="r1", reason="user_turn", mode="sync"))
    ledger.append(AgentTextPlanned(response_id="r1", text="Hi! What can I do?"))
    ledger.append(AgentTextPlayed(response_id="r1", text="Hi!", interrupted=True))
    ledger.append(UserUtterance(turn_id=2, text="bye"))

    assert ledger.transcript() == "user: hello\nagent: Hi!\nuser: bye"


class ListSink:
    def __init__(self) -> None:
        self.written: list[Entry] = []
        self.closed = 0

    def write(self, entry: Entry) -> None:
        self.written.append(entry)

    def close(self) -> None:
        self.closed += 1


def test_sinks_and_subscribers_get_each_entry_synchronously_until_unsubscribed() -> None:
    sink = ListSink()
    ledger = Ledger("s1", ManualClock(), sinks=[sink])
    seen: list[int] = []
    unsubscribe = ledger.subscribe(lambda entry: seen.append(entry.seq))
    ledger.append(Note(text="a"))
    assert seen == [0] and [e.seq for e in sink.written] == [0]
    unsubscribe()
    unsubscribe()
    ledger.append(Note(text="b"))

    assert seen == [0]
    assert [e.seq for e in sink.written] == [0, 1]
    ledger.close()
    assert sink.closed == 1


def test_an_append_from_a_subscriber_is_delivered_after_the_current_entry() -> None:
    ledger = Ledger("s1", ManualClock())
    order: list[tuple[str, int]] = []

    def echo(entry: Entry) -> None:
        order.append(("first", entry.seq))
        if entry.seq == 0:
            ledger.append(Note(text="echo"))

    ledger.subscribe(echo)
    ledger.subscribe(lambda entry: order.append(("second", entry.seq)))
    ledger.append(Note(text="a"))

    assert order == [("first", 0), ("second", 0), ("first", 1), ("second", 1)]


def test_a_failing_subscriber_raises_out_of_append_but_the_entry_is_kept_and_delivered() -> None:
    ledger = Ledger("s1", ManualClock())
    seen: list[int] = []

    def broken(entry: Entry) -> None:
        raise RuntimeError("subscriber bug")

    ledger.subscribe(broken)
    ledger.subscribe(lambda entry: seen.append(entry.seq))

    with pytest.raises(RuntimeError, match="subscriber bug"):
        ledger.append(Note(text="a"))
    assert len(ledger) == 1 and seen == [0]


def test_from_entries_rebuilds_state_and_continues_the_sequence() -> None:
    ledger = make_calls()
    rebuilt = Ledger.from_entries(ledger.entries, ManualClock(start=50.0))

    assert rebuilt.render_messages("s") == ledger.render_messages("s")
    assert rebuilt.call("b") == ledger.call("b")
    assert rebuilt.append(ToolCallResolved(call_id="e", result=1)).seq == len(ledger)


def test_from_entries_rejects_entries_out_of_sequence() -> None:
    entries = make_calls().entries

    with pytest.raises(LedgerError, match="has seq 2, not 1"):
        Ledger.from_entries([entries[0], entries[2]], ManualClock())
