"""What the caller called a number, and whether a call's argument fits it (number_labels)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_agent.local_llm.number_labels import (
    PHONE_DIGITS,
    MisplacedNumber,
    allowed_digits,
    misplaced_number,
    said_numbers,
)


def _tool(name: str, **props: Any) -> dict[str, Any]:
    properties = {
        k: v if isinstance(v, dict) else {"type": "string", "description": v}
        for k, v in props.items()
    }
    parameters = {"type": "object", "properties": properties, "required": list(props)}
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


#: the phone profile's lookups, as their schemas describe their arguments
PHONE = [
    _tool("lookup_order", order_number="the order number exactly as the caller gave it"),
    _tool("lookup_customer", phone_number="the caller's phone number as they said it"),
    _tool("transfer_to_human", reason={"type": "string", "x-summary": "note"}),
]
#: the customer-service fixture's order and account tools
SERVICE = [
    _tool("get_order_status", order_id="the order number"),
    _tool("get_account_balance", account_number="the account number"),
]


def _label(text: str) -> list[tuple[str, set[str]]]:
    return [(n.digits, set(n.label)) for n in said_numbers(text)]


@pytest.mark.parametrize(
    ("said", "labels"),
    [
        ("Where's my order 58213?", [("58213", {"order"})]),
        ("Can you check order number 771?", [("771", {"order", "number"})]),
        # said in groups, 10 digits: how a phone number is said
        ("My number's 555 808 6261, what orders do I have?", [("5558086261", {"number", "phone"})]),
        ("My phone number is 555-838-9065.", [("5558389065", {"phone", "number"})]),
        # a number in a list, or a correction, is what the number before it was
        ("Where are my orders 3931 and 15482?", [("3931", {"order"}), ("15482", {"order"})]),
        ("Account 60917, no sorry, 60971.", [("60917", {"account"}), ("60971", {"account"})]),
        ("It's order 90959, I mean 90595.", [("90959", {"order"}), ("90595", {"order"})]),
        # a verb or a preposition is no label; a new sentence starts afresh
        ("Please check 4417.", [("4417", set())]),
        ("Order 4417. And 12 pm?", [("4417", {"order"}), ("12", set())]),
    ],
)
def test_a_number_is_labelled_with_the_words_the_caller_said_before_it(said, labels):
    assert _label(said) == labels


@pytest.mark.parametrize(
    ("said", "labels"),
    [
        # speech recognition may write a number in words: labelled as if in digits
        ("Check order forty-two please.", [("42", {"order"})]),
        ("The order number is nine two eight six zero.", [("92860", {"order", "number"})]),
        # said digit by digit, 10 digits: a phone number, as "555 808 6261" is
        (
            "My number is five five five, eight oh eight, six two six one.",
            [("5558086261", {"number", "phone"})],
        ),
        (
            "Account three oh oh one seven, no sorry, 30071.",
            [("30017", {"account"}), ("30071", {"account"})],
        ),
        # digits stay as said: "for" next to them is no 4, "one of" no number
        ("Can you check order 30418 for me?", [("30418", {"order"})]),
        ("Could you connect me to one of your colleagues?", []),
    ],
)
def test_a_number_said_in_words_is_labelled_as_one_said_in_digits(said, labels):
    assert _label(said) == labels


def test_a_phone_number_said_in_words_in_an_order_number_fits_the_phone_lookup():
    said = "My number's five five five eight oh eight six two six one, what orders do I have?"
    found = _misplaced("lookup_order", {"order_number": "5558086261"}, PHONE, said)
    assert found is not None and found.fits == (("lookup_customer", "phone_number"),)


def test_a_number_said_in_one_piece_is_not_taken_for_a_phone_number():
    assert _label("order 5558086261") == [("5558086261", {"order"})]


def _misplaced(name: str, arguments: dict, tools: list, said: str) -> MisplacedNumber | None:
    return misplaced_number(name, json.dumps(arguments), tools, said_numbers(said))


def test_a_phone_number_in_an_order_number_fits_the_phone_lookup():
    # bench y12 (session 11): the 1.5B looked up the order "555 808 6261"
    said = "My number's 555 808 6261, what orders do I have?"
    found = _misplaced("lookup_order", {"order_number": "555 808 6261"}, PHONE, said)
    assert found == MisplacedNumber(
        "order_number", "5558086261", (("lookup_customer", "phone_number"),)
    )
    assert _misplaced("lookup_customer", {"phone_number": "5558086261"}, PHONE, said) is None


def test_an_account_number_in_an_order_argument_fits_the_account_tool():
    said = "Account 60917, no sorry, 60971. What do I owe?"
    found = _misplaced("get_order_status", {"order_id": "60971"}, SERVICE, said)
    assert found is not None and found.fits == (("get_account_balance", "account_number"),)


@pytest.mark.parametrize(
    ("name", "arguments", "said"),
    [
        ("lookup_order", {"order_number": "58213"}, "Where's my order 58213?"),
        # the caller called it an order: a tie with its shape keeps the model's choice
        ("lookup_order", {"order_number": "5558086261"}, "Order 555 808 6261 please."),
        # a number with no label fits wherever the model put it
        ("get_order_status", {"order_id": "4417"}, "What about 4417?"),
        # not the caller's number: grounding's part, not this check's
        ("lookup_order", {"order_number": "12345"}, "Where's my order?"),
        # an argument that is no number as written (a time) is not read
        ("lookup_order", {"order_number": "order 58213"}, "Where's my order 58213?"),
    ],
)
def test_a_number_where_its_label_or_no_label_puts_it_is_not_misplaced(name, arguments, said):
    assert _misplaced(name, arguments, [*PHONE, *SERVICE], said) is None


@pytest.mark.parametrize(
    ("prop", "allowed"),
    [
        ({"pattern": r"^\d{5}$"}, range(5, 6)),
        ({"pattern": r"^[0-9]{4,6}$"}, range(4, 7)),
        ({"description": "the 5-digit order number"}, range(5, 6)),
        ({"description": "the six digit PIN"}, range(6, 7)),
        ({"description": "the caller's mobile number"}, PHONE_DIGITS),
        ({"description": "the order number"}, None),
    ],
)
def test_an_argument_says_how_many_digits_it_takes(prop, allowed):
    assert allowed_digits("value", prop) == allowed


def test_a_number_an_argument_cannot_take_is_misplaced_even_without_a_better_tool():
    tools = [_tool("schedule_callback", phone="the caller's phone number", time="when")]
    found = _misplaced(
        "schedule_callback", {"phone": "4417", "time": "3 pm"}, tools, "4417 at 3 pm"
    )
    assert found == MisplacedNumber("phone", "4417", ())
    with_orders = [*tools, SERVICE[0]]
    said = "Call me about order 4417 at 3 pm"
    found = _misplaced("schedule_callback", {"phone": "4417", "time": "3 pm"}, with_orders, said)
    assert found is not None and found.fits == (("get_order_status", "order_id"),)


@given(
    label=st.sampled_from(["order", "order number", "account", "account number"]),
    digits=st.from_regex(r"[1-9][0-9]{2,5}", fullmatch=True),
)
def test_a_number_labelled_with_its_arguments_own_words_is_never_moved(label, digits):
    name, argument = (
        ("get_order_status", "order_id")
        if label.startswith("order")
        else ("get_account_balance", "account_number")
    )
    said = f"Hi, {label} {digits}, what's happening with it?"
    assert _misplaced(name, {argument: digits}, SERVICE, said) is None


def test_each_number_carries_the_callers_words_between_its_neighbours():
    said = said_numbers(
        "Has the refund for order 8427 gone through, and what's the balance on account 31580?"
    )
    assert [(n.digits, n.words) for n in said] == [
        ("8427", "Has the refund for order 8427 gone through, and what's the balance on account "),
        ("31580", " gone through, and what's the balance on account 31580?"),
    ]
