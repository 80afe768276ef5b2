"""What a caller's words ask of the agent itself (`caller_asks`), read without the model."""

from __future__ import annotations

import pytest

from voice_agent.local_llm.caller_asks import (
    asks_for_a_person,
    asks_nothing_of_a_tool,
    asks_something_of_the_agent,
    asks_what_the_agent_is,
    holds_the_line,
    makes_small_talk,
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
        ("I'd like a refund, hang on.", False),  # a request beside the wait
        ("Sorry, my dog is barking, give me a second.", True),  # m24: after a reason
        ("Hi! Sorry, I've never called before, bear with me.", True),
        ("Can you hold on a second? Someone's at the door.", True),
        ("A moment, please.", True),
        ("Can you hold on my order until Friday?", False),
        ("I've been waiting for a minute.", False),  # no wait asked
        ("Wait, that's not my order.", False),
        ("Store hours in Dallas, no hang on, Houston I mean.", False),  # f04: a correction
        ("How long do I have to wait for my refund?", False),
    ],
)
def test_a_request_to_wait_asks_for_nothing_else(said, holds):
    assert holds_the_line(said) is holds
    assert asks_nothing_of_a_tool(said) is holds


@pytest.mark.parametrize(
    ("said", "small_talk"),
    [
        ("Is it always this busy on your line?", True),  # m08
        ("Morning! Lovely weather today, isn't it?", True),  # s08
        ("Ugh, it's pouring with rain here. Anyway, how are you?", True),  # g05
        ("Sorry, can you hear me okay? The line's a bit crackly.", True),  # b24
        ("Oh great, a real voice. How's your day going?", True),  # e08
        # asks for something beside it, or asks for a fact
        ("How are you? I need to cancel order 4410.", False),
        ("How are you? Can you check my order?", False),
        ("What's the weather like?", False),  # d11
        ("Can you tell me tomorrow's weather forecast?", False),  # f22
        ("Is the Denver store busy on Saturdays?", False),
        ("Do you sell gift cards?", False),
    ],
)
def test_small_talk_about_the_call_the_day_or_the_weather_asks_nothing(said, small_talk):
    assert makes_small_talk(said) is small_talk
    assert asks_nothing_of_a_tool(said) is small_talk


@pytest.mark.parametrize(
    ("said", "asks"),
    [
        ("Can you change the email address on my online account?", True),  # s10
        ("I'd like to leave a review for the delivery driver.", True),
        ("Please add my wife as a second user on my account.", True),
        ("Can I pay for my order with a gift card?", True),
        ("Can someone call me back?", True),
        ("Hello", False),
        ("Thanks, that's all I needed.", False),
        ("Sorry, can you hear me okay? The line's a bit crackly.", False),  # about the call
        ("Could you hold on a second, please?", False),  # a wait
        ("Do you sell gift cards?", False),  # a request, but not by its form
    ],
)
def test_a_request_of_the_agent_is_told_by_its_form(said, asks):
    assert asks_something_of_the_agent(said) is asks


@pytest.mark.parametrize(
    ("said", "asks"),
    [
        ("Can you connect me with someone in billing?", True),  # y16
        ("Could you put me through to one of your colleagues, please?", True),
        ("Is there a supervisor I could speak with?", True),
        ("Just get me a real human on the line.", True),
        ("I want to talk to somebody about my bill.", True),
        ("Can somebody phone me tomorrow?", False),  # a call back, nobody reached now
        ("I'd like someone to ring me back about a complaint.", False),
        ("Am I speaking to a real person?", False),  # what the agent is
        ("Is this a real human I'm talking to?", False),
        ("Can you get me the status of order 5127?", False),  # no person
        ("Can you transfer my order to a new address?", False),
        ("Do you have any job openings?", False),
    ],
)
def test_a_request_to_be_put_through_to_a_person_is_told_from_other_requests(said, asks):
    assert asks_for_a_person(said) is asks
