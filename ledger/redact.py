"""Masking card/account-like numbers and URL secrets before text leaves memory.

A *number* here is a chain of digit groups in any form a speech recogniser or
a tool writes them:

- digits: ``4111111111111111``, ``4111 1111 1111 1111``, ``4111-1111-1111-1111``,
  Whisper's thousands style ``4,111,111,111,111,111`` or ``4.111.111.111.111.111``,
  one digit at a time ``4 1 1 1 ...`` or ``4, 1, 1, 1, ...``;
- words: ``four one one one ...``, ``oh``/``zero``, ``double five``,
  ``triple one``, pairs such as ``forty one, eleven`` (a word group counts as
  the digits it stands for; words and digits mix).

Groups are joined by a separator of at most three characters made of spaces,
commas, dots, dashes or slashes. A chain is masked when it has at least
`MIN_DIGITS` digits and is either one group of at most `MAX_DIGITS` digits,
or groups of at least 3 digits each (``4111 1111 ...``, ``555-123-4567``), or
at least 4 groups (digits read out one by one or in pairs, thousands
separators). A chain longer than `MAX_DIGITS` is masked whole: we cannot tell
where one spoken number ends and the next begins, so we err on the private side.
A chain that does not qualify whole has its runs of 3+ digit groups masked, each
with the short groups beside it up to `MAX_DIGITS` digits ("41, uh, 1111...").
A chain becomes ``[redacted ****1111]`` (its last four digits kept).
Three groups with more digits than a date (``123-45-6789``) are masked; an
IBAN (``DE89370400440532013000``, ``GB82 WEST 1234 ...``) is masked whole even
when its digits run past `MAX_DIGITS`; en dashes and underscores separate
groups like hyphens. A number read over several utterances ("4111" ...
"1111 ...") is masked piece by piece by `redact_continuing` (the session file
does this for the caller's utterances). Within one utterance, pieces joined by
words a caller puts between them ("4111 and 1111 1111 1111", "... and then
1111") are one number when one piece is masked on its own, or there are at least
three pieces, or together they have at least `_SHORTEST_CARD` digits; two order
numbers said together ("4417 and 58213") stay readable.

Digits of every script count (Unicode decimal digits: fullwidth ``４１１１``,
Arabic-Indic, Devanagari, ...), as do fullwidth letters and separators (an
ideographic space, a fullwidth dash or comma): the text is matched through a
same-length ASCII folding, and whatever is not masked is returned as written.

Left alone: anything under 8 digits (amounts, times, short order numbers),
compact ISO times (``20261126T150718Z``: a session file's name), a range of
offsets after a word naming places in a text (``in position 1344-1345``: an
error message's),
dates (``2024-01-15``, ``15 01 2024``: 3 groups, short ones), a single
digit group longer than 19 digits (a tracking number, not a card), and
tool-call ids (``call_00000001``: the engine's names for things). Digits
glued to letters count (``ORD12345678`` -> ``ORD[redacted ****5678]``).
Amounts of 8 digits or more written with separators (``12,345,678``) are
masked too: the cautious side.

`redact_secrets` also masks credentials in URLs (``user:password@``, and
query parameters such as ``api-key``, ``token``, ``sig``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from pydantic import JsonValue

__all__ = [
    "MAX_DIGITS",
    "MIN_DIGITS",
    "mask_url_secrets",
    "redact",
    "redact_continuing",
    "redact_json_numbers",
    "redact_json_text",
    "redact_json_value",
    "redact_secrets",
]

MIN_DIGITS = 8
"""Shortest digit chain that is masked (digits): shorter numbers are dates, amounts, ids."""

MAX_DIGITS = 19
"""Longest single digit group that is masked (digits): the longest card number (ISO/IEC 7812)."""

# Smallest group that may be chained with a neighbour when the chain has few groups
# (digits); 1-2 digit groups in short chains are day/month/year pieces or counts.
_MIN_CHAINED_GROUP = 3
# Digits in the longest date written in three groups (2024-01-15).
_LONGEST_DATE = 8
# A chain of this many groups or more is a number read out piece by piece (groups).
_MANY_GROUPS = 4
# Digits of the shortest card number in use (Maestro, 12): pieces joined by words that
# add up to this many are a card, not two order numbers said together.
_SHORTEST_CARD = 12
# Pieces joined by words, this many or more, are one number read out piece by piece.
_MANY_PIECES = 3

_UNITS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_TEENS = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
}  # fmt: skip
_TENS = {
    "twenty": "2", "thirty": "3", "forty": "4", "fourty": "4", "fifty": "5", "sixty": "6",
    "seventy": "7", "eighty": "8", "ninety": "9",
}  # fmt: skip
_REPEAT = {"double": 2, "triple": 3}

_UNIT_WORDS = "|".join(sorted(_UNITS, key=len, reverse=True))
_TOKEN = re.compile(
    r"[0-9]+"
    rf"|\b(?:double|triple)[ -](?:{_UNIT_WORDS})\b"
    rf"|\b(?:{'|'.join(_TENS)})(?:[ -](?:{'|'.join(k for k in _UNITS if k not in ('zero', 'oh', 'o'))}))?\b"
    rf"|\b(?:{'|'.join(_TEENS)})\b"
    rf"|\b(?:{_UNIT_WORDS})\b",
    re.IGNORECASE,
)
# Ids the engine, the LLM and telephony providers make up name things; they are never a
# caller's number: tool-call ids (call_00000001 and their "-result" forms), Twilio SIDs
# (two letters and 32 hex digits: CA0123...cdef), UUIDs (a Vonage call's uuid).
_MACHINE_ID = re.compile(
    r"\bcall_[A-Za-z0-9_-]+"
    r"|\b[A-Z]{2}[0-9a-f]{32}\b"
    r"|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
    # a compact ISO 8601 time (a session id and its file: 20261126T150718Z-f01527)
    r"|\b[0-9]{8}T[0-9]{6}(?:[.,][0-9]{1,9})?Z?(?![0-9])",
    re.I,
)
# A word that says the range after it is places in a text or a file ("can't decode bytes
# in position 1344-1345"): offsets in an error message, not a caller's number ("line" is
# not one: "my line 5551-2345"). Only a range (`_is_offset`); a single number or a card
# read in groups after such a word is still masked.
_OFFSET_WORD = re.compile(
    r"\b(?:positions?|columns?|chars?|characters?|bytes?|offsets?)"
    r"\.?[ \t]{1,2}\Z",
    re.I,
)
_SEPARATOR = re.compile(r"\s{0,2}[,.\-/_\u2010-\u2015\u2212]?\s{0,2}")
# A hesitation between two pieces of one number ("4111, uh, 1111 1111 1111").
_HESITATION = re.compile(
    r"[\s,.]{0,3}(?:uh|um|umm|uhm|er|erm|ah)(?:[\s,.]{1,3}(?:uh|um|umm|uhm|er|erm|ah))*[\s,.]{1,3}",
    re.I,
)
# Words a caller puts between two pieces of one number in one utterance ("4111 and
# 1111 1111 1111", "4111, and then, uh, 1111"): a weaker join than punctuation.
_WORD_BRIDGE = re.compile(
    r"[\s,.;:\-]{0,3}(?:(?:and|then|okay|ok|so|uh|um|umm|uhm|er|erm|ah)\b[\s,.;:\-]{1,3}){1,4}",
    re.I,
)
# An IBAN (ISO 13616): country letters, check digits, then up to 30 letters and digits,
# written glued or in groups of four. Its digits can run past MAX_DIGITS, so it is
# matched whole before the digit rules.
_IBAN = re.compile(r"\b[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]){11,30}\b")


@dataclass(frozen=True)
class _Group:
    start: int
    end: int
    digits: str
    spelled: bool


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    """One character as ASCII when it is a digit, letter or separator in another form
    (fullwidth, another script's digit); otherwise itself. Always one character."""
    digit = unicodedata.decimal(char, None)
    if digit is not None:
        return str(digit)
    code = ord(char)
    if 0xFF01 <= code <= 0xFF5E:  # fullwidth ASCII (what CJK input methods write)
        return chr(code - 0xFEE0)
    return {"\u3000": " ", "\u3001": ",", "\u3002": ".", "\ufe63": "-"}.get(char, char)


def _fold(text: str) -> str:
    """`text` with every character folded by `_fold_char`: same length, so a span found
    in the folded text is the same span in `text`."""
    if text.isascii():
        return text
    return "".join(_fold_char(char) for char in text)


def _digits_of(token: str) -> str:
    if token.isdigit():
        return token
    words = re.split(r"[ -]", token.lower())
    if words[0] in _REPEAT:
        return _UNITS[words[1]] * _REPEAT[words[0]]
    if words[0] in _TEENS:
        return _TEENS[words[0]]
    if words[0] in _TENS:
        return _TENS[words[0]] + (_UNITS[words[1]] if len(words) > 1 else "0")
    return _UNITS[words[0]]


def _mask(digits: str) -> str:
    return f"[redacted ****{digits[-4:]}]"


def _qualifies(chain: list[_Group]) -> bool:
    digits = sum(len(g.digits) for g in chain)
    if digits < MIN_DIGITS:
        return False
    if len(chain) == 1:
        return digits <= MAX_DIGITS
    if len(chain) >= _MANY_GROUPS:
        return True
    if len(chain) == _MANY_GROUPS - 1 and digits > _LONGEST_DATE:
        return True  # 123-45-6789: three groups, more digits than any date
    return all(len(g.digits) >= _MIN_CHAINED_GROUP for g in chain)


def _masked_spans(chain: list[_Group]) -> list[list[_Group]]:
    """The parts of a chain to mask: all of it, or else its runs of long groups, each
    with the short groups next to it while it stays within `MAX_DIGITS` (the "41" of
    "41, uh, 11111111111111" is part of the card)."""
    if _qualifies(chain):
        return [chain]
    runs: list[tuple[int, int]] = []  # [start, end) of maximal runs of long groups
    start = None
    for i, group in enumerate([*chain, None]):
        if group is not None and len(group.digits) >= _MIN_CHAINED_GROUP:
            start = i if start is None else start
            continue
        if start is not None and _qualifies(chain[start:i]):
            runs.append((start, i))
        start = None
    spans: list[list[_Group]] = []
    claimed = 0  # groups before this index belong to an earlier span
    for index, (first, end) in enumerate(runs):
        limit = runs[index + 1][0] if index + 1 < len(runs) else len(chain)
        digits = sum(len(g.digits) for g in chain[first:end])
        while first > claimed and digits + len(chain[first - 1].digits) <= MAX_DIGITS:
            first -= 1
            digits += len(chain[first].digits)
        while end < limit and digits + len(chain[end].digits) <= MAX_DIGITS:
            digits += len(chain[end].digits)
            end += 1
        spans.append(chain[first:end])
        claimed = end
    return spans


def _joins(separator: str) -> bool:
    """Two groups with this between them are pieces of one number."""
    return bool(separator) and (
        _SEPARATOR.fullmatch(separator) is not None or _HESITATION.fullmatch(separator) is not None
    )


def _number_spans(number: list[list[_Group]]) -> list[list[_Group]]:
    """The parts of a number (chains joined by words) to mask: all of it, or else what
    each chain masks on its own (also when each chain is a whole card: "two cards
    4111... and 5500...")."""
    alone = [span for chain in number for span in _masked_spans(chain)]
    if len(number) == 1 or (
        alone == number
        and all(sum(len(g.digits) for g in chain) >= _SHORTEST_CARD for chain in number)
    ):
        return alone
    digits = sum(len(g.digits) for chain in number for g in chain)
    if digits >= MIN_DIGITS and (alone or len(number) >= _MANY_PIECES or digits >= _SHORTEST_CARD):
        return [[g for chain in number for g in chain]]
    return alone


def _is_offset(folded: str, chain: list[_Group]) -> bool:
    """The chain is a range of places in a text ("position 1344-1345"): two digit groups
    joined by a dash, the second not below the first, after a word naming places."""
    if len(chain) != 2 or any(g.spelled for g in chain):
        return False
    first, last = chain
    if folded[first.end : last.start].strip() not in ("-", "\u2013") or int(last.digits) < int(
        first.digits
    ):
        return False
    return _OFFSET_WORD.search(folded[max(0, first.start - 16) : first.start]) is not None


def _numbers(folded: str) -> list[list[list[_Group]]]:
    """The numbers said in (folded) text: runs of chains joined by words (`_WORD_BRIDGE`)."""
    chains = [chain for chain in _chains(folded) if not _is_offset(folded, chain)]
    if not chains:
        return []
    numbers: list[list[list[_Group]]] = [[chains[0]]]
    for previous, chain in zip(chains, chains[1:], strict=False):
        if _WORD_BRIDGE.fullmatch(folded[previous[-1].end : chain[0].start]):
            numbers[-1].append(chain)
        else:
            numbers.append([chain])
    return numbers


def _chains(text: str) -> list[list[_Group]]:
    ids = [m.span() for m in _MACHINE_ID.finditer(text)]
    groups = [
        _Group(m.start(), m.end(), _digits_of(m.group()), not m.group().isdigit())
        for m in _TOKEN.finditer(text)
        if not any(start <= m.start() < end for start, end in ids)
    ]
    if not groups:
        return []
    chains: list[list[_Group]] = [[groups[0]]]
    for previous, group in zip(groups, groups[1:], strict=False):
        if _joins(text[previous.end : group.start]):
            chains[-1].append(group)
        else:
            chains.append([group])
    return chains


def _masked(text: str, spans: list[list[_Group]]) -> str:
    pieces: list[str] = []
    cursor = 0
    for span in spans:
        pieces.append(text[cursor : span[0].start])
        pieces.append(_mask("".join(g.digits for g in span)))
        cursor = span[-1].end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _mask_iban(match: re.Match[str]) -> str:
    """Mask an IBAN whose check digits hold (ISO 7064 mod 97-10): ids that merely look
    like one (a Twilio call SID "CA0000...01") stay as they are."""
    iban = match.group().replace(" ", "")
    digits = re.sub(r"\D", "", iban)
    if len(digits) < MIN_DIGITS:
        return match.group()
    as_number = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
    return _mask(digits) if int(as_number) % 97 == 1 else match.group()


def _mask_ibans(text: str) -> str:
    pieces: list[str] = []
    cursor = 0
    for match in _IBAN.finditer(_fold(text)):
        masked = _mask_iban(match)
        if masked != match.group():
            pieces += [text[cursor : match.start()], masked]
            cursor = match.end()
    return "".join(pieces) + text[cursor:] if pieces else text


def redact(text: str) -> str:
    """Return `text` with each card/account-like number replaced by a mask (see module doc)."""
    text = _mask_ibans(text)
    numbers = _numbers(_fold(text))
    if not numbers:
        return text
    return _masked(text, [span for number in numbers for span in _number_spans(number)])


# Words a caller puts between the pieces of a number read over several utterances.
_BRIDGE = re.compile(
    r"[\s,.;:!?\-]*(?:(?:and|uh|um|umm|er|erm|then|okay|ok|so)\b[\s,.;:!?\-]*)*", re.I
)
# Longest run of digits carried from one utterance to the next (digits): a card or an
# IBAN is at most 34; beyond that it is a new number anyway.
_MAX_CARRY = 34


CONTINUED_MASK = "[redacted]"
"""What a piece of a number continued from an earlier utterance becomes (no digits kept)."""


def redact_continuing(text: str, carried: str) -> tuple[str, str]:
    """`redact` for one utterance of a caller who may be reading a number across several.

    ``carried`` is the digit run the caller's previous utterance ended with
    (``""`` if none). When this utterance starts with digits (after fillers such
    as "and", "uh") they continue that number: the piece is masked when the
    number so far reaches `MIN_DIGITS` (as `CONTINUED_MASK`, keeping no
    digits), so a card read four digits per utterance shows at most
    ``MIN_DIGITS - 1`` of its digits in the file. Returns the masked text and the
    digits to carry into the caller's next utterance.
    """
    masked = redact(text)
    folded = _fold(text)
    numbers = _numbers(folded)
    if not numbers:
        return masked, ""
    first = [g for chain in numbers[0] for g in chain]
    last = [g for chain in numbers[-1] for g in chain]
    continues = bool(carried) and _BRIDGE.fullmatch(folded[: first[0].start]) is not None
    first_digits = "".join(g.digits for g in first)
    if continues and len(carried) + len(first_digits) >= MIN_DIGITS:
        # the piece keeps none of its digits: "****1111" on every piece would spell the card
        masked = text[: first[0].start] + CONTINUED_MASK + redact(text[first[-1].end :])
    ends = folded[last[-1].end :].strip(" \t\n,.;:!?-") == ""
    if not ends:
        return masked, ""
    tail = "".join(g.digits for g in last)
    carry = (carried + tail) if (continues and len(numbers) == 1) else tail
    return masked, carry[-_MAX_CARRY:]


# -- URL secrets ---------------------------------------------------------------------

# Bounded repetitions (a scheme of at most 32 characters, user-info and parameter names of
# at most 256 / 64): unbounded ones made the search quadratic in a run of letters and
# digits (100 KB of base64 in a tool's result took 18 s, blocking the event loop).
_URL_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]{0,31}://)(?P<userinfo>[^/@\s?#]{1,256})@"
)
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9_.-]{0,64}(?:key|token|secret|password|passwd|pwd|sig"
    r"|signature|auth|credential|session)[A-Za-z0-9_.-]{0,64}))=(?P<value>[^&#\s]*)",
    re.IGNORECASE,
)


