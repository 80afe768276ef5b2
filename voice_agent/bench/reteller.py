"""A scripted model that tells a turn's outcomes as the embedded server's answer note asks,
for the repeat filter's bench and tests.

Not a language model: a FAKE :class:`~voice_agent.llm.LlmClient` on the injected clock.
The caller's turn gets the ``calls`` (``gap_s`` apart, after ``ttft_s``); a follow-up
tells outcomes one sentence each (``tell(result)``), a word every ``per_word_s``. Which
outcomes (``since``):

- ``"caller"``: every outcome since the caller spoke, the ones it told before included:
  what the embedded 1.5B did in spoken call s06 (session 9) when the note asked it to
  "tell each answer" of the turn; on purpose every time;
- ``"agent"``: those since the agent last spoke (`turn_history.untold`), what the note
  asks for since session 11, obeyed every time.

``stalls``: that many follow-ups (the first ones) never say anything: the engine's
deadline ends them with its apology.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fsm import Clock
from ledger import check_protocol
from voice_agent.llm import StreamFinished, StreamItem, TextDelta, ToolCallReady
from voice_agent.local_llm.turn_history import untold


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
        since: Literal["caller", "agent"] = "caller",
        stalls: int = 0,
    ) -> None:
        self.clock, self.calls, self.tell, self.since = clock, calls, tell, since
        self.ttft_s, self.per_word_s, self.gap_s = ttft_s, per_word_s, gap_s
        self.told: list[str] = []
        self.stalls = stalls  # follow-ups that say nothing at all, ever (a dead model)

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
        if self.stalls:
            self.stalls -= 1
            await self.clock.sleep(3600.0)  # the engine gives up first (its deadline)
        turn = max(i for i, m in enumerate(messages) if m["role"] == "user")
        told = []
        for message in messages[turn:] if self.since == "caller" else untold(messages):
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
