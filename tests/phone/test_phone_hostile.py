"""The phone line under a hostile review: provider failures, answers that are not a plain yes.

Same rig as test_phone_call_flow (the real agent table, scheduler, ledger and
SQLite tools; a scripted model, named as a fake; AutojumpClock).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_phone_call_flow import Line, _store, on_line

from voice_agent.call_control import CallAction, Transfer, confirmation_answer


def _provider_fails(line: Line, performed: list[CallAction]) -> None:
    async def perform(action: CallAction) -> bool:
        performed.append(action)
        raise ConnectionError("provider answered 500")

    line.agent.conversation.call.perform = perform


def test_a_transfer_the_provider_fails_is_said_and_the_call_goes_on(tmp_path: Path) -> None:
    performed: list[CallAction] = []

    async def script(line: Line) -> None:
        _provider_fails(line, performed)
        await line.say("let me talk to a human")
        await line.say("what's the status of order 4417")

    line, _ = on_line(tmp_path, script)
    assert performed == [Transfer(destination="support-humans", reason="asked for a person")]
    heard = " ".join(line.heard())
    assert "couldn't transfer you" in heard
    assert "shipped" in heard  # the conversation went on
    assert any("provider answered 500" in n for n in line.notes())
    assert [e.reason for e in line.ledger.entries if e.type == "SessionEnded"] == ["test over"]


def test_a_hang_up_the_provider_fails_still_ends_the_session_saying_why(tmp_path: Path) -> None:
    performed: list[CallAction] = []

    async def script(line: Line) -> None:
        _provider_fails(line, performed)
        await line.say("that's all, bye")

    line, _ = on_line(tmp_path, script)
    ended = [e for e in line.ledger.entries if e.type == "SessionEnded"]
    assert [e.reason for e in ended] == ["hang-up"]
    assert any("hang-up failed at the provider" in n and "500" in n for n in line.notes())


@pytest.mark.parametrize(("said", "applied"), [("Yes?", 0), ("Um, yes please.", 1), ("uh, no", 0)])
def test_a_questioning_yes_writes_nothing_and_a_hesitant_yes_is_a_yes(
    tmp_path: Path, said: str, applied: int
) -> None:
    async def script(line: Line) -> None:
        await line.say("cancel order 4471")
        await line.say(said)

    on_line(tmp_path, script)
    assert len(_store(tmp_path).audit()) == applied


def test_hesitations_do_not_change_an_answer_and_questions_are_not_answers() -> None:
    for said, meant in [("um, yes", "yes"), ("Well, yes please.", "yes"), ("uh no", "no"),
                        ("Yes?", "other"), ("No?", "other"), ("umbrella", "other")]:  # fmt: skip
        assert confirmation_answer(said) == meant, said


@pytest.mark.parametrize(
    "said",
    [
        "I ordered 2 kettles, order {order}",
        "{other}, no wait, {order}",
        "it's {order}, not {other}",
        "the one from the 14th, number {order}",
    ],
)
async def test_a_lookup_finds_the_order_among_other_numbers_in_the_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, said: str
) -> None:
    import asyncio
    import json

    from fsm import ManualClock
    from ledger import Ledger
    from ledger import entries as le
    from voice_agent.scheduler import ToolScheduler

    monkeypatch.setenv("VOICE_AGENT_PHONE_DB", str(tmp_path / "shop.sqlite"))
    import sqlite3

    from voice_agent.phone import tools as phone

    phone.store()  # created and seeded on first use
    with sqlite3.connect(phone.database_path()) as db:
        order = db.execute("SELECT id FROM orders LIMIT 1").fetchone()[0]
    other = "9" * len(order)
    assert phone.store().order(other) is None  # `other` is no order of the shop
    ledger = Ledger("s", ManualClock())
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    sched = ToolScheduler(phone.registry, ledger, lambda ev: None, ManualClock())
    text = said.format(order=order, other=other)
    sched.start(call_id="c1", response_id="r1", name="lookup_order",
                arguments=json.dumps({"order_number": text}))  # fmt: skip
    for _ in range(3000):  # SQLite runs on a worker thread: wait for it (generous)
        if any(e.type == "ToolCallResolved" for e in ledger.entries):
            break
        await asyncio.sleep(0.01)
    result = next(e.result for e in ledger.entries if isinstance(e, le.ToolCallResolved))
    assert isinstance(result, dict)
    assert result["found"] is True and result["order_number"] == order, (text, result)
