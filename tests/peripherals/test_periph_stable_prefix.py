"""LocalAgreement-2 stable prefix policy (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from peripherals.stable_prefix import StablePrefix, normalize_word


def feed(*hypotheses: str) -> list[str]:
    policy = StablePrefix()
    return [policy.update(h.split()).text for h in hypotheses]


def test_a_word_is_committed_when_two_consecutive_hypotheses_agree() -> None:
    assert feed("I would", "I would like to", "I would like to check the") == [
        "",
        "I would",
        "I would like to",
    ]


def test_disagreement_commits_only_the_common_prefix() -> None:
    assert feed("check my odor", "check my order status") == ["", "check my"]


def test_committed_words_are_never_revised() -> None:
    policy = StablePrefix()
    policy.update("the cat sat".split())
    assert policy.update("the cat sat down".split()).text == "the cat sat"
    update = policy.update("a cat sat down".split())  # rewrites a committed word
    assert update.text == "the cat sat" and update.added == ()
    assert policy.update("the cat sat down here".split()).added == ()  # previous disagreed


def test_case_and_punctuation_do_not_block_agreement() -> None:
    policy = StablePrefix()
    policy.update("Hello, world".split())
    update = policy.update("hello world.".split())
    assert update.committed == ("hello", "world.")
    assert normalize_word("Order,") == "order"


def test_tail_is_the_uncommitted_rest_of_the_latest_hypothesis() -> None:
    policy = StablePrefix()
    policy.update("one two".split())
    update = policy.update("one two three".split())
    assert update.tail == ("three",)


def test_reset_starts_a_new_utterance() -> None:
    policy = StablePrefix()
    policy.update("a b".split())
    policy.update("a b".split())
    policy.reset()
    assert policy.committed == ()
    assert policy.update("a b".split()).text == ""


words = st.lists(st.sampled_from(["a", "b", "c", "A,", "b."]), max_size=8)


@given(st.lists(words, min_size=1, max_size=12))
def test_committed_prefix_only_grows_and_each_new_word_was_agreed(
    hypotheses: list[list[str]],
) -> None:
    """The strongest property that holds for any hypothesis sequence: the
    committed words only grow, and every newly committed word sits at the
    same position, equal up to normalisation, in both the latest and the
    previous hypothesis (which both start with the old committed prefix).
    "Committed is a prefix of the latest hypothesis" does NOT hold in
    general: a later hypothesis may revise committed words."""
    policy = StablePrefix()
    previous: list[str] | None = None
    committed: tuple[str, ...] = ()
    for hyp in hypotheses:
        update = policy.update(hyp)
        assert update.committed[: len(committed)] == committed
        assert update.committed == committed + update.added
        for k in range(len(committed), len(update.committed)):
            assert previous is not None
            assert (
                normalize_word(hyp[k])
                == normalize_word(previous[k])
                == normalize_word(update.committed[k])
            )
        if update.added:
            norm = [normalize_word(w) for w in hyp]
            assert norm[: len(update.committed)] == [normalize_word(w) for w in update.committed]
        committed, previous = update.committed, hyp
