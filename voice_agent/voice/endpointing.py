"""Is a paused utterance finished? A cheap textual hint for the end-of-turn decision.

The VAD ends a turn after a fixed silence. People pause mid-thought ("Thank
you, ... that is all", "my order number is ... 4 2 7"), and Whisper's
punctuation of the early transcript tells those pauses apart surprisingly
well: a text that ends with a comma, a colon, a dash, an ellipsis or a word
that cannot end a sentence ("and", "the", "my", ...) is probably unfinished,
so the silence needed to end the turn is extended for that pause.
"""

from __future__ import annotations

import re

# Words after which an English sentence practically never ends.
_CONTINUATION_WORDS = frozenset(
    """
    a an the and or but so because if that which who whose when while where as than then
    to of for with from at by in on into about my your our their his her its this these
    those is are was were be been am um uh er like i'm i'd i'll we're you're it's
    """.split()
)
_OPEN_PUNCTUATION = (",", ";", ":", "-", "–", "—", "...", "…")
_WORD = re.compile(r"[a-z']+")


def likely_unfinished(text: str) -> bool:
    """True when ``text`` (an early transcript) looks cut in the middle of a thought."""
    stripped = text.strip()
    if not stripped:
        return False
    if stripped.endswith(_OPEN_PUNCTUATION):
        return True
    if stripped[-1] in ".!?":
        return False
    words = _WORD.findall(stripped.lower())
    return bool(words) and words[-1] in _CONTINUATION_WORDS
