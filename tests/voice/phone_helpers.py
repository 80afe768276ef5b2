"""Shared set-up of the phone tests (test_voice_phone_*.py): the phone server with one
worker on a free port of 127.0.0.1, waiting for a condition on the wall clock, a call's
answer, the session ledgers, and a provider's REST API stand-in on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ledger import entries as le
from ledger import load_jsonl
from voice_agent.config import Config
from voice_agent.tools import ToolRegistry
from voice_agent.transports.call import Call
from voice_agent.transports.media_stream import MediaStreamTransport
from voice_agent.transports.phone_server import PhoneServer
from voice_agent.worker import Worker

# Generous (s of real time): a loaded 2-core machine has taken 20 s for one turn; the
# figures come from the bench, not from these tests.
TIMEOUT_S = 90.0

Calls = list[tuple[Call, MediaStreamTransport]]


@asynccontextmanager
async def phone_rig(
    config: Config,
    tools: ToolRegistry,
    *,
    control: Any = None,
    provider: str | None = None,
    **worker: Any,
) -> AsyncIterator[tuple[Worker, PhoneServer, Calls]]:
    """A worker and its phone server on a free port (``provider`` and ``worker.*``
    settings such as ``max_calls`` override ``config``); yields (worker, server, the calls
    started so far with their transports)."""
    phone = {"port": 0} | ({"provider": provider} if provider else {})
    config = config.model_copy(
        update={
            "phone": config.phone.model_copy(update=phone),
            "worker": config.worker.model_copy(update=worker),
        }
    )
    calls: Calls = []
    async with Worker(config, tools=tools) as running:
        server = PhoneServer(
            running, config.phone, control=control, on_call=lambda c, t: calls.append((c, t))
        )
        async with server:
            yield running, server, calls


async def until(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
    """Wait until ``predicate()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"waited {timeout:g} s for {what}") from None


def has_answered(call: Call) -> bool:
    """The agent of ``call`` has played something and is done (idle: no generation, tool
    or audio left; a hold phrase alone is not the answer)."""
    return any(isinstance(e, le.AgentTextPlayed) for e in call.agent.ledger.entries) and call.done()


def ledgers(directory: Path) -> list[list[le.Entry]]:
    """The session ledgers written in ``directory``, in file-name order."""
    return [load_jsonl(p) for p in sorted(directory.glob("*.jsonl"))]


def session_meta(ledger: list[le.Entry]) -> dict[str, Any]:
    """The ``meta`` of the ``SessionStarted`` entry that opens ``ledger``."""
    first = ledger[0]
    assert isinstance(first, le.SessionStarted), first
    return first.meta
