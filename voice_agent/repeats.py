"""A sentence the caller already heard in this turn is not said again.

In ``async`` mode one turn's answer may take several generations: a follow-up
reports the first tool outcome while another call still runs, a later one the
next outcome. Each sees what the earlier ones said (their text is in the
context as the assistant's words), but a model may tell every outcome of the
turn again ("The order 5091 is in processing. The Dallas store opens at 9."),
and the caller would hear the first sentence twice. Whatever the model
produces, a generation's sentence that repeats, word for word, one an earlier
generation said in the same turn is dropped before it reaches the output; the
ledger notes it. (What one generation says is taken as it comes: the rule is
about a later answer restarting, not about a model's own wording.)

A :class:`RepeatFilter` (one per generation) sits between its text and the output.
It holds the sentence begun only while its words so far could still become a
sentence said in this turn, and lets it go the moment they cannot: the first
answer of a turn is never held (nothing was said yet), and a new sentence is
held only for the words it shares with an earlier one ("The" ... "order" ...
"opening": said from there on). Sentences are cut by the chunker the
generation's planner uses, so what is compared is what the ledger records as
planned.

A new turn (the caller spoke) clears the turn's :class:`SaidInTurn`: a caller
who asks "can you say that again?" hears it again.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from peripherals.text_chunker import SentenceChunker

_WORDS = re.compile(r"[\w']+")


def sentence_key(text: str) -> tuple[str, ...]:
    """A sentence's words, lower-cased, without punctuation: what makes two sentences the
    same for the caller ("Your order has shipped." / "your order has shipped!")."""
    return tuple(_WORDS.findall(text.lower()))


class SaidInTurn:
    """The sentences the model's generations said since the caller last spoke."""

    def __init__(self) -> None:
        self._keys: set[tuple[str, ...]] = set()

    def clear(self) -> None:
        """The caller spoke: a new turn, nothing said in it yet."""
        self._keys.clear()

    def add(self, sentences: list[str]) -> None:
        """A generation said ``sentences`` (it ended, or was cut off)."""
        for sentence in sentences:
            key = sentence_key(sentence)
            if key:
                self._keys.add(key)

    def __contains__(self, sentence: str) -> bool:
        key = sentence_key(sentence)
        return bool(key) and key in self._keys

    def may_become(self, text: str) -> bool:
        """``text``, the start of a sentence, could still grow into one said in this turn
        (its last word may be unfinished: "proc" may become "processing")."""
        words = sentence_key(text)
        if not words:
            return bool(self._keys)  # nothing to tell by yet
        head, last = words[:-1], words[-1]
        n = len(head)
        return any(
            len(key) > n and key[:n] == head and key[n].startswith(last) for key in self._keys
        )


@dataclass
class Filtered:
    """What :class:`RepeatFilter` lets through now (``text``) and the repeats it dropped."""

    text: str = ""
    repeats: list[str] = field(default_factory=list)


class RepeatFilter:
    """One generation's text on its way to the output, with its repeats taken out.

    ``push`` takes each delta and returns what may be said now; ``finish`` (the
    generation ended normally) returns the rest; ``discard`` drops the held text
    (the generation failed or was cancelled: its unfinished sentence is not said).
    Text comes out unchanged but for the dropped sentences (and the whitespace after
    them), in order. What it let through counts as said in the turn once it ends
    (``finish`` or ``discard``): the next generation's repeats are checked against it.
    """

    def __init__(self, chunker: SentenceChunker) -> None:
        self._chunker = chunker
        self._sentence = ""  # the raw text of the sentence begun, as pushed
        self._open = False  # the sentence begun can no longer be a repeat: it goes out as it comes
        self._let_through: list[str] = []  # the sentences it let through

    @property
    def holding(self) -> str:
        """Text pushed and held back (the sentence begun while it may be a repeat)."""
        return "" if self._open else self._sentence

    def push(self, text: str, said: SaidInTurn) -> Filtered:
        """The next delta of the text; ``said``: what the turn's earlier generations said."""
        out = Filtered()
        for piece in _pieces(text):
            self._feed(piece, said, out)
        return out

    def finish(self, said: SaidInTurn) -> Filtered:
        """The text is complete: its last sentence goes out unless it is a repeat."""
        out = Filtered()
        last = self._chunker.flush()
        if not self._open and self._sentence and last and all(s in said for s in last):
            out.repeats += last
        else:
            out.text += self.holding
            self._let_through += last
        self._end(said)
        return out

    def discard(self, said: SaidInTurn) -> str:
        """The text ends here (the generation failed or was cancelled): return what was
        held, which is not said; what went out before counts as said."""
        held = self.holding
        self._chunker.flush()
        self._end(said)
        return held

    def _end(self, said: SaidInTurn) -> None:
        said.add(self._let_through)
        self._let_through = []
        self._sentence, self._open = "", False

    def _feed(self, piece: str, said: SaidInTurn, out: Filtered) -> None:
        done = self._chunker.push(piece)
        before, combined = self._sentence, self._sentence + piece
        if not done:
            self._sentence = combined
            if self._open:
                out.text += piece
            elif not said.may_become(combined):
                self._open = True
                out.text += combined
            return
        rest = self._chunker.pending
        cut = len(combined) - len(rest)
        if cut < len(before) or not combined.endswith(rest):  # (never: a cut is in the piece)
            cut = len(combined)
            rest = ""
        head = combined[:cut]
        if self._open:
            out.text += head[len(before) :]
            self._let_through += done
        elif all(s in said for s in done):
            out.repeats += done
        else:
            out.text += head
            self._let_through += done
        self._sentence, self._open = "", False
        if rest:
            self._feed_rest(rest, said, out)

    def _feed_rest(self, rest: str, said: SaidInTurn, out: Filtered) -> None:
        """``rest`` begins the next sentence (already in the chunker): hold it or let it go."""
        self._sentence = rest
        if not said.may_become(rest):
            self._open = True
            out.text += rest


def _pieces(text: str) -> Iterator[str]:
    """``text`` in pieces that each complete at most one sentence (as a rule): a word's
    first character (it may settle a cut waiting on it: "a.m." + "T"), then the rest of
    the word with the whitespace after it."""
    for match in re.finditer(r"\S*\s*", text):
        word = match.group()
        if word:
            yield word[:1]
            if word[1:]:
                yield word[1:]
