"""Masking card/account-like digit runs."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import redact, redact_entry
from ledger.entries import (
    AgentTextPlayed,
    Entry,
    ForkOpened,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallStarted,
    UserUtterance,
)
from ledger.redact import redact_json_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("card 4111 1111 1111 1111 please", "card [redacted ****1111] please"),
        ("card 4111111111111111.", "card [redacted ****1111]."),
        ("account 1234-5678-9012", "account [redacted ****9012]"),
        ("amex 3782 822463 10005", "amex [redacted ****0005]"),
        ("id 12345678", "id [redacted ****5678]"),
        ("ref ORD12345678", "ref ORD[redacted ****5678]"),
        ("19 digits 1234567890123456789", "19 digits [redacted ****6789]"),
        ("call 555-123-4567", "call [redacted ****4567]"),
        (
            "two cards 4111111111111111 and 5500 0000 0000 0004",
            "two cards [redacted ****1111] and [redacted ****0004]",
        ),
    ],
)
def test_card_and_account_numbers_are_masked_to_their_last_four_digits(
    text: str, expected: str
) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 1234567 costs $1,234.56",
        "on 2024-01-15 at 10:30",
        "on 15 01 2024",
        "pin 1234 and zip 90210",
        "tracking 123456789012345678901234",
        "phone (555) 123.4567",
        "no digits at all",
        "1234  5678",
    ],
)
def test_short_numbers_dates_and_other_separators_are_left_alone(text: str) -> None:
    assert redact(text) == text


@settings(max_examples=200)
@given(st.text(alphabet="0123456789 -abc.", max_size=60))
def test_no_masked_text_keeps_a_card_length_digit_run(text: str) -> None:
    masked = redact(text)

    for run in re.findall(r"[0-9]+(?:[ -][0-9]+)*", masked):
        groups = re.split(r"[ -]", run)
        digits = "".join(groups)
        if len(groups) == 1:
            assert not 8 <= len(digits) <= 19, (text, masked)
        else:
            assert len(digits) < 8 or any(len(g) < 3 for g in groups), (text, masked)
    assert redact(masked) == masked


def test_json_arguments_stay_valid_json_when_a_number_literal_is_masked() -> None:
    arguments = '{"account": 12345678, "amount": 12, "note": "card 4111 1111 1111 1111"}'

    masked = json.loads(redact_json_text(arguments))
    assert masked == {
        "account": "[redacted ****5678]",
        "amount": 12,
        "note": "card [redacted ****1111]",
    }


def test_redact_entry_masks_user_agent_and_tool_text_but_not_the_original() -> None:
    card = "4111 1111 1111 1111"
    entries: list[Entry] = [
        UserUtterance(turn_id=1, text=f"my card is {card}"),
        AgentTextPlayed(response_id="r", text=f"you said {card}"),
        ForkOpened(fork_id="f", transcript=f"my card is {card}"),
        ToolCallStarted(
            call_id="c",
            response_id="r",
            name="pay",
            arguments=json.dumps({"card": card}),
            kind="write",
        ),
        ToolCallResolved(call_id="c", result={"cards": [card, 7], "ok": True}),
        ToolCallFailed(call_id="c", error=f"declined {card}"),
    ]

    for entry in entries:
        masked = redact_entry(entry)
        dumped = json.dumps(masked.model_dump(mode="json"))
        assert "4111" not in dumped and "****1111" in dumped
        assert card in json.dumps(entry.model_dump(mode="json"))
