"""The opening of an answer from tool results: the answer, not an announcement of it.

Told to "tell the caller the answer you found", the 1.5B sometimes opens with the
note's own words ("Sure, here's the answer: ..."; bench h08, b07, session 7), and
it answers a yes/no question with the caller's framing before it reads the result
("Yes, your money has not yet been refunded."; b10). `AnswerOpening` streams an
answer and leaves out, at its opening only:

- a clause that announces the answer instead of giving it (`PREAMBLE`: "here's the
  answer", "here is the information you asked for", "here's what I found");
- a bare "yes" or "no" clause (the result says which, the rest of the answer
  states it);
- a refusal (`refuses`: "I can't assist with that.", with an apology clause before it,
  "I'm sorry, but ..."): after results there is something to tell, and the 0.5B
  opened with one before it ("I'm sorry, but I can't assist with that. The status for
  order 94859 is shipped.": bench z13, x01, x11, m12, session 12). It is kept aside
  (`refusal`), not said: the responder says it after all only when nothing else is
  told.

Acknowledgments ("Sure,", "Okay,") pass at once and keep the opening open; the
first clause that is anything else closes it, and from then on text passes
untouched. Only a clause that may still become one to leave out is held (it
starts with "here", "yes", "no", ...); everything else is released as it comes,
so the first chunk of speech is not delayed. A clause left out at the very start
is replaced by `NEUTRAL_OPENING` at the moment it is left out: the caller hears
the acknowledgment when they would have heard "Yes," (its audio is usually kept
by the phrase cache), never a word that contradicts the result.
"""

from __future__ import annotations

import re

from peripherals.text_chunker import SENTENCE_MARKS
from voice_agent.local_llm.caller_asks import asks_what_the_agent_is

#: Said in place of an opening left out before anything was said (an acknowledgment
#: true whatever the result says; one of the openings the speech output's phrase
#: cache usually holds).
NEUTRAL_OPENING = "Okay,"
#: First words of a clause that may be left out: it is held until it ends.
_HOLD_WORDS = ("yes", "yeah", "yep", "no", "nope", "here")
#: A bare yes or no.
_YES_NO = frozenset({"yes", "yeah", "yep", "no", "nope"})
#: A clause that announces an answer rather than giving it (no digit, no name).
PREAMBLE = re.compile(
    r"here(?:'s| is| are)\b(?:\s+[a-z']+){0,6}?\s+(?:the\s+|your\s+)?"
    r"(?:answers?|information|info|details|results?|updates?|what (?:i|we) found)"
    r"(?:\s+[a-z']+){0,5}",
)
#: Words of an acknowledgment clause ("Sure", "Of course", "Okay then"): passed on,
#: and the opening stays open after it.
_ACKNOWLEDGMENTS = frozenset(
    "sure okay ok alright all right certainly of course absolutely great perfect thing "
    "then well so thanks thank you".split()
)
#: Longest clause held while it may still be a preamble (words).
_MAX_HELD_WORDS = 12
#: Where a clause ends.
_CLAUSE_END = ",.:;!?"
#: A clause of apology that may come before a refusal ("I'm sorry, but I can't ..."):
#: held until the next clause says whether it is one.
_APOLOGIES = ("sorry", "i'm sorry", "i am sorry", "we're sorry", "we are sorry")
#: Words written lower-case after `NEUTRAL_OPENING` when the model capitalised them.
_LOWER_AFTER = frozenset(
    "the your it its this that there we our you order orders a an unfortunately to for in "
    "on at as if all both each my they their".split()
)


