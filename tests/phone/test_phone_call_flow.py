"""The phone line's call flow through the real agent table, scheduler, ledger and SQLite tools.

A scripted in-process model (a fake, named as such: it maps the caller's last
words to tool calls and reads tool results back) drives the engine on virtual
time (AutojumpClock), so timers (idle, keypad pauses, the call's limit) run
without waiting. The tools are the profile's real ones on a real SQLite file.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsm import AutojumpClock
from ledger import Ledger, check_protocol
from voice_agent.agent import Agent
from voice_agent.call_control import CallAction, HangUp, Transfer
from voice_agent.config import AgentConfig, CallConfig
from voice_agent.events import DtmfReceived, SessionEnded, TranscriptFinal
from voice_agent.guidance import says_nothing_more
from voice_agent.llm import StreamFinished, TextDelta, ToolCallReady
from voice_agent.output import TextOutput

NUMBER = re.compile(r"\d{3,}")


class ScriptedCaller:
    """Fake model: 'status N' → lookup; 'cancel N' → cancel_order; 'human' → transfer;
    'bye' → goodbye + end_call; 'dinner' → end_call alone; tool results → read back."""

    def __init__(self) -> None:
        self.ids = 0
        self.requests: list[list[dict[str, Any]]] = []
        self.config = None

    async def stream(self, messages, tools=None, *, tool_choice=None):  # type: ignore[no-untyped-def]
        check_protocol(messages)
        self.requests.append(messages)
        await asyncio.sleep(0.3)  # time to first token
        last = messages[-1]
        if last["role"] == "tool":
            payload = json.loads(last["content"])
            yield TextDelta(f"Result: {json.dumps(payload.get('result', payload))}")
            yield StreamFinished("stop")
            return
        text = last["content"].lower()
        number = "".join(NUMBER.findall(text.replace(" ", "")))
        calls: list[tuple[str, dict[str, Any]]] = []
        if "cancel" in text:
            calls = [("cancel_order", {"order_number": number})]
        elif "status" in text or "keypad" in text:
            calls = [("lookup_order", {"order_number": number})]
        elif "human" in text:
            calls = [("transfer_to_human", {"reason": "asked for a person"})]
        elif "bye" in text:
            yield TextDelta("Thanks for calling, goodbye. ")
            calls = [("end_call", {})]
        elif "dinner" in text:  # a model that hangs up on a request no tool covers
            calls = [("end_call", {})]
        else:
            yield TextDelta("Okay.")
        for name, args in calls:
            self.ids += 1
            yield ToolCallReady(f"call_{self.ids}", name, json.dumps(args))
        yield StreamFinished("tool_calls" if calls else "stop")

    async def prewarm(self, messages, tools):  # type: ignore[no-untyped-def]
        return None


class Line:
    """One call: the agent on the phone profile's tools, what it said, what the line did."""

    def __init__(self, db: Path, call: CallConfig, performed: list[CallAction]) -> None:
        import os

        os.environ["VOICE_AGENT_PHONE_DB"] = str(db)
        from voice_agent.phone import tools as phone_tools

        self.tools = phone_tools
        self.ledger = Ledger("phone-test", _CLOCK)
        self.model = ScriptedCaller()
        config = AgentConfig(system_prompt="test", call=call, hold_after_s=5.0)
        self.agent = Agent(config, self.model, phone_tools.registry,  # type: ignore[arg-type]
                           TextOutput(io.StringIO()), self.ledger, _CLOCK)  # fmt: skip

        async def perform(action: CallAction) -> bool:
            performed.append(action)
            return True

        self.agent.conversation.call.perform = perform
        self.task = asyncio.create_task(self.agent.run())

    def heard(self) -> list[str]:
        return [e.text for e in self.ledger.entries if e.type == "AgentTextPlayed"]

    def notes(self) -> list[str]:
        return [e.text for e in self.ledger.entries if e.type == "Note"]

    async def say(self, text: str, wait_s: float = 5.0) -> None:
        self.agent.post(TranscriptFinal(text=text))
        await asyncio.sleep(wait_s)

    async def keys(self, keys: str, gap_s: float = 0.3, wait_s: float = 5.0) -> None:
        for k in keys:
            self.agent.post(DtmfReceived(digit=k))
            await asyncio.sleep(gap_s)
        await asyncio.sleep(wait_s)

    async def hang_up(self) -> None:
        if not self.task.done():
            self.agent.post(SessionEnded(reason="test over"))
        await self.task


