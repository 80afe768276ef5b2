"""A count an answer says that its results contradict (`spoken_counts`), read without the model."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_agent.local_llm.spoken_counts import CountCheck, result_counts

#: m17 (recheck10): lookup_customer's result lists four recent orders as text.
ACCOUNT = {
    "found": True,
    "name": "Dana Ortiz",
    "recent_orders": "41882 (shipped), 55103 (delivered), 60211 (processing), 70001 (shipped)",
}


def _turn(*results: dict) -> list[dict]:
    messages: list[dict] = [{"role": "user", "content": "Can you pull up my account?"}]
    for i, result in enumerate(results):
        call = {"id": f"c{i}", "type": "function",
                "function": {"name": "lookup", "arguments": json.dumps({"key": str(i)})}}  # fmt: skip
        messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}",
                         "content": json.dumps({"status": "resolved", "result": result})})  # fmt: skip
    return messages


def _checked(text: str, *results: dict, step: int | None = None) -> tuple[str, list]:
    check = CountCheck(result_counts(_turn(*results)))
    step = step or len(text)
    out = "".join(check.push(text[i : i + step]) for i in range(0, len(text), step))
    return out + check.finish(), check.corrected


def test_what_results_count_a_list_its_entries_and_quantities_and_a_count_field():
    counts = result_counts(
        _turn(
            ACCOUNT,
            {"items": "2 mugs, a teapot", "total": "$1,204.50", "status": "shipped"},
            {"boxes": [{"id": 1}, {"id": 2}], "order_count": 7},
        )
    )
    assert counts == {
        "order": [{4}, {7}],
        "item": [{2, 3}],
        "mug": [{2}],
        "teapot": [{1}],
        "box": [{2}],
    }


@pytest.mark.parametrize(
    ("said", "told"),
    [
        # m17: the count the list contradicts is corrected before it is said
        ("They have three recent orders: 41882, 55103, 60211 and 70001.",
         "They have four recent orders: 41882, 55103, 60211 and 70001."),
        ("Three orders are on file.", "Four orders are on file."),
        ("You have 3 orders.", "You have 4 orders."),
        ("You have one order.", "You have four orders."),
        # right, or not a count of what the results count: said as is
        ("They have four recent orders.", "They have four recent orders."),
        ("One of your orders has shipped.", "One of your orders has shipped."),
        ("Order 41882 has shipped, and the one after it too.",
         "Order 41882 has shipped, and the one after it too."),
        ("Give me one moment.", "Give me one moment."),
        ("Dana has two email addresses.", "Dana has two email addresses."),
    ],
)  # fmt: skip
def test_a_count_the_results_contradict_is_corrected(said, told):
    for step in (None, 1, 4):
        assert _checked(said, ACCOUNT, step=step)[0] == told


def test_a_count_of_items_may_be_the_entries_or_the_quantities():
    order = {"items": "2 mugs, a teapot"}
    assert _checked("You ordered three items.", order)[0] == "You ordered three items."
    assert _checked("You ordered two items.", order)[0] == "You ordered two items."
    assert _checked("You ordered five items.", order)[0] == "You ordered two items."


def test_a_count_two_results_give_differently_is_left_out():
    other = {"recent_orders": "1 (shipped), 2 (shipped)"}
    said, corrected = _checked("Three orders are on file.", ACCOUNT, other)
    assert said == "Orders are on file."
    assert corrected == [("Three orders", "Orders")]


def test_nothing_is_held_when_the_results_count_nothing():
    check = CountCheck(result_counts(_turn({"status": "shipped"})))
    assert check.push("It has three") == "It has three"


@given(st.lists(st.integers(min_value=1, max_value=12), max_size=8))
def test_any_split_of_the_answer_says_the_same(cuts):
    said = "Dana has three recent orders: 41882 (shipped), one more, and 2 orders."
    points = sorted({min(c * 5, len(said)) for c in cuts} | {0, len(said)})
    check = CountCheck(result_counts(_turn(ACCOUNT)))
    out = "".join(check.push(said[a:b]) for a, b in zip(points, points[1:], strict=False))
    assert out + check.finish() == (
        "Dana has four recent orders: 41882 (shipped), one more, and 4 orders."
    )


#: o15 (recheck14): two orders whose items pair quantities with things.
BOOKSHELF = {"order_number": "27562", "items": "2 bookshelf", "total": "$239.98"}
BLANKETS = {"order_number": "58206", "items": "2 toaster, 2 wool blanket, 2 yoga mat"}
O15 = (
    "Order 27562 has 3 bookshelf items, totaling $239.98. Order 58206 has 2 toaster, "
    "2 wool blanket, and 3 yoga mat items."
)


def test_a_text_value_counts_each_thing_it_pairs_with_a_quantity():
    counts = result_counts(
        _turn({"items": "2 wool blanket, a yoga mat, 3 x coffee mug, a pair of shoes"})
    )
    assert counts["blanket"] == [{2}]
    assert counts["mat"] == [{1}]
    assert counts["mug"] == [{3}]
    assert counts["pair"] == [{1}]  # the naming words stop at "of"
    assert "shoe" not in counts


def test_an_address_a_sentence_or_a_time_counts_nothing():
    counts = result_counts(
        _turn({"ship_to": "12 Lake Drive, Madison", "note": "Not done yet.", "time": "10 am"})
    )
    assert counts == {}
    assert _checked("It is at 9 am.", {"time": "10 am"})[0] == "It is at 9 am."


def test_a_quantity_said_of_a_thing_a_result_counts_is_the_results():
    said, corrected = _checked(O15, BOOKSHELF, BLANKETS)
    assert said == O15.replace("3 bookshelf", "2 bookshelf").replace("3 yoga", "2 yoga")
    assert corrected == [("3 bookshelf", "2 bookshelf"), ("3 yoga mat", "2 yoga mat")]


@pytest.mark.parametrize(
    ("said", "told"),
    [
        # a thing the result has one of is not said to be two or three
        ("It has 2 yoga mats.", "It has 1 yoga mat."),
        ("It has three bookshelves and a yoga mat.", "It has two bookshelves and a yoga mat."),
        ("It has one bookshelf.", "It has two bookshelves."),
        # right, or not said as a count of the thing: as said
        ("It has 2 bookshelves and a yoga mat.", "It has 2 bookshelves and a yoga mat."),
        ("One of the bookshelves has shipped.", "One of the bookshelves has shipped."),
        ("It comes on December 2, with the yoga mat.", "It comes on December 2, with the yoga mat."),
        ("It has 3 items.", "It has 3 items."),  # the items as the list counts them
    ],
)  # fmt: skip
def test_a_quantity_the_result_contradicts_is_corrected_in_the_words_agreeing(said, told):
    order = {"items": "2 bookshelf, a yoga mat"}
    for step in (None, 1, 3):
        assert _checked(said, order, step=step)[0] == told


def test_a_thing_two_results_count_differently_takes_either_quantity():
    other = {"order_number": "1", "items": "a bookshelf"}
    assert _checked("It has 1 bookshelf.", BOOKSHELF, other)[0] == "It has 1 bookshelf."
    assert _checked("It has 2 bookshelf.", BOOKSHELF, other)[0] == "It has 2 bookshelf."
    assert _checked("It has 3 bookshelf.", BOOKSHELF, other)[0] == "It has bookshelf."


@given(st.lists(st.integers(min_value=0, max_value=len(O15)), max_size=12))
def test_any_split_of_an_answer_gives_the_same_quantities(cuts):
    points = sorted({*cuts, 0, len(O15)})
    check = CountCheck(result_counts(_turn(BOOKSHELF, BLANKETS)))
    out = "".join(check.push(O15[a:b]) for a, b in zip(points, points[1:], strict=False))
    assert out + check.finish() == _checked(O15, BOOKSHELF, BLANKETS)[0]
    assert check.corrected == [("3 bookshelf", "2 bookshelf"), ("3 yoga mat", "2 yoga mat")]


def test_a_number_whose_window_a_word_ends_goes_out_without_waiting():
    check = CountCheck(result_counts(_turn(BOOKSHELF)))
    assert check.push("Order 27562 is ") == "Order 27562 is "  # "is" ends what it counts
    assert check.push("due with 3 ") == "due with "  # "3" waits for the word it counts
    assert check.push("bookshelf items.") + check.finish() == "2 bookshelf items."
