"""Property test: random conversations never break the agent or the LLM protocol.

A scripted in-process LLM (answers with text and, on request, tool calls), the
text output and real tools drive the real transition table; Hypothesis picks
what the user does and when. After every step the rendered context must be a
valid chat-completions conversation and no action may have failed; at the end,
given time, the agent must be idle with every call settled.
"""

from __future__ import annotations

import asyncio
import io
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsm import AutojumpClock, MonotonicClock
from ledger import Ledger, check_protocol
from voice_agent.agent import Agent
from voice_agent.config import AgentConfig
from voice_agent.events import (
    SessionEnded,
    TranscriptFinal,
    TranscriptPartial,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechResumed,
    UserSpeechStarted,
)
from voice_agent.llm import StreamFinished, TextDelta, ToolCallReady
from voice_agent.output import TextOutput
from voice_agent.tools import ToolRegistry


class ScriptedLlm:
    """Answers 'call' with a tool call (plus filler), anything else with two sentences."""

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.config = None

    async def stream(self, messages, tools=None, *, tool_choice=None):
        check_protocol(messages)  # what reaches the model is always valid
        last = messages[-1]
        await asyncio.sleep(0.002)
        if last["role"] == "user" and "call" in last["content"]:
            yield TextDelta("Let me check. ")
            await asyncio.sleep(0.002)
            yield ToolCallReady(f"call_{next(self.ids)}", "lookup", '{"q": "x"}')
            yield StreamFinished("tool_calls")
            return
        for piece in ("Here is ", "the answer. ", "Anything else?"):
            await asyncio.sleep(0.002)
            yield TextDelta(piece)
        yield StreamFinished("stop")

    async def prewarm(self, messages, tools):
        return None

    async def aclose(self):
        return None


def registry() -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool(timeout_s=0.05, on_interrupt="continue_and_report")
    async def lookup(q: str) -> str:
        """Look something up (sometimes slower than its timeout)."""
        await asyncio.sleep(0.03 if q else 0.1)
        return "found"

    return reg


user_action = st.one_of(
    st.tuples(st.just("start"), st.none()),
    st.tuples(st.just("partial"), st.sampled_from(["what", "what is"])),
    st.tuples(st.just("pause"), st.sampled_from(["please call it", "hello there"])),
    st.tuples(st.just("resume"), st.none()),
    st.tuples(st.just("end"), st.none()),
    st.tuples(
        st.just("final"), st.sampled_from(["please call it", "hello there", "", "call again"])
    ),
    st.tuples(st.just("wait"), st.integers(0, 40)),
)

EVENTS = {
    "start": lambda _: UserSpeechStarted(),
    "partial": lambda v: TranscriptPartial(text=v),
    "pause": lambda v: UserSpeechPaused(text=v),
    "resume": lambda _: UserSpeechResumed(),
    "end": lambda _: UserSpeechEnded(),
    "final": lambda v: TranscriptFinal(text=v),
}


async def converse(actions, mode: str) -> None:
    ledger = Ledger("prop", MonotonicClock())
    agent = Agent(
        AgentConfig(mode=mode, system_prompt="s", hold_after_s=0.01),
        ScriptedLlm(),  # type: ignore[arg-type]
        registry(),
        TextOutput(io.StringIO()),
        ledger,
    )
    task = asyncio.create_task(agent.run())
    try:
        for kind, value in actions:
            if kind == "wait":
                await asyncio.sleep(value / 1000)
            else:
                agent.post(EVENTS[kind](value))
                await asyncio.sleep(0)
            check_protocol(ledger.render_messages("s"))
            assert agent.state in {"listening", "user_speaking", "thinking", "speaking"}
        agent.post(TranscriptFinal(text="hello there"))  # a last, plain turn
        for _ in range(300):
            await asyncio.sleep(0.01)
            if agent.is_idle():
                break
        assert agent.is_idle(), (agent.state, ledger.transcript())
        from ledger import format_session

        assert not ledger.pending_calls(), format_session(ledger.entries)
        errors = [e for e in ledger.entries if e.type == "Note" and e.level == "error"]
        assert not errors, errors
        check_protocol(ledger.render_messages("s"))
    finally:
        agent.post(SessionEnded(reason="test"))
        await asyncio.wait_for(task, 5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(user_action, max_size=14), mode=st.sampled_from(["sync", "async"]))
def test_random_conversations_keep_the_protocol_and_settle(actions, mode):
    AutojumpClock().run(converse(actions, mode))  # virtual time: the waits and timeouts jump
