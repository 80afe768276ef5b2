"""Call-control requests become events; keypad entries; a caller's yes, no or something else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fsm import Event
from voice_agent.call_control import (
    CallActionRefused,
    CallActionRequested,
    CallControl,
    DtmfCollector,
    HangUp,
    SendDtmf,
    Transfer,
    caller_closes,
    confirmation_answer,
)


async def test_a_tool_request_is_posted_as_an_event_and_never_acts_itself() -> None:
    posted: list[Event] = []
    call = CallControl(posted.append, call_id="call_7")
    call.transfer(" billing-queue ", reason="refund dispute")
    call.hang_up("caller said goodbye")
    call.send_dtmf("12#")
    assert posted == [
        CallActionRequested(action=Transfer("billing-queue", "refund dispute"), call_id="call_7"),
        CallActionRequested(action=HangUp("caller said goodbye"), call_id="call_7"),
        CallActionRequested(action=SendDtmf("12#"), call_id="call_7"),
    ]


async def test_bad_requests_are_refused_before_anything_is_posted() -> None:
    posted: list[Event] = []
    call = CallControl(posted.append)
    with pytest.raises(ValueError):
        call.transfer("  ")
    with pytest.raises(ValueError):
        call.send_dtmf("12x")
    assert posted == []


def test_hash_ends_an_entry_star_clears_it_and_a_pause_ends_it_too() -> None:
    keys = DtmfCollector(inter_digit_timeout_s=3.0)
    assert [keys.press(k, t) for k, t in [("4", 0.0), ("4", 0.5), ("7", 1.0)]] == [None] * 3
    assert keys.pending == "447"
    assert keys.press("#", 1.5) == "447"
    assert keys.pending == "" and keys.deadline() is None
    keys.press("9", 2.0)
    keys.press("*", 2.1)
    keys.press("1", 2.2)
    assert keys.expire(5.1) is None  # 2.9 s after the last key
    assert keys.expire(5.2) == "1"
    assert keys.expire(9.0) is None


@given(st.text(alphabet="0123456789", min_size=1, max_size=20))
def test_any_keyed_number_comes_back_whole(digits: str) -> None:
    keys = DtmfCollector()
    for i, d in enumerate(digits):
        assert keys.press(d, i * 0.5) is None
    assert keys.press("#", len(digits) * 0.5) == digits


@pytest.mark.parametrize(
    "said",
    ["Yes.", "yes please", "Yeah, go ahead.", "Sure.", "Yes, do it.", "Okay.", "That's right.",
     "Uh-huh.", "Go ahead, thanks.", "1"],
)  # fmt: skip
def test_an_explicit_yes_confirms(said: str) -> None:
    assert confirmation_answer(said) == "yes"


@pytest.mark.parametrize(
    "said",
    ["No.", "No, don't.", "Wait.", "Hold on.", "Nope.", "No thanks.", "2", "Uh-uh.", "Mm-mm."],
)
def test_an_explicit_no_declines(said: str) -> None:
    assert confirmation_answer(said) == "no"


@pytest.mark.parametrize(
    "said",
    ["yes but change the address first", "what about order 4417?", "I guess", "",
     "No, I want to cancel order 4417 instead", "the blue one"],
)  # fmt: skip
def test_anything_more_than_a_plain_answer_is_a_new_request(said: str) -> None:
    assert confirmation_answer(said) == "other"


def test_keys_on_a_recordings_timeline_are_parsed_with_a_typing_gap() -> None:
    from voice_agent.transports.files import KEY_GAP_S, parse_keys

    assert parse_keys("4.0:44#, 20:1") == [
        (4.0, "4"),
        (4.0 + KEY_GAP_S, "4"),
        (4.0 + 2 * KEY_GAP_S, "#"),
        (20.0, "1"),
    ]
    for bad in ("4.0", "x:1", "3:12z", "-1:1"):
        with pytest.raises(ValueError, match="--keys"):
            parse_keys(bad)


@pytest.mark.parametrize(
    "said",
    [
        "Thanks Sam, that's all I needed. Bye!",
        "Okay, that's everything, bye now.",
        "No, that's it, thank you.",
        "Great, have a good day!",
        "I'm all set, thanks.",
        "Please hang up.",
        "Goodbye.",
    ],
)
def test_a_goodbye_or_nothing_more_closes_the_conversation(said: str) -> None:
    assert caller_closes(said)


@pytest.mark.parametrize(
    "said",
    [
        "Can you book me a table for dinner?",
        "Can you call me back later?",
        "Hello? Is anyone there?",
        "Hold on a second.",
        "Thanks. And where is order 12345?",
        "That's all, but where is order 4417?",
        "I'm done with my order, where is it?",
        "Don't hang up!",
        "no",  # a no with nothing asked before it
    ],
)
def test_a_request_or_a_closing_taken_back_does_not_close_it(said: str) -> None:
    assert not caller_closes(said)


def test_a_plain_no_closes_it_only_after_the_agent_asked_whether_there_is_more() -> None:
    assert caller_closes("No thanks.", "Is there anything else I can help you with?")
    assert not caller_closes("No thanks.", "Shall I cancel order 4417?")


async def test_a_hang_up_the_engine_does_not_allow_is_refused_and_nothing_is_posted() -> None:
    posted: list[Event] = []
    allowed = [False]
    call = CallControl(posted.append, may_hang_up=lambda: allowed[0]).for_call("call_9")
    with pytest.raises(CallActionRefused, match="goodbye"):
        call.hang_up("the model thought so")
    assert posted == []
    allowed[0] = True
    call.hang_up("the caller said goodbye")
    assert [e.action for e in posted] == [HangUp("the caller said goodbye")]  # type: ignore[attr-defined]
