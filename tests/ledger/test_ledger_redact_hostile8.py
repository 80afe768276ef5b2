"""Numbers that are not secrets stay readable; cards are still masked in every form (hostile8).

Before, a log line about the session file lost its name (``…/[redacted ****1126]T150718Z-
f01527.jsonl``: the compact timestamp read as a digit run) and an error's offsets were masked
("can't decode bytes in position [redacted ****1345]").
"""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_redact import STYLES, _spoken

from ledger import redact_secrets


@pytest.mark.parametrize(
    "text",
    [
        "cannot write the session ledger to /srv/sessions/20261126T150718Z-f01527.jsonl",
        "session 20261126T150718Z-f01527 ended",
        "at 20261126T150718.123456Z",
        "'utf-8' codec can't decode bytes in position 1344-1345: invalid continuation byte",
        "can't decode bytes in positions 10485760-10485761",
        "offset 12345678\u201312345690 is past the end",
    ],
)
def test_a_compact_timestamp_and_a_range_of_offsets_stay_readable(text: str) -> None:
    assert redact_secrets(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("position 4111 1111 1111 1111", "position [redacted ****1111]"),
        ("position 41111111", "position [redacted ****1111]"),  # not a range
        ("position 5555-1111", "position [redacted ****1111]"),  # a range goes up
        ("my line 5551-2345", "my line [redacted ****2345]"),  # not a word for offsets
    ],
)
def test_what_only_looks_like_an_offset_is_still_masked(text: str, expected: str) -> None:
    assert redact_secrets(text) == expected


@settings(max_examples=200, deadline=None)  # a loaded machine must not fail it
@given(
    digits=st.text(alphabet="0123456789", min_size=12, max_size=19),
    style=st.sampled_from(STYLES),
    before=st.sampled_from(
        ["position ", "bytes ", "in position ", "20261126T150718Z ", "session 20261126T150718Z: "]
    ),
)
def test_a_card_after_an_offset_word_or_a_timestamp_is_masked_in_any_form(
    digits: str, style: str, before: str
) -> None:
    text = before + _spoken(digits, style)
    masked = redact_secrets(text)
    assert f"****{digits[-4:]}]" in masked, (text, masked)
    assert digits[:8] not in re.sub(r"\D", "", masked.replace(f"****{digits[-4:]}", ""))
    assert masked.startswith(before)


def test_the_cli_log_line_about_the_session_file_keeps_its_name() -> None:
    from voice_agent.cli import RedactingFormatter

    record = logging.LogRecord(
        "ledger.persist", logging.ERROR, __file__, 1,
        "cannot write the session ledger to %s (%s)",
        ("/srv/sessions/20261126T150718Z-f01527.jsonl", "No space left on device"), None,
    )  # fmt: skip
    line = RedactingFormatter("%(message)s").format(record)
    assert "20261126T150718Z-f01527.jsonl" in line and "redacted" not in line
