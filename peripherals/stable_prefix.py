"""LocalAgreement-2: the stable prefix of a sequence of streaming ASR hypotheses.

Each partial decode of a growing utterance yields a hypothesis (a list of
words). A word becomes *committed* (stable) when two consecutive hypotheses
agree on it, and on every word before it, beyond what is already committed.
The committed prefix only grows; it is never revised, even if a later
hypothesis disagrees with it (the final decode, not the partial, is the
authoritative transcript).

Words are compared after normalisation (case and surrounding punctuation
ignored), so "Hello," and "hello" agree; the committed words keep the
spelling of the latest hypothesis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_STRIP = re.compile(r"^[^\w']+|[^\w']+$")


def normalize_word(word: str) -> str:
    """Lower-case a word and strip punctuation around it ("Hello," -> "hello")."""
    return _STRIP.sub("", word.lower())


@dataclass(frozen=True)
class StableUpdate:
    """The result of one hypothesis: all committed words, the ones newly
    committed by it, and the uncommitted tail of the hypothesis."""

    committed: tuple[str, ...]
    added: tuple[str, ...]
    tail: tuple[str, ...]

    @property
    def text(self) -> str:
        """The committed words joined by spaces."""
        return " ".join(self.committed)


class StablePrefix:
    """LocalAgreement-2 over successive hypotheses of one utterance (pure)."""

    def __init__(self) -> None:
        self._committed: list[str] = []
        self._previous: list[str] | None = None  # normalised previous hypothesis

    @property
    def committed(self) -> tuple[str, ...]:
        return tuple(self._committed)

    def update(self, hypothesis: Sequence[str]) -> StableUpdate:
        """Take the next hypothesis (words) and return what is now stable.

        New words are committed when this and the previous hypothesis both
        start with the committed words and agree on them position by position.
        """
        words = [w for w in hypothesis if normalize_word(w)]
        norm = [normalize_word(w) for w in words]
        committed_norm = [normalize_word(w) for w in self._committed]
        c = len(committed_norm)
        added: list[str] = []
        prev = self._previous
        if prev is not None and prev[:c] == committed_norm and norm[:c] == committed_norm:
            i = c
            while i < len(norm) and i < len(prev) and norm[i] == prev[i]:
                added.append(words[i])
                i += 1
        self._committed.extend(added)
        self._previous = norm
        tail = (
            words[len(self._committed) :]
            if norm[: len(self._committed)] == [normalize_word(w) for w in self._committed]
            else []
        )
        return StableUpdate(tuple(self._committed), tuple(added), tuple(tail))

    def reset(self) -> None:
        """Start a new utterance."""
        self._committed = []
        self._previous = None
