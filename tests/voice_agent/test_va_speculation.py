"""Speculation: forks on partial transcripts, reconciled when the turn is answered.

A scripted in-process model (hasty, like a real one: it calls with the
numbers it has heard so far) drives the real agent table, scheduler and
ledger, so every rule is checked on the ledger and on what the model is shown.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import re
from typing import Any

import pytest

from fsm import MonotonicClock
from ledger import Ledger, check_protocol
from voice_agent.agent import Agent
from voice_agent.config import AgentConfig, SpeculationConfig
from voice_agent.events import (
    SessionEnded,
    TranscriptFinal,
    TranscriptPartial,
    UserSpeechEnded,
    UserSpeechStarted,
)
from voice_agent.llm import StreamFinished, TextDelta, ToolCallReady
from voice_agent.output import TextOutput
from voice_agent.speculation import PARTIAL_NOTE, canonical_arguments
from voice_agent.tools import ToolRegistry, ToolSpec

NUMBER = re.compile(r"\b\d{3,}\b")


class HastyLlm:
    """Looks up every order number in the last user message (``cancel`` → the write tool);
    answers from the results it was shown. Records every request it gets."""

    def __init__(
        self, *, delay_s: float = 0.01, answer_delay_s: float = 0.0, delays: tuple = ()
    ) -> None:
        self.delays = list(delays)  # per request, before the default
        self.ids = itertools.count(1)
        self.requests: list[list[dict[str, Any]]] = []
        self.delay_s = delay_s
        self.answer_delay_s = answer_delay_s
        self.config = None

    async def stream(self, messages, tools=None, *, tool_choice=None):
        check_protocol(messages)
        self.requests.append(messages)
        user_at = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=0)
        text = messages[user_at]["content"].replace(PARTIAL_NOTE, "").strip()
        after = messages[user_at + 1 :]
        shown = {
            json.loads(m["content"]).get("result", {}).get("order_id"): json.loads(m["content"])
            for m in after
            if m["role"] == "tool"
        }
        await asyncio.sleep(self.delays.pop(0) if self.delays else self.delay_s)
        numbers = NUMBER.findall(text)
        if not numbers:
            yield TextDelta("How can I help?")
            yield StreamFinished("stop")
            return
        tool = "cancel_order" if "cancel" in text.lower() else "order_status"
        wanted = [n for n in numbers if n not in shown] if tool == "order_status" else numbers
        called = any(m["role"] == "assistant" and m.get("tool_calls") for m in after)
        if not called:
            yield TextDelta("One moment. ")
            for n in wanted[-1:] if tool == "cancel_order" else wanted:
                yield ToolCallReady(f"call_{next(self.ids)}", tool, json.dumps({"order_id": n}))
            yield StreamFinished("tool_calls")
            return
        await asyncio.sleep(self.answer_delay_s)
        facts = [
            f"Order {oid} is {payload['result']['status']}."
            for oid, payload in shown.items()
            if oid and payload.get("status") == "resolved"
        ]
        yield TextDelta(" ".join(facts) or "Still checking.")
        yield StreamFinished("stop")

    async def prewarm(self, messages, tools):
        return None


class Backend:
    """The tools and a log of what actually ran (and when, by ledger position)."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.ran: list[tuple[str, str, int]] = []
        self.ledger: Ledger | None = None  # the agent's, set before it runs
        self.registry = ToolRegistry()

        @self.registry.tool(kind="read")
        async def order_status(order_id: str) -> dict[str, str]:
            """Shipping status of an order."""
            self.ran.append(("order_status", order_id, self.position()))
            await asyncio.sleep(self.latency_s)
            return {"order_id": order_id, "status": f"shipped-{order_id}"}

        @self.registry.tool(kind="write")
        async def cancel_order(order_id: str) -> dict[str, str]:
            """Cancel an order."""
            self.ran.append(("cancel_order", order_id, self.position()))
            return {"order_id": order_id, "status": "cancelled"}

    def position(self) -> int:
        """How many ledger entries there are now."""
        assert self.ledger is not None, "set the agent's ledger first"
        return len(self.ledger.entries)


