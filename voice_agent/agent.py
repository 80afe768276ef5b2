"""The agent: the transition table run over a :class:`Conversation`.

>>> agent = Agent(config, llm=llm, tools=registry, output=TextOutput(sys.stdout), ledger=ledger)
>>> agent.post(TranscriptFinal(text="Where is my order 12345?"))
>>> await agent.run()          # until SessionEnded is posted

Transports post events (``post`` from the event loop, ``post_threadsafe``
from audio threads); everything else happens inside the machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fsm import Clock, Event, Machine, MonotonicClock, TraceRecord
from ledger import Ledger

from .agent_fsm import AGENT_MACHINE
from .config import AgentConfig, render_system_prompt
from .conversation import Conversation
from .events import SessionEnded
from .llm import LlmClient
from .output import SpeechOutput
from .tools import ToolRegistry

log = logging.getLogger(__name__)


class Agent:
    """One conversation session: FSM + conversation context + owned tasks."""

    def __init__(
        self,
        config: AgentConfig,
        llm: LlmClient,
        tools: ToolRegistry,
        output: SpeechOutput,
        ledger: Ledger,
        clock: Clock | None = None,
        *,
        system_prompt: str | None = None,
        on_transition: Callable[[TraceRecord], None] | None = None,
    ) -> None:
        self.clock = clock or MonotonicClock()
        self.ledger = ledger
        self.output = output
        self.conversation = Conversation(
            config=config,
            system_prompt=system_prompt
            if system_prompt is not None
            else render_system_prompt(config),
            llm=llm,
            tools=tools,
            output=output,
            ledger=ledger,
            clock=self.clock,
            post=self.post,
        )
        self.machine: Machine[Conversation] = Machine(
            AGENT_MACHINE, self.conversation, clock=self.clock, on_transition=on_transition
        )
        output.bind(self.post)
        self._greeting = config.greeting

    @property
    def state(self) -> str:
        """The floor: listening, user_speaking, thinking, speaking or ended."""
        return str(self.machine.state)

    @property
    def trace(self) -> list[TraceRecord]:
        return self.machine.trace

    def post(self, event: Event) -> None:
        """Queue an event for the agent (call from the event loop's thread)."""
        if self.machine.closed:
            return
        self.machine.post(event)

    def post_threadsafe(self, event: Event) -> None:
        """Queue an event from another thread (audio callbacks)."""
        self.machine.post_threadsafe(event)

    def is_idle(self) -> bool:
        """Listening, nothing queued or playing, no running call whose result will be reported."""
        return self.state == "listening" and not self.machine.busy and self.conversation.is_idle()

    def is_settled(self) -> bool:
        """No event queued, no LLM generation and no tool running (playout may continue)."""
        return not self.machine.busy and self.conversation.is_settled()

    def say(self, text: str) -> None:
        """Speak a fixed text now (a greeting): recorded in the ledger like any response."""
        self.conversation.say(text, reason="canned")

    async def prewarm(self) -> None:
        """Have the LLM cache the system prompt and tools before the first turn."""
        conv = self.conversation
        messages = [
            {"role": "system", "content": conv.system_prompt},
            {"role": "user", "content": "Hello."},
        ]
        await conv.llm.prewarm(messages, conv.tools.openai_tools() or None)

    async def run(self) -> None:
        """Process events until the session ends; always releases what it owns."""
        try:
            if self._greeting:
                self.say(self._greeting)
            self.conversation.start_call()
            await self.machine.run()
        finally:
            await self.aclose()

    async def end(self, reason: str = "ended") -> None:
        """Ask the session to end (the FSM records it) and wait for the run loop to stop."""
        self.post(SessionEnded(reason=reason))

    async def aclose(self) -> None:
        """Cancel generations, tools and timers; stop the machine (idempotent)."""
        await self.conversation.aclose()
        await self.machine.aclose()

    def render_fsm(self) -> dict[str, Any]:
        return {"markdown": AGENT_MACHINE.to_markdown(), "mermaid": AGENT_MACHINE.to_mermaid()}