_CLOCK: AutojumpClock = AutojumpClock()


def on_line(
    tmp_path: Path, script: Callable[[Line], Awaitable[None]], call: CallConfig | None = None
) -> tuple[Line, list[CallAction]]:
    """Run ``script`` on a fresh line on virtual time; returns the line and what it performed."""
    global _CLOCK
    _CLOCK = AutojumpClock()
    performed: list[CallAction] = []
    box: list[Line] = []

    async def main() -> None:
        line = Line(tmp_path / "shop.sqlite", call or CallConfig(), performed)
        box.append(line)
        try:
            await script(line)
        finally:
            await line.hang_up()

    _CLOCK.run(main())
    return box[0], performed


def _store(tmp_path: Path):  # type: ignore[no-untyped-def]
    from voice_agent.phone.store import Store

    return Store(tmp_path / "shop.sqlite")


def test_a_cancel_is_read_back_and_runs_once_only_after_yes(tmp_path: Path) -> None:
    async def script(line: Line) -> None:
        await line.say("I want to cancel order 4471")
        assert _store(tmp_path).audit() == []  # held: nothing ran yet
        await line.say("Yes please.")
        await line.say("cancel order 4471")  # the model tries it again
        await line.say("yes")

    line, _ = on_line(tmp_path, script)
    heard = " ".join(line.heard())
    assert "Just to confirm: cancel order 4 4 7 1, blue kettle. Shall I go ahead?" in heard
    audit = _store(tmp_path).audit()
    assert [(a["action"], json.loads(a["arguments"])["order_number"]) for a in audit] == [
        ("cancel_order", "4471")
    ]
    assert _store(tmp_path).order("4471")["status"] == "cancelled"
    assert "already" in heard  # the repeat was answered "already done", not applied again


def test_no_or_something_else_writes_nothing(tmp_path: Path) -> None:
    async def script(line: Line) -> None:
        await line.say("cancel order 4471")
        await line.say("No, don't.")
        await line.say("cancel order 4417")
        await line.say("what's the status of order 58213")

    line, _ = on_line(tmp_path, script)
    assert _store(tmp_path).audit() == []
    notes = " ".join(line.notes())
    assert "declined by the caller" in notes and "the caller said something else" in notes
    assert "delivered" in " ".join(line.heard())  # the other request was answered


def test_keypad_one_confirms_and_a_keyed_order_number_is_looked_up(tmp_path: Path) -> None:
    async def script(line: Line) -> None:
        await line.keys("4417#")  # keyed with the terminator
        await line.say("cancel order 4471")
        await line.keys("1")

    line, _ = on_line(tmp_path, script)
    assert any("(typed on the keypad) 4417" in m.get("content", "")
               for r in line.model.requests for m in r if m["role"] == "user")  # fmt: skip
    assert "shipped" in " ".join(line.heard())
    assert [a["action"] for a in _store(tmp_path).audit()] == ["cancel_order"]


def test_a_pause_ends_a_keypad_entry(tmp_path: Path) -> None:
    async def script(line: Line) -> None:
        await line.keys("58213", wait_s=6.0)  # no '#': 3 s of nothing ends the entry

    line, _ = on_line(tmp_path, script)
    assert "keypad entry: 58213" in line.notes()
    assert "delivered" in " ".join(line.heard())


def test_a_silent_caller_is_asked_then_the_call_ends_politely(tmp_path: Path) -> None:
    async def script(line: Line) -> None:
        await asyncio.sleep(60)

    line, performed = on_line(
        tmp_path, script, CallConfig(idle_prompt_after_s=8.0, idle_end_after_s=6.0)
    )
    heard = line.heard()
    assert heard[:2] == [CallConfig().idle_prompt, CallConfig().idle_goodbye]
    assert performed == [HangUp(reason="the caller stayed silent")]
    ended = [e for e in line.ledger.entries if e.type == "SessionEnded"]
    assert ended[0].reason == "hang-up"


def test_a_caller_who_answers_the_idle_question_keeps_the_call(tmp_path: Path) -> None:
    async def script(line: Line) -> None:
        await asyncio.sleep(9)
        await line.say("yes I'm here, status of order 4417", wait_s=3)

    line, performed = on_line(tmp_path, script, CallConfig(idle_prompt_after_s=8.0))
    assert performed == []
    assert "shipped" in " ".join(line.heard())


