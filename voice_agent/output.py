"""Where the agent's speech goes: the :class:`SpeechOutput` protocol and a text output.

An output receives a response's text as it streams (``push``), learns that the
response is complete (``end``), plays responses one after another in the order
they were first pushed, and reports through the ``emit`` callback it was bound
to: :class:`PlayoutStarted` when a response's first audio (or text) reaches
the user, :class:`PlayoutFinished` when the response has been fully played.
``interrupt()`` stops everything at once and returns what the user actually
heard of each response that had started; no PlayoutFinished follows for them.
``withdraw()`` takes back the unfinished sentence of a response whose text paused
(its LLM stalled), so that a hold phrase or an apology is said between
sentences, never inside one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TextIO, runtime_checkable

from fsm import Event
from peripherals.text_chunker import CLOSERS, SENTENCE_MARKS

from .events import PlayoutFinished, PlayoutStarted


def ends_sentence(text: str) -> bool:
    """``text`` ends at the end of a sentence (a mark, maybe closed by a quote or bracket,
    or a line break) or is empty: what follows it starts a new sentence."""
    if not text.strip() or text.rstrip(" \t").endswith("\n"):
        return True
    return text.rstrip().rstrip(CLOSERS).endswith(tuple(SENTENCE_MARKS))


@dataclass(frozen=True)
class Withdrawn:
    """What :meth:`SpeechOutput.withdraw` took back.

    ``text``: the response's unfinished sentence, pushed but not yet committed to
    speech, removed from the output (push it again before more text to go on);
    ``inside_sentence``: what *is* committed ends inside a sentence (a clause of it
    is being said), so anything said now would land inside that sentence;
    ``visible``: what is committed stays in view (printed text): the reader sees the
    answer begun, so a pause is no silence to fill inside its sentence.
    """

    text: str = ""
    inside_sentence: bool = False
    visible: bool = False


class SpeechOutput(Protocol):
    """The agent's mouth (audio, text, a simulated speaker)."""

    def bind(self, emit: Callable[[Event], None]) -> None:
        """Give the output the callback through which it posts playout events."""

    def push(self, response_id: str, text: str) -> None:
        """Queue a streamed piece of ``response_id``'s text (non-blocking)."""

    def end(self, response_id: str) -> None:
        """No more text will come for ``response_id``."""

    def withdraw(self, response_id: str) -> Withdrawn:
        """``response_id``'s text pauses here: commit what the pause completes (a sentence
        whose final mark came last) and take back the sentence begun after it (see
        :class:`Withdrawn`). Nothing pushed, or ended: ``Withdrawn()``."""

    def unplayed_s(self, response_id: str) -> float:
        """Seconds of ``response_id``'s speech handed over and not yet heard (an estimate
        for text not yet synthesised); 0 when the listener hears nothing more of it."""

    def interrupt(self) -> dict[str, str]:
        """Stop at once, drop everything queued; return heard text per started response."""

    async def aclose(self) -> None:
        """Release the output (idempotent)."""


@runtime_checkable
class SpeechPreparer(Protocol):
    """An output that can get a response's first words ready before it is asked to say them
    (an audio output synthesises them); outputs without this simply say them when pushed."""

    def prepare(self, text: str) -> None:
        """``text`` may soon start a response (a held preemptive answer): get its first
        chunk ready; if no response starts with it, it is dropped."""


class TextOutput:
    """Prints the agent's text as it streams: playout is instantaneous.

    A line break pushed after a sentence left unfinished (an apology after a clause
    already printed) is printed as " —" then the break: "Your order has —" / "Sorry, ...".

    Used by ``voice-agent chat`` and by tests that need no audio.
    """

    def __init__(self, stream: TextIO | None = None, prefix: str = "agent> ") -> None:
        self._stream = stream
        self._prefix = prefix
        self._emit: Callable[[Event], None] = lambda e: None
        self._order: list[str] = []
        self._text: dict[str, str] = {}
        self._ended: set[str] = set()
        self._current: str | None = None

    def bind(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit

    def push(self, response_id: str, text: str) -> None:
        if response_id not in self._text:
            self._order.append(response_id)
            self._text[response_id] = ""
        self._text[response_id] += text
        self._drain()

    def end(self, response_id: str) -> None:
        if response_id not in self._text:
            return
        self._ended.add(response_id)
        self._drain()

    def withdraw(self, response_id: str) -> Withdrawn:
        """Printed text cannot be taken back: nothing is withdrawn; inside a sentence when
        the response's printed text does not end one."""
        text = self._text.get(response_id, "")
        return Withdrawn("", inside_sentence=not ends_sentence(text), visible=True)

    def unplayed_s(self, response_id: str) -> float:
        """Printing is instantaneous: nothing is ever left to hear."""
        return 0.0

    def _drain(self) -> None:
        while self._order:
            rid = self._order[0]
            if self._current != rid:
                self._current = rid
                self._printed = 0
                self._write(self._prefix)
                self._emit(PlayoutStarted(response_id=rid))
            text = self._text[rid]
            new = text[self._printed :]
            if new.startswith("\n") and not ends_sentence(text[: self._printed]):
                new = " —" + new  # a line break after an unfinished sentence: mark the break
            self._write(new)
            self._printed = len(text)
            if rid not in self._ended:
                return
            self._write("\n")
            self._order.pop(0)
            self._current = None
            self._emit(PlayoutFinished(response_id=rid, heard=text, interrupted=False))
            del self._text[rid]
            self._ended.discard(rid)

    def _write(self, text: str) -> None:
        if self._stream is not None and text:
            self._stream.write(text)
            self._stream.flush()

    def interrupt(self) -> dict[str, str]:
        heard: dict[str, str] = {}
        if self._current is not None:
            heard[self._current] = self._text[self._current][: self._printed]
            self._write(" —\n")
        self._order.clear()
        self._text.clear()
        self._ended.clear()
        self._current = None
        return heard

    async def aclose(self) -> None:
        self.interrupt()
