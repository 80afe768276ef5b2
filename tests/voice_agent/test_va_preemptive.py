"""Preemptive generation: the LLM starts at the user's pause and is adopted at the turn's end."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fsm import MonotonicClock
from ledger import Ledger, check_protocol
from ledger import entries as le
from voice_agent.agent import Agent
from voice_agent.bench.oracle import OracleServer
from voice_agent.bench.scenario import Scenario
from voice_agent.config import AgentConfig, LlmConfig
from voice_agent.events import (
    SessionEnded,
    TranscriptFinal,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechResumed,
    UserSpeechStarted,
)
from voice_agent.llm import LlmClient
from voice_agent.output import TextOutput
from voice_agent.tools import ToolRegistry

SCENARIO = Scenario.model_validate(
    {
        "name": "preempt",
        "oracle": {"ttft_ms": 300, "tokens_per_s": 60},
        "turns": [
            {
                "user": "What are your opening hours?",
                "answer": [{"say": "We open at nine.", "expect": ["nine"]}],
            },
            {
                "user": "And on Sunday?",
                "answer": [{"say": "On Sunday we are closed.", "expect": ["closed"]}],
            },
        ],
    }
)


async def test_a_pause_starts_the_answer_early_and_the_final_transcript_adopts_it(make_agent):
    async with OracleServer(SCENARIO) as oracle:
        async with make_agent(oracle.base_url, ToolRegistry()) as h:
            h.agent.post(UserSpeechStarted())
            h.agent.post(UserSpeechPaused(text="What are your opening hours?"))
            # the end-of-turn silence: the LLM is already working (generous bound: busy machine)
            await h.until(lambda: len(oracle.exchanges) == 1, timeout=20)
            assert h.entries("LlmRequestStarted") == []  # nothing is committed before the turn ends
            h.agent.post(UserSpeechEnded())
            h.agent.post(TranscriptFinal(text="What are your opening hours?"))
            await h.idle()
    assert len(oracle.exchanges) == 1  # adopted, not asked again
    [request] = h.entries("LlmRequestStarted")
    [user] = [e for e in h.entries("UserUtterance") if e.final]
    assert user.seq < request.seq
    assert "nine" in " ".join(e.text for e in h.entries("AgentTextPlayed"))
    [opened] = h.entries("ForkOpened")
    assert opened.trigger == "pause" and opened.transcript == "What are your opening hours?"
    [adopted] = h.entries("ForkAdopted")  # the fork on the early final, adopted whole
    assert adopted.fork_id == opened.fork_id and adopted.whole and adopted.adopted == {}
    assert any("adopted whole" in e.text for e in h.entries("Note"))
    check_protocol(h.ledger.render_messages("sys"))


async def test_speech_after_the_pause_drops_the_early_answer(make_agent):
    async with OracleServer(SCENARIO) as oracle:
        async with make_agent(oracle.base_url, ToolRegistry()) as h:
            h.say("What are your opening hours?")
            await h.idle()
            h.agent.post(UserSpeechStarted())
            h.agent.post(UserSpeechPaused(text="And"))
            await asyncio.sleep(0.05)
            h.agent.post(UserSpeechResumed())
            h.agent.post(UserSpeechEnded())
            h.agent.post(TranscriptFinal(text="And on Sunday?"))
            await h.idle()
    heard = [e.text for e in h.entries("AgentTextPlayed")]
    assert heard[-1] == "On Sunday we are closed."
    [discarded] = h.entries("ForkDiscarded")  # the fork on the pause was not adopted
    assert discarded.fork_id == h.entries("ForkOpened")[0].fork_id
    assert len(h.entries("LlmRequestStarted")) == 2  # the dropped one left no response behind
    check_protocol(h.ledger.render_messages("sys"))


class PreparingOutput(TextOutput):
    """A text output that records what it was asked to get ready (``SpeechPreparer``)."""

    def __init__(self) -> None:
        super().__init__(io.StringIO())
        self.prepared: list[str] = []

    def prepare(self, text: str) -> None:
        self.prepared.append(text)


@asynccontextmanager
async def running_agent(output: TextOutput) -> AsyncIterator[tuple[Agent, Ledger]]:
    """An async agent on the oracle, speaking into ``output``; ended when the block ends."""
    async with OracleServer(SCENARIO) as oracle:
        llm = LlmClient(LlmConfig(base_url=oracle.base_url, model="oracle", max_retries=0))
        ledger = Ledger("test", MonotonicClock())
        agent = Agent(
            AgentConfig(mode="async", system_prompt="sys"), llm, ToolRegistry(), output, ledger
        )
        task = asyncio.create_task(agent.run())
        try:
            yield agent, ledger
        finally:
            agent.post(SessionEnded(reason="test over"))
            await asyncio.wait_for(task, 5)
            await llm.aclose()


async def until_played(ledger: Ledger) -> None:
    """Until the ledger records audio played (generous: a busy machine)."""
    for _ in range(400):
        if any(isinstance(e, le.AgentTextPlayed) for e in ledger.entries):
            return
        await asyncio.sleep(0.05)


async def test_a_held_early_answer_is_handed_to_the_output_to_get_ready_before_the_turn_ends():
    output = PreparingOutput()
    async with running_agent(output) as (agent, ledger):
        agent.post(UserSpeechStarted())
        agent.post(UserSpeechPaused(text="What are your opening hours?"))
        # the held answer streams while the caller is still silent (generous: busy machine)
        for _ in range(400):
            if output.prepared and output.prepared[-1] == "We open at nine.":
                break
            await asyncio.sleep(0.05)
        assert output.prepared[-1] == "We open at nine."
        assert all("We open at nine.".startswith(t) for t in output.prepared)
        assert not any(isinstance(e, le.AgentTextPlayed) for e in ledger.entries)
        agent.post(UserSpeechEnded())
        agent.post(TranscriptFinal(text="What are your opening hours?"))
        await until_played(ledger)
    played = [e.text for e in ledger.entries if isinstance(e, le.AgentTextPlayed)]
    assert played == ["We open at nine."]


async def test_an_answer_that_is_not_held_is_not_prepared():
    # only a pause fork's held text is prepared; an answer spoken at once goes to push
    output = PreparingOutput()
    async with running_agent(output) as (agent, ledger):
        agent.post(UserSpeechStarted())
        agent.post(UserSpeechEnded())
        agent.post(TranscriptFinal(text="What are your opening hours?"))
        await until_played(ledger)
    assert output.prepared == []
    assert [e.text for e in ledger.entries if isinstance(e, le.AgentTextPlayed)] == [
        "We open at nine."
    ]
