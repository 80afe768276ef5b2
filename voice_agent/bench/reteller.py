"""A scripted model that re-tells every outcome of the turn, for the repeat filter's bench
and tests.

Not a language model: a FAKE :class:`~voice_agent.llm.LlmClient` on the injected clock.
The caller's turn gets the ``calls`` (``gap_s`` apart, after ``ttft_s``); a follow-up
tells every outcome of the turn it is shown, one sentence each (``tell(result)``), the
ones it told before included, a word every ``per_word_s``: what the embedded 1.5B did
in spoken call s06 (session 9), on purpose every time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fsm import Clock
from ledger import check_protocol
from voice_agent.llm import StreamFinished, StreamItem, TextDelta, ToolCallReady


class Reteller:
    """``calls``: (tool name, arguments JSON) of the caller's turn; ``told``: every
    sentence streamed, repeats included."""

    config = None

    def __init__(
        self,
        clock: Clock,
        calls: list[tuple[str, str]],
        tell: Callable[[dict[str, Any]], str],
        *,
        ttft_s: float,
        per_word_s: float,
        gap_s: float,
    ) -> None:
        self.clock, self.calls, self.tell = clock, calls, tell
        self.ttft_s, self.per_word_s, self.gap_s = ttft_s, per_word_s, gap_s
        self.told: list[str] = []

    async def stream(
        self, messages: list[dict[str, Any]], tools: Any = None, **_: Any
    ) -> AsyncIterator[StreamItem]:
        check_protocol(messages)
        await self.clock.sleep(self.ttft_s)
        if messages[-1]["role"] == "user":
            for i, (name, arguments) in enumerate(self.calls):
                if i:
                    await self.clock.sleep(self.gap_s)
                yield ToolCallReady(f"c{i + 1}", name, arguments)
            yield StreamFinished("tool_calls")
            return
        turn = max(i for i, m in enumerate(messages) if m["role"] == "user")
        told = []
        for message in messages[turn:]:
            payload = json.loads(message["content"]) if message["role"] == "tool" else {}
            if payload.get("status") == "resolved":
                told.append(self.tell(payload["result"]))
        self.told += told
        for i, word in enumerate(" ".join(told).split(" ")):
            if i:
                await self.clock.sleep(self.per_word_s)
            yield TextDelta(word if i == 0 else " " + word)
        yield StreamFinished("stop")

    async def prewarm(self, messages: Any, tools: Any) -> None:
        return None

    async def aclose(self) -> None:
        return None
