"""Preemptive generation: the LLM starts at the user's pause and is adopted at the turn's end."""

from __future__ import annotations

import asyncio

from ledger import check_protocol
from voice_agent.bench.oracle import OracleServer
from voice_agent.bench.scenario import Scenario
from voice_agent.events import (
    TranscriptFinal,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechResumed,
    UserSpeechStarted,
)
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
