"""Numbers as callers say them and as Whisper writes them become the digits they meant."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from voice_agent.phone.numbers import digit_candidates, digit_runs, spoken_digits

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
         "seventeen", "eighteen", "nineteen"]  # fmt: skip
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _pair_words(pair: str) -> str:
    """A two-digit group the way people say it ("17" -> "seventeen", "40" -> "forty")."""
    tens, unit = int(pair[0]), int(pair[1])
    if tens == 0:
        return f"oh {WORDS[unit]}"
    if tens == 1:
        return TEENS[unit]
    return TENS[tens] if unit == 0 else f"{TENS[tens]} {WORDS[unit]}"


def _say(digits: str, style: str, rng: random.Random) -> str:
    if style == "digits_spaced":
        return " ".join(digits)
    if style == "words":
        return " ".join(rng.choice(["oh", "zero"]) if d == "0" else WORDS[int(d)] for d in digits)
    if style == "words_commas":
        return ", ".join(WORDS[int(d)] for d in digits) + "."
    if style == "whisper_thousands":
        return f"{int(digits):,}" if digits[0] != "0" else digits
    if style == "whisper_dots":
        return ".".join(digits[i : i + 2] for i in range(0, len(digits), 2))
    if style == "pairs" and len(digits) % 2 == 0 and digits[0] != "0":
        return " ".join(_pair_words(digits[i : i + 2]) for i in range(0, len(digits), 2))
    if style == "fillers":
        words = [WORDS[int(d)] for d in digits]
        k = rng.randrange(1, len(words)) if len(words) > 1 else 1
        return " ".join(words[:k] + [rng.choice(["uh", "um", "er"])] + words[k:])
    return digits


STYLES = ["plain", "digits_spaced", "words", "words_commas", "whisper_thousands",
          "whisper_dots", "pairs", "fillers"]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=3, max_size=12),
    style=st.sampled_from(STYLES),
    seed=st.integers(0, 1000),
    lead=st.sampled_from(["", "my order number is ", "it's ", "um, order "]),
)
def test_any_way_of_saying_a_number_gives_its_digits(
    digits: str, style: str, seed: int, lead: str
) -> None:
    said = _say(digits, style, random.Random(seed))
    assert spoken_digits(lead + said) == digits, said


def test_whisper_homophones_next_to_digits_are_digits_with_the_literal_reading_as_fallback() -> (
    None
):
    assert digit_candidates("for 117") == ["4117", "117"]
    assert spoken_digits("two to one") == "221"
    assert spoken_digits("double four one oh") == "4410"
    assert spoken_digits("triple seven two") == "7772"


def test_cardinals_and_groups() -> None:
    assert spoken_digits("four thousand four hundred seventeen") == "4417"
    assert spoken_digits("four hundred and five") == "405"
    assert spoken_digits("forty-four, seventeen") == "4417"
    assert spoken_digits("twenty oh five") == "2005"


def test_words_that_are_not_numbers_end_a_run_and_plain_text_has_none() -> None:
    runs = digit_runs("order 4417, sorry I mean order 4471")
    assert [r.digits for r in runs] == ["4417", "4471"]
    assert spoken_digits("what time does the Denver store open") == ""
    assert digit_runs("the store opens at nine") == [digit_runs("nine")[0].__class__("9", 19, 23)]


def test_a_run_knows_where_it_was_said() -> None:
    text = "it is four four one seven thanks"
    (run,) = digit_runs(text)
    assert text[run.start : run.end] == "four four one seven"