class AnswerOpening:
    """Filters the start of one streamed answer (see the module docstring).

    ``push(piece)`` returns the text to pass on now; ``finish()`` the rest at the
    end. ``left_out`` lists the clauses left out.
    """

    def __init__(self) -> None:
        self.left_out: list[str] = []
        #: a refusal left out of the opening, its apology with it (never passed on)
        self.refusal = ""
        self._open = True
        self._apology = ""  # a held apology clause ("I'm sorry,") before what follows
        self._clause = ""  # the current clause, released or held
        self._held = ""  # the part of it not released yet
        self._said = ""  # everything passed on
        self._replaced = False  # `NEUTRAL_OPENING` was said for a left-out clause
        self._lower_next = False

    def push(self, piece: str) -> str:
        if not self._open:
            return self._release(piece)
        out = ""
        for ch in piece:
            if not self._open:
                out += self._release(ch)
                continue
            self._clause += ch
            self._held += ch
            if ch in _CLAUSE_END and re.search(r"[A-Za-z]", self._clause):
                out += self._end_of_clause()
            elif not self._holding():
                out += self._release(self._apology + self._held)
                self._apology = self._held = ""
        return out

    def finish(self) -> str:
        """The held rest (a clause the answer ended in is never left out, nor a held
        apology that no refusal followed)."""
        held, self._apology = self._apology + self._held, ""
        if held and refuses(held):
            self._left_out_refusal(held)
            held = ""
        out = self._release(held) if held else ""
        self._held = ""
        if self._replaced and self._said.strip() == NEUTRAL_OPENING and self.left_out:
            # Nothing followed the left-out opening: say it after all ("Okay, yes.").
            out += self._release(" " + self.left_out[-1].strip().lower())
        self._open = False
        return out

    def _words(self) -> list[str]:
        return re.findall(r"[a-z']+", self._clause.lower())

    def _holding(self) -> bool:
        """Whether the current clause may still become one to leave out."""
        if not self._held:
            return False
        text = self._clause.lstrip().lower()
        first = re.match(r"[a-z']*", text)
        word = first.group() if first else ""
        if not text:
            return True
        words = " ".join(text.replace("\u2019", "'").split())
        if any(s.startswith(words) for s in (*_REFUSAL_STARTS, *_APOLOGIES)):
            return True  # may still become a refusal or the apology before one
        if _REFUSAL.match(words + " "):
            return True  # a refusal: held to its clause's end, then left out
        if len(word) == len(text):  # the first word is still being written
            if self._lower_next:
                return True  # its case is set once it is whole
            return bool(word) and any(w.startswith(word) for w in (*_HOLD_WORDS, "here's"))
        word = word.removesuffix("'s")
        if word in _YES_NO:
            return len(self._words()) <= 1
        return word == "here" and len(self._words()) <= _MAX_HELD_WORDS

    def _end_of_clause(self) -> str:
        clause = self._clause.strip()
        body = clause.rstrip(_CLAUSE_END).strip().lower()
        words = self._words()
        held = self._held
        self._clause = self._held = ""
        whole = held.strip() == clause
        normal = " ".join(body.replace("\u2019", "'").split())
        if whole and normal in _APOLOGIES:
            self._apology += held  # said only if no refusal follows
            return ""
        if whole and _REFUSAL.match(normal + " "):
            self._left_out_refusal(self._apology + held)
            self._apology = ""
            return ""
        held, self._apology = self._apology + held, ""
        if held.strip() == clause and (
            (len(words) == 1 and words[0] in _YES_NO) or PREAMBLE.fullmatch(body)
        ):
            self.left_out.append(clause)
            out = ""
            if not self._said.strip():
                self._replaced = True
                out = self._release(NEUTRAL_OPENING)
            self._lower_next = True
            return out
        if not (words and all(w in _ACKNOWLEDGMENTS for w in words)):
            self._open = False
        return self._release(held)

    def _left_out_refusal(self, text: str) -> None:
        self.left_out.append(text.strip())
        self.refusal = f"{self.refusal} {text.strip()}".strip()
        self._lower_next = False

    def _release(self, text: str) -> str:
        if not text:
            return ""
        if self.refusal and not self._said.strip():
            text = text.lstrip()  # nothing said before it: the left-out refusal's space
        if self._replaced and self._said.strip() == NEUTRAL_OPENING:
            if not text.strip():
                return ""  # the space after the opening comes with the next word
            text = " " + text.lstrip()
        if self._lower_next and text.strip():
            word = re.match(r"\s*([A-Za-z']+)", text)
            if word and word.group(1).lower() in _LOWER_AFTER:
                start = word.start(1)
                text = text[:start] + text[start].lower() + text[start + 1 :]
            self._lower_next = False
        self._said += text
        return text


#: How a refusal starts ("I can't help with that.", "I cannot assist ...", "but I can't
#: assist with that" after "I'm sorry,", "but I'm not able to provide an answer": the 1.5B
#: to "Is it always this busy on your line?", bench m08, session 11), matched on a
#: clause's start, case-insensitive: a lead, a subject that cannot, a verb of help.
_REFUSAL_LEADS = ("", "but ", "unfortunately ", "sorry ")
_REFUSAL_SUBJECTS = (
    "i can't", "i cannot", "i can not", "i am unable to", "i am not able to",
    "i'm unable to", "i'm not able to",
)  # fmt: skip
_REFUSAL_VERBS = ("help", "assist", "do", "provide", "answer")
_REFUSAL = re.compile(
    "(?:" + "|".join(_REFUSAL_LEADS) + ")"
    + "(?:" + "|".join(map(re.escape, _REFUSAL_SUBJECTS)) + ") "
    + "(?:" + "|".join(_REFUSAL_VERBS) + ")[^a-z]"
)  # fmt: skip
#: Clause starts held while they may still become `_REFUSAL`.
_REFUSAL_STARTS = tuple(
    f"{lead}{subject} {verb}"
    for lead in _REFUSAL_LEADS
    for subject in _REFUSAL_SUBJECTS
    for verb in _REFUSAL_VERBS
)


