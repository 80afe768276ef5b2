"""Word error rate."""

from __future__ import annotations

import pytest

from peripherals.wer import word_error_rate, words


def test_identical_text_up_to_case_and_punctuation_is_zero() -> None:
    assert word_error_rate("Hello, World!", "hello world") == 0.0


@pytest.mark.parametrize(
    ("hyp", "expected"),
    [("a b x d", 0.25), ("a b d", 0.25), ("a b c d e", 0.25), ("", 1.0), ("w x y z", 1.0)],
)
def test_substitutions_deletions_insertions_each_count_one(hyp: str, expected: float) -> None:
    assert word_error_rate("a b c d", hyp) == pytest.approx(expected)


def test_empty_reference() -> None:
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("", "you") == 1.0


def test_words_split_hyphens_and_drop_punctuation() -> None:
    assert words("Well-known, isn't it?") == ["well", "known", "isn't", "it"]
