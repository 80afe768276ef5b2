"""One LLM generation: its identity, the text it produced, the calls it issued.

A :class:`Generation` is created by the conversation (a turn's answer, a
follow-up) or by the speculator (a fork, held until adopted). It is plain
state; the conversation starts it, feeds its stream to the agent's table and
ends it in one place (``Conversation._end_generation``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Literal

from fsm import Event

from .events import LlmToolCallIssued

RequestReason = Literal["user_turn", "tool_results", "hold", "continuation", "canned"]

# A sentence ends at . ! ? (optionally followed by a quote/bracket) and whitespace.
SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+")


def spoken(text: str) -> str:
    """Whitespace folded: how planned and heard text are recorded, so the two compare equal."""
    return " ".join(text.split())


@dataclass
class Generation:
    """One LLM response in flight.

    ``held`` is not None while the generation is a fork's: its stream events
    wait there (nothing reaches the speaker or the model's context) until the
    fork is adopted, when they are replayed to the table in order.
    """

    response_id: str
    reason: RequestReason
    turn_id: int = 0  # the user turn it answers
    task: asyncio.Task[None] | None = None
    pushed: bool = False  # some text was handed to the output
    buffer: str = ""  # text not yet recorded as a planned sentence
    deferred_calls: list[LlmToolCallIssued] = field(default_factory=list)  # start at the end
    call_ids: list[str] = field(default_factory=list)
    held: list[Event] | None = None
    failed: bool = False  # the stream ended with an error
    streamed_chars: int = 0  # text and call arguments produced (a token estimate's basis)
    completion_tokens: int | None = None  # as the server reported them
    tool_round: int = 0  # a turn's answer: 0; a follow-up: 1 + the round of what it reports
    # The answer's leading text held back while speculative results may make it needless
    # (None: not held); when every call it makes adopts a finished result it is dropped.
    preamble: str | None = None
    preamble_since: float | None = None
    acked: bool = False  # the short acknowledgement was said when the held text began
    restarts: int = 0  # restarts before its first token, to batch new outcomes

    @property
    def streaming(self) -> bool:
        """The LLM stream is still running."""
        return self.task is not None and not self.task.done()

    def tokens(self) -> int:
        """Completion tokens: the server's count, else ~4 characters per token."""
        if self.completion_tokens is not None:
            return self.completion_tokens
        return (self.streamed_chars + 3) // 4

    def take_sentences(self, *, final: bool) -> list[str]:
        """Complete sentences of the buffered text (all of it when ``final``), removed."""
        out: list[str] = []
        while True:
            m = SENTENCE_END.search(self.buffer)
            if m is None:
                break
            sentence, self.buffer = spoken(self.buffer[: m.start()]), self.buffer[m.end() :]
            if sentence:
                out.append(sentence)
        if final and self.buffer.strip():
            out.append(spoken(self.buffer))
            self.buffer = ""
        return out
