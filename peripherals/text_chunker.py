"""Cut streaming LLM text into speakable chunks for TTS (pure, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Iterator

#: The marks that end a sentence, and what may close one after its mark (a quote, a
#: bracket). One definition for every place that asks where a sentence ends: this
#: chunker, the engine's output and stall watch, the embedded server's claim check.
SENTENCE_MARKS = ".!?…"
CLOSERS = "\"')]}”’»"
_CLAUSE_END = ",;:"
# Abbreviations that never end a sentence ("Dr. Smith", "e.g. this").
_NEVER_FINAL = frozenset(
    "mr mrs ms dr prof sr jr st mt no nos vs approx fig e.g i.e cf ca ie eg viz dept".split()
)
# Abbreviations that end a sentence only when a capital letter follows.
_MAYBE_FINAL = frozenset(
    "etc a.m p.m am pm inc ltd co corp u.s jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
_WORD = re.compile(r"\w")
# A new clause inside a sentence: a coordinating conjunction followed by a subject
# pronoun or an auxiliary verb ("... has shipped | and it is due Friday", "... is open
# | but will close at 5"). Not "and" between nouns or numbers ("Monday and Friday",
# "9 am and 5 pm", "one hundred and five"): the word after it decides.
_NEW_CLAUSE = re.compile(
    r" (?:and|but|so) (?:it|it's|is|was|will|has|have|had|should|can|could|would|may|"
    r"might|must|you|you'll|you're|we|we'll|they|they'll|he|she|i|i'll|are|were|there|"
    r"that's|this|then)[\s,.!?]",
    re.IGNORECASE,
)
# The first chunk ends before such a clause once it has this many characters: enough
# words for the synthesis to sound like a phrase, not a word (characters).
_FIRST_CLAUSE_MIN_CHARS = 16
# whole_sentences(): a run-on text with no sentence end is still cut at this many
# characters (~2 min of speech: far past any sentence; it bounds the scan of the buffer
# each delta costs).
_RUN_ON_CHARS = 2000


class SentenceChunker:
    """Turns text deltas into chunks a TTS can speak as soon as they are complete.

    ``push(delta)`` returns the chunks completed by the delta, in order;
    ``flush()`` returns the rest at the end of the text. A chunk ends at:

    - a sentence end (``. ! ? …`` plus closing quotes/brackets) followed by
      whitespace — a period after an abbreviation ("Dr.", "e.g.") or an
      initial ("J.") does not count, and "etc."/"a.m." count only before a
      capital letter (or, last, at a pause: ``take_unfinished``); a period
      inside a number ("3.5") is never followed by whitespace and so never
      splits;
    - a line break;
    - once the chunk has at least ``clause_after_chars`` characters, a
      clause mark (``, ; :``) followed by whitespace ("1,000" and "3:30"
      are not split);
    - as a last resort, the last space before ``max_chars`` characters.

    The first chunk of a text (until ``flush``) uses ``first_clause_after_chars``
    instead of ``clause_after_chars`` when given: a short first chunk lets
    synthesis start before the first sentence has streamed; the later chunks
    keep the longer rule. In the first chunk a clause mark right after a letter
    ends the chunk as soon as it arrives, without waiting for the whitespace
    after it (one token later from an LLM: "Sure" "," " I"); only a mark after a
    digit can be inside a number ("1,000", "3:30").

    With ``first_clause_after_chars`` given, the first chunk also ends:

    - at a ``?`` or ``!`` after a letter or digit, or a ``.`` after a word of two
      or more letters that is no abbreviation ("shipped."; not "Dr.", "p.m.",
      "3.5", "etc." or an initial), as soon as the mark arrives (the token after
      it is not awaited; a closing quote then leads the next chunk). A ``.`` with
      a letter or digit already after it is no sentence end ("example.com");
    - before a new clause inside its sentence, once it has
      `_FIRST_CLAUSE_MIN_CHARS` characters: "and"/"but"/"so" followed by a
      subject pronoun or an auxiliary verb ("Your order has shipped | and it is
      due Friday.").

    These rules read the text before the cut (or a fixed few words after it),
    so how the text is split into deltas does not change the chunks, but for a
    ``.`` that comes last in a delta with a letter next ("example" "." "com": an
    LLM's tokens put the dot with what follows it, ".com").

    Chunks are stripped; chunks with no letter or digit are dropped.

    ``take_unfinished()`` is for a pause in the text (its source stalled): it
    cuts what the pause completes and takes back the sentence begun, so that
    something else (a hold phrase) can be said between sentences, never
    inside one; pushing the taken text again goes on as if it had stayed.
    """

    def __init__(
        self,
        *,
        clause_after_chars: int = 60,
        max_chars: int = 250,
        first_clause_after_chars: int | None = None,
    ) -> None:
        # clause_after_chars: ~4 s of speech; a shorter first chunk starts audio sooner,
        # but cutting every clause makes the prosody choppy (characters).
        # max_chars: ~15 s of speech, a bound on the first-audio delay of run-on text (characters).
        if not 0 < clause_after_chars <= max_chars:
            raise ValueError("need 0 < clause_after_chars <= max_chars")
        if first_clause_after_chars is not None and not 0 < first_clause_after_chars <= max_chars:
            raise ValueError("need 0 < first_clause_after_chars <= max_chars")
        self.clause_after_chars = clause_after_chars
        self.first_clause_after_chars = first_clause_after_chars or clause_after_chars
        self._early_first_chunk = first_clause_after_chars is not None
        self.max_chars = max_chars
        self._buf = ""
        self._carry = ""  # an unspeakable piece ("...") waiting to lead the next chunk
        self._first = True  # no chunk of the current text came out yet
        self._inside = False  # the last chunk cut ended inside a sentence (not at its end)
        self._paused = False  # the text pauses here (take_unfinished): no capital will come

    def push(self, delta: str) -> list[str]:
        """Add a text delta; return the chunks it completed."""
        self._buf += delta
        return list(self._drain())

    def flush(self) -> list[str]:
        """End of text: return what is left as a chunk (if speakable) and reset."""
        rest = f"{self._carry} {self._buf.strip()}".strip()
        self._buf = self._carry = ""
        self._first = True
        self._inside = False
        return [rest] if _WORD.search(rest) else []

    @property
    def pending(self) -> str:
        """The text pushed after the last chunk cut, not yet part of a chunk: always the
        tail of everything pushed (leading whitespace left out)."""
        return self._buf

    def take_unfinished(self) -> tuple[list[str], str, bool]:
        """The text pauses here (its source stalled): take back the sentence begun.

        Returns ``(chunks, unfinished, inside)``:

        - ``chunks``: what the pause completes, as ``push`` would return them: a
          sentence whose final mark was the last text pushed ("Let me see.") is cut
          as if whitespace followed; so is one ending in an abbreviation that may end a
          sentence ("booked for 10 a.m.", "etc."): no capital will come to say so, and
          the pause is the same evidence as for any other sentence (an abbreviation
          that never ends one, "Dr.", or an initial is not cut);
        - ``unfinished``: the rest of the buffer, the sentence begun and not ended,
          removed (``""`` if none). Push it again, before more text, to go on as if it
          had stayed: the cuts come out the same (the first chunk's rules too);
        - ``inside``: the chunks cut so far end inside a sentence (at a clause mark,
          before a new clause, or at ``max_chars``): part of the sentence that
          ``unfinished`` continues is already out, so anything said now would land
          inside that sentence. False before the text's first chunk.
        """
        buf, carry = self._buf, self._carry
        self._paused = True
        try:
            chunks = self.push(" ") if self._buf.strip() else []
        finally:
            self._paused = False
        if not chunks:  # the pause completed nothing: leave no trace of the probe
            self._buf, self._carry = buf, carry
        elif self._buf.endswith(" "):
            self._buf = self._buf[:-1]  # (the probe)
        unfinished = f"{self._carry} {self._buf}".strip() if self._carry else self._buf.lstrip()
        self._buf = self._carry = ""
        return chunks, unfinished, self._inside

    def _drain(self) -> Iterator[str]:
        while True:
            cut = self._boundary()
            if cut is None:
                return
            at_line_end = self._buf[cut - 1] == "\n"
            chunk, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if _WORD.search(chunk):
                yield f"{self._carry} {chunk}".strip()
                self._carry = ""
                self._first = False
                # a line is a unit of its own (a list item); a clause or a long sentence's
                # cut is not the end of its sentence
                self._inside = not (
                    at_line_end or chunk.rstrip(CLOSERS).endswith(tuple(SENTENCE_MARKS))
                )
            elif chunk:  # punctuation only ("..."): it leads the next chunk
                self._carry = f"{self._carry} {chunk}".strip()

    def _boundary(self) -> int | None:
        """Index just after the first complete chunk in the buffer, or None."""
        buf = self._buf
        clause_after = self.first_clause_after_chars if self._first else self.clause_after_chars
        early = self._first and self._early_first_chunk
        i = 0
        while i < len(buf):
            ch = buf[i]
            if ch == "\n" and buf[:i].strip():
                return i + 1
            if early and ch in SENTENCE_MARKS and self._ends_at_once(buf, i):
                return i + 1
            if early and ch == " " and i >= _FIRST_CLAUSE_MIN_CHARS and _NEW_CLAUSE.match(buf, i):
                return i
            if ch in SENTENCE_MARKS:
                j = i + 1
                while j < len(buf) and (buf[j] in SENTENCE_MARKS or buf[j] in CLOSERS):
                    j += 1
                if j >= len(buf):
                    return None  # cannot tell yet: "3." may become "3.5"
                if buf[j].isspace():
                    final = self._is_final(buf, i, j, paused=self._paused)
                    if final is None:
                        return None
                    if final:
                        return j
                i = j
                continue
            if ch in _CLAUSE_END and i + 1 >= clause_after:
                if self._first and i > 0 and buf[i - 1].isalpha():
                    return i + 1  # "Sure," ends here whatever follows: no number has a letter there
                if i + 1 >= len(buf):
                    return None
                if buf[i + 1].isspace():
                    return i + 1
            i += 1
        if len(buf) >= self.max_chars:
            space = buf.rfind(" ", 0, self.max_chars)
            return space if space > 0 else None
        return None

    @staticmethod
    def _ends_at_once(buf: str, mark: int) -> bool:
        """Whether the sentence mark at `mark` surely ends a sentence whatever follows
        (see the class docstring): ``?``/``!`` after a letter or digit, ``.`` after a
        word of letters only, two or more, that is no abbreviation."""
        if mark == 0:
            return False
        if buf[mark] in "?!":
            return buf[mark - 1].isalnum()
        if buf[mark] != "." or buf[mark + 1 : mark + 2].isalnum():
            return False  # ("example.com": what follows is already there)
        start = mark
        while start > 0 and not buf[start - 1].isspace():
            start -= 1
        word = buf[start:mark].lstrip("\"'([{“‘«")
        lowered = word.lower()
        return (
            len(word) >= 2
            and word.isalpha()
            and lowered not in _NEVER_FINAL
            and lowered not in _MAYBE_FINAL
        )

    @staticmethod
    def _is_final(buf: str, dot: int, after: int, *, paused: bool = False) -> bool | None:
        """Does the punctuation at ``dot`` end a sentence? None: wait for more text
        (``paused``: none is coming, so an abbreviation that may end one, last, ends it)."""
        if buf[dot] != ".":
            return True
        start = dot
        while start > 0 and not buf[start - 1].isspace():
            start -= 1
        word = buf[start:dot].lstrip("\"'([{“‘«").lower()
        if word in _NEVER_FINAL or (len(word) == 1 and word.isalpha()):
            return False
        if word in _MAYBE_FINAL:
            rest = buf[after:].lstrip()
            if not rest:
                return True if paused else None
            return rest[0].isupper()
        return True


def whole_sentences() -> SentenceChunker:
    """A chunker that cuts at sentence ends and line breaks only, never at a clause mark:
    the speech output's sentence rules (abbreviations, "a.m.", numbers, a pause), a whole
    sentence at a time. A run-on text with no end is cut at ``_RUN_ON_CHARS``."""
    return SentenceChunker(clause_after_chars=_RUN_ON_CHARS, max_chars=_RUN_ON_CHARS)