def test_a_hang_up_on_a_caller_who_did_not_say_goodbye_is_refused_and_the_call_goes_on(
    tmp_path: Path,
) -> None:
    async def table(line: Line) -> None:
        await line.say("can you book me a table for dinner")
        await line.say("status of order 4417")

    line, performed = on_line(tmp_path, table)
    assert performed == []
    assert any(n.startswith("hang-up refused") for n in line.notes())
    # The model was told why, and the caller was still served afterwards.
    assert '"ended": false' in " ".join(line.heard())
    assert "shipped" in " ".join(line.heard())
    assert [e.reason for e in line.ledger.entries if e.type == "SessionEnded"] == ["test over"]


def test_end_call_hangs_up_after_the_goodbye_and_transfer_after_saying_so(tmp_path: Path) -> None:
    async def bye(line: Line) -> None:
        await line.say("that's all, bye")

    line, performed = on_line(tmp_path, bye)
    assert performed == [HangUp(reason="the conversation was over")]
    assert line.heard()[-1].startswith("Thanks for calling, goodbye.")

    async def human(line: Line) -> None:
        await line.say("let me talk to a human")

    line, performed = on_line(tmp_path, human)
    assert performed == [Transfer(destination="support-humans", reason="asked for a person")]
    assert CallConfig().transfer_phrase in line.heard()
    assert [e.reason for e in line.ledger.entries if e.type == "SessionEnded"][0] == "transferred"
    # The engine says the transfer's words: the tool asks for no reply, as a flag.
    results = [e.result for e in line.ledger.entries if e.type == "ToolCallResolved"]
    assert [says_nothing_more(r) for r in results] == [True]


def test_a_failed_transfer_is_said_and_no_answer_follows_the_transfer_result(
    tmp_path: Path,
) -> None:
    """The transfer's result asks for no reply; when the line cannot transfer, the engine
    says so and the caller speaks next: no generation reports the result ("you are being
    transferred" would contradict what they just heard)."""

    async def human(line: Line) -> None:
        async def cannot(action: CallAction) -> bool:
            return False

        line.agent.conversation.call.perform = cannot
        await line.say("let me talk to a human", wait_s=10.0)

    line, _ = on_line(tmp_path, human)
    assert line.heard()[-1] == CallConfig().transfer_failed
    assert len(line.model.requests) == 1
    results = [e.result for e in line.ledger.entries if e.type == "ToolCallResolved"]
    assert [says_nothing_more(r) for r in results] == [True]


def test_the_call_limit_warns_then_ends_the_call(tmp_path: Path) -> None:
    async def script(line: Line) -> None:
        await asyncio.sleep(200)

    line, performed = on_line(tmp_path, script, CallConfig(max_call_s=120, max_call_warning_s=30))
    assert line.heard()[:2] == [CallConfig().max_call_warning, CallConfig().max_call_goodbye]
    assert performed == [HangUp(reason="the call reached its time limit")]


ANSWERS = st.sampled_from(["yes", "Yes please.", "no", "wait", "cancel order 4471",
                           "what's the status of order 4417", "KEY1", "KEY2", "SILENCE"])  # fmt: skip


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(turns=st.lists(ANSWERS, min_size=1, max_size=7))
def test_whatever_the_caller_does_a_cancel_applies_at_most_once_and_only_after_a_yes(
    tmp_path_factory: pytest.TempPathFactory, turns: list[str]
) -> None:
    tmp = tmp_path_factory.mktemp("line")
    asked = {"n": 0}

    async def script(line: Line) -> None:
        await line.say("cancel order 4471")
        for turn in turns:
            if turn == "SILENCE":
                await asyncio.sleep(10)
            elif turn.startswith("KEY"):
                await line.keys(turn[3:])
            else:
                await line.say(turn)
        asked["n"] = sum("Shall I go ahead?" in h for h in line.heard())

    line, _ = on_line(tmp, script, CallConfig(idle_prompt_after_s=30))
    audit = _store(tmp).audit()
    assert len(audit) <= 1
    confirmations = [n for n in line.notes() if "confirmed by the caller" in n]
    assert len(audit) == (1 if confirmations else 0)
    assert asked["n"] >= len(confirmations)