def mask_url_secrets(text: str) -> str:
    """Mask ``user:password@`` and secret-looking query parameters in every URL in `text`."""
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _SECRET_PARAM.sub(lambda m: f"{m.group('name')}=***", text)


def redact_secrets(text: str) -> str:
    """`redact` plus `mask_url_secrets`: what any text that leaves memory goes through."""
    return redact(mask_url_secrets(text))


# -- JSON ------------------------------------------------------------------------------


def redact_json_value(value: JsonValue) -> JsonValue:
    """Redact every string inside a JSON value (recursively); keys and numbers are kept."""
    match value:
        case str():
            return redact_secrets(value)
        case list():
            return [redact_json_value(item) for item in value]
        case dict():
            return {key: redact_json_value(item) for key, item in value.items()}
        case _:
            return value


def redact_json_numbers(value: JsonValue) -> JsonValue:
    """Like `redact_json_value`, but a number that looks like an account becomes a mask string."""
    match value:
        case bool() | None:
            return value
        case int() | float():
            text = json.dumps(value)
            masked = redact(text)
            return value if masked == text else masked
        case str():
            return redact_secrets(value)
        case list():
            return [redact_json_numbers(item) for item in value]
        case dict():
            return {key: redact_json_numbers(item) for key, item in value.items()}
        case _:
            return value


def redact_json_text(text: str) -> str:
    """Redact raw JSON text (tool arguments) without breaking it.

    Valid JSON is redacted structurally (strings masked, account-like numbers
    become mask strings) and re-serialized; anything else as plain text.
    """
    masked = redact_secrets(text)
    if masked == text:
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return masked  # it was never valid JSON: plain-text masking is all we can do
    return json.dumps(redact_json_numbers(value), ensure_ascii=False)