class RefusalStart:
    """Streams a reply and holds a clause that may be a refusal ("I can't help with
    that") until it is known; ``refused`` is set once one is (nothing of it was passed
    on). Other text passes as it comes: only a clause starting with "I" is held, and
    only while its words are a refusal's first words."""

    def __init__(self) -> None:
        self.refused = False
        self.passed = ""  # what was passed on
        self._clause = ""
        self._held = ""

    def push(self, piece: str) -> str:
        out = ""
        for ch in piece:
            if self.refused:
                break
            self._clause += ch
            self._held += ch
            text = " ".join(self._clause.lower().replace("\u2019", "'").split())
            if _REFUSAL.match(text):  # before a clause's end: "I can't help." is one
                self.refused = True
                break
            if ch in _CLAUSE_END:
                self._clause = text = ""
            if not self._held.strip() or (
                text and any(s.startswith(text) for s in _REFUSAL_STARTS)
            ):
                continue  # may still be a refusal (or only spaces so far)
            out += self._held
            self._held = ""
        self.passed += out
        return out

    def finish(self) -> str:
        """The held rest (none once refused)."""
        out, self._held = ("" if self.refused else self._held), ""
        self.passed += out
        return out


def refuses(text: str) -> bool:
    """Whether whole, held text has a clause that is a refusal (`RefusalStart`): "I am
    sorry, but I cannot help with that." does, "I'm putting you through now." does not."""
    guard = RefusalStart()
    guard.push(text + ".")  # a refusal at the text's very end is known by what follows it
    return guard.refused


# ------------------------------------------------ never a claim to be a person

#: What the agent says instead of a claim to be a person (`PersonClaim`).
AUTOMATED_DISCLOSURE = "No, I'm an automated assistant."
#: What it says instead, asked whether it is a machine ("Am I talking to a robot?").
AUTOMATED_CONFIRMATION = "Yes, I'm an automated assistant."
#: A first clause that says yes to "are you a person?" ("Yes.", "Yes, I am.", "Of course
#: I'm real"), words lower-case and commas dropped.
_AFFIRMS = re.compile(
    r"(?:(?:oh|well|haha|hi|hello|hey) )*"
    r"(?:(?:yes|yeah|yep|yup|sure|of course|absolutely|indeed|correct|definitely|certainly|"
    r"you bet|that's right|that is right|right|i do)(?: |$))*"
    r"(?:(?:i am|i'm|im|sure am|i sure am|i certainly am|i definitely am)"
    r"(?: (?:real|really|indeed|definitely|certainly|for real|live|one))?)?"
)
#: A first clause that says no to "are you a robot?" ("No.", "No, I'm not.", "Not at all").
_DENIES = re.compile(
    r"(?:(?:oh|well|haha|hi|hello|hey) )*"
    r"(?:(?:no|nope|nah|not at all|of course not|certainly not|absolutely not|not really|"
    r"definitely not)(?: |$))*"
    r"(?:(?:i am not|i'm not|im not|i'm no|i am no)"
    r"(?: (?:an? )?(?:robot|bot|machine|computer|ai|recording|program|chatbot))?)?"
)
_CLAIM_OPENERS = (
    "", "yes ", "yeah ", "yep ", "sure ", "of course ", "absolutely ", "indeed ", "well ", "oh ",
    "hi ", "hello ", "hey ", "haha ",
)  # fmt: skip
_CLAIM_SUBJECTS = ("i am ", "i'm ", "im ")
_CLAIM_ARTICLES = ("", "a ", "an ")
_CLAIM_ADJECTIVES = ("", "real ", "actual ", "live ", "human ")
_CLAIM_NOUNS = ("person", "human", "human being", "man", "woman", "people")
#: Every sentence start that claims to be a person, lower-case, commas dropped.
_CLAIMS = frozenset(
    o + s + a + j + n
    for o in _CLAIM_OPENERS
    for s in _CLAIM_SUBJECTS
    for a in _CLAIM_ARTICLES
    for j in _CLAIM_ADJECTIVES
    for n in _CLAIM_NOUNS
)
#: Their starts: a sentence whose words are one of these may still become a claim.
_CLAIM_STARTS = frozenset(c[:i] for c in _CLAIMS for i in range(1, len(c) + 1))
#: A claim followed by something that is not a letter ("person." but not "personal").
_CLAIM_MADE = re.compile(
    "".join(
        "(?:" + "|".join(sorted(map(re.escape, part), key=len, reverse=True)) + ")"
        for part in (
            _CLAIM_OPENERS, _CLAIM_SUBJECTS, _CLAIM_ARTICLES, _CLAIM_ADJECTIVES, _CLAIM_NOUNS
        )
    )
    + r"(?![^\W\d_])"
)  # fmt: skip
#: Where a sentence ends, for the claim check: the engine's marks
#: (`peripherals.text_chunker.SENTENCE_MARKS`, "…" too: "Sure… I am a real person." is
#: a claim). Not the engine's `SentenceChunker` itself: the check decides at every
#: character whether the words so far may still start a claim, and the chunker decides
#: a "." only when the next character comes ("3." may become "3.5", "Dr." is no end).
#: A mark taken for an end too soon ("Dr.") only starts the check again, so nothing is
#: held longer; the text still reaches the client as it comes, and the engine cuts it
#: into sentences by its own rules.
_SENTENCE_MARKS = SENTENCE_MARKS


