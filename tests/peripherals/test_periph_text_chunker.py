"""SentenceChunker on streaming text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from peripherals.text_chunker import SentenceChunker


def chunks_of(text: str, step: int = 1, **kwargs: int) -> list[str]:
    chunker = SentenceChunker(**kwargs)
    out: list[str] = []
    for i in range(0, len(text), step):
        out += chunker.push(text[i : i + step])
    return out + chunker.flush()


def test_sentences_come_out_as_soon_as_they_are_complete() -> None:
    chunker = SentenceChunker()
    assert chunker.push("Sure, I can help. Let") == ["Sure, I can help."]
    assert chunker.push(" me check!") == []  # the "!" could still be followed by more
    assert chunker.push(" Ok") == ["Let me check!"]
    assert chunker.flush() == ["Ok"]


def test_abbreviations_and_initials_do_not_end_sentences() -> None:
    text = "Dr. Smith and J. Doe met Mr. Brown, e.g. on Monday. Then they left."
    assert chunks_of(text) == [
        "Dr. Smith and J. Doe met Mr. Brown, e.g. on Monday.",
        "Then they left.",
    ]


def test_etc_and_pm_end_a_sentence_only_before_a_capital() -> None:
    assert chunks_of("Bring pens, paper etc. and food. We meet at 5 p.m. Bye.") == [
        "Bring pens, paper etc. and food.",
        "We meet at 5 p.m.",
        "Bye.",
    ]


def test_numbers_are_never_split() -> None:
    text = "It costs 3.5 dollars, or 1,000.25 in total at 3:30 today. Version 2. Done."
    out = chunks_of(text, clause_after_chars=5)
    assert "It costs 3.5 dollars," in out
    assert any("1,000.25" in c for c in out)
    assert any("3:30" in c for c in out)
    assert all(not c.endswith(("3.", "1,", "3:")) for c in out)


def test_long_sentences_split_at_clauses_after_the_threshold() -> None:
    text = "Well, the weather in Paris today is sunny, with a high of twenty one degrees; rain tomorrow."
    assert chunks_of(text, clause_after_chars=30) == [
        "Well, the weather in Paris today is sunny,",
        "with a high of twenty one degrees;",
        "rain tomorrow.",
    ]
    assert chunks_of(text, clause_after_chars=100) == [text]


def test_line_breaks_and_run_on_text_are_bounded() -> None:
    assert chunks_of("First item\nSecond item\n") == ["First item", "Second item"]
    run_on = " ".join(["word"] * 100)
    out = chunks_of(run_on, max_chars=80)
    assert all(len(c) <= 80 for c in out) and " ".join(out) == run_on


def test_unspeakable_chunks_are_dropped() -> None:
    assert chunks_of("... !! ") == []
    assert chunks_of("!\n...\nYes. No") == ["! ... Yes.", "No"]
    assert chunks_of('Quotes: "Yes." Then?') == ['Quotes: "Yes."', "Then?"]


@given(st.text(alphabet="ab .,!?3\n", max_size=120), st.integers(min_value=1, max_value=7))
def test_no_text_is_lost_and_delta_sizes_do_not_matter(text: str, step: int) -> None:
    whole = chunks_of(text, step=len(text) or 1)
    assert chunks_of(text, step=step) == whole
    kept = "".join("".join(c.split()) for c in whole)
    everything = "".join(text.split())
    assert everything.startswith(kept)  # in order, nothing invented
    assert not any(ch.isalnum() for ch in everything[len(kept) :])  # only punctuation dropped


def test_the_first_chunk_may_end_at_an_early_clause_and_later_ones_keep_the_normal_rule() -> None:
    text = "Sure, let me look that up for you, one moment, please. Your order, number 427, has shipped."
    assert chunks_of(text, first_clause_after_chars=20) == [
        "Sure, let me look that up for you,",  # "Sure," is shorter than 20 characters
        "one moment, please.",
        "Your order, number 427, has shipped.",
    ]
    assert chunks_of(text)[0] == "Sure, let me look that up for you, one moment, please."
    chunker = SentenceChunker(first_clause_after_chars=20)
    assert chunker.push(text)[:1] == ["Sure, let me look that up for you,"]
    chunker.flush()
    again = chunker.push("Again, the first chunk of a new text, is short.")
    assert again == ["Again, the first chunk of a new text,"]


def test_the_first_clause_leaves_as_soon_as_its_mark_arrives_after_a_word() -> None:
    # an LLM streams "Sure" "," " I" ...: the chunk is complete at the comma, one token early
    chunker = SentenceChunker(first_clause_after_chars=4)
    assert chunker.push("Sure") == []
    assert chunker.push(",") == ["Sure,"]
    assert chunker.push(" I can help") == []
    assert chunker.push(", sir") == []  # later chunks keep the whitespace rule
    # after a digit the mark may be inside a number: wait for what follows
    numbers = SentenceChunker(first_clause_after_chars=4)
    assert numbers.push("About 1,") == []
    assert numbers.push("000 people, yes") == ["About 1,000 people,"]
    assert numbers.flush() == ["yes"]


def test_the_first_sentence_leaves_as_soon_as_its_mark_arrives() -> None:
    # an LLM streams "shipped" "." " It": the first chunk is complete at the period
    chunker = SentenceChunker(first_clause_after_chars=4)
    assert chunker.push("Your order has been shipped") == []
    assert chunker.push(".") == ["Your order has been shipped."]
    assert chunker.push(" It arrives Friday") == []
    assert chunker.push(".") == []  # later chunks wait for what follows
    asking = SentenceChunker(first_clause_after_chars=4)
    assert asking.push("Could you tell me the order number") == []
    assert asking.push("?") == ["Could you tell me the order number?"]
    # a period that may not end the sentence waits, as before
    for text in ("We met Dr", "It costs 3", "Bring pens etc", "Open until 5 p.m", "Ask J"):
        waiting = SentenceChunker(first_clause_after_chars=4)
        assert waiting.push(text + ".") == [], text
    # a dot with a letter after it, as an LLM's tokens bring it (".com"), is no end
    site = SentenceChunker(first_clause_after_chars=4)
    assert site.push("See example") == []
    assert site.push(".com today") == []
    assert site.flush() == ["See example.com today"]
    # without an early first chunk the rule is the usual one
    assert SentenceChunker().push("Your order has been shipped.") == []


def test_the_first_chunk_ends_before_a_new_clause_in_its_sentence() -> None:
    text = "Your order 30418 has been shipped and is estimated to arrive on Wednesday."
    assert chunks_of(text, first_clause_after_chars=4) == [
        "Your order 30418 has been shipped",
        "and is estimated to arrive on Wednesday.",
    ]
    chunker = SentenceChunker(first_clause_after_chars=4)
    assert chunker.push("The store is open but") == []
    assert chunker.push(" will") == []  # " will" may become " willing"
    assert chunker.push(" close") == ["The store is open"]
    # "and" between names, times or numbers is no new clause
    for same in (
        "We are open Monday and Friday from 9 am and until 5 pm.",
        "It costs one hundred and five dollars.",
        "Your order and the refund were both sent.",
    ):
        assert chunks_of(same, first_clause_after_chars=4) == [same]
    # too short to stand alone, and later chunks keep the usual rule
    assert chunks_of("Yes and it is.", first_clause_after_chars=4) == ["Yes and it is."]
    two = "Sure. Your order has been shipped and it is due on Friday."
    assert chunks_of(two, first_clause_after_chars=4) == [
        "Sure.",
        "Your order has been shipped and it is due on Friday.",
    ]
    assert chunks_of(text) == [text]


_WORDS = ["and", "it", "is", "Dr.", "shipped.", "3.5", "a", "b", "but", "will", "Monday"]


@given(
    st.lists(st.sampled_from([*_WORDS, ",", "?", "!", ".", "\n"]), max_size=30),
    st.integers(min_value=1, max_value=7),
)
def test_an_early_first_chunk_does_not_depend_on_the_deltas(words: list[str], step: int) -> None:
    text = " ".join(words)
    whole = chunks_of(text, step=len(text) or 1, first_clause_after_chars=4)
    assert chunks_of(text, step=step, first_clause_after_chars=4) == whole
    kept = "".join("".join(c.split()) for c in whole)
    everything = "".join(text.split())
    assert everything.startswith(kept)
    assert not any(ch.isalnum() for ch in everything[len(kept) :])


# ------------------------------------------------------ a pause: take the sentence begun back


def test_a_pause_takes_back_the_sentence_begun_and_completes_the_one_ended() -> None:
    chunker = SentenceChunker()
    assert chunker.push("It shipped on Monday. The order") == ["It shipped on Monday."]
    assert chunker.take_unfinished() == ([], "The order", False)
    chunker = SentenceChunker()
    assert chunker.push("Let me see.") == []  # the "." could still be "3.5"
    assert chunker.take_unfinished() == (["Let me see."], "", False)  # the pause ends it
    chunker = SentenceChunker()
    assert chunker.push("Ask Dr.") == []
    assert chunker.take_unfinished() == ([], "Ask Dr.", False)  # an abbreviation: not an end


def test_a_pause_ends_a_sentence_whose_last_word_is_an_abbreviation_that_may_end_one() -> None:
    # "a.m."/"etc." end a sentence only before a capital: at a pause none is coming, and
    # the pause is the evidence it is for any sentence (before: kept as unfinished)
    for text in ("Your call back is booked for 10 a.m.", "Bring pens etc.", "See you Jan."):
        chunker = SentenceChunker()
        assert chunker.push(text) == []
        assert chunker.take_unfinished() == ([text], "", False)
    chunker = SentenceChunker()  # one that never ends a sentence, or an initial, does not
    assert chunker.push("We open at 9 a.m. and ask for J.") == []
    assert chunker.take_unfinished() == ([], "We open at 9 a.m. and ask for J.", False)
    assert chunker.push("We open at 9 a.m. and ask for J. Smith.") == []
    assert chunker.flush() == ["We open at 9 a.m. and ask for J. Smith."]  # no pause: as before


def test_after_a_clause_was_cut_the_sentence_is_known_to_be_under_way() -> None:
    chunker = SentenceChunker(first_clause_after_chars=4)
    assert chunker.push("Sure, the order") == ["Sure,"]
    assert chunker.take_unfinished() == ([], "the order", True)
    assert chunker.push("the order is here. And") == ["the order is here."]
    assert chunker.take_unfinished() == ([], "And", False)
    chunker = SentenceChunker()
    assert chunker.push("One\nTwo") == ["One"]
    assert chunker.take_unfinished() == ([], "Two", False)  # a line is a unit of its own


@given(
    st.lists(
        st.sampled_from(["Sure,", "the", "order", "Dr.", "3.5", "is", "here.", "Okay!", "and"]),
        max_size=25,
    ),
    st.sets(st.integers(min_value=0, max_value=25)),
    st.booleans(),
)
def test_taking_back_and_pushing_again_changes_no_chunk(
    words: list[str], pauses: set[int], early: bool
) -> None:
    # whatever a pause completes, nothing is lost and the cuts are those of a text that
    # paused there (a pause ends a sentence whose final mark came last)
    kwargs = {"first_clause_after_chars": 4} if early else {}
    text_pieces = [(" " if i else "") + w for i, w in enumerate(words)]
    paused, plain = SentenceChunker(**kwargs), SentenceChunker(**kwargs)
    out_paused: list[str] = []
    out_plain: list[str] = []
    for i, piece in enumerate(text_pieces):
        if i in pauses:
            chunks, unfinished, _ = paused.take_unfinished()
            out_paused += chunks + paused.push(unfinished)
            out_plain += plain.push(" ") if chunks else []
        out_paused += paused.push(piece)
        out_plain += plain.push(piece)
    out_paused += paused.flush()
    out_plain += plain.flush()
    assert " ".join(out_paused).split() == " ".join(words).split()
    assert out_paused == out_plain
