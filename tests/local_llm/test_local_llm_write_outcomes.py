"""A change the tools made, told as done (voice_agent.local_llm.write_outcomes)."""

from __future__ import annotations

import json

import pytest

from voice_agent.guidance import guidance
from voice_agent.local_llm.write_outcomes import untold_outcomes


def _after(name: str, arguments: dict, result: dict, *, status: str = "resolved") -> list[dict]:
    call = {"id": "c1", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}  # fmt: skip
    return [
        {"role": "user", "content": "Can you do that for me?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1",
         "content": json.dumps({"status": status, "result": result})},
    ]  # fmt: skip


CANCELLED = _after("cancel_order", {"order_id": "4096"},
                   {"order_id": "4096", "cancelled": True, "confirmation": "X-4096"})  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "added"),
    [
        # bench x13 (session 11): a promise of what was done
        ("Sure, I can cancel order 4096 for you.", ["Order 4096 has been cancelled."]),
        ("I'll cancel that for you now.", ["Order 4096 has been cancelled."]),
        ("X-4096", ["Order 4096 has been cancelled."]),  # nothing of the change said
        ("Would you like me to cancel it?", ["Order 4096 has been cancelled."]),
        ("Order 4096 has been cancelled.", []),
        ("I've cancelled order 4096; your confirmation is X-4096.", []),
        ("Your cancellation went through.", []),
    ],
)
def test_a_change_made_and_not_told_as_done_is_told(answer, added):
    assert untold_outcomes(answer, CANCELLED) == added


def test_a_change_told_done_in_other_words_is_told():
    changed = _after("change_delivery_address", {"order_number": "7781", "new_address": "12 Elm"},
                     {"changed": True, "order_number": "7781", "new_address": "12 Elm"})  # fmt: skip
    assert untold_outcomes("The address for order 7781 has been updated to 12 Elm.", changed) == []
    assert untold_outcomes("I can update the address for you.", changed) == [
        "The delivery address for order 7781 has been changed."
    ]


def test_a_change_that_did_not_happen_is_never_left_told_as_done():
    refused = _after("cancel_order", {"order_id": "4096"},
                     {"cancelled": False, "reason": "the order has already shipped"})  # fmt: skip
    assert untold_outcomes("Order 4096 has been cancelled.", refused) == [
        "Order 4096 has not been cancelled."
    ]
    said_why = "Sorry, order 4096 can't be cancelled: it has already shipped."
    assert untold_outcomes(said_why, refused) == []
    assert untold_outcomes("It has already shipped.", refused) == []


def test_a_promise_of_what_a_call_without_a_flag_did_is_followed_by_its_outcome():
    booked = _after("schedule_callback", {"phone": "617 555 0143", "time": "Friday 10 am"},
                    {"confirmation": "CB-8700", "time": "Friday 10 am"})  # fmt: skip
    assert untold_outcomes("I can schedule a call back for you on Friday at 10 am.", booked) == [
        "Your callback has been scheduled."
    ]
    assert untold_outcomes("I have scheduled a call back on Friday at 10 am.", booked) == []


def test_lookups_guidance_failures_and_pending_calls_tell_no_outcome():
    looked_up = _after("get_order_status", {"order_id": "3815"}, {"status": "shipped"})
    assert untold_outcomes("I can get that for you.", looked_up) == []
    found = _after(
        "lookup_customer", {"phone_number": "5551472099"}, {"found": True, "name": "Hana"}
    )
    assert untold_outcomes("Hi Hana.", found) == []
    ended = _after("end_call", {}, guidance("the call ends after your goodbye", ending=True))
    assert untold_outcomes("Goodbye!", ended) == []
    failed = _after("schedule_callback", {"phone": "1"}, {"error": "bad phone"})
    assert untold_outcomes("I can schedule that once I have your number.", failed) == []
    pending = _after("cancel_order", {"order_id": "4096"}, {"cancelled": True}, status="pending")
    assert untold_outcomes("I can cancel it.", pending) == []


def test_only_this_turns_outcomes_are_told():
    told = [*CANCELLED, {"role": "assistant", "content": "Order 4096 is cancelled."},
            {"role": "user", "content": "Thanks. Can you cancel another one?"}]  # fmt: skip
    assert untold_outcomes("Sure, I can cancel another order for you.", told) == []


def test_an_outcome_names_what_was_changed_as_a_person_would():
    # session 12 added "Order 7781 is changed." and "The callback is scheduled.": the
    # flag's word after the order, and a call back with no owner
    moved = _after("update_delivery_address", {"order_id": "7781", "address": "12 Elm Street"},
                   {"order_id": "7781", "address_changed": False, "reason": "it has shipped"})  # fmt: skip
    assert untold_outcomes("The address has been changed.", moved) == [
        "The delivery address for order 7781 has not been changed."
    ]
    refunded = _after("refund_order", {"order_number": "5521", "reason": "broken"},
                      {"refunded": True, "amount": "$12.00"})  # fmt: skip
    assert untold_outcomes("I can refund that for you.", refunded) == [
        "Order 5521 has been refunded."
    ]
