"""Masking card/account-like digit runs."""

from __future__ import annotations

import json
import re
import unicodedata

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
        ("two spaces 1234  5678", "two spaces [redacted ****5678]"),
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
    ],
)
def test_short_numbers_dates_and_other_separators_are_left_alone(text: str) -> None:
    assert redact(text) == text


@settings(max_examples=200, deadline=None)  # a loaded machine must not fail it
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


# -- every form a recogniser or a tool writes a card in ---------------------------------

_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _spoken(digits: str, style: str) -> str:
    """`digits` written the way an ASR (or a tool) might write them."""
    if style == "plain":
        return digits
    if style == "groups4":
        return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    if style == "dashes":
        return "-".join(digits[i : i + 4] for i in range(0, len(digits), 4))
    if style == "whisper_commas":  # 4,111,111,111,111,111
        head = len(digits) % 3 or 3
        parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
        return ",".join(parts)
    if style == "dots":
        head = len(digits) % 3 or 3
        parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
        return ".".join(parts)
    if style == "one_by_one":
        return " ".join(digits)
    if style == "one_by_one_commas":
        return ", ".join(digits)
    if style == "words":
        return " ".join(_WORDS[int(d)] for d in digits)
    if style == "words_commas":
        return ", ".join(_WORDS[int(d)] for d in digits)
    if style == "words_oh":
        return " ".join("oh" if d == "0" else _WORDS[int(d)] for d in digits)
    raise AssertionError(style)


STYLES = [
    "plain",
    "groups4",
    "dashes",
    "whisper_commas",
    "dots",
    "one_by_one",
    "one_by_one_commas",
    "words",
    "words_commas",
    "words_oh",
]


@settings(max_examples=300, deadline=None)  # a loaded machine must not fail it
@given(
    digits=st.text(alphabet="0123456789", min_size=12, max_size=19),
    style=st.sampled_from(STYLES),
    before=st.sampled_from(["", "my card is ", "It's ", "number: "]),
    after=st.sampled_from(["", ".", " please", ", thanks", "?"]),
)
def test_a_card_in_any_written_or_spoken_form_is_masked_to_its_last_four(
    digits: str, style: str, before: str, after: str
) -> None:
    text = before + _spoken(digits, style) + after
    masked = redact(text)
    assert f"****{digits[-4:]}]" in masked, (text, masked)
    # nothing of the middle of the number survives, in digits or in words
    assert digits[:8] not in re.sub(r"\D", "", masked.replace(f"****{digits[-4:]}", ""))
    assert masked.startswith(before) and masked.endswith(after)
    assert redact(masked) == masked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Whisper: 4,111,111,111,111,111.", "Whisper: [redacted ****1111]."),
        (
            "forty one, eleven, eleven, eleven, double one, eleven, eleven, eleven",
            "[redacted ****1111]",
        ),
        ("it's triple five, one two three, four five six seven", "it's [redacted ****4567]"),
    ],
)
def test_spoken_and_grouped_forms(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I want one coffee and two teas",
        "between ten and eleven tomorrow",
        "on 2024-01-15, order 1234567",
        "the 3rd of May 2024",
        "$1,234.56 for 2 items",
        "call_00000002: same write as call_00000001 (call_00000001-result)",
    ],
)
def test_ordinary_speech_with_a_few_numbers_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_account_numbers_returned_as_json_numbers_are_masked_in_the_file() -> None:
    entry = ToolCallResolved(
        call_id="call_00000001", result={"account": 12345678901, "balance": 250.5, "n": 3}
    )
    masked = redact_entry(entry)
    assert isinstance(masked, ToolCallResolved)
    assert masked.result == {"account": "[redacted ****8901]", "balance": 250.5, "n": 3}
    assert masked.call_id == "call_00000001"  # ids are not private


def test_every_free_text_field_is_masked_notes_errors_reasons_and_metadata() -> None:
    from ledger.entries import (
        LlmResponseFinished,
        Note,
        SessionEnded,
        SessionStarted,
        ToolCallCancelled,
    )

    card = "4111 1111 1111 1111"
    entries: list[Entry] = [
        Note(text=f"preemptive generation on 'my card is {card}' dropped", level="warning"),
        Note(text=f"LLM request r3 failed: 400 {{'error': 'bad input: {card}'}}", level="error"),
        LlmResponseFinished(response_id="r", finish_reason="error", error=f"echo {card}"),
        ToolCallCancelled(call_id="c", reason=f"user said {card}"),
        SessionEnded(reason=f"hang up after {card}"),
        SessionStarted(
            session_id="s",
            started_at="2026-01-01T00:00:00",
            meta={
                "endpoint": "https://bob:hunter2@llm.example/v1?api-key=sk-123",
                "from": "+15551234567",
            },
        ),
    ]
    for entry in entries:
        dumped = json.dumps(redact_entry(entry).model_dump(mode="json"))
        assert "4111 1111" not in dumped and "hunter2" not in dumped and "sk-123" not in dumped
        assert "5551234567" not in dumped


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pa55@api.example.com/v1", "https://***@api.example.com/v1"),
        (
            "http://127.0.0.1:8080/v1?api-key=abc123&model=x",
            "http://127.0.0.1:8080/v1?api-key=***&model=x",
        ),
        (
            "https://x.openai.azure.com/openai?api_key=k&token=t",
            "https://x.openai.azure.com/openai?api_key=***&token=***",
        ),
        ("https://api.example.com/v1", "https://api.example.com/v1"),
    ],
)
def test_secrets_in_urls_are_masked(url: str, expected: str) -> None:
    from ledger import mask_url_secrets

    assert mask_url_secrets(url) == expected


