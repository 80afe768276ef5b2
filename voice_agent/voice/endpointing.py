"""When has the caller finished? The end-of-turn decision, and what counts as a backchannel.

A silence alone cannot tell "Where is my order?" from "My order number is
... 4 2 7": people pause mid-thought. The decision here combines three cues,
each cheap and available within ~0.25 s of the pause:

- the **turn model** (:class:`peripherals.turn.TurnDetector`): how the speech
  ended — intonation, a cut word — scored once the pause has lasted
  ``candidate_silence_s``;
- the **early transcript** (the ASR's decode started at the pause): a text
  that ends with a comma, a dash, or a word after which English sentences do
  not end ("and", "the", "my", "is") is unfinished; one that ends in digits
  read out after "number is" / "code is" (or several digit groups) is a number
  being read, and numbers are read in groups with pauses between them;
- the **silence** itself: whatever the cues say, the turn ends after
  ``max_silence_s``.

:func:`decide` turns the cues into the silence the current pause needs before
it ends the turn (:class:`EndpointDecision`); the voice input applies it to
the VAD. The decision never delays the answer when it says "done": the
preemptive generation starts at the pause, on the early transcript, and the
decision only has to land before the LLM's first token does.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal, Protocol

# Words after which an English sentence practically never ends.
_CONTINUATION_WORDS = frozenset(
    """
    a an the and or but so because if that which who whose when while where as than then i
    to of for with from at by in on into about my your our their his her its this these
    those is are was were be been am um uh er like i'm i'd i'll we're you're it's
    whether although though since until unless through without between within onto upon
    he she we they very
    """.split()
)
_OPEN_PUNCTUATION = (",", ";", ":", "-", "–", "—", "...", "…")
_WORD = re.compile(r"[a-z']+")
_TOKEN = re.compile(r"\d+|[a-z']+")
_DIGIT_WORDS = frozenset("zero oh one two three four five six seven eight nine double".split())
# Words that announce a number being read out ("my order number is", "the code is").
_NUMBER_LEADS = frozenset("number numbers code zip postcode phone pin id digits reference".split())
# Things that have a number: "order 3326", "account 8190" name the thing (a reference in a
# finished sentence: "The refund has gone from order 3,320"); the number is being read
# out only when a copula stands in front of it too ("It is order 399 ...",
# "The order is 44 ...").
_NUMBERED_THINGS = frozenset(
    "order orders account card booking invoice ticket parcel package reservation".split()
)
_COPULAS = frozenset("is are was were be 's am".split())
# Words a question opens with ("Can you ...", "Where's ...", "Is there ..."): a "?" after
# such an opening ends a whole question even when its last words are digits.
_QUESTION_OPENERS = frozenset(
    """
    what where when why who whom whose which how can could would will shall should is are am
    was were do does did have has had may might isn't aren't don't doesn't didn't won't
    wouldn't can't couldn't shouldn't haven't hasn't
    """.split()
)
# Words that may come before the opener of a question ("So where ...", "And can you ...").
_LEAD_INS = frozenset(
    "hi hello hey so and but okay ok um uh er well yes yeah oh now then also".split()
)
# Words that cannot end an English sentence even before a full stop or "?" (Whisper
# punctuates fragments): articles, conjunctions, possessives. Prepositions can ("Who am I
# speaking with?"), so they are not here.
_NEVER_FINAL = frozenset(
    "a an the and or but because if whether than my your our their his her its whose".split()
)
_AUXILIARIES = frozenset(
    """
    can could would will shall should is are am was were do does did have has had may might
    must isn't aren't don't doesn't didn't won't wouldn't can't couldn't shouldn't haven't
    hasn't wasn't weren't
    """.split()
)
_WH_WORDS = frozenset("what where when why who whom whose which how".split())
# Phrases people say to keep the floor while they think or look something up, as a whole
# clause: the turn goes on after them. Lower case, lead-in words ("so", "well", "okay")
# stripped.
_HOLDING_PHRASES = frozenset(
    " ".join(p.split())
    for p in """
    hang on|hold on|hang on a second|hold on a second|one moment|one second|one sec|
    just a moment|just a second|just a sec|just a minute|wait a second|wait a moment|
    wait a minute|give me a second|give me a moment|give me a sec|bear with me|let me see|
    let me check|let me think|let me look|let me find it|let me just check|let me just see|
    let's see|lemme see|let me have a look|the thing is|the problem is|the issue is|
    the reason is|the question is|my question is|what i need|what i need is|what i want|
    what i want is|what i wanted|what i wanted to ask|what i'd like|what i would like|
    what happened was|what happened is|i was wondering|i'm wondering|i wonder|
    i was just wondering|i mean|you know|basically|actually|i think|i guess|how do i put it|
    what's it called|what was it
    """.split("|")
)
# A comma, semicolon or colon between clauses (not the comma inside "5,100").
_CLAUSE_BREAK = re.compile(r"[,;:](?!\d)")
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_NUMBER_LOOKBACK = 8  # tokens before the digits searched for a lead word
_WORD_NUMBER_LOOKBACK = 3  # ... before a lone digit word ("my order number is one")
_NUMBER_MIN_GROUPS = 3  # this many digit tokens in a row are a number being read, lead or not

# What people say to show they listen, not to take the floor (lower case, no punctuation).
DEFAULT_BACKCHANNELS = (
    "mhm",
    "mm",
    "mmhmm",
    "mm hmm",
    "mhmm",
    "uh huh",
    "uhhuh",
    "hmm",
    "yeah",
    "yes",
    "yep",
    "yup",
    "right",
    "okay",
    "ok",
    "sure",
    "i see",
    "got it",
    "alright",
    "all right",
    "cool",
    "great",
    "good",
    "ah",
    "oh",
    "aha",
    "oh okay",
    "okay yeah",
    "yeah yeah",
    "right right",
    "okay okay",
)

TurnCue = Literal[
    "unfinished",
    "holding",
    "number",
    "question",
    "question_form",
    "rising",
    "statement",
    "complete",
    "none",
]
PitchCue = Literal["rise", "fall", "none"]
DecisionReason = Literal[
    "model_done",
    "model_uncertain",
    "model_incomplete",
    "transcript_unfinished",
    "number",
    "no_model",
    "interruption",
    "question",
    "evidence",
    "caller_pauses",
]


def _ends_open(text: str) -> bool:
    """Ends in a comma, a dash, an ellipsis: the speaker broke off mid-clause."""
    return text.endswith(_OPEN_PUNCTUATION)


def likely_unfinished(text: str) -> bool:
    """True when ``text`` (an early transcript) looks cut in the middle of a thought.

    A trailing comma, dash or ellipsis; a last word after which sentences do not end
    ("and", "the", "my", "is"); or, even before a full stop or question mark (Whisper
    punctuates fragments too: "Can you check whether?", "My question is about the."), a
    last word that cannot end an English sentence at all (an article, a conjunction, a
    possessive: :data:`_NEVER_FINAL`)."""
    stripped = text.strip()
    if not stripped:
        return False
    if _ends_open(stripped):
        return True
    tokens = _TOKEN.findall(stripped.lower())  # words and digits: "... order 5,108?" ends in digits
    if not tokens:
        return False
    if stripped[-1] in ".!?":
        return tokens[-1] in _NEVER_FINAL
    return tokens[-1] in _CONTINUATION_WORDS


def _is_digits(token: str) -> bool:
    return token.isdigit() or token in _DIGIT_WORDS


def reading_number(text: str) -> bool:
    """True when ``text`` ends in a number being read out (more digits may follow)."""
    tokens = _TOKEN.findall(text.lower().replace("-", " "))
    if not tokens or not _is_digits(tokens[-1]):
        return False
    run = 0
    for tok in reversed(tokens):
        if not _is_digits(tok):
            break
        run += 1
    if run >= _NUMBER_MIN_GROUPS:
        return True
    # one digit *word* ("... my work one") is a number only right after its lead word
    lookback = _NUMBER_LOOKBACK if run > 1 or tokens[-1].isdigit() else _WORD_NUMBER_LOOKBACK
    before = tokens[: len(tokens) - run][-lookback:]
    if any(t in _NUMBER_LEADS for t in before):
        return True
    # "order 3326" names an order; "it is order 399" / "the order is 44" reads one out
    things = [i for i, t in enumerate(before) if t in _NUMBERED_THINGS]
    return bool(things) and any(t in _COPULAS or t.endswith("'s") for t in before)


def _last_sentence(text: str) -> str:
    stripped = text.rstrip().rstrip("\"')")
    sentences = _SENTENCE.findall(stripped)
    return sentences[-1] if sentences else stripped


def _clause_words(clause: str) -> list[str]:
    words = _WORD.findall(clause.lower())
    while words and words[0] in _LEAD_INS:
        words = words[1:]
    return words


def holding_the_floor(text: str) -> bool:
    """True when the last clause of ``text`` is only a phrase people say to keep the floor
    while they think or look something up ("Hang on, let me see.", "What I need is",
    "I was wondering.", "Well,"): more follows, however finished it is punctuated.

    The whole clause must be the phrase: "That's what I need." is a finished sentence."""
    last = _CLAUSE_BREAK.split(_last_sentence(text).rstrip(".!?…"))
    if not last or re.search(r"\d", last[-1]):
        return False  # digits are content, not a filler
    words = _clause_words(last[-1])
    if not words:
        # only lead-in words ("So,", "Well.", "Um."): a filler
        return bool(_WORD.findall(last[-1].lower())) if last else False
    return " ".join(words) in _HOLDING_PHRASES


def _question_form(words: list[str]) -> bool:
    """Words (lead-ins stripped) that open a question: an auxiliary first ("Can you ...",
    "Is there ..."), or a question word with an auxiliary right after it ("Where can I",
    "How long does", "What time do you", "Where's")."""
    if not words:
        return False
    first = words[0].removesuffix("'s")
    if first in _AUXILIARIES:
        return True
    if first in _WH_WORDS:
        return words[0].endswith("'s") or any(
            w.removesuffix("n't") in _AUXILIARIES for w in words[1:4]
        )
    return False


def whole_question(text: str) -> bool:
    """True when ``text`` ends in "?" and its last sentence is built as a question: one of its
    clauses opens with a question word or an auxiliary ("Could you look up booking 904?",
    "Hi, where's my order 427?"), not a statement said with a rising tone ("My number is
    4 2 7?", which a caller reading digits in groups may well go on with)."""
    stripped = text.rstrip().rstrip("\"')")
    if not stripped.endswith("?"):
        return False
    for clause in _CLAUSE_BREAK.split(_last_sentence(stripped)):
        words = _clause_words(clause)
        if words and words[0].removesuffix("'s") in _QUESTION_OPENERS:
            return True
    return False


def question_form(text: str) -> bool:
    """True when the last sentence of ``text`` is built as a question from its first clause
    on, whatever its punctuation: Whisper often writes no "?" on the 8 kHz phone path ("Can
    you check the state of the order 101.") and a question is finished when its words are."""
    first_clause = _CLAUSE_BREAK.split(_last_sentence(text))[0]
    words = _clause_words(first_clause)
    return len(words) >= 3 and _question_form(words)


# Finite verbs a clause may carry without an auxiliary or an "-ed": the commonest English
# verbs in their present and irregular past forms (a clause with none of these, no
# auxiliary, no contraction and no "-ed" word is a fragment: "Right, so yesterday").
_FINITE_VERBS = frozenset(
    """
    have has had do does did get gets got go goes went come comes came want wants need needs
    like likes know knows knew think thinks thought see sees saw say says said make makes made
    take takes took give gives gave find finds found tell tells told pay pays paid buy buys
    bought send sends sent leave leaves left lose loses lost break breaks broke keep keeps kept
    put puts let lets mean means meant seem seems feel feels felt look looks hope hopes wonder
    wonders live lives work works use uses try tries call calls ring rings rang rung hear hears
    heard cost costs owe owes show shows showed shown forgot forget forgets wrote write writes
    read reads run runs ran sit sits sat stand stands stood bring brings brought begin begins
    began hold holds held mind minds help helps arrive arrives change changes charge charges
    cancel cancels order orders return returns receive receives happen happens stop stops
    move moves open opens close closes ship ships deliver delivers miss misses expect expects
    understand understands understood
    """.split()
)
_DETERMINERS = frozenset(
    "a an the my your our their his her its this that these those every each no any".split()
)
_SUBJECTS = frozenset(
    "i you we they he she it someone somebody nobody everyone everybody anyone anybody".split()
)
# Openers of a subordinate clause: "If I return the boots" needs its main clause.
_SUBORDINATORS = frozenset(
    "if when because although though unless since while whether before after once as".split()
)
# "I would like to change": a verb of wanting, "to" and a bare verb, then nothing (its
# object is still to come).
_WANTING = frozenset(
    "like want wants wanted need needs needed trying try tries hoping hope going able wish".split()
)
_TRAILING_ELLIPSIS = ("...", "…")


def _finite(words: list[str]) -> bool:
    """Some word of ``words`` is a finite verb: an auxiliary, a contraction ("I'm", "it's",
    "don't"), a past "-ed", a common verb after a subject pronoun, or a common verb."""
    for i, w in enumerate(words):
        if w in _AUXILIARIES or w in _COPULAS:
            return True
        if w in _FINITE_VERBS and not (i and words[i - 1] in _DETERMINERS):
            return True  # "my order", "a call", "the change" are nouns
        if "'" in w and w.split("'", 1)[1] in ("s", "m", "re", "ve", "d", "ll", "t"):
            return True
        if len(w) >= 5 and w.endswith("ed"):
            return True
        if w in _SUBJECTS and i + 1 < len(words) and words[i + 1] not in _CONTINUATION_WORDS:
            return True
    return False


def complete_by_words(text: str) -> bool:
    """True when the last sentence of ``text`` reads as a whole clause by its words alone,
    whatever its punctuation: Whisper tiny leaves the full stop off a finished sentence or
    writes "..." after it on voices and lines it hears badly ("I think somebody else used
    my account", "I forgot my password and cannot login...").

    Whole: at least three words, a finite verb (:func:`_finite`), a last word after which a
    sentence can end (not "and", "the", "my", "is", "very": :data:`_CONTINUATION_WORDS`), not
    only a subordinate clause ("If I return the boots"), not a wish whose object is still
    to come ("I would like to change"), not a floor-holding phrase, not ending in an
    auxiliary ("..., can't") or in digits ("Call me back on 415": more groups may follow)."""
    sentence = _last_sentence(text).rstrip().rstrip("\"')").rstrip(".…!?").rstrip()
    if not sentence or sentence.endswith(_OPEN_PUNCTUATION):
        return False
    tokens = _TOKEN.findall(sentence.lower())
    if len(tokens) < 3 or tokens[-1] in _CONTINUATION_WORDS or tokens[-1] in _NEVER_FINAL:
        return False
    if tokens[-1] in _AUXILIARIES:
        return False  # "..., can't": a verb phrase still to come (or elided: no telling)
    if _is_digits(tokens[-1]):
        return False  # "Call me back on 415": digits read in groups pause between them
    if len(tokens) >= 3 and tokens[-2] == "to" and tokens[-3] in _WANTING:
        return False
    clauses = [c for c in _CLAUSE_BREAK.split(sentence) if _clause_words(c)]
    first = _clause_words(clauses[0]) if clauses else []
    if len(clauses) <= 1 and first and first[0] in _SUBORDINATORS:
        return False
    # the last subordinate clause needs its own verb: "I wonder if you" is cut short
    subordinate = [i for i, t in enumerate(tokens) if t in _SUBORDINATORS]
    if subordinate and not _finite(tokens[subordinate[-1] + 1 :]):
        return False
    if holding_the_floor(sentence):
        return False
    return _finite(tokens)


def transcript_cue(text: str | None) -> TurnCue:
    """What the early transcript says about the turn.

    ``unfinished`` (cut mid-clause: :func:`likely_unfinished`), ``holding`` (a
    floor-holding phrase: :func:`holding_the_floor`), ``number`` (digits being read out:
    :func:`reading_number`), ``question`` (a whole question with "?": Whisper writes "?"
    for a question it heard whole), ``question_form`` (built as a question, no "?"),
    ``rising`` (a "?" on a statement), ``statement`` (a full stop after a last word that
    can end a sentence), or ``none`` (no text, or no end punctuation).

    A question that ends in a number ("Can you check order 5180?", or without its "?" when
    its words are a question from the start) is a question, not a number being read."""
    if not text or not _WORD.findall(text.lower()) and not re.search(r"\d", text):
        return "none"
    stripped = text.rstrip().rstrip("\"')")
    if reading_number(text):
        if whole_question(text):
            return "question"
        if question_form(text) and not _CLAUSE_BREAK.search(_last_sentence(text)):
            return "question_form"
        return "number"
    if stripped.endswith(_TRAILING_ELLIPSIS) and complete_by_words(text):
        # "..." after a whole clause: Whisper's trailing dots on a sentence it heard end
        return "question_form" if question_form(text) else "complete"
    if likely_unfinished(text):
        return "unfinished"
    if holding_the_floor(text):
        return "holding"
    if stripped.endswith("?"):
        return "question" if whole_question(text) else "rising"
    if question_form(text):
        return "question_form"
    if stripped.endswith((".", "!")):
        return "statement"
    return "complete" if complete_by_words(text) else "none"


# Words that ask for the floor: speech over the agent with one of these is never taken for
# listener feedback, however it sounds.
_FLOOR_WORDS = frozenset(
    """
    stop wait no not hold hang sorry excuse pardon what hey actually but cancel repeat again
    wrong listen question help agent human person operator why how who where when huh eh i
    hello
    """.split()
)
# A hesitation alone ("Uh.") is how a caller starts to take the floor, not feedback.
_HESITATIONS = frozenset("uh um er erm ehm".split())
_SOUND_MAX_WORDS = 3  # a sound-alike match is tried on this many words at most
# A "no" said as a sound: "uh-uh", "unh-unh", "nuh-uh", "mm-mm" (two flat syllables, no "h"
# between them; "uh-huh" and "mm-hmm", with it, are yes). Whisper writes the difference; the
# sound key drops "h" and would take the no for "uh huh". Over the agent it is an answer.
_NO_SOUND = re.compile(r"(?:n?uh|unh|mm+)(?: (?:uh|unh|mm+))+")  # on the words, "-" as " "
_VOWELS = frozenset("aeiouy")


def sound_key(text: str) -> str:
    """A coarse phonetic key of ``text``, for telling what a short, badly heard utterance
    sounds like: Whisper tiny writes a backchannel it hears badly as a near-homophone
    ("Uh huh" as "Uh-oh", "Got it" as "Guard it"). Spelling variants and sounds that
    telephone audio and accents blur collapse: every vowel run is one vowel mark, "h"
    and a non-rhotic "r" after a vowel are dropped, "d" is "t" (an American flap),
    "ck"/"c"/"q" are "k", "ph" is "f", "z" is "s", "x" is "ks", "b" is "p", "v" is "f",
    and repeated marks are one."""
    letters = "".join(_WORD.findall(text.lower().replace("-", " "))).replace("'", "")
    for a, b in (("ph", "f"), ("ck", "k"), ("gh", ""), ("x", "ks"), ("q", "k")):
        letters = letters.replace(a, b)
    out: list[str] = []
    for i, ch in enumerate(letters):
        if ch == "h":
            continue
        if ch == "r" and i > 0 and letters[i - 1] in _VOWELS:
            continue  # non-rhotic: "guard" sounds like "god"
        if ch in _VOWELS and not (ch == "y" and (i == 0 or letters[i - 1] in _VOWELS)):
            mark = "V"
        else:
            mark = {"c": "k", "z": "s", "d": "t", "b": "p", "v": "f", "y": "y"}.get(ch, ch)
        if not out or out[-1] != mark:
            out.append(mark)
    return "".join(out)


def is_backchannel(text: str, phrases: tuple[str, ...] = DEFAULT_BACKCHANNELS) -> bool:
    """True when ``text`` is only listener feedback ("mhm", "yeah, right", "okay.").

    Also when a short text (up to three words, none that asks for the floor: "stop",
    "wait", "no", "sorry", "what", ...) *sounds like* one of ``phrases``
    (:func:`sound_key`): the early transcript of a backchannel said over the agent is
    Whisper's guess at a word or two, and on unfamiliar voices it guesses a near-homophone
    ("Uh-oh.", "Guard it."). A no said as a sound ("Uh-uh.", "Mm-mm.") is never feedback."""
    plain = " ".join(_WORD.findall(text.lower().replace("-", " ")))
    if not plain:
        return False
    if _NO_SOUND.fullmatch(plain):
        return False  # "Uh-uh.": a no, not feedback
    if plain in phrases:
        return True
    # A few backchannels in a row ("yeah, okay", "right. mhm.") are still one.
    words = plain.split()
    if len(words) <= 4 and all(w in phrases for w in words):
        return True
    if len(words) > _SOUND_MAX_WORDS or any(w.strip("'") in _FLOOR_WORDS for w in words):
        return False
    if len(words) == 1 and words[0] in _HESITATIONS:
        return False
    key = sound_key(plain)
    return bool(key) and any(sound_key(p) == key for p in phrases)


@dataclass(frozen=True)
class EndpointingRules:
    """The end-of-turn policy's numbers (seconds of silence after the pause began).

    ``max_silence_s`` is the cap every other silence is clipped to. ``mode`` picks the
    decision: ``graded`` (the evidence of the model, the transcript and the pitch, summed
    into one wait: :func:`decide`) or ``bands`` (session 4's rule: the model's score picks a
    band, the transcript can shorten a question's wait or lengthen the rest).
    """

    candidate_silence_s: float = 0.2
    done_probability: float = 0.5
    incomplete_probability: float = 0.2
    done_silence_s: float = 0.2
    # "Done" on a statement (no whole question): a comma pause inside a longer statement
    # ("I paid 45 dollars for express delivery, yet ...": 0.23-0.39 s in piper's speech)
    # sounds finished to the model (p 0.95-0.98 at such pauses) and Whisper writes a full
    # stop there. The turn then ends at about the time the decision lands anyway (score
    # ~0.3 s after the end), before the preemptive answer's first token (seconds).
    done_statement_silence_s: float = 0.4
    uncertain_silence_s: float = 0.5
    incomplete_silence_s: float = 1.2
    unfinished_text_silence_s: float = 1.0
    number_silence_s: float = 1.2
    no_model_silence_s: float = 0.5
    max_silence_s: float = 1.5
    mode: Literal["graded", "bands"] = "graded"
    # ---- the graded decision: evidence in log-odds units of "the caller is done"
    # The model's logit (clipped to +-3) counts this much: Smart Turn v3.2 separates turn
    # ends from mid-turn pauses at chance on espeak callers (AUC 0.42-0.58 over 126 pauses
    # and ends, 16 and 8 kHz), yet it hears real and piper speech well.
    model_weight: float = 0.3
    question_evidence: float = 3.0  # "...?" built as a question
    question_form_evidence: float = 1.5  # built as a question, no "?" (8 kHz Whisper)
    statement_evidence: float = 2.0  # a full stop after a word that can end a sentence
    rising_evidence: float = 1.0  # a "?" on a statement
    # no end punctuation: Whisper leaves the full stop off where the audio broke off
    unpunctuated_evidence: float = -1.0
    # no end punctuation (or a trailing "..."), but the words are a whole clause
    # (complete_by_words): Whisper tiny drops the full stop of finished sentences on voices
    # and lines it hears badly
    complete_evidence: float = 0.0
    # cut mid-clause, a floor-holding phrase, a number being read (each also has its floor)
    unfinished_evidence: float = -2.0
    # The pitch: a rise over the last 200 ms of voicing (st/s) on a statement is the
    # "more to come" of a comma; a fall is how statements end.
    rise_slope: float = 12.0
    rise_evidence: float = -1.0
    fall_slope: float = -8.0
    fall_evidence: float = 0.5
    # evidence at or above this waits done_silence_s (a question) / done_statement_silence_s;
    # at zero, neutral_silence_s; at or below its negative, incomplete_silence_s; linear between
    confident_evidence: float = 2.5
    neutral_silence_s: float = 0.6
    # per caller: a decision short of confident waits at least the caller's longest recent
    # mid-turn pause plus this margin (None: no adaptation)
    caller_pause_margin_s: float | None = 0.15
    # ... for decisions below this evidence (the default: every decision short of confident)
    caller_pause_below_evidence: float = 2.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.incomplete_probability <= self.done_probability <= 1.0:
            raise ValueError("need 0 <= incomplete_probability <= done_probability <= 1")
        if self.max_silence_s < self.candidate_silence_s:
            raise ValueError("max_silence_s must be at least candidate_silence_s")
        if self.confident_evidence <= 0:
            raise ValueError("confident_evidence must be positive")
        if not self.done_silence_s <= self.neutral_silence_s <= self.incomplete_silence_s:
            raise ValueError("need done_silence <= neutral_silence <= incomplete_silence")


@dataclass(frozen=True)
class EndpointDecision:
    """How long the current pause must last before it ends the turn, and why."""

    silence_s: float
    reason: DecisionReason
    probability: float | None  # the turn model's score (None: no model)
    cue: TurnCue
    evidence: float | None = None  # the graded decision's sum (log-odds of "done")
    pitch: PitchCue = "none"  # what the end of the pitch contour said


class _Contour(Protocol):
    """How the speech before the pause ended (:class:`peripherals.prosody.Contour`)."""

    @property
    def end_slope(self) -> float: ...


def pitch_cue(rules: EndpointingRules, contour: _Contour | None) -> PitchCue:
    """``rise``, ``fall`` or ``none`` from the slope of the last 200 ms of voicing."""
    if contour is None:
        return "none"
    if contour.end_slope >= rules.rise_slope:
        return "rise"
    if contour.end_slope <= rules.fall_slope:
        return "fall"
    return "none"


def decide(
    rules: EndpointingRules,
    probability: float | None,
    text: str | None,
    *,
    interrupting: bool = False,
    contour: _Contour | None = None,
    caller_pause_s: float | None = None,
) -> EndpointDecision:
    """The silence the current pause needs, from the model's score, the early transcript
    and the pitch contour (``rules.mode``: ``graded`` by default, ``bands`` for session 4's
    rule, :func:`decide_bands`).

    Graded: each cue adds evidence (log-odds that the caller is done): the model's logit
    times ``model_weight``; the transcript (a whole question, a question without its "?",
    a finished statement, a "?" on a statement); on anything but a question, a rising or
    a falling pitch. The sum maps linearly onto the wait: ``confident_evidence`` or more
    waits ``done_silence_s`` after a whole question and ``done_statement_silence_s`` after
    anything else (a statement may go on after a comma pause), zero waits
    ``neutral_silence_s``, ``-confident_evidence`` or less ``incomplete_silence_s``. No
    single cue decides alone: a finished sentence that the model scores 0.03 still ends
    after ~0.45 s, a whole question that the model doubts after ~0.3 s. Hard floors stay:
    a transcript cut mid-clause or a floor-holding phrase waits at least
    ``unfinished_text_silence_s``, a number being read ``number_silence_s``, an
    interruption ``uncertain_silence_s``; everything is capped at ``max_silence_s``.
    Without a model the transcript and the pitch decide (``no_model_silence_s`` is the wait
    at zero evidence). Per caller: ``caller_pause_s`` (the caller's longest recent pause
    inside a turn, after which they went on) plus ``caller_pause_margin_s`` is the least
    wait of a decision whose evidence is below ``caller_pause_below_evidence`` (not after a
    question, with or without its "?": the caller has asked it).
    """
    if rules.mode == "bands":
        return decide_bands(rules, probability, text, interrupting=interrupting)
    cue = transcript_cue(text)
    pitch = pitch_cue(rules, contour)
    evidence = 0.0
    if probability is not None:
        p = min(max(probability, 1e-6), 1 - 1e-6)
        evidence += rules.model_weight * max(-3.0, min(3.0, math.log(p / (1 - p))))
    evidence += {
        "question": rules.question_evidence,
        "question_form": rules.question_form_evidence,
        "statement": rules.statement_evidence,
        "rising": rules.rising_evidence,
        "complete": rules.complete_evidence,
        "none": rules.unpunctuated_evidence if text and text.strip() else 0.0,
        "unfinished": rules.unfinished_evidence,
        "holding": rules.unfinished_evidence,
        "number": rules.unfinished_evidence,
    }.get(cue, 0.0)
    # A statement that rises goes on (a comma's rise); one that falls ends. A question rises
    # or falls as it likes, and so may text without end punctuation (a question whose "?"
    # Whisper missed rises too), so a rise counts against a full stop only.
    if pitch == "rise" and cue == "statement":
        evidence += rules.rise_evidence
    elif pitch == "fall" and cue in ("statement", "complete", "none"):
        evidence += rules.fall_evidence
    neutral = rules.neutral_silence_s if probability is not None else rules.no_model_silence_s
    c = rules.confident_evidence
    if evidence >= 0:
        floor = rules.done_silence_s if cue == "question" else rules.done_statement_silence_s
        done = min(floor, neutral)
        silence = neutral - (neutral - done) * min(1.0, evidence / c)
    else:
        silence = neutral + (rules.incomplete_silence_s - neutral) * min(1.0, -evidence / c)
    reason: DecisionReason = "evidence"
    if (
        caller_pause_s is not None
        and rules.caller_pause_margin_s is not None
        and evidence < rules.caller_pause_below_evidence
        and cue not in ("question", "question_form")
    ):
        # this caller has paused this long inside a turn before: an end that is not certain
        # waits past their own pause (capped by the model's incomplete wait)
        adapted = min(caller_pause_s + rules.caller_pause_margin_s, rules.incomplete_silence_s)
        if adapted > silence:
            silence, reason = adapted, "caller_pauses"
    if cue == "number" and rules.number_silence_s > silence:
        silence, reason = rules.number_silence_s, "number"
    elif cue in ("unfinished", "holding") and rules.unfinished_text_silence_s > silence:
        silence, reason = rules.unfinished_text_silence_s, "transcript_unfinished"
    if interrupting and silence < rules.uncertain_silence_s:
        silence, reason = rules.uncertain_silence_s, "interruption"
    return EndpointDecision(
        silence_s=round(min(silence, rules.max_silence_s), 3),
        reason=reason,
        probability=probability,
        cue=cue,
        evidence=round(evidence, 2),
        pitch=pitch,
    )


def _bands_cue(text: str | None) -> TurnCue:
    """Session 4's reading of the transcript (for ``mode: bands``): a number, a "?", a
    trailing comma or continuation word before no end punctuation, or nothing."""
    if not text:
        return "none"
    if reading_number(text):
        return "question" if whole_question(text) else "number"
    stripped = text.strip()
    words = _WORD.findall(stripped.lower())
    if _ends_open(stripped) or (
        stripped[-1] not in ".!?" and bool(words) and words[-1] in _CONTINUATION_WORDS
    ):
        return "unfinished"
    if text.rstrip().rstrip("\"')").endswith("?"):
        return "question"
    return "none"


def decide_bands(
    rules: EndpointingRules,
    probability: float | None,
    text: str | None,
    *,
    interrupting: bool = False,
) -> EndpointDecision:
    """Session 4's decision (``mode: bands``), kept for comparison.

    The model sets the base (done / uncertain / incomplete; without a model,
    ``no_model_silence_s``); "done" waits ``done_silence_s`` after a whole question and
    ``done_statement_silence_s`` after anything else (a statement may go on after a comma
    pause the model hears as an end); a transcript that looks unfinished or that ends
    in a number being read can only lengthen it; a whole question ("...?") shortens
    the model's doubt (done when uncertain, the VAD's plain wait when it says
    incomplete). A turn that interrupted the
    agent waits at least ``uncertain_silence_s``: interruptions open with a
    word that sounds complete ("Wait.", "Sorry.") and go on, and the agent is
    quiet already, so there is no answer to hurry. Capped at ``max_silence_s``.
    """
    cue = _bands_cue(text)
    if probability is None:
        silence, reason = rules.no_model_silence_s, "no_model"
    elif probability >= rules.done_probability:
        done = rules.done_silence_s if cue == "question" else rules.done_statement_silence_s
        silence, reason = done, "model_done"
    elif probability < rules.incomplete_probability:
        silence, reason = rules.incomplete_silence_s, "model_incomplete"
    else:
        silence, reason = rules.uncertain_silence_s, "model_uncertain"
    if cue == "question" and reason in ("model_uncertain", "model_incomplete"):
        # A whole question: the model's doubt is worth the plain VAD wait at most.
        if probability is not None and probability >= rules.incomplete_probability:
            silence, reason = rules.done_silence_s, "question"
        else:
            silence, reason = min(silence, rules.uncertain_silence_s), "question"
    if cue == "number" and rules.number_silence_s > silence:
        silence, reason = rules.number_silence_s, "number"
    elif cue == "unfinished" and rules.unfinished_text_silence_s > silence:
        silence, reason = rules.unfinished_text_silence_s, "transcript_unfinished"
    if interrupting and silence < rules.uncertain_silence_s:
        silence, reason = rules.uncertain_silence_s, "interruption"
    return EndpointDecision(
        silence_s=min(silence, rules.max_silence_s),
        reason=reason,  # type: ignore[arg-type]
        probability=probability,
        cue=cue,
    )
