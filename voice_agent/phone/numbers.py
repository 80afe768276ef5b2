"""Numbers as callers say them and as the ASR writes them, turned into digit strings.

A caller reads an order or phone number in many ways, and Whisper writes each
of them in several more:

- digit by digit: "four four one seven", "4 4 1 7", "four, four, one, seven."
- with "oh"/"o" for zero and "double"/"triple": "double four one oh"
- in groups: "forty four seventeen", "forty-four, seventeen", "44 17"
- as a cardinal: "four thousand four hundred seventeen", "four hundred and five"
- with digit separators the ASR adds: "4,417", "4.417", "44-17"
- with fillers: "four uh four one seven", "um, 4417"
- with homophones next to digits: "for 117" (four one one seven),
  "two to one" (two two one)

:func:`digit_runs` finds every number said in a text (with where it is), and
:func:`spoken_digits` gives the digits of a text that is meant to be one
number (a tool argument). Homophones ("for", "to", "too", "ate") count only
when they touch a real digit, so "calling for 4471" stays 4471 only if the
caller did not say "for" as a digit: such readings are ambiguous by nature,
and :func:`digit_candidates` lists the alternatives so a lookup can try them
before asking the caller again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DigitRun", "digit_candidates", "digit_runs", "spoken_digits"]

_UNITS = {
    "zero": 0, "oh": 0, "o": 0, "nought": 0, "naught": 0, "nil": 0,
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}  # fmt: skip
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
# Words that sound like a digit; they count only next to a real digit.
_HOMOPHONES = {"for": "4", "fore": "4", "to": "2", "too": "2", "ate": "8", "won": "1"}
_REPEAT = {"double": 2, "triple": 3}
_FILLERS = {"uh", "um", "umm", "uhm", "er", "erm", "ah", "eh", "hmm", "mm"}
# A digit token: digits possibly grouped by , . - or a single space inside a token.
_TOKEN = re.compile(r"\d+(?:[.,\-]\d+)*|[a-z]+|[^\sa-z\d]")


@dataclass(frozen=True)
class DigitRun:
    """One number said in a text: its digits and the character span it came from."""

    digits: str
    start: int
    end: int


@dataclass
class _Tok:
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Tok]:
    lowered = text.lower()
    return [_Tok(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(lowered)]


def _is_numberish(word: str) -> bool:
    return (
        word[0].isdigit()
        or word in _UNITS
        or word in _TEENS
        or word in _TENS
        or word in _REPEAT
        or word in ("hundred", "thousand")
    )


def _cardinal(words: list[str]) -> str | None:
    """A spoken cardinal with hundred/thousand ("four thousand four hundred seventeen")."""
    total = 0
    current = 0
    for w in words:
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TEENS:
            current += _TEENS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w == "thousand":
            total += max(current, 1) * 1000
            current = 0
        elif w == "and":
            continue
        else:
            return None
    return str(total + current)


def _group_digits(words: list[str]) -> str:
    """Digits of a group without hundred/thousand: units, teens, tens(+unit), double/triple."""
    out: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        if w[0].isdigit():
            out.append(re.sub(r"\D", "", w))
        elif w in _REPEAT and i + 1 < len(words) and words[i + 1] in _UNITS:
            out.append(str(_UNITS[words[i + 1]]) * _REPEAT[w])
            i += 1
        elif w in _REPEAT and i + 1 < len(words) and words[i + 1][0].isdigit():
            d = re.sub(r"\D", "", words[i + 1])
            out.append(d[0] * _REPEAT[w] + d[1:])
            i += 1
        elif w in _UNITS:
            out.append(str(_UNITS[w]))
        elif w in _TEENS:
            out.append(str(_TEENS[w]))
        elif w in _TENS:
            if i + 1 < len(words) and words[i + 1] in _UNITS and _UNITS[words[i + 1]] > 0:
                out.append(str(_TENS[w] + _UNITS[words[i + 1]]))
                i += 1
            else:
                out.append(str(_TENS[w]))
        elif w in _HOMOPHONES:
            out.append(_HOMOPHONES[w])
        i += 1
    return "".join(out)


def _runs(text: str, *, homophones: bool) -> list[DigitRun]:
    toks = _tokens(text)
    runs: list[DigitRun] = []
    i = 0
    while i < len(toks):
        if not _is_numberish(toks[i].text) and not (
            homophones and toks[i].text in _HOMOPHONES and _next_is_digit(toks, i)
        ):
            i += 1
            continue
        # Extend the run over number words, fillers and light punctuation.
        j = i
        words: list[str] = []
        last_number = i
        while j < len(toks):
            w = toks[j].text
            if _is_numberish(w):
                if w in _REPEAT and not _next_is_digit(toks, j):
                    break
                words.append(w)
                last_number = j
            elif (
                homophones
                and w in _HOMOPHONES
                and (_next_is_digit(toks, j) or _prev_is_digit(toks, j))
            ):
                words.append(w)
                last_number = j
            elif w in _FILLERS or w in {",", ".", "-", "…"}:
                pass
            elif w == "and" and words and words[-1] in ("hundred", "thousand"):
                words.append(w)  # "four hundred and five"
            else:
                break
            j += 1
        numeric = [w for w in words if w != "and"]
        if any(w in ("hundred", "thousand") for w in numeric):
            digits = (
                _cardinal([w for w in numeric if not w[0].isdigit()])
                if all(not w[0].isdigit() for w in numeric)
                else None
            )
            if digits is None:
                digits = _group_digits([w for w in numeric if w not in ("hundred", "thousand")])
        else:
            digits = _group_digits(numeric)
        if digits:
            runs.append(DigitRun(digits, toks[i].start, toks[last_number].end))
        i = max(j, i + 1)
    return runs


def _next_is_digit(toks: list[_Tok], i: int) -> bool:
    for k in range(i + 1, len(toks)):
        w = toks[k].text
        if w in _FILLERS or w in {",", ".", "-"}:
            continue
        return w[0].isdigit() or w in _UNITS or w in _TEENS or w in _TENS or w in _REPEAT
    return False


def _prev_is_digit(toks: list[_Tok], i: int) -> bool:
    for k in range(i - 1, -1, -1):
        w = toks[k].text
        if w in _FILLERS or w in {",", ".", "-"}:
            continue
        return w[0].isdigit() or w in _UNITS or w in _TEENS or w in _TENS
    return False


def digit_runs(text: str) -> list[DigitRun]:
    """Every number said in ``text``, in order (homophones count only next to digits)."""
    return _runs(text, homophones=True)


def spoken_digits(text: str) -> str:
    """The digits of a text meant as one number ("four four one seven" -> "4417"); "" if none.

    Runs separated by other words are joined: "order 44, uh, 17" -> "4417".
    """
    return "".join(run.digits for run in digit_runs(text))


def digit_candidates(text: str) -> list[str]:
    """Readings of ``text`` as one number, most likely first, without duplicates.

    The first is :func:`spoken_digits`; the alternative drops homophones
    ("for 117" -> "4117", then "117"), so a lookup can try both before it asks.
    When the text holds several numbers ("I ordered 2 kettles, order 4471",
    "4417, no wait, 4418"), each of 3 digits or more follows on its own, the
    last one first after a correction ("no", "sorry", "I mean", "actually").
    """
    out: list[str] = []
    for reading in (spoken_digits(text), "".join(r.digits for r in _runs(text, homophones=False))):
        if reading and reading not in out:
            out.append(reading)
    # Several numbers in one answer ("I ordered 2 kettles, order 4471"; "4417, no wait,
    # 4418"): each one alone, after the joined reading. After a correction the last
    # one said comes first.
    runs = [r for r in digit_runs(text) if len(r.digits) >= _MIN_ALONE]
    if len(digit_runs(text)) > 1:
        corrected = len(runs) > 1 and _CORRECTION.search(text[runs[-2].end : runs[-1].start])
        for run in [runs[-1], *runs[:-1]] if corrected else runs:
            if run.digits not in out:
                out.append(run.digits)
    return out


# Shortest number tried on its own when an answer holds several (digits): shorter ones
# are counts and days ("2 kettles", "the 14th"), not order or phone numbers.
_MIN_ALONE = 3
# Words with which a caller takes back the number just said.
_CORRECTION = re.compile(
    r"\b(?:no|sorry|i mean|i meant|actually|rather|wait|scratch that|correction)\b", re.I
)
