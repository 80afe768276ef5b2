"""The argument watch: a call's decoding stops at a number nobody said (notool9, session 9)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voice_agent.local_llm.argument_watch import ArgumentWatch
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
