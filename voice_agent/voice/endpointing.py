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

import re
from dataclasses import dataclass
from typing import Literal

# Words after which an English sentence practically never ends.
_CONTINUATION_WORDS = frozenset(
    """
    a an the and or but so because if that which who whose when while where as than then
    to of for with from at by in on into about my your our their his her its this these
    those is are was were be been am um uh er like i'm i'd i'll we're you're it's
    whether although though since until unless through without between within onto upon
    """.split()
)
_OPEN_PUNCTUATION = (",", ";", ":", "-", "–", "—", "...", "…")
_WORD = re.compile(r"[a-z']+")
_TOKEN = re.compile(r"\d+|[a-z']+")
_DIGIT_WORDS = frozenset("zero oh one two three four five six seven eight nine double".split())
# Words that announce a number being read out ("my order number is", "the code is").
_NUMBER_LEADS = frozenset(
    "number numbers code zip postcode phone account card pin id digits reference order".split()
)
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
_SENTENCE = re.compile(r"[^.!?]+[.!?]*")
_NUMBER_LOOKBACK = 8  # tokens before the digits searched for a lead word
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

TurnCue = Literal["unfinished", "number", "question", "none"]
DecisionReason = Literal[
    "model_done",
    "model_uncertain",
    "model_incomplete",
    "transcript_unfinished",
    "number",
    "no_model",
    "interruption",
    "question",
]


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
    before = tokens[: len(tokens) - run][-_NUMBER_LOOKBACK:]
    return any(t in _NUMBER_LEADS for t in before)


def whole_question(text: str) -> bool:
    """True when ``text`` ends in "?" and its last sentence is built as a question: one of its
    clauses opens with a question word or an auxiliary ("Could you look up booking 904?",
    "Hi, where's my order 427?"), not a statement said with a rising tone ("My number is
    4 2 7?", which a caller reading digits in groups may well go on with)."""
    stripped = text.rstrip().rstrip("\"')")
    if not stripped.endswith("?"):
        return False
    sentences = _SENTENCE.findall(stripped)
    last = sentences[-1] if sentences else stripped
    for clause in re.split(r"[,;:]", last):
        words = _WORD.findall(clause.lower())
        while words and words[0] in _LEAD_INS:
            words = words[1:]
        if words and words[0].removesuffix("'s") in _QUESTION_OPENERS:
            return True
    return False


def transcript_cue(text: str | None) -> TurnCue:
    """What the early transcript says about the turn: unfinished, a number, a whole
    question (Whisper writes "?" only for a question it heard whole), or nothing.

    A whole question that ends in a number ("Can you check order 5180?") is a question,
    not a number being read: it is finished."""
    if not text:
        return "none"
    if reading_number(text):
        return "question" if whole_question(text) else "number"
    if likely_unfinished(text):
        return "unfinished"
    if text.rstrip().rstrip("\"')").endswith("?"):
        return "question"
    return "none"


def is_backchannel(text: str, phrases: tuple[str, ...] = DEFAULT_BACKCHANNELS) -> bool:
    """True when ``text`` is only listener feedback ("mhm", "yeah, right", "okay.")."""
    plain = " ".join(_WORD.findall(text.lower().replace("-", " ")))
    if not plain:
        return False
    if plain in phrases:
        return True
    # A few backchannels in a row ("yeah, okay", "right. mhm.") are still one.
    words = plain.split()
    return len(words) <= 4 and all(w in phrases for w in words)


@dataclass(frozen=True)
class EndpointingRules:
    """The end-of-turn policy's numbers (seconds of silence after the pause began).

    ``max_silence_s`` is the cap every other silence is clipped to.
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

    def __post_init__(self) -> None:
        if not 0.0 <= self.incomplete_probability <= self.done_probability <= 1.0:
            raise ValueError("need 0 <= incomplete_probability <= done_probability <= 1")
        if self.max_silence_s < self.candidate_silence_s:
            raise ValueError("max_silence_s must be at least candidate_silence_s")


@dataclass(frozen=True)
class EndpointDecision:
    """How long the current pause must last before it ends the turn, and why."""

    silence_s: float
    reason: DecisionReason
    probability: float | None  # the turn model's score (None: no model)
    cue: TurnCue


def decide(
    rules: EndpointingRules,
    probability: float | None,
    text: str | None,
    *,
    interrupting: bool = False,
) -> EndpointDecision:
    """The silence the current pause needs, from the model's score and the early transcript.

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
    cue = transcript_cue(text)
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