# -- digits in other scripts, and a number split by a word ------------------------------

# Unicode decimal digits an ASR or a tool may write instead of ASCII ones (the zero of
# each script; its digits follow it): fullwidth, Arabic-Indic, Extended Arabic-Indic,
# Devanagari, Bengali, Thai, mathematical bold.
_ZEROS = ["\uff10", "\u0660", "\u06f0", "\u0966", "\u09e6", "\u0e50", "\U0001d7ce"]


def _in_script(digits: str, zero: str) -> str:
    return "".join(chr(ord(zero) + int(d)) for d in digits)


def _readable_digits(text: str) -> str:
    """Every digit a reader can recover from `text`: decimal digits of any script, and
    digit words ("four", "oh"), as ASCII."""
    words = {w: str(i) for i, w in enumerate(_WORDS)} | {"oh": "0"}
    return "".join(
        words.get(token, "") if token.isalpha() else str(unicodedata.decimal(token))
        for token in re.findall(r"\d|[^\W\d_]+", text.lower())
    )


@settings(max_examples=200, deadline=None)  # a loaded machine must not fail it
@given(
    digits=st.text(alphabet="0123456789", min_size=12, max_size=19),
    zero=st.sampled_from(_ZEROS),
    style=st.sampled_from(["plain", "groups4", "dashes", "whisper_commas", "one_by_one"]),
    fullwidth_separators=st.booleans(),
)
def test_a_card_written_in_fullwidth_or_other_unicode_digits_is_masked(
    digits: str, zero: str, style: str, fullwidth_separators: bool
) -> None:
    written = "".join(_in_script(c, zero) if c.isdigit() else c for c in _spoken(digits, style))
    if fullwidth_separators:  # what a CJK input method writes: fullwidth space, dash, comma
        written = written.translate({0x20: 0x3000, 0x2D: 0xFF0D, 0x2C: 0xFF0C})
    text = f"my card is {written}."
    masked = redact(text)

    assert masked == f"my card is [redacted ****{digits[-4:]}].", (text, masked)
    assert _readable_digits(masked) == digits[-4:]
    assert redact(masked) == masked


@pytest.mark.parametrize(
    "text",
    [
        "order \uff14\uff14\uff11\uff17 please",  # a fullwidth order number (4 digits)
        "on \uff12\uff10\uff12\uff14-\uff10\uff11-\uff11\uff15",  # a fullwidth date
        "call CA00000000000000000000000000000001",  # a Twilio call SID is no IBAN
        "Twilio call CA0123456789abcdef0123456789abcdef answered",  # a real SID: hex
        "Vonage uuid 63f61863-4a51-4f6b-86e1-46edebcf9356",
        "\uff23\uff21\uff10\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19"
        "\uff41\uff42\uff43\uff44\uff45\uff46\uff10\uff11\uff12\uff13\uff14\uff15"
        "\uff16\uff17\uff18\uff19\uff41\uff42\uff43\uff44\uff45\uff46",  # one in fullwidth
        "orders 4417 and 58213",  # two order numbers said together
        "order 1234567 and 2 items",
        "between ten and eleven",
        "pin 1234 and zip 90210",
    ],
)
def test_fullwidth_short_numbers_ids_and_two_order_numbers_are_left_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4111 and 1111 1111 1111", "[redacted ****1111]"),
        ("my card is 4111, and, uh, 1111 1111 1111.", "my card is [redacted ****1111]."),
        ("4111 1111 1111 and then 1111 thanks", "[redacted ****1111] thanks"),
        ("4111 and 1111 and 1111 and 1234", "[redacted ****1234]"),
        ("four one one one and one one one one one one one one", "[redacted ****1111]"),
    ],
)
def test_a_number_split_by_a_word_in_one_utterance_is_masked_whole(
    text: str, expected: str
) -> None:
    assert redact(text) == expected


_JOINERS = [" and ", ", and ", " and then ", " then ", ", uh, ", " okay ", " so, ", " ", ", "]


@st.composite
def _card_split_in_one_utterance(draw: st.DrawFn) -> tuple[str, str]:
    card = draw(st.text(alphabet="0123456789", min_size=12, max_size=19))
    cuts = sorted(draw(st.sets(st.integers(1, len(card) - 1), min_size=1, max_size=5)))
    pieces = [card[a:b] for a, b in zip([0, *cuts], [*cuts, len(card)], strict=False)]
    said = []
    for piece in pieces:
        spelled = draw(st.booleans())
        said.append(" ".join(_WORDS[int(c)] for c in piece) if spelled else piece)
    text = said[0]
    for piece in said[1:]:
        text += draw(st.sampled_from(_JOINERS)) + piece
    return card, draw(st.sampled_from(["", "my card is ", "it's "])) + text + "."


@settings(max_examples=200, deadline=None)  # a loaded machine must not fail it
@given(_card_split_in_one_utterance())
def test_no_digit_of_a_card_split_by_words_survives_but_the_last_four(
    case: tuple[str, str],
) -> None:
    card, text = case
    masked = redact(text)
    assert f"****{card[-4:]}]" in masked, (text, masked)
    assert _readable_digits(masked) == card[-4:], (text, masked)
    assert redact(masked) == masked
