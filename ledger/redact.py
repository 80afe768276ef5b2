"""Masking card/account-like digit runs before a ledger leaves memory.

What counts as a run (ASCII digits only):
- a single group of 8 to 19 digits: `12345678`, `4111111111111111`;
- or a chain of groups of at least 3 digits each, joined by exactly one space
  or dash, 8 digits or more in total: `4111 1111 1111 1111`, `1234-5678-9012`,
  `3782 822463 10005`. A chain longer than 19 digits is masked whole: we
  cannot tell where one spoken number ends and the next begins, so we err on
  the private side.
A run becomes `[redacted ****1111]` (its last four digits kept).

Left alone: anything shorter than 8 digits (amounts, times, short order
numbers), groups of 1-2 digits (so dates like `2024-01-15` and `15 01 2024`
stay readable), groups joined by other separators (`.`, `/`, `(`, `,`, two
spaces), and a single group longer than 19 digits (a tracking number, not a
card). Dashed phone numbers with 3-digit groups (`555-123-4567`) have 10
digits and *are* masked: the cautious side. Digits glued to letters count
(`ORD12345678` -> `ORD[redacted ****5678]`).
"""

from __future__ import annotations

import json
import re

from pydantic import JsonValue

__all__ = ["MAX_DIGITS", "MIN_DIGITS", "redact", "redact_json_text", "redact_json_value"]

MIN_DIGITS = 8
"""Shortest digit run that is masked (digits): shorter numbers are dates, amounts, ids."""

MAX_DIGITS = 19
"""Longest digit run that is masked (digits): the longest card number (ISO/IEC 7812)."""

# Smallest group that may be chained with a neighbour (digits); 1-2 digit groups
# are day/month/year pieces or counts, not pieces of an account number.
_MIN_CHAINED_GROUP = 3

_GROUP = re.compile(r"[0-9]+")


def _mask(digits: str) -> str:
    return f"[redacted ****{digits[-4:]}]"


def redact(text: str) -> str:
    """Return `text` with each card/account-like digit run replaced by a mask (see module doc)."""
    groups = list(_GROUP.finditer(text))
    if not groups:
        return text
    chains: list[list[re.Match[str]]] = [[groups[0]]]
    for previous, group in zip(groups, groups[1:], strict=False):
        separator = text[previous.end() : group.start()]
        if (
            separator in (" ", "-")
            and len(previous.group()) >= _MIN_CHAINED_GROUP
            and len(group.group()) >= _MIN_CHAINED_GROUP
        ):
            chains[-1].append(group)
        else:
            chains.append([group])
    pieces: list[str] = []
    cursor = 0
    for chain in chains:
        digits = "".join(group.group() for group in chain)
        if len(digits) >= MIN_DIGITS and (len(chain) > 1 or len(digits) <= MAX_DIGITS):
            pieces.append(text[cursor : chain[0].start()])
            pieces.append(_mask(digits))
            cursor = chain[-1].end()
    pieces.append(text[cursor:])
    return "".join(pieces)


def redact_json_value(value: JsonValue) -> JsonValue:
    """Redact every string inside a JSON value (recursively); keys and numbers are kept."""
    match value:
        case str():
            return redact(value)
        case list():
            return [redact_json_value(item) for item in value]
        case dict():
            return {key: redact_json_value(item) for key, item in value.items()}
        case _:
            return value


def _redact_json_numbers(value: JsonValue) -> JsonValue:
    """Like `redact_json_value`, but a number that looks like an account becomes a mask string."""
    match value:
        case bool() | None:
            return value
        case int() | float():
            text = json.dumps(value)
            masked = redact(text)
            return value if masked == text else masked
        case str():
            return redact(value)
        case list():
            return [_redact_json_numbers(item) for item in value]
        case dict():
            return {key: _redact_json_numbers(item) for key, item in value.items()}
        case _:
            return value


def redact_json_text(text: str) -> str:
    """Redact raw JSON text (tool arguments) without breaking it.

    The text is redacted as plain text; if that turns valid JSON into invalid
    JSON (a masked number literal), the value is redacted structurally
    instead (such numbers become mask strings) and re-serialized.
    """
    masked = redact(text)
    if masked == text:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return masked  # it was never valid JSON: plain-text masking is all we can do
    try:
        json.loads(masked)
    except ValueError:
        return json.dumps(_redact_json_numbers(value), ensure_ascii=False)
    return masked
