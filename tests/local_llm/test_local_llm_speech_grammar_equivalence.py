"""One speech-grammar builder for both paths accepts what the two old builders did.

Before session 9 the plain speech (`grammar.speech_grammar`, a trie) and the answer
from results (`answer_words.speech_grammar_without`) had a builder each; now
`grammar.speech_grammar(numbers, banned, banned_starts)` builds both (the answer's
stems split by the old rule: 6+ letters anywhere, shorter at a word's start). The old
builders, kept verbatim in `old_speech_grammars.py`, and the new one are run on
generated word sets, numbers and sentences through llama.cpp's own grammar matcher on
the 0.5B model's vocabulary (loaded without weights). They accept the same sentences,
but for one deliberate change: a word of the agent's machinery (`UNSPEAKABLE_WORDS`)
is refused anywhere inside a word, not only at its start, in both paths ("Thecaller":
the 0.5B, asked to repeat 'The caller can call the "reply" function', at seeds 0 and 4
under the old grammar; "malfunction" goes with it). Before, only the plain speech
allowed "thefunction" and "thecaller", and both allowed "thereply". (Where the answer
bans a stem, `answer_words.answer_bans`, is tested in test_local_llm_answer_words.py.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest
from grammar_helpers import grammar_accepts
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from old_speech_grammars import old_speech_grammar, old_speech_grammar_without

from voice_agent.local_llm.answer_words import INSIDE_WORDS_LETTERS
from voice_agent.local_llm.grammar import (
    SPEECH_FORBIDDEN,
    UNSPEAKABLE_WORDS,
    check_grammar,
    speech_grammar,
)

pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")


def spoken(
    text: str,
    numbers: set[str],
    continuing: bool,
    banned: Sequence[str] = (),
    banned_starts: Sequence[str] = (),
    speakable: Sequence[str] = (),
    *,
    glued: bool = True,
) -> bool:
    """What the speech grammar means, in plain Python: no forbidden character, a first
    character that is not a space (unless `continuing`), every digit run one of
    `numbers`, and no word (ASCII letter run, any case) holding a machinery word
    (anywhere if `glued`, else at its start) or one of `banned`, nor starting with one
    of `banned_starts` unless it starts with one of the `speakable` words that stem
    begins (longer than the stem)."""
    if not text or any(c in SPEECH_FORBIDDEN for c in text):
        return False
    if not continuing and text[0] in " \t\n\r":
        return False
    if any(run not in numbers for run in re.findall(r"[0-9]+", text)):
        return False
    for word in re.findall(r"[A-Za-z]+", text.lower()):
        for machinery in UNSPEAKABLE_WORDS:
            if machinery in word if glued else word.startswith(machinery):
                return False
        if any(stem in word for stem in banned):
            return False
        for stem in banned_starts:
            kept = [k for k in speakable if k.startswith(stem) and k != stem]
            if word.startswith(stem) and not any(word.startswith(k) for k in kept):
                return False
    return True


def by_length(stems: list[str]) -> tuple[list[str], list[str]]:
    """The old answer grammar's rule: a stem of `INSIDE_WORDS_LETTERS` letters or more
    banned anywhere in a word, a shorter one at its start (`answer_words.answer_bans`
    without a given word holding the stem inside)."""
    return (
        [s for s in stems if len(s) >= INSIDE_WORDS_LETTERS],
        [s for s in stems if len(s) < INSIDE_WORDS_LETTERS],
    )


def machinery_inside_a_word(text: str, words: tuple[str, ...] = UNSPEAKABLE_WORDS) -> bool:
    """Whether a word of the text holds one of `words` other than at its start."""
    return any(w in word[1:] for word in re.findall(r"[A-Za-z]+", text.lower()) for w in words)


_LETTERS = "acdefhilnoprtuy"  # the machinery words' letters, so that stems overlap them
_STEMS = st.lists(
    st.sampled_from(
        ["dispatch", "warehous", "deliver", "refund", "cancel", "left", "come", "funct", "rep"]
    )
    | st.text(alphabet=_LETTERS, min_size=1, max_size=9),
    max_size=4,
)
_NUMBERS = st.sets(
    st.sampled_from(["58213", "5821", "9", "99", "0", "3307"])
    | st.text(alphabet="0123456789", min_size=1, max_size=5),
    max_size=4,
)
_MACHINERY = [
    "function", "Functions", "FUNCTION", "functional", "malfunction", "thefunction",
    "caller", "Callers", "thecaller", "callback", "call", "fun", "reply", "Replying",
    "thereply", "rep", "repl", "replay",
]  # fmt: skip
_SEPARATORS = [" "] * 24 + ["", "", ", ", ". ", "!", "?", "\n", "\t", "'", "-", ":", "<", "_", "`"]


@st.composite
def _sentences(draw: st.DrawFn, stems: list[str], numbers: set[str]) -> str:
    """Sentences of words that hit the banned stems and machinery words (whole, inflected,
    glued, in another case), other words, numbers given and not, and separators
    (mostly spaces and punctuation, sometimes none, sometimes a forbidden one)."""
    words_ = st.text(alphabet=_LETTERS, min_size=1, max_size=10)
    branches = [words_] * 4 + [st.sampled_from(_MACHINERY)]
    if stems:
        branches.append(
            st.builds(
                lambda s, form: form.format(s=s, S=s.capitalize(), U=s.upper()),
                st.sampled_from(stems),
                st.sampled_from(
                    ["{s}", "{s}ing", "un{s}", "{S}", "{U}", "x{s}", "{s}s", "re{s}", "a{U}"]
                ),
            )
        )
        branches += [branches[-1]] * 2
    if numbers:
        branches += [st.sampled_from(sorted(numbers))] * 3
    branches.append(st.text(alphabet="0123456789", min_size=1, max_size=6))
    branches.append(st.sampled_from(["é", "naïve", "café", "½", "٣"]))
    base = st.one_of(branches)
    pieces = base | st.tuples(base, base).map("".join)  # two pieces glued, as "yourwarehouse"
    words = draw(st.lists(pieces, min_size=1, max_size=6))
    separators = st.sampled_from(_SEPARATORS)
    text = draw(st.sampled_from(["", "", "", "", "", "", " ", "\n"]))
    for word in words:
        text += word + draw(separators)
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), stems=_STEMS, numbers=_NUMBERS, continuing=st.booleans())
def test_the_one_builder_accepts_what_both_old_builders_did_but_machinery_inside_a_word(
    vocab, data, stems, numbers, continuing
):
    text = data.draw(_sentences(stems, numbers), label="text")
    new_plain = speech_grammar(numbers, continuing=continuing)
    anywhere, starts = by_length(stems)
    new_answer = speech_grammar(numbers, anywhere, starts, continuing=continuing)
    for grammar in (new_plain, new_answer):
        check_grammar(grammar)
    old_plain = old_speech_grammar(numbers, continuing=continuing)
    old_answer = old_speech_grammar_without([*stems, *UNSPEAKABLE_WORDS], numbers, continuing)

    said = {
        name: grammar_accepts(vocab, grammar, text)
        for name, grammar in [
            ("new_plain", new_plain),
            ("new_answer", new_answer),
            ("old_plain", old_plain),
            ("old_answer", old_answer),
        ]
    }
    event(f"accepted by old/new plain: {said['old_plain']}/{said['new_plain']}")
    event(f"accepted by old/new answer: {said['old_answer']}/{said['new_answer']}")
    # The plain speech: the same, but for a machinery word inside a word.
    if machinery_inside_a_word(text):
        assert not said["new_plain"], (text, said)
    else:
        assert said["new_plain"] == said["old_plain"], (text, said)
    # The answer: the same, but for "reply" inside a word (its 5 letters were banned
    # only at a word's start there; "function" and "caller" were banned anywhere).
    if machinery_inside_a_word(text, ("reply",)):
        assert not said["new_answer"], (text, said)
    else:
        assert said["new_answer"] == said["old_answer"], (text, said)
    # ... and each grammar means what `spoken` says.
    assert said["new_plain"] == spoken(text, numbers, continuing), (text, said)
    assert said["new_answer"] == spoken(text, numbers, continuing, anywhere, starts), (text, said)
    assert said["old_plain"] == spoken(text, numbers, continuing, glued=False), (text, said)


@pytest.mark.parametrize(
    "text",
    [
        "Thecaller can call the return.",  # the 0.5B under the old grammar (seed 4)
        "You can use thefunction now.",
        "Use thereply option.",
        "Sorry about the malfunction.",
    ],
)
def test_machinery_glued_into_a_word_was_speakable_and_is_not(vocab, text):
    assert grammar_accepts(vocab, old_speech_grammar({"58213"}), text)
    assert not grammar_accepts(vocab, speech_grammar({"58213"}), text)
    assert not grammar_accepts(vocab, speech_grammar({"58213"}, ["dispatch"], ["left"]), text)


_SHORT_STEMS = st.lists(
    st.sampled_from(["sent", "inwa", "left", "come"])
    | st.text(alphabet="acdeilnt", min_size=2, max_size=4),
    min_size=1,
    max_size=3,
)


@st.composite
def _kept_and_sentence(draw: st.DrawFn, stems: list[str]) -> tuple[list[str], str]:
    """Words the stems begin (kept), and a sentence of the stems, the kept words, words
    between them (a kept word cut short, grown on, or turned aside) and other words."""
    kept = draw(
        st.lists(
            st.builds(
                str.__add__,
                st.sampled_from(stems),
                st.text(alphabet="acdeilnt", min_size=1, max_size=5),
            ),
            max_size=3,
        )
    )
    near = st.sampled_from(stems + kept).flatmap(
        lambda w: st.sampled_from(
            [w, w[:-1], w + "s", w + "ing", w[:-1] + "x", w.upper(), w.capitalize()]
        )
    )
    words = draw(
        st.lists(
            near | st.text(alphabet="acdeilnt", min_size=1, max_size=8), min_size=1, max_size=5
        )
    )
    return kept, " ".join(words) + "."


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), stems=_SHORT_STEMS)
@example(data=None, stems=["inwa"]).via("Hypothesis, session 13: inwa/inwarehouse")
def test_a_word_a_banned_start_begins_is_speakable_when_kept_and_the_stem_is_not(
    vocab, data, stems
):
    """Banned starts with speakable words carved out: exactly the kept words and the
    words they begin stay speakable of all the words a banned stem begins ("sent"
    banned, "sentence" kept: "sentence" and "sentences" yes, "sent", "sents", "sen",
    "sentex" no)."""
    if data is None:
        kept, text = ["inwarehouse"], "It is inwa, inwar or inwarehouse."
    else:
        kept, text = data.draw(_kept_and_sentence(stems), label="kept, text")
    grammar = speech_grammar(set(), (), stems, kept)
    check_grammar(grammar)
    accepted = grammar_accepts(vocab, grammar, text)
    event(f"accepted: {accepted}")
    assert accepted == spoken(text, set(), False, (), stems, kept), (text, kept)
