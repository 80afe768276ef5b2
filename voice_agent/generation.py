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
from peripherals.text_chunker import SentenceChunker, whole_sentences

from .events import LlmToolCallIssued
from .repeats import RepeatFilter

RequestReason = Literal["user_turn", "tool_results", "hold", "continuation", "canned"]

# a word that ends in a digit and a period: a number the next token may go on ("3." "5")
_NUMBER_END = re.compile(r"\d\.$")


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
    # the text handed to the output, cut into the sentences recorded as planned: whole
    # sentences by the output's own rules (abbreviations, "a.m.", numbers), so every
    # sentence the output takes back at a stall is one the ledger has not recorded yet
    planner: SentenceChunker = field(default_factory=whole_sentences)
    # the text on its way to the output: a sentence said earlier in the turn is not said again
    repeats: RepeatFilter = field(default_factory=lambda: RepeatFilter(whole_sentences()))
    # The unfinished sentence taken back from the output at a stall (a hold phrase is said
    # before it); pushed again before the next text, dropped if the answer fails.
    withheld: str = ""
    # The number a pause cut: the last word of a sentence the pause released, when it ends
    # in a digit and its period ("... is 3."): the model's next text may go on from it
    # ("5 percent."). See :meth:`rejoin`.
    cut_number: str = ""
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

    def plan(self, text: str) -> list[str]:
        """``text`` was handed to the output: the sentences it completed, to record."""
        return [spoken(s) for s in self.planner.push(text)]

    def take_sentences(self, *, final: bool) -> list[str]:
        """At the end (``final``): the rest of the text handed to the output, to record."""
        return [spoken(s) for s in self.planner.flush()] if final else []

    def take_back(self, text: str, *, heard: bool = True) -> list[str]:
        """The output took back ``text``, the tail of what it was handed (a stall's
        unfinished sentence): it is no longer planned. Returns the sentences the pause
        completed (a final mark that came last), to record (``heard``: they are said as
        sentences; a printed text is shown as it comes, cut nowhere)."""
        done, unfinished, _ = self.planner.take_unfinished()
        if not text or unfinished.endswith(text):
            self.planner.push(unfinished[: len(unfinished) - len(text)])  # said before it
        if done and heard:
            last = done[-1].split()[-1]
            self.cut_number = last if _NUMBER_END.search(last) else ""
        return [spoken(s) for s in done]

    def rejoin(self, text: str) -> str:
        """The model's next ``text`` after a pause released a sentence ending in a number.

        A number's period ("3.") and its next digits ("5") may come further apart than the
        pause (``SENTENCE_PAUSE_S``: a step of a loaded machine, a stall): the caller has
        heard "The fee is 3." as a sentence. When ``text`` goes on with a digit, the whole
        number is said again before it ("3.5 percent."): the caller hears "The fee is 3.
        3.5 percent.", a correction, instead of "3. 5 percent.", two numbers. A digit
        only: a model that drops the space after a sentence ("3.It") is not joined.

        (Keeping a sentence that ends in a number longer than the pause would avoid the
        repetition, but a sentence ending in a number is common ("Your order number is
        58213.") and every stall after one would keep the caller in silence that much
        longer, for a continuation that almost always comes within the pause: the
        repetition costs a second of speech in the rare case, the wait costs silence in the
        common one.)
        """
        if not text:
            return text
        number, self.cut_number = self.cut_number, ""
        return f" {number}{text}" if number and text[0].isdigit() else text
