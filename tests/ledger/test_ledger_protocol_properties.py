"""Random valid sessions: the rendered protocol holds after every append and is append-stable.

A Hypothesis state machine plays an engine: user utterances (partial and
final), responses streaming text and calls, outcomes at random later points
(before and after the next request), barge-ins with partial played text, and
forks whose speculative calls are adopted or discarded. After every single
append it checks the rendering: a call's outcome is shown with its call unless a
model's request started between the two (then a pending placeholder and a
`get_result` pair); the engine's own responses (`canned`) are no such request.

Append stability, the strongest form that holds under the rendering rules:
for a model's request R that started when every earlier response had finished, the
messages rendered for R are a prefix of every later rendering, except that an
assistant message whose response had not been played at R may later show a
prefix of its text (what the user heard before barging in). When responses
overlap (a request starts while another response still streams), the earlier
response's message may still grow, so only the protocol is checked then.

The engine's own words (chunks planned as `canned`: hold phrases, the apology) are
shown in a message of their own named `ENGINE_SPEAKER`, right before their response's
own message, and never inside it; a canned chunk the caller heard only part of counts
as the model's. A response whose played text comes later may then change in more than
its content's end, so its messages are left out of the append-stability check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger import Ledger, check_protocol
from ledger.entries import (
    AgentTextPlanned,
    AgentTextPlayed,
    Entry,
    ForkAdopted,
    ForkDiscarded,
    ForkOpened,
    LlmRequestStarted,
    LlmResponseFinished,
    ToolCallCancelled,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallStarted,
    ToolCallTimedOut,
    UserUtterance,
)
from ledger.render import ENGINE_SPEAKER


class StepClock:
    """Each reading is 10 ms after the previous one."""

    def __init__(self) -> None:
        self._now = 0.0

    def now(self) -> float:
        self._now += 0.01
        return self._now

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("the ledger never sleeps")


@dataclass
class Snapshot:
    """What the LLM saw when a request started."""

    messages: list[dict[str, Any]]
    # indices of assistant messages whose response had not been played yet
    unplayed: set[int] = field(default_factory=set)
    # when an unplayed response has engine words, every unplayed response: their
    # messages may change shape when played
    reshaped: set[str] = field(default_factory=set)


def _response_of(message: dict[str, Any]) -> str | None:
    """Planned chunks start with their response id, so an unplayed message names its response."""
    content = message.get("content") or ""
    return content.split("-", 1)[0] if content.startswith("r") else None


class LedgerSession(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger("s", StepClock())
        self.turn = 0
        self.counter = 0
        self.open_responses: list[str] = []
        self.planned: dict[str, list[str]] = {}
        self.played: set[str] = set()
        self.future_of: dict[str, str] = {}  # call id -> id of the call that owns its future
        self.settled: dict[str, dict[str, Any]] = {}  # future id -> outcome payload
        self.final_calls: list[str] = []
        self.open_forks: dict[str, list[str]] = {}
        self.adopted_specs: set[str] = set()
        self.snapshots: list[Snapshot] = []
        self.shown_pending: set[str] = set()  # final calls a request saw as pending
        self.script: list[tuple[str, str]] = []  # ("user", text) / ("agent", response id)
        self.heard: dict[str, str] = {}
        self.calls_of: dict[str, list[str]] = {}
        self.canned: set[str] = set()  # planned chunks that are the engine's own words

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # -- every append goes through here --------------------------------------------

    def append(self, payload: Entry) -> None:
        self.ledger.append(payload)
        messages = self.ledger.render_messages("system")
        check_protocol(messages)
        self._check_calls_answered(messages)
        self._check_texts(messages)
        self._check_append_stable(messages)

    def _check_calls_answered(self, messages: list[dict[str, Any]]) -> None:
        called = [
            item["id"]
            for m in messages
            if m["role"] == "assistant"
            for item in m.get("tool_calls", [])
        ]
        tool_content = {
            m["tool_call_id"]: json.loads(m["content"]) for m in messages if m["role"] == "tool"
        }
        synthetic = [c for c in called if c.endswith("-result")]
        assert sorted(c for c in called if not c.endswith("-result")) == sorted(self.final_calls)
        for call_id in self.final_calls:
            inline = tool_content[call_id]
            late = tool_content.get(f"{call_id}-result")
            payload = self.settled.get(self.future_of[call_id])
            if payload is None:
                assert inline["status"] == "pending" and inline["future"] == call_id
                assert late is None
            elif call_id in self.shown_pending:
                assert inline["status"] == "pending"
                assert late == payload
            else:
                assert inline == payload
                assert late is None
        assert len(synthetic) == len(set(synthetic))

    def _text(self, response_id: str) -> str:
        if response_id in self.heard:
            return self.heard[response_id]
        return " ".join(self.planned[response_id])

    def _owner(self, message: dict[str, Any]) -> str | None:
        """The response a message belongs to: by its words, its calls or the call it answers."""
        ids = [c["id"] for c in message.get("tool_calls", [])] or [message.get("tool_call_id")]
        for response_id, calls in self.calls_of.items():
            if any(i in calls for i in ids):
                return response_id
        return _response_of(message)

    def _split(self, response_id: str) -> tuple[str, str, bool]:
        """(the model's words, the engine's words, whether the model planned any) of what
        the caller was given: a canned chunk heard whole is the engine's."""
        given = self._text(response_id).split()
        own: list[str] = []
        engine: list[str] = []
        at = 0
        for chunk in self.planned[response_id]:
            words = chunk.split()
            heard = given[at : at + len(words)]
            at += len(words)
            whole = len(heard) == len(words)
            (engine if chunk in self.canned and whole else own).extend(heard)
        planned_own = any(c not in self.canned for c in self.planned[response_id])
        return " ".join(own), " ".join(engine), planned_own

    def _check_texts(self, messages: list[dict[str, Any]]) -> None:
        users = [text for who, text in self.script if who == "user"]
        responses = [r for who, r in self.script if who == "agent"]
        rendered = [r for r in responses if self.planned[r] or self.calls_of[r]]
        assert [m["content"] for m in messages if m["role"] == "user"] == users
        assistant = [
            (m.get("name"), m["content"])
            for m in messages
            if m["role"] == "assistant"
            and not m.get("tool_calls", [{"id": ""}])[0]["id"].endswith("-result")
        ]
        expected: list[tuple[str | None, str]] = []
        for r in rendered:
            own, engine, planned_own = self._split(r)
            if engine:
                expected.append((ENGINE_SPEAKER, engine))
            if self.calls_of[r] or planned_own or own:
                expected.append((None, own))
        assert assistant == expected
        lines = [
            f"user: {text}" if who == "user" else f"agent: {self._text(text)}"
            for who, text in self.script
            if who == "user" or self._text(text)
        ]
        assert self.ledger.transcript() == "\n".join(lines)  # the caller heard it all

    def _check_append_stable(self, messages: list[dict[str, Any]]) -> None:
        for snapshot in self.snapshots:
            seen = snapshot.messages
            if snapshot.reshaped:
                # a response with engine words was not played yet: its messages (and its
                # calls' tool messages) may change shape; the others may not
                def rest(ms: list[dict[str, Any]]) -> list[dict[str, Any]]:
                    return [
                        m
                        for m in ms
                        if self._owner(m) not in snapshot.reshaped
                        and m != {"role": "assistant", "content": ""}  # all of it cut off
                    ]

                assert rest(messages)[: len(rest(seen))] == rest(seen)
                continue
            assert len(messages) >= len(seen)
            for index, old in enumerate(seen):
                new = messages[index]
                if index in snapshot.unplayed:
                    assert {**new, "content": ""} == {**old, "content": ""}
                    assert old["content"].startswith(new["content"])
                else:
                    assert new == old, f"message {index} changed after a request saw it"

    # -- user ----------------------------------------------------------------------

    @rule(words=st.integers(1, 3), final=st.booleans())
    def user_speaks(self, words: int, final: bool) -> None:
        if final:
            self.turn += 1
        text = " ".join(f"u{self.turn}w{i}" for i in range(words))
        if final:
            self.script.append(("user", text))
        self.append(UserUtterance(turn_id=self.turn, text=text, final=final))

    # -- responses -----------------------------------------------------------------

    @rule(
        reason=st.sampled_from(["user_turn", "tool_results", "hold", "continuation", "canned"]),
        overlap=st.booleans(),
    )
    def request_starts(self, reason: Any, overlap: bool) -> None:
        """A model's request (it sees the rendering: pending calls are shown pending) or
        the engine's own words (`canned`: no model sees anything)."""
        if not overlap:
            for response_id in list(self.open_responses):
                self.finish(response_id, "cancelled")
        before = self.ledger.render_messages("system")
        by_model = reason != "canned"
        if by_model:
            self.shown_pending.update(
                c for c in self.final_calls if self.future_of[c] not in self.settled
            )
        response_id = self._id("r")
        self.planned[response_id] = []
        self.calls_of[response_id] = []
        self.script.append(("agent", response_id))
        self.open_responses.append(response_id)
        self.append(LlmRequestStarted(response_id=response_id, reason=reason, mode="async"))
        assert self.ledger.render_messages("system") == before
        if by_model and len(self.open_responses) == 1:
            unplayed = {
                index
                for index, message in enumerate(before)
                if message["role"] == "assistant"
                and _response_of(message) not in (None, *self.played)
            }
            reshaped = {
                r
                for r in self.planned
                if r not in self.played and any(c in self.canned for c in self.planned[r])
            }
            if reshaped:  # then every unplayed response's messages are left out
                reshaped |= {r for r in self.planned if r not in self.played}
            self.snapshots.append(Snapshot(before, unplayed, reshaped))

    def finish(self, response_id: str, reason: Any) -> None:
        self.open_responses.remove(response_id)
        self.append(LlmResponseFinished(response_id=response_id, finish_reason=reason))

    @precondition(lambda self: self.open_responses)
    @rule(data=st.data(), words=st.integers(1, 4))
    def text_planned(self, data: st.DataObject, words: int) -> None:
        response_id = data.draw(st.sampled_from(self.open_responses))
        chunk = " ".join(
            f"{response_id}-{len(self.planned[response_id])}w{i}" for i in range(words)
        )
        self.planned[response_id].append(chunk)
        self.append(AgentTextPlanned(response_id=response_id, text=chunk))

    @precondition(lambda self: self.open_responses)
    @rule(data=st.data(), words=st.integers(1, 3))
    def engine_words_planned(self, data: st.DataObject, words: int) -> None:
        """A hold phrase or the apology said in a response (or a canned one)."""
        response_id = data.draw(st.sampled_from(self.open_responses))
        chunk = " ".join(
            f"{response_id}-{len(self.planned[response_id])}e{i}" for i in range(words)
        )
        self.planned[response_id].append(chunk)
        self.canned.add(chunk)
        self.append(AgentTextPlanned(response_id=response_id, text=chunk, canned=True))

    @precondition(lambda self: self.open_responses)
    @rule(data=st.data(), reason=st.sampled_from(["stop", "tool_calls", "cancelled", "error"]))
    def response_finishes(self, data: st.DataObject, reason: Any) -> None:
        self.finish(data.draw(st.sampled_from(self.open_responses)), reason)

    @precondition(
        lambda self: any(
            self.planned[r] and r not in self.played and r not in self.open_responses
            for r in self.planned
        )
    )
    @rule(data=st.data())
    def playout_recorded(self, data: st.DataObject) -> None:
        candidates = [
            r
            for r in self.planned
            if self.planned[r] and r not in self.played and r not in self.open_responses
        ]
        response_id = data.draw(st.sampled_from(candidates))
        words = " ".join(self.planned[response_id]).split()
        heard = data.draw(st.integers(0, len(words)))
        self.played.add(response_id)
        self.heard[response_id] = " ".join(words[:heard])
        self.append(
            AgentTextPlayed(
                response_id=response_id,
                text=" ".join(words[:heard]),
                interrupted=heard < len(words),
            )
        )

    # -- calls ---------------------------------------------------------------------

    def _start_call(
        self, call_id: str, response_id: str, name: str, arguments: str, **extra: Any
    ) -> None:
        self.append(
            ToolCallStarted(
                call_id=call_id,
                response_id=response_id,
                name=name,
                arguments=arguments,
                kind="read",
                **extra,
            )
        )

    @precondition(lambda self: self.open_responses)
    @rule(data=st.data(), name=st.sampled_from(["lookup", "weather", "balance"]))
    def call_started(self, data: st.DataObject, name: str) -> None:
        response_id = data.draw(st.sampled_from(self.open_responses))
        call_id = self._id("c")
        self.future_of[call_id] = call_id
        self.final_calls.append(call_id)
        self.calls_of[response_id].append(call_id)
        self._start_call(call_id, response_id, name, json.dumps({"q": call_id}))

    @precondition(lambda self: bool(set(self.future_of.values()) - set(self.settled)))
    @rule(data=st.data(), kind=st.sampled_from(["resolved", "failed", "timed_out", "cancelled"]))
    def outcome_arrives(self, data: st.DataObject, kind: str) -> None:
        pending = sorted(c for c, f in self.future_of.items() if f not in self.settled)
        call_id = data.draw(st.sampled_from(pending))
        entry: Entry
        match kind:
            case "resolved":
                entry = ToolCallResolved(call_id=call_id, result={"value": call_id, "n": [1, 2]})
                payload: dict[str, Any] = {
                    "status": "resolved",
                    "result": {"value": call_id, "n": [1, 2]},
                }
            case "failed":
                entry = ToolCallFailed(call_id=call_id, error="boom")
                payload = {"status": "failed", "error": "boom"}
            case "timed_out":
                entry = ToolCallTimedOut(call_id=call_id, timeout_s=2.5)
                payload = {"status": "timed_out", "timeout_s": 2.5}
            case _:
                entry = ToolCallCancelled(call_id=call_id, reason="barge-in")
                payload = {"status": "cancelled", "reason": "barge-in"}
        self.settled[self.future_of[call_id]] = payload
        self.append(entry)

    # -- forks ---------------------------------------------------------------------

    @rule()
    def fork_opens(self) -> None:
        fork_id = self._id("f")
        self.open_forks[fork_id] = []
        self.append(ForkOpened(fork_id=fork_id, transcript=f"partial {fork_id}"))

    @precondition(lambda self: self.open_forks)
    @rule(data=st.data(), name=st.sampled_from(["lookup", "weather"]))
    def speculative_call_started(self, data: st.DataObject, name: str) -> None:
        fork_id = data.draw(st.sampled_from(sorted(self.open_forks)))
        call_id = self._id("c")
        self.future_of[call_id] = call_id
        self.open_forks[fork_id].append(call_id)
        self._start_call(
            call_id,
            f"{fork_id}-llm",
            name,
            json.dumps({"spec": call_id}),
            speculative=True,
            fork_id=fork_id,
        )

    @precondition(lambda self: self.open_forks)
    @rule(data=st.data())
    def fork_adopted(self, data: st.DataObject) -> None:
        fork_id = data.draw(st.sampled_from(sorted(self.open_forks)))
        specs = self.open_forks.pop(fork_id)
        chosen = (
            data.draw(st.lists(st.sampled_from(specs), unique=True))
            if specs and self.open_responses
            else []
        )
        adopted: dict[str, str] = {}
        for spec_id in chosen:
            response_id = data.draw(st.sampled_from(self.open_responses))
            spec = self.ledger.call(spec_id)
            final_id = self._id("c")
            self.future_of[final_id] = final_id  # its own future until adopted
            self.final_calls.append(final_id)
            self.calls_of[response_id].append(final_id)
            self._start_call(final_id, response_id, spec.name, spec.arguments)
            adopted[final_id] = spec_id
        for final_id, spec_id in adopted.items():
            self.future_of[final_id] = self.future_of[spec_id]
        self.append(ForkAdopted(fork_id=fork_id, adopted=adopted))

    @precondition(lambda self: self.open_forks)
    @rule(data=st.data())
    def fork_discarded(self, data: st.DataObject) -> None:
        fork_id = data.draw(st.sampled_from(sorted(self.open_forks)))
        del self.open_forks[fork_id]
        self.append(ForkDiscarded(fork_id=fork_id, reason="transcript changed"))

    @invariant()
    def pending_calls_are_the_unsettled_futures(self) -> None:
        pending = {view.call_id for view in self.ledger.pending_calls()}
        unsettled = {c for c, f in self.future_of.items() if f not in self.settled}
        adopted_specs = {v.call_id for v in map(self.ledger.call, self.future_of) if v.adopted_by}
        assert pending == unsettled - adopted_specs


LedgerSession.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRandomSessionsKeepTheProtocolAndAppendStability = LedgerSession.TestCase
