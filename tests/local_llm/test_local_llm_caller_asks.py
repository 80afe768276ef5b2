"""What a caller's words ask of the agent itself (`caller_asks`), read without the model."""

from __future__ import annotations

import pytest

from voice_agent.local_llm.caller_asks import (
    asks_nothing_of_a_tool,
    asks_what_the_agent_is,
    holds_the_line,
)


@pytest.mark.parametrize(
    ("said", "asked"),
    [
        ("Am I talking to a robot right now?", "machine"),  # k08
        ("Is this a real human I'm speaking to?", "person"),  # i01
        ("Wait, are you a person or a computer?", "both"),
        ("You\u2019re a human, right?", "person"),
        ("Hi there, is that a live agent?", "person"),
        ("Are you real?", "person"),
        ("Am I chatting with a machine?", "machine"),
        # not questions about what the agent is
        ("Can I speak to a real person?", None),  # a transfer
        ("I want to talk to someone from your staff, not a machine.", None),
        ("Is that a real discount?", None),
        ("Are you open on Sundays?", None),
        ("Is order 4410 with a person at the depot?", None),  # a number: a request
        ("Do you sell gift cards?", None),
    ],
)
def test_a_question_about_what_the_agent_is_says_which(said, asked):
    assert asks_what_the_agent_is(said) == asked


@pytest.mark.parametrize(
    ("said", "holds"),
    [
        ("Hang on, I'm just getting my glasses.", True),  # k24
        ("One second, let me find my reading glasses.", True),
        ("Give me a second to find the number.", True),
        ("Hold on, where is my order?", False),
        ("Hang on, can you check 4471", False),
        ("One moment, my order number is 4410.", False),
        ("I'd like a refund, hang on.", False),  # the wait is not what they start with
    ],
)
def test_a_request_to_wait_asks_for_nothing_else(said, holds):
    assert holds_the_line(said) is holds
    assert asks_nothing_of_a_tool(said) is holds
