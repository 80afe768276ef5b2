"""A number told about one result's thing that only another result holds
(`spoken_values`), read without the model."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_agent.local_llm.spoken_values import ValueCheck, caller_numbers, result_values

REFUND = ("get_refund_status", {"order_id": "8427"},
          {"order_id": "8427", "refund": "paid on November 20", "amount": "$38.75"})  # fmt: skip
BALANCE = ("get_account_balance", {"account_number": "31580"},
           {"account_number": "31580", "balance": "$220.00", "due_date": "December 15"})  # fmt: skip
#: z12 (recheck12): the caller asks for both; both results are in hand.
Z12 = "Has the refund for order 8427 gone through, and what's the balance on account 31580?"


def _turn(caller: str, *calls: tuple[str, dict, dict]) -> list[dict]:
    messages: list[dict] = [{"role": "user", "content": caller}]
    for i, (name, arguments, result) in enumerate(calls):
        call = {"id": f"c{i}", "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)}}  # fmt: skip
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}",
                         "content": json.dumps({"status": "resolved", "result": result})})  # fmt: skip
    return messages


def _checked(text: str, messages: list[dict], step: int | None = None) -> tuple[str, list]:
    check = ValueCheck(result_values(messages), caller_numbers(messages))
    step = step or len(text) or 1
    out = "".join(check.push(text[i : i + step]) for i in range(0, len(text), step))
    return out + check.finish(), check.corrected


@pytest.mark.parametrize(
    ("said", "told"),
    [
        # z12: the refund's amount told as the balance -> the balance
        ("The refund for order 8427 has been paid on November 20, and the balance on "
         "account 31580 is $38.75.",
         "The refund for order 8427 has been paid on November 20, and the balance on "
         "account 31580 is $220.00."),
        # named by the call's key alone, the words after the number (v06's shape)
        ("I owe $38.75 on account 31580, and the refund was paid.",
         "I owe $220.00 on account 31580, and the refund was paid."),
        # named by a field alone; a clause joined by "and" is a clause of its own
        ("The refund is $38.75 and your balance is $38.75.",
         "The refund is $38.75 and your balance is $220.00."),
        # a date of another month: no value fits where its number stands
        ("Your balance is due on November 20.", "Your balance is due on November."),
        # no value fits where the number stands: it and the rest of its clause are left out
        ("The refund was paid, the balance on account 31580 is 20 dollars for now.",
         "The refund was paid, the balance on account 31580 is."),
    ],
)  # fmt: skip
def test_a_number_only_another_result_holds_is_corrected_before_it_is_said(said, told):
    messages = _turn(Z12, REFUND, BALANCE)
    for step in (None, 1, 2, 5):
        assert _checked(said, messages, step=step)[0] == told


@pytest.mark.parametrize(
    "said",
    [
        # each number told about its own result
        "The refund for order 8427 was paid on November 20, and the balance on account "
        "31580 is $220.00, due December 15.",
        "The refund of $38.75 was paid on November 20.",
        # a clause naming both results may tell either's numbers
        "The refund of $38.75 will not cover the balance of $220.00 on account 31580.",
        # a clause naming no result is not judged
        "That comes to $38.75 in total.",
        # a number the caller said, or one no result holds, is not this check's
        "Account 31580 was opened after order 8427.",
        "The balance on account 31580 is 99 dollars.",
        # a single digit is a count or an hour; a time is one number ("12:15", not "12")
        "The balance on account 31580 has 2 parts.",
        "The balance on account 31580 was checked at 12:15 today.",
    ],
)
def test_a_number_its_clause_may_tell_is_said_as_it_came(said):
    messages = _turn(Z12, REFUND, BALANCE)
    assert _checked(said, messages) == (said, [])
    assert _checked(said, messages, step=1) == (said, [])


def test_what_was_corrected_is_listed():
    said = "The balance on account 31580 is $38.75, and it is due on November 20."
    told, corrected = _checked(said, _turn(Z12, REFUND, BALANCE))
    assert told == "The balance on account 31580 is $220.00, and it is due on November 20."
    assert corrected == [("$38.75", "$220.00")]
    left_out = _checked("The balance on account 31580 is 20 dollars.", _turn(Z12, REFUND, BALANCE))
    assert left_out == ("The balance on account 31580 is.", [("20 dollars", "")])


def test_a_clause_left_out_after_a_clause_mark_takes_its_own_mark_along():
    # c08's shape (0.5B, session 14): "Sure, 20 for order 8427 ..., the balance ..."
    said = "Sure, 20 on account 31580 today: the refund was paid."
    told, corrected = _checked(said, _turn(Z12, REFUND, BALANCE))
    assert told == "Sure, the refund was paid."
    assert corrected == [("20 on account 31580", "")]


def test_one_result_or_two_fields_that_fit_leave_the_number_as_said_or_out():
    # one result: no number can be another's
    alone = _turn(Z12, BALANCE)
    assert _checked("The balance is $38.75.", alone) == ("The balance is $38.75.", [])
    # two amounts fit and the clause names neither field: the number is left out
    two = ("get_account_balance", {"account_number": "31580"},
           {"balance": "$220.00", "minimum_payment": "$25.00"})  # fmt: skip
    said = "On account 31580 you owe $38.75 today."
    assert _checked(said, _turn(Z12, REFUND, two)) == (
        "On account 31580 you owe.",
        [("$38.75 today", "")],
    )


def test_a_date_is_corrected_by_the_value_with_the_same_word_before_its_number():
    # v06 (probe10a): the refund was paid on July 14, the balance is due on July 1
    refund = ("get_refund_status", {"order_id": "6671"},
              {"order_id": "6671", "refund": "paid on July 14", "amount": "$45.30"})  # fmt: skip
    balance = ("get_account_balance", {"account_number": "61150"},
               {"account_number": "61150", "balance": "$247.80", "due_date": "July 1"})  # fmt: skip
    messages = _turn("What do I owe on account 61150, and was the refund for order 6671 paid?",
                     refund, balance)  # fmt: skip
    said = "Your balance of $45.30 is due on July 14."
    assert _checked(said, messages) == (
        "Your balance of $247.80 is due on July 1.",
        [("$45.30", "$247.80"), ("14", "1")],
    )


def test_a_name_a_call_was_made_with_names_its_result():
    hours = ("get_store_hours", {"city": "Fresno"}, {"city": "Fresno", "parking": "$10.00"})
    order = ("get_order_status", {"order_id": "8154"}, {"status": "shipped", "total": "$64.20"})
    messages = _turn("How late is Fresno open, and what about order 8154?", hours, order)
    told, corrected = _checked("In Fresno it costs $64.20 to park.", messages)
    assert corrected == [("$64.20", "$10.00")]
    assert told == "In Fresno it costs $10.00 to park."


# -------------------------------------------------------------- invariants

_VALUES = st.sampled_from(
    ["$38.75", "$220.00", "20", "15", "8427", "31580", "99", "7", "$1,204.50"]
)
_WORDS = st.sampled_from(
    ["the", "balance", "refund", "amount", "on", "account", "order", "is", "due", "December",
     "November", "and", "paid", ",", ".", "due date", "you", "owe"]
)  # fmt: skip
_ANSWERS = st.lists(st.one_of(_WORDS, _VALUES), min_size=1, max_size=24).map(" ".join)


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in re.findall(r"\d+(?:[.,]\d+)*", text)}


@given(answer=_ANSWERS, step=st.integers(min_value=1, max_value=9))
def test_a_corrected_answer_says_no_number_that_neither_it_nor_a_result_gave(answer, step):
    messages = _turn(Z12, REFUND, BALANCE)
    told, _ = _checked(answer, messages, step=step)
    given_numbers = _numbers(answer) | _numbers(json.dumps([REFUND[2], BALANCE[2]]))
    assert _numbers(told) <= given_numbers


@given(answer=_ANSWERS, step=st.integers(min_value=1, max_value=9))
def test_how_the_answer_streams_does_not_change_what_is_said(answer, step):
    messages = _turn(Z12, REFUND, BALANCE)
    assert _checked(answer, messages, step=step) == _checked(answer, messages)


@given(answer=_ANSWERS)
def test_an_answer_with_no_correction_is_said_as_it_came(answer):
    messages = _turn(Z12, REFUND, BALANCE)
    told, corrected = _checked(answer, messages)
    if not corrected:
        assert told == answer


def test_only_a_number_and_the_words_after_it_are_held():
    check = ValueCheck(result_values(_turn(Z12, REFUND, BALANCE)), frozenset())
    assert check.push("The refund was paid on ") == "The refund was paid on"
    assert check.push("November 20") == " November"  # "20" waits for the words after it
    assert check.push(" and the") == " 20 and the"  # its clause ended: judged
    assert check.finish() == ""
