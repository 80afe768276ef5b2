"""The argument watch: a call's decoding stops at a number nobody said (notool9, session 9)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_agent.local_llm.argument_watch import ArgumentWatch, FurtherCalls, FurtherCallStop
from voice_agent.local_llm.grounding import ungrounded_arguments

ORDER = {
    "type": "object",
    "properties": {"order_number": {"type": "string", "x-spoken-number": True}},
    "required": ["order_number"],
}
CALLBACK = {
    "type": "object",
    "properties": {"phone": {"type": "string"}, "time": {"type": "string"}},
    "required": ["phone", "time"],
}
REFUND = {
    "type": "object",
    "properties": {
        "order_number": {"type": "string"},
        "reason": {"type": "string", "x-summary": True},
    },
    "required": ["order_number", "reason"],
}
TICKET = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "x-summary": True},
        "order_number": {"type": "string"},
    },
    "required": ["summary"],
}
KIND = {
    "type": "object",
    "properties": {"order_number": {"type": "string", "enum": ["12345", "1"]}},
}


def _watch(schema, said, arguments, pieces=1):
    """Feed `arguments` `pieces` characters at a time; (argument stopped at, text read, written)."""
    watch = ArgumentWatch(schema, [said])
    for end in range(pieces, len(arguments) + pieces, pieces):
        stopped = watch.push(arguments[end - pieces : end])
        if stopped is not None:
            return stopped, arguments[:end], watch.written
    return None, arguments, watch.written


@pytest.mark.parametrize(
    ("schema", "said", "arguments", "stopped", "read", "written"),
    [
        # e22 (session 8): an order nobody named; a 24-hour clock's "1", "12" are waited for
        (ORDER, "Could you order me a taxi to the station?", '{"order_number": "12345"}',
         "order_number", '{"order_number": "12', "{}"),
        (ORDER, "What's the latest on order 47363?", '{"order_number": "47363"}', None, None, None),
        (ORDER, "It's 8080, hold on, no, 8008.", '{"order_number": "8080"}', None, None, None),
        (ORDER, "Order four four one seven.", '{"order_number": "4417"}', None, None, None),
        # the phone comes before the time, which may be the caller's: not stopped there
        (CALLBACK, "Can someone call me back?", '{"phone": "123-456-7890", "time": "6 pm"}',
         "time", '{"phone": "123-456-7890", "time": "6', '{"phone": "123-456-7890"}'),
        (CALLBACK, "Ring 555 201 7788 at 6 pm", '{"phone": "555-201-7788", "time": "18:00"}',
         None, None, None),
        # after the order number only the model's summary: stopped at the order
        (REFUND, "I want a refund, the lamp is broken.", '{"order_number": "4471", "reason": "x"}',
         "order_number", '{"order_number": "4', "{}"),
        # an optional order number may follow the summary: its number is not judged
        (TICKET, "My lamp is broken.", '{"summary": "lamp 5 broke", "order_number": ""}',
         None, None, None),
        (KIND, "Anything.", '{"order_number": "12345"}', None, None, None),  # an enum
    ],
)  # fmt: skip
@pytest.mark.parametrize("pieces", [1, 3])
def test_the_watch_stops_at_a_number_nobody_said_when_nothing_after_it_can_matter(
    schema, said, arguments, stopped, read, written, pieces
):
    got, got_read, got_written = _watch(schema, said, arguments, pieces)
    assert got == stopped
    if stopped is not None:
        assert got_read.startswith(read) and len(got_read) < len(read) + pieces
        assert got_written == written


_DIGITS = st.text("0123456789", min_size=1, max_size=8)


@given(said=st.lists(_DIGITS, max_size=3), value=_DIGITS, separator=st.sampled_from(["", " ", "-"]))
def test_a_value_the_watch_stops_is_never_one_the_grounding_check_would_send(
    said, value, separator
):
    # The watch is the grounding check read early: whatever the model would have
    # written after the stop, that value could not be grounded.
    caller = "My numbers are " + ", ".join(said) + "."
    written = separator.join([value[: len(value) // 2], value[len(value) // 2 :]]).strip(" -")
    arguments = json.dumps({"order_number": written})
    stopped, read, _ = _watch(ORDER, caller, arguments)
    if stopped is not None:
        assert ungrounded_arguments(arguments, ORDER, [caller]) == ["order_number"]


CUSTOMER = {
    "type": "object",
    "properties": {"phone_number": {"type": "string", "x-spoken-number": True}},
    "required": ["phone_number"],
}
FURTHER_SCHEMAS = {
    "lookup_order": ORDER,
    "lookup_customer": CUSTOMER,
    "schedule_callback": CALLBACK,
}


def _further(said: str, first: tuple[str, dict], then: list[tuple[str, dict]], cuts: list[int]):
    """Feed a call step's text (the first call's arguments, then `then`) cut at `cuts`;
    the first stop, and the text read before the piece it came in."""
    text = json.dumps(first[1]) + "}\n</tool_call>"
    for name, arguments in then:
        text += f'\n<tool_call>\n{{"name": "{name}", "arguments": {json.dumps(arguments)}}}\n</tool_call>'
    from voice_agent.local_llm.grounding import numbers_in

    watch = FurtherCalls(FURTHER_SCHEMAS, [said], numbers_in(said))
    calls = [(first[0], json.dumps(first[1]))]
    # digits are tokens of their own (Qwen): a piece ends after each
    digits = {i + 1 for i, ch in enumerate(text) if ch.isdigit()}
    bounds = sorted({0, len(text), *digits, *(c % (len(text) + 1) for c in cuts)})
    for a, b in zip(bounds, bounds[1:], strict=False):
        stop = watch.push(text[a:b], calls)
        if stop is not None:
            return stop, text[:a]
    return None, text


CASES = [
    # m16 (session 11): the same lookup again
    ("How much did I pay for order 90875?", ("lookup_order", {"order_number": "90875"}),
     [("lookup_order", {"order_number": "90875"})], "repeat"),
    # m17: a lookup on an order nobody named after the caller's own lookup
    ("My number is 555 838 9065, can you pull up my account?",
     ("lookup_customer", {"phone_number": "555 838 9065"}),
     [("lookup_order", {"order_number": "12345"})], "invented"),
    # two orders said: the second lookup goes on
    ("Where are my orders 3931 and 15482?", ("lookup_order", {"order_number": "3931"}),
     [("lookup_order", {"order_number": "15482"})], None),
    # a call-back whose time nobody said, after a lookup (its phone was said)
    ("Order 4410, and my number is 555 201 7788.", ("lookup_order", {"order_number": "4410"}),
     [("schedule_callback", {"phone": "555 201 7788", "time": "9 pm"})], "invented"),
]  # fmt: skip


@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30))
def test_a_further_call_is_stopped_the_same_however_the_text_comes(cuts):
    for said, first, then, why in CASES:
        stop, before = _further(said, first, then, cuts)
        assert (stop.why if stop else None) == why, said
        if why == "repeat":  # in the piece that completes its name
            assert isinstance(stop, FurtherCallStop) and stop.name == "lookup_order"
            assert '"name": "lookup_order"' not in before
        elif why == "invented":  # no later than the piece that ends the made-up number
            assert stop is not None and stop.argument in ("order_number", "time")
            assert "12345" not in before and "9 pm" not in before