class PersonClaim:
    """Streams a reply and holds a sentence that may claim the agent is a person ("Yes,
    I am a person.", "I'm a real human") until it is known; ``claimed`` is set once one
    is (nothing of that sentence was passed on), and the caller is told
    `AUTOMATED_DISCLOSURE` instead.

    A voice agent must never say it is a person; the prompts say so, and a 1.5B said
    "Yes, I am a person." anyway (bench f24, sessions 8 and 9). Only a sentence whose
    words so far are the start of such a claim is held, so other text passes as it
    comes.

    A bare "Yes, I am." is a claim only after the caller's question: given the
    caller's words (`caller_asks.asks_what_the_agent_is`), the reply's first clause is
    held until it ends, and it is a claim when it says yes to "are you a person?"
    (`_AFFIRMS`: "Yes.", "Yes, I am.", "Of course I'm real") or no to "are you a
    robot?" (`_DENIES`: "No.", "No, I'm not."). `disclosure` is then what is said
    instead: `AUTOMATED_DISCLOSURE`, or `AUTOMATED_CONFIRMATION` after a question
    whether the agent is a machine."""

    def __init__(self, caller_words: str = "") -> None:
        self.claimed = False
        self._sentence = ""  # since the last sentence mark
        self._held = ""
        asked = asks_what_the_agent_is(caller_words) if caller_words else None
        #: the first clause's claims: a yes (asked "a person?"), a no (asked "a robot?")
        self._first_clause_claims = {
            "person": (_AFFIRMS,),
            "machine": (_DENIES,),
            "both": (),
        }.get(asked or "", ())
        self._first_clause: str | None = "" if self._first_clause_claims else None
        self.disclosure = AUTOMATED_CONFIRMATION if asked == "machine" else AUTOMATED_DISCLOSURE

    @staticmethod
    def _words(text: str) -> str:
        text = text.lower().replace("\u2019", "'").replace(",", " ")
        return " ".join(text.split())

    def push(self, piece: str) -> str:
        if self._first_clause is not None:
            return self._push_first_clause(piece)
        return self._push(piece)

    def _push_first_clause(self, piece: str) -> str:
        """Hold the reply's first clause until it ends; a yes or no that claims to be a
        person is not passed on, anything else goes through the sentence check."""
        for i, ch in enumerate(piece):
            assert self._first_clause is not None
            self._first_clause += ch
            if ch in _CLAUSE_END and re.search(r"[a-z]", self._first_clause.lower()):
                clause, self._first_clause = self._first_clause, None
                if self._first_claims(clause):
                    self.claimed = True
                    return ""
                return self._push(clause + piece[i + 1 :])
        return ""

    def _first_claims(self, clause: str) -> bool:
        words = self._words(re.sub(r"[^\w\s',]", " ", clause))
        return any(claim.fullmatch(words) for claim in self._first_clause_claims)

    def _push(self, piece: str) -> str:
        out = ""
        for ch in piece:
            if self.claimed:
                break
            self._sentence += ch
            self._held += ch
            words = self._words(self._sentence)
            # a claim is known once the letter after its noun is not a letter
            if not ch.isalpha() and _CLAIM_MADE.match(words + " "):
                self.claimed = True
                break
            if ch in _SENTENCE_MARKS:
                self._sentence = ""
            if self._held.strip() and not (
                words and ch not in _SENTENCE_MARKS and words in _CLAIM_STARTS
            ):
                out += self._held
                self._held = ""
        return out

    def finish(self) -> str:
        """The held rest (none once claimed); a claim that ends the text is caught here."""
        if self._first_clause is not None:
            clause, self._first_clause = self._first_clause, None
            if self._first_claims(clause):
                self.claimed = True
                return ""
            return self._push(clause) + self.finish()
        if not self.claimed and self._held:
            words = self._words(self._sentence)
            if words in _CLAIMS:
                self.claimed = True
        out, self._held = ("" if self.claimed else self._held), ""
        return out
