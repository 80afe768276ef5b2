"""Fixtures for engine tests: an agent wired to a real LLM endpoint over HTTP."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import pytest

from fsm import MonotonicClock
from ledger import Ledger
from voice_agent.agent import Agent
from voice_agent.config import AgentConfig, LlmConfig
from voice_agent.events import SessionEnded, TranscriptFinal
from voice_agent.llm import LlmClient
from voice_agent.output import TextOutput
from voice_agent.tools import ToolRegistry


@dataclass
class Harness:
    agent: Agent
    ledger: Ledger
    printed: io.StringIO
    task: asyncio.Task[None]

    def say(self, text: str) -> None:
        self.agent.post(TranscriptFinal(text=text))

    async def until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError(f"timed out; ledger:\n{self.ledger.transcript()}")
            await asyncio.sleep(0.01)

    async def idle(self, timeout: float = 20.0) -> None:
        await asyncio.sleep(0.05)
        await self.until(self.agent.is_idle, timeout)

    def entries(self, kind: str) -> list:
        return [e for e in self.ledger.entries if e.type == kind]


@pytest.fixture
def make_agent() -> Callable[..., AbstractAsyncContextManager[Harness]]:
    """``async with make_agent(base_url, registry, mode=...) as h``: an agent on a real endpoint."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def _make(
        base_url: str,
        tools: ToolRegistry,
        *,
        mode: str = "async",
        api_key: str = "none",
        model: str = "oracle",
        temperature: float = 0.3,
        llm_kw: dict | None = None,
        **agent_kw,
    ) -> AsyncIterator[Harness]:
        llm = LlmClient(
            LlmConfig(
                base_url=base_url,
                model=model,
                api_key=api_key,
                retry_backoff_s=0.01,
                temperature=temperature,
                max_retries=1,
                connect_timeout_s=1,
                **(llm_kw or {}),
            )
        )
        ledger = Ledger("test", MonotonicClock())
        printed = io.StringIO()
        agent_kw.setdefault("system_prompt", "You are a test agent.")
        config = AgentConfig(mode=mode, **agent_kw)
        agent = Agent(config, llm, tools, TextOutput(printed), ledger)
        task = asyncio.create_task(agent.run())
        try:
            yield Harness(agent, ledger, printed, task)
        finally:
            agent.post(SessionEnded(reason="test over"))
            await asyncio.wait_for(task, 5)
            await llm.aclose()

    return _make
