"""A quantity an answer says of a thing its results count, checked against them (issue 11).

`embedded_questions.score` counts a number no result or caller gave as invented, but a
single digit is nearly always in some result. Asked about two orders whose ``items``
were "2 bookshelf" and "2 toaster, 2 wool blanket, 2 yoga mat", the 1.5B said "has 3
bookshelf items" and "3 yoga mat items" (bench recheck14 o15, session 14), and the
score counted nothing invented. `misstated_quantities` reads the things any result's
text value counts (an entry "2 wool blanket", "a yoga mat": a quantity, then lowercase
words naming the thing, the last word the thing) and finds a number said within three
words before such a thing that no result gives for it.

Written apart from the product's check (`voice_agent.local_llm.spoken_counts`) so the
score does not share its mistakes.
"""

from __future__ import annotations

import re
from typing import Any

from spoken_claims import result_texts

_NUMBER_WORDS = {
    word: n
    for n, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}
#: An entry of a text value that counts a thing.
_ENTRY = re.compile(r"^(\d{1,3}|a|an|one)\s+(?:x\s+)?([a-z]+(?:[ -][a-z]+){0,3})$")
#: Words after which a number's words no longer name what it counts.
_STOPS = frozenset(
    "of in on for to from at by with and or but the a an your my his her their our its "
    "is are was were has have had".split()
)
#: How many words after a number may name what it counts ("3 yoga mat items").
_WINDOW = 3


def _forms(word: str) -> set[str]:
    """`word` and what it may be without a plural ending."""
    word = word.lower()
    forms = {word}
    if word.endswith("s") and not word.endswith("ss"):
        forms.add(word[:-1])
    if word.endswith("es"):
        forms.add(word[:-2])
    if word.endswith("ies"):
        forms.add(word[:-3] + "y")
    if word.endswith("lves"):
        forms.add(word[:-3] + "f")
    return forms


def counted_things(results: Any) -> dict[str, set[int]]:
    """The thing each counting entry of the results' text values names (its last word)
    -> the quantities they give it ("2 wool blanket, a yoga mat": blanket 2, mat 1)."""
    things: dict[str, set[int]] = {}
    for text in result_texts(results):
        for entry in re.split(r",\s*|\s+and\s+", text.strip()):
            match = _ENTRY.match(entry.strip())
            if match is None:
                continue
            words = re.split(r"[ -]", match.group(2))
            stop = next((i for i, w in enumerate(words) if w in _STOPS), len(words))
            if stop == 0 or len(words[stop - 1]) < 3:  # "10 am" is a time, not a thing
                continue
            n = match.group(1)
            things.setdefault(words[stop - 1], set()).add(int(n) if n.isdigit() else 1)
    return things


def misstated_quantities(spoken: str, results: Any) -> list[str]:
    """Each quantity `spoken` says of a thing the results count that none of them gives it,
    as "'3 bookshelf' (results: 2)"."""
    things = counted_things(results)
    if not things:
        return []
    found = []
    tokens = list(re.finditer(r"[A-Za-z]+|\d+|[.,;:!?]", spoken))
    for i, token in enumerate(tokens):
        said = token.group().lower()
        count = int(said) if said.isdigit() else _NUMBER_WORDS.get(said)
        if count is None:
            continue
        for after in tokens[i + 1 : i + 1 + _WINDOW]:
            word = after.group().lower()
            if not word.isalpha() or word in _STOPS:
                break
            given = next((things[f] for f in _forms(word) if f in things), None)
            if given is not None:
                if count not in given:
                    quoted = spoken[token.start() : after.end()]
                    found.append(f"'{quoted}' (results: {', '.join(map(str, sorted(given)))})")
                break
    return found
