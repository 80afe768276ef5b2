"""The opening of an answer from results (voice_agent.local_llm.openings): pure text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_agent.local_llm.openings import (
    AUTOMATED_CONFIRMATION,
    AUTOMATED_DISCLOSURE,
    NEUTRAL_OPENING,
    AnswerOpening,
    PersonClaim,
    RefusalStart,
    refuses,
)


def _tokens(text: str) -> list[str]:
    """Pieces as a model streams them: words with their leading space, punctuation apart."""
    return re.findall(r" ?[A-Za-z0-9'$]+| ?[^A-Za-z0-9'$ ]", text)


def _stream(text: str, pieces: list[str] | None = None) -> tuple[str, AnswerOpening]:
    opening = AnswerOpening()
    out = "".join(opening.push(p) for p in (pieces or _tokens(text)))
    return out + opening.finish(), opening


@pytest.mark.parametrize(
    ("model", "said"),
    [
        # b10, session 7: the caller's framing contradicted by the rest
        (
            "Yes, your money has not yet been refunded for order 2290.",
            "Okay, your money has not yet been refunded for order 2290.",
        ),
        # h08, b07, session 7: the note's words read out
        (
            "Sure, here's the answer: The call back has been scheduled for Friday 3 pm.",
            "Sure, the call back has been scheduled for Friday 3 pm.",
        ),
        (
            "Sure, here's the answer: order 3307 has shipped.",
            "Sure, order 3307 has shipped.",
        ),
        (
            "Here is the information you asked for. The Boston store opens at 9 am.",
            "Okay, the Boston store opens at 9 am.",
        ),
        ("No, order 6127 was delivered on Monday.", "Okay, order 6127 was delivered on Monday."),
        ("Yes.", "Okay, yes."),  # nothing after it: never a bare acknowledgment
    ],
)
def test_an_opening_that_is_not_the_answer_is_left_out(model, said):
    out, opening = _stream(model)
    assert out == said
    assert opening.left_out


@pytest.mark.parametrize(
    "model",
    [
        "Order 3307 has shipped and should arrive on Friday.",
        "No order with that number was found. Could you repeat it?",
        "Sure, order 3307 has shipped.",
        "Okay, the refund for order 5521 was paid on May 28.",
        "Here's the status of order 3307: it has shipped.",  # it names the order
        "Your order is here: it was delivered on Monday.",
        "Nope is not a word I use; order 3307 has shipped.",
        "Yesterday, order 3307 was delivered.",
        "The store, yes, opens at 9 am.",  # a yes after the opening is the answer's own
    ],
)
def test_an_answer_that_opens_with_its_answer_passes_untouched(model):
    out, opening = _stream(model)
    assert out == model
    assert not opening.left_out


def test_only_a_clause_that_may_be_left_out_is_held():
    """The first word of an ordinary answer is passed on as it comes (first audio)."""
    opening = AnswerOpening()
    assert opening.push("Order") == "Order"
    assert opening.push(" 3307") == " 3307"
    sure = AnswerOpening()
    assert sure.push("Sure") == "Sure" and sure.push(",") == ","
    held = AnswerOpening()
    assert held.push("Yes") == ""
    assert held.push(",") == NEUTRAL_OPENING  # said when "Yes," would have been


def test_pieces_split_anywhere_give_the_same_text():
    text = "Sure, here's what I found: your order 3307 has shipped."
    whole, _ = _stream(text, [text])
    by_char, _ = _stream(text, list(text))
    assert whole == by_char == _stream(text)[0] == "Sure, your order 3307 has shipped."


@pytest.mark.parametrize(
    ("reply", "refused", "passed"),
    [
        ("I can't help with that.", True, ""),  # s08, session 7
        ("Sorry, I cannot assist with that request.", True, "Sorry,"),
        ("I'm doing well, thank you!", False, "I'm doing well, thank you!"),
        ("I can help you with your order.", False, "I can help you with your order."),
        ("I can't do that? Ha, I can do anything.", True, ""),
        ("I can't download it, but I can help.", False, "I can't download it, but I can help."),
        ("Good morning! How can I help?", False, "Good morning! How can I help?"),
        # k24, session 9: the refusal after an apology's clause
        ("I'm sorry, but I can't assist with that.", True, "I'm sorry,"),
        ("Unfortunately I cannot help with that.", True, ""),
        ("But I can do that for you.", False, "But I can do that for you."),
    ],
)
def test_a_refusal_is_held_until_known_and_never_passed_on(reply, refused, passed):
    guard = RefusalStart()
    out = "".join(guard.push(p) for p in _tokens(reply))
    out += guard.finish()
    assert guard.refused is refused
    assert out == passed


def test_a_reply_that_is_no_refusal_passes_as_it_comes():
    guard = RefusalStart()
    assert guard.push("Hello") == "Hello"
    assert guard.push(" there") == " there"
    held = RefusalStart()
    assert held.push("I") == "" and held.push("'ll") == "I'll"
    held = RefusalStart()  # "I'm" may become "I'm unable to help": held one word more
    assert held.push("I'm") == "" and held.push(" here") == "I'm here"


# ------------------------------------------------------------ a claim to be a person


def _claim(pieces: list[str]) -> tuple[bool, str]:
    guard = PersonClaim()
    out = "".join(guard.push(p) for p in pieces)
    out += guard.finish()
    return guard.claimed, out


@pytest.mark.parametrize(
    ("text", "claimed", "passed"),
    [
        ("Yes, I am a person.", True, ""),
        ("I\u2019m a real human, happy to help!", True, ""),
        ("Hello! Yes, I'm a person. How are you?", True, "Hello!"),
        ("Of course, I am human", True, ""),  # the claim ends the text
        ("No, I am not a person.", False, "No, I am not a person."),
        ("I'm an automated assistant.", False, "I'm an automated assistant."),
        ("I am a personal assistant.", False, "I am a personal assistant."),
        ("I'm happy to help. I am here all day.", False, "I'm happy to help. I am here all day."),
        ("Yes, I am.", False, "Yes, I am."),  # a claim only after the question (below)
        ("Sure\u2026 I am a real person.", True, "Sure\u2026"),  # an ellipsis ends a sentence
    ],
)
def test_a_claim_to_be_a_person_is_held_and_never_passed(text, claimed, passed):
    assert _claim([text]) == (claimed, passed)
    assert _claim(list(text)) == (claimed, passed)  # one character at a time


@pytest.mark.parametrize(
    ("asked", "text", "claimed", "passed"),
    [
        ("Are you a person?", "Yes, I am.", True, ""),
        ("Are you a person?", "Yes.", True, ""),
        ("Is this a real human I'm speaking to?", "Of course I'm real", True, ""),
        ("Are you a person?", "No, I'm an automated assistant.", False, None),
        ("Am I talking to a robot right now?", "No.", True, ""),
        ("Am I talking to a robot right now?", "No, I'm not a robot.", True, ""),
        ("Am I talking to a robot right now?", "Yes, I'm an automated assistant.", False, None),
        ("Wait, are you a person or a computer?", "Yes, I am.", False, None),  # which?
        ("Where is my order?", "Yes, I am.", False, None),  # no question about the agent
        ("Are you a person?", "Hello! Yes, I am a person.", True, "Hello!"),  # as before
    ],
)
def test_a_bare_yes_or_no_that_claims_to_be_a_person_after_the_callers_question_is_held(
    asked, text, claimed, passed
):
    for pieces in ([text], list(text)):
        guard = PersonClaim(asked)
        out = "".join(guard.push(p) for p in pieces) + guard.finish()
        assert (guard.claimed, out) == (claimed, text if passed is None else passed)
    robot = "robot" in asked and "person" not in asked
    assert guard.disclosure == (AUTOMATED_CONFIRMATION if robot else AUTOMATED_DISCLOSURE)


@given(
    st.lists(
        st.sampled_from(["Yes,", "I", "I'm", "am", "a", "an", "real", "person", "personal",
                         "human", "not", "here.", "Hello!", "help.", "assistant."]),
        max_size=12,
    ),
    st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=40),
)  # fmt: skip
def test_the_pieces_a_reply_comes_in_change_nothing_and_a_claim_is_never_passed(words, cuts):
    text = " ".join(words)
    pieces, at = [], 0
    for n in cuts * (len(text) // max(1, sum(cuts)) + 1):
        if at >= len(text):
            break
        pieces.append(text[at : at + n])
        at += n
    whole = _claim([text])
    assert _claim(pieces) == whole
    claimed, passed = whole
    assert text.startswith(passed)  # what passes is the text's start, unchanged
    sentences = re.split(r"(?<=[.!?])\s+", passed)
    assert not any(
        re.match(r"(?:yes |of course )?(?:i am|i'm) (?:a |an )?(?:real )?(?:person|human)\b",
                 " ".join(s.lower().replace(",", " ").split()))
        for s in sentences
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("I am sorry, but I cannot help with that. Please try again later.", True),
        ("I can't help.", True),  # the clause's end right after "help"
        ("Unfortunately I am unable to help", True),  # at the text's very end
        ("I'm putting you through to a colleague now.", False),
        ("I can help with that.", False),
        # m08, session 11: a refusal in other words, after "I'm sorry,"
        ("I'm sorry, but I'm not able to provide an accurate answer to that question.", True),
        ("I'm not able to hear you well.", False),
    ],
)
def test_held_text_is_known_for_a_refusal_wherever_its_clause_ends(text, refusal):
    assert refuses(text) is refusal


@pytest.mark.parametrize(
    ("model", "said", "refusal"),
    [
        # z13, session 12 (0.5B): a refusal before the result it then told
        (
            "I'm sorry, but I can't assist with that. Order 94859 has shipped.",
            "Order 94859 has shipped.",
            "I'm sorry, but I can't assist with that.",
        ),
        (
            "I can't help with that. The refund was paid.",
            "The refund was paid.",
            "I can't help with that.",
        ),
        # nothing else said: kept aside all the same (the responder decides)
        (
            "I'm sorry, but I can't assist with that.",
            "",
            "I'm sorry, but I can't assist with that.",
        ),
        ("Sorry, I cannot help with that", "", "Sorry, I cannot help with that"),
    ],
)
def test_a_refusal_opening_an_answer_is_kept_aside(model, said, refusal):
    out, opening = _stream(model)
    assert out == said
    assert opening.refusal == refusal
    by_char, _ = _stream(model, list(model))
    assert by_char == said


@pytest.mark.parametrize(
    "model",
    [
        "I'm sorry, order 5521 was not found.",  # an apology that is the answer's own
        "Sorry, the Boston store is closed on Sunday.",
        "I can't see an order 5521; could you check the number?",
        "I found order 5521: it has shipped.",
        "Order 5521 has shipped, but I can't help with the refund.",  # not at the opening
    ],
)
def test_an_apology_or_answer_that_is_no_refusal_passes_untouched(model):
    out, opening = _stream(model)
    assert out == model
    assert opening.refusal == ""
    assert _stream(model, list(model))[0] == model