class Run:
    def __init__(self, agent: Agent, ledger: Ledger, llm: HastyLlm, backend: Backend) -> None:
        self.agent, self.ledger, self.llm, self.backend = agent, ledger, llm, backend

    def entries(self, kind: str) -> list[Any]:
        return [e for e in self.ledger.entries if e.type == kind]

    async def speak(self, words: list[str], final: str | None = None, gap_s: float = 0.03) -> None:
        """The user says ``words`` (partials word by word), then the final transcript."""
        self.agent.post(UserSpeechStarted())
        for n in range(1, len(words) + 1):
            await asyncio.sleep(gap_s)
            self.agent.post(TranscriptPartial(text=" ".join(words[:n])))
        await asyncio.sleep(gap_s)
        self.agent.post(UserSpeechEnded())
        self.agent.post(TranscriptFinal(text=final if final is not None else " ".join(words)))

    async def idle(self, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await asyncio.sleep(0.05)
        while not self.agent.is_idle():
            assert loop.time() < deadline, self.ledger.transcript()
            await asyncio.sleep(0.01)

    def heard(self) -> str:
        return " ".join(e.text for e in self.entries("AgentTextPlayed"))


async def run_agent(
    body, *, mode="speculative", latency_s=0.2, llm=None, **speculation: Any
) -> Run:
    backend = Backend(latency_s)
    llm = llm or HastyLlm()
    ledger = Ledger("spec", MonotonicClock())
    backend.ledger = ledger
    cfg = SpeculationConfig(**{"min_interval_s": 0.0, "min_new_words": 1, **speculation})
    config = AgentConfig(mode=mode, system_prompt="test", speculation=cfg, hold_after_s=5.0)
    agent = Agent(config, llm, backend.registry, TextOutput(io.StringIO()), ledger)  # type: ignore[arg-type]
    task = asyncio.create_task(agent.run())
    run = Run(agent, ledger, llm, backend)
    try:
        await body(run)
    finally:
        agent.post(SessionEnded(reason="test over"))
        await asyncio.wait_for(task, 5)
    check_protocol(ledger.render_messages("sys"))
    return run


def model_saw(run: Run) -> str:
    return json.dumps(run.llm.requests[-1])


async def test_a_read_starts_on_the_partial_transcript_and_the_answer_adopts_it_while_running():
    async def body(run: Run) -> None:
        await run.speak("my order is 4417 and I wonder where it is".split())
        await run.idle()

    run = await run_agent(body, latency_s=0.6)
    spec = [e for e in run.entries("ToolCallStarted") if e.speculative]
    final_user = next(e for e in run.entries("UserUtterance") if e.final)
    assert spec and spec[0].seq < final_user.seq  # started while the user spoke
    assert spec[0].fork_id is not None and spec[0].name == "order_status"
    [adopted] = run.entries("ForkAdopted")
    [(final_id, spec_id)] = adopted.adopted.items()
    assert spec_id == spec[0].call_id and final_id.startswith("call_")
    assert run.ledger.call(final_id).adopted_from == spec_id
    assert run.backend.ran == [("order_status", "4417", run.backend.ran[0][2])]  # ran once
    assert "shipped-4417" in run.heard()
    assert spec_id not in json.dumps(run.ledger.render_messages("sys"))  # never rendered


async def test_a_finished_speculative_result_is_adopted_without_running_again():
    async def body(run: Run) -> None:
        await run.speak("order 4417 please tell me where it is now".split(), gap_s=0.05)
        await run.idle()

    run = await run_agent(body, latency_s=0.01)
    [adopted] = run.entries("ForkAdopted")
    [(final_id, spec_id)] = adopted.adopted.items()
    spec_outcome = run.ledger.call(spec_id).outcome
    assert spec_outcome is not None and spec_outcome.seq < adopted.seq  # finished before adoption
    assert [r[:2] for r in run.backend.ran] == [("order_status", "4417")]
    assert "shipped-4417" in run.heard()


async def test_a_self_correction_discards_the_first_speculation_and_answers_the_corrected_value():
    words = "my order is 4417 sorry I mean 4471".split()

    async def body(run: Run) -> None:
        await run.speak(words, final="my order is 4471", gap_s=0.05)
        await run.idle()

    run = await run_agent(body, latency_s=0.3)
    spec_args = {e.call_id: e.arguments for e in run.entries("ToolCallStarted") if e.speculative}
    assert any("4417" in a for a in spec_args.values())  # the hasty speculation happened
    wrong = [c for c, a in spec_args.items() if "4417" in a]
    for call_id in wrong:
        view = run.ledger.call(call_id)
        assert view.adopted_by is None
    discarded = run.entries("ForkDiscarded")
    assert discarded and all("answered" in d.reason for d in discarded)
    rendered = json.dumps(run.ledger.render_messages("sys"))
    assert "shipped-4417" not in rendered and "shipped-4417" not in model_saw(run)
    assert "shipped-4471" in run.heard() and "4417" not in run.heard()


async def test_a_newer_fork_supersedes_an_older_one_whose_calls_are_kept_for_matching():
    async def body(run: Run) -> None:
        # two numbers: the first fork calls 4417; the second fork calls 4417 and 5200
        await run.speak("check 4417 and also 5200 for me".split(), gap_s=0.08)
        await run.idle()

    run = await run_agent(body, latency_s=0.5)
    forks = run.entries("ForkOpened")
    assert len(forks) >= 2
    adopted = {s: f for e in run.entries("ForkAdopted") for f, s in e.adopted.items()}
    # the answer's two calls both adopt speculative futures; nothing runs twice
    assert len(adopted) == 2
    assert sorted(r[1] for r in run.backend.ran if r[0] == "order_status").count("4417") <= 2
    assert "shipped-4417" in run.heard() and "shipped-5200" in run.heard()
    finals = [e for e in run.entries("ToolCallStarted") if not e.speculative]
    assert all(run.ledger.call(c.call_id).adopted_from for c in finals)


async def test_superseded_calls_are_cancelled_at_once_when_the_policy_says_so():
    async def body(run: Run) -> None:
        await run.speak("my order is 4417 sorry I mean 4471".split(), gap_s=0.05)
        await run.idle()

    run = await run_agent(body, latency_s=2.0, keep_superseded_calls=False)
    first = next(e for e in run.entries("ToolCallStarted") if e.speculative)
    outcome = run.ledger.call(first.call_id).outcome
    assert outcome is not None and outcome.type == "ToolCallCancelled"
    assert "superseded" in outcome.reason


async def test_a_write_never_runs_from_a_fork_only_its_intent_is_recorded():
    words = "please cancel order 4417 right now".split()

    async def body(run: Run) -> None:
        run.agent.post(UserSpeechStarted())
        for n in range(1, len(words) + 1):
            await asyncio.sleep(0.05)
            run.agent.post(TranscriptPartial(text=" ".join(words[:n])))
        await asyncio.sleep(0.2)  # the forks have long finished their streams
        assert run.backend.ran == []  # nothing written before the final transcript
        run.agent.post(UserSpeechEnded())
        run.agent.post(TranscriptFinal(text=" ".join(words)))
        await run.idle()

    run = await run_agent(body)
    assert not [e for e in run.entries("ToolCallStarted") if e.speculative and e.kind == "write"]
    assert any("never executed from a fork" in e.text for e in run.entries("Note"))
    [write] = [r for r in run.backend.ran if r[0] == "cancel_order"]
    final_user = next(e for e in run.entries("UserUtterance") if e.final)
    assert write[2] > final_user.seq  # executed once, after the final transcript


async def test_the_scheduler_refuses_a_speculative_write_whoever_asks():
    async def body(run: Run) -> None:
        run.agent.conversation.scheduler.start(
            call_id="x1", response_id="r0", name="cancel_order",
            arguments='{"order_id": "1"}', speculative=True, fork_id="f0",
        )  # fmt: skip
        await asyncio.sleep(0.05)

    run = await run_agent(body)
    assert run.backend.ran == []
    assert any("refused speculative cancel_order" in e.text for e in run.entries("Note"))


async def test_a_barge_in_discards_the_turns_forks_and_cancels_their_calls():
    llm = HastyLlm(delays=(0.01, 0.5))  # the fork is quick, the answer slow: the user talks over it

    async def body(run: Run) -> None:
        await run.speak("order 4417 please".split(), final="order 4417 please and thanks")
        await asyncio.sleep(0.1)  # the answer's request is in flight, its calls not issued yet
        run.agent.post(UserSpeechStarted())
        await asyncio.sleep(0.1)
        run.agent.post(TranscriptFinal(text="never mind"))
        await run.idle()

    run = await run_agent(body, llm=llm, latency_s=3.0)
    [discarded] = [e for e in run.entries("ForkDiscarded")]
    assert discarded.reason == "the answer was cancelled"
    spec = next(e for e in run.entries("ToolCallStarted") if e.speculative)
    outcome = run.ledger.call(spec.call_id).outcome
    assert outcome is not None and outcome.type == "ToolCallCancelled"


async def test_speculative_outcomes_are_not_news_and_never_start_a_followup():
    async def body(run: Run) -> None:
        run.agent.post(UserSpeechStarted())
        run.agent.post(TranscriptPartial(text="order 4417"))
        await asyncio.sleep(0.3)  # the speculative call resolved while the user speaks
        run.agent.post(UserSpeechEnded())
        run.agent.post(TranscriptFinal(text=""))  # nothing came of it
        await run.idle()

    run = await run_agent(body, latency_s=0.01)
    assert run.entries("LlmRequestStarted") == []
    [discarded] = run.entries("ForkDiscarded")
    assert "no transcript" in discarded.reason


async def test_async_mode_opens_no_fork_on_partials():
    async def body(run: Run) -> None:
        await run.speak("my order is 4417 and I wonder".split())
        await run.idle()

    run = await run_agent(body, mode="async")
    assert run.entries("ForkOpened") == []
    assert not [e for e in run.entries("ToolCallStarted") if e.speculative]


async def test_the_fork_budget_limits_forks_per_turn():
    async def body(run: Run) -> None:
        await run.speak("1001 1002 1003 1004 1005 1006".split())
        await run.idle()

    run = await run_agent(body, max_forks_per_turn=2, latency_s=0.01)
    assert len(run.entries("ForkOpened")) == 2


@pytest.mark.parametrize(
    ("schema", "a", "b", "same"),
    [
        ({"type": "number"}, 5, 5.0, True),
        ({"type": "integer"}, "4417", 4417, True),
        ({"type": "string"}, "4417", 4417, True),
        ({"type": "string"}, " New  York ", "New York", True),
        ({"type": "string"}, "4417", "4471", False),
        ({"type": "number"}, 5, 5.5, False),
        ({"type": "boolean"}, True, 1, False),
    ],
)
def test_arguments_compare_canonically_by_the_tools_schema(schema, a, b, same):
    spec = ToolSpec(
        name="t", description="", parameters={"type": "object", "properties": {"x": schema}},
        fn=lambda **k: None,
    )  # fmt: skip
    one = canonical_arguments(spec, json.dumps({"x": a}))
    two = canonical_arguments(spec, json.dumps({"x": b}))
    assert (one == two) is same


async def test_a_filler_is_not_spoken_when_every_call_adopts_a_finished_result():
    async def body(run: Run) -> None:
        await run.speak("order 4417 please tell me where it is now".split(), gap_s=0.05)
        await run.idle()

    run = await run_agent(body, latency_s=0.01)
    assert "One moment" not in run.heard()
    assert run.heard().startswith("Okay. Order 4417 is shipped-4417")  # a short ack instead
    assert any("not spoken" in e.text for e in run.entries("Note"))
    # what the model is told it said is what the caller heard: nothing before the answer
    first = next(m for m in run.ledger.render_messages("sys") if m["role"] == "assistant")
    assert first["content"] == "" and first["tool_calls"]


async def test_a_filler_is_spoken_when_a_call_still_has_to_run():
    async def body(run: Run) -> None:
        # the speculation guessed 4417; the answer needs 4471, which only starts now
        await run.speak(
            "my order is 4417 sorry I mean 4471".split(), final="order 4471", gap_s=0.05
        )
        await run.idle()

    run = await run_agent(body, latency_s=0.3)
    # the short acknowledgement when the held text began, then the filler it turned out to need
    assert run.heard().startswith("Okay. One moment.")
    assert "shipped-4471" in run.heard()


async def test_the_acknowledgement_is_said_when_the_held_text_begins_not_when_the_stream_ends():
    llm = HastyLlm(delays=(0.01, 0.3))  # the answer's stream takes a while to reach its calls

    async def body(run: Run) -> None:
        await run.speak("order 4417 please tell me where it is now".split(), gap_s=0.05)
        await run.idle()

    run = await run_agent(body, llm=llm, latency_s=0.01)
    ack = next(e for e in run.entries("AgentTextPlanned") if e.text == "Okay.")
    answer_calls = [e for e in run.entries("ToolCallStarted") if not e.speculative]
    assert answer_calls and ack.seq < answer_calls[0].seq
    assert [e.text for e in run.entries("AgentTextPlanned")].count("Okay.") == 1
    assert "One moment" not in run.heard()


async def test_a_newer_fork_shares_an_earlier_forks_identical_read_instead_of_running_it_again():
    async def body(run: Run) -> None:
        # the first fork calls 4417; the second fork calls 4417 again and 5200
        await run.speak("check 4417 and also 5200 for me".split(), gap_s=0.08)
        await run.idle()

    run = await run_agent(body, latency_s=0.5)
    assert len(run.entries("ForkOpened")) >= 2
    ran = [r[1] for r in run.backend.ran if r[0] == "order_status"]
    assert ran.count("4417") == 1 and ran.count("5200") == 1
    adopted = {s: f for e in run.entries("ForkAdopted") for f, s in e.adopted.items()}
    assert len(adopted) == 2  # the answer's 4417 adopts the first fork's call
    assert "shipped-4417" in run.heard() and "shipped-5200" in run.heard()


async def test_the_filler_rule_is_off_by_configuration():
    async def body(run: Run) -> None:
        await run.speak("order 4417 please tell me where it is now".split(), gap_s=0.05)
        await run.idle()

    run = await run_agent(body, latency_s=0.01, drop_covered_preamble=False)
    assert run.heard().startswith("One moment.")


async def test_ledger_show_draws_speculative_calls_apart_and_strikes_the_discarded():
    from ledger.show import format_session

    async def body(run: Run) -> None:
        await run.speak(
            "my order is 4417 sorry I mean 4471".split(), final="order 4471", gap_s=0.05
        )
        await run.idle()

    run = await run_agent(body, latency_s=0.05)
    text = format_session(run.ledger.entries)
    spec_lines = [line for line in text.splitlines() if "call ~>" in line]
    struck = [line for line in spec_lines if "\u0336" in line]
    assert struck and len(struck) < len(spec_lines)  # the 4417 guesses struck, 4471 adopted
    assert "d\u0336i\u0336s\u0336c\u0336a\u0336r\u0336d\u0336e\u0336d\u0336" in text
    assert any("call ->" in line and "4471" in line for line in text.splitlines())


async def test_a_fork_still_streaming_when_the_turn_ends_is_cancelled_its_calls_kept():
    # the second fork is slow (still streaming when the turn ends), the answer slower still
    llm = HastyLlm(delays=(0.01, 2.0, 3.0))

    async def body(run: Run) -> None:
        await run.speak("check 4417 and also 5200 now".split(), gap_s=0.1)
        await run.idle()

    run = await run_agent(body, llm=llm, latency_s=0.2)
    forks = run.agent.conversation.speculation
    assert not forks.forks  # all closed
    [first] = [e for e in run.entries("ToolCallStarted") if e.speculative]  # none from f2
    assert run.ledger.call(first.call_id).adopted_by is not None  # the kept call was adopted
    assert "shipped-4417" in run.heard() and "shipped-5200" in run.heard()


# ------------------------------------------------------------ CPU: a fork's LLM on this machine
async def test_a_local_llm_fork_is_held_back_while_the_machine_is_busy():
    from voice_agent.compute import FixedGauge

    async def body(run: Run) -> None:
        run.agent.conversation.speculation.gauge = FixedGauge(0.95)
        await run.speak("my order is 4417 and I wonder where it is".split())
        await run.idle()

    run = await run_agent(body, fork_llm="local", max_cpu_busy=0.8)
    assert run.entries("ForkOpened") == []
    notes = [e.text for e in run.entries("Note") if e.text.startswith("fork held back")]
    assert len(notes) == 1 and "CPU 95% busy" in notes[0]  # said once per turn
    assert "shipped-4417" in run.heard()  # answered all the same, as async would


async def test_a_remote_llm_fork_opens_whatever_the_cpu():
    from voice_agent.compute import FixedGauge

    async def body(run: Run) -> None:
        run.agent.conversation.speculation.gauge = FixedGauge(1.0)
        await run.speak("my order is 4417 and I wonder where it is".split())
        await run.idle()

    run = await run_agent(body, fork_llm="remote", max_cpu_busy=0.5)
    assert run.entries("ForkOpened")
    assert not [e for e in run.entries("Note") if e.text.startswith("fork held back")]


async def test_a_local_llm_runs_one_fork_generation_at_a_time_and_few_per_turn():
    from voice_agent.compute import FixedGauge

    # every fork's generation is slow: partials keep coming while it runs
    llm = HastyLlm(delays=(0.4, 0.4, 0.4, 0.4, 0.4, 0.4))

    async def body(run: Run) -> None:
        run.agent.conversation.speculation.gauge = FixedGauge(0.1)
        await run.speak("1001 1002 1003 1004 1005 1006 1007 1008".split(), gap_s=0.05)
        await run.idle()

    run = await run_agent(body, llm=llm, fork_llm="local", local_max_forks_per_turn=2)
    opened = run.entries("ForkOpened")
    assert 1 <= len(opened) <= 2
    # remote, the same caller opens a fork on every new number (the budget allows 4)
    run2 = await run_agent(body, llm=HastyLlm(delays=(0.4,) * 6), fork_llm="remote")
    assert len(run2.entries("ForkOpened")) > len(opened)


async def test_a_fork_is_not_opened_while_another_local_fork_generates():
    from voice_agent.compute import FixedGauge

    llm = HastyLlm(delays=(0.5,))  # the first fork is slow

    async def body(run: Run) -> None:
        run.agent.conversation.speculation.gauge = FixedGauge(0.1)
        await run.speak("1001 1002 1003".split(), gap_s=0.05)
        await run.idle()

    run = await run_agent(body, llm=llm, fork_llm="local", local_max_forks_per_turn=5)
    assert len(run.entries("ForkOpened")) == 1
    notes = [e.text for e in run.entries("Note") if e.text.startswith("fork held back")]
    assert notes and "still runs" in notes[0]


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8080/v1", True),
        ("http://localhost:1234/v1", True),
        ("http://[::1]:9000/v1", True),
        ("https://api.openai.com/v1", False),
        (None, False),
    ],
)
def test_auto_calls_a_loopback_endpoint_local(url, local):
    from types import SimpleNamespace

    from voice_agent.conversation import _llm_is_local

    llm = SimpleNamespace(config=SimpleNamespace(base_url=url))
    assert _llm_is_local("auto", llm) is local
    assert _llm_is_local("local", llm) is True and _llm_is_local("remote", llm) is False
