"""A count an answer says that its results contradict, corrected before it is said.

The speech grammar keeps out digits the conversation does not hold
(`grammar.speech_grammar`), but a count said in words is not checked by it. Asked to
pull up an account whose ``recent_orders`` listed four orders, the 1.5B said "They
have three recent orders:" and read out four (bench m17, session 10). So the answer
from results goes through `CountCheck`: a number ("three", "3") followed, within
`NOUN_WINDOW_WORDS` words, by a word that names what a result counts (the last word
of a list's field name, "orders" of ``recent_orders``; of a count field,
``order_count``) is checked against the counts the results give for it
(`result_counts`): a list's entries, the quantities they start with ("2 mugs, a
teapot" is two entries and three items), a count field's value. A count none of them
gives is replaced by the list's own count, or left out when the results give more
than one. Only the words from a number to the end of that window are held, and only
when results count something.

A text value that pairs quantities with things ("2 toaster, 2 wool blanket, a yoga mat",
any field) counts each thing too (`_things_counted`): the word naming it ("toaster",
"blanket", "mat") is counted as often as its entry says. Asked about two orders whose
``items`` were "2 bookshelf" and "2 toaster, 2 wool blanket, 2 yoga mat", the 1.5B said
"3 bookshelf items" and "3 yoga mat items" (bench recheck14 o15, session 14); both are
now said as 2, and a thing a result has one of is not said to be two. Only lowercase
words name such a thing, so an address ("12 Lake Drive") counts nothing.

English, like the prompts shipped with the product.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from voice_agent.local_llm.turn_history import tool_payloads

#: Words after a number within which the counted word must come ("three recent
#: orders": the second).
NOUN_WINDOW_WORDS = 3

_COUNT_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
).split()
_WORD_VALUES = {word: n for n, word in enumerate(_COUNT_WORDS)}
#: A count field's name: the counted word and a count marker ("order_count",
#: "number_of_orders", "num_items", "total_items").
_COUNT_FIELD = re.compile(r"^(?:(?:number|count|num|total)_(?:of_)?(?P<a>\w+)|(?P<b>\w+?)_count)$")
#: Where a list written as text parts into entries ("41882 (shipped), 55103 (delivered)").
_ENTRY_SPLIT = re.compile(r",\s+(?:and\s+)?")
#: The quantity an entry starts with ("2 mugs", "a teapot").
_QUANTITY = re.compile(
    r"^(?:(?P<n>\d{1,3})\s*(?:x\s+)?|(?:a|an|one)\s+)(?=[A-Za-z])", re.IGNORECASE
)
#: Words that end the window after a number: what follows them is not what it counts
#: ("one of your orders", "two for the order").
_WINDOW_ENDS = frozenset(
    "of in on for to from at by with and or but the a an your my his her their our its "
    "this that these those is are was were has have had".split()
)
_TOKEN = re.compile(r"[A-Za-z]+|\d+")
#: An entry of a text value that counts a thing: its quantity, then up to four lowercase
#: words naming it ("2 wool blanket", "a yoga mat", "3 x coffee mug").
_COUNTED_THING = re.compile(
    r"^(?:(?P<n>\d{1,3})\s*(?:x\s+)?|(?:a|an|one)\s+)(?P<thing>[a-z]+(?:[ -][a-z]+){0,3})$"
)


def _noun(word: str) -> str:
    """A counted word without its plural ending ("orders" -> "order", "boxes" -> "box")."""
    word = word.lower()
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("lves"):  # "bookshelves" -> "bookshelf"
        return word[:-3] + "f"
    if word.endswith(("ses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def _plural(word: str) -> str:
    """`word` made plural ("order" -> "orders", "box" -> "boxes", "shelf" -> "shelves")."""
    if word.endswith("y") and word[-2:-1] not in ("", *"aeiou"):
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("lf"):
        return word[:-1] + "ves"
    return word + "s"


def _agreeing(words: str, said: int | None, right: int) -> str:
    """The words from a number to its counted word (their last), made to agree with the
    `right` count when the `said` one made them agree with another: "one order" -> "four
    orders", "2 yoga mats" -> "1 yoga mat". Otherwise as said: the model chose their form
    ("3 bookshelf items" -> "2 bookshelf items")."""
    head = re.search(r"[A-Za-z]+$", words)
    if head is None:
        return words
    word = head.group()
    plural = _noun(word) != word.lower()
    if said == 1 and right != 1 and not plural:
        return words[: head.start()] + _plural(word)
    if right == 1 and said != 1 and plural and word.islower():
        return words[: head.start()] + _noun(word)
    return words


def _entry_counts(entries: Sequence[Any]) -> set[int]:
    """A list's counts: its entries, and the sum of the quantities they start with when
    every entry starts with one."""
    counts = {len(entries)}
    quantities = []
    for entry in entries:
        match = _QUANTITY.match(str(entry).strip()) if isinstance(entry, str) else None
        if match is None:
            break
        quantities.append(int(match.group("n")) if match.group("n") else 1)
    else:
        if quantities:
            counts.add(sum(quantities))
    return counts


def _field_counts(field: str, value: Any) -> tuple[str, set[int]] | None:
    """(the counted word, its counts) a result field gives, or None."""
    name = field.lower()
    if isinstance(value, int) and not isinstance(value, bool):
        match = _COUNT_FIELD.match(name)
        if match:
            counted = (match.group("a") or match.group("b")).split("_")[-1]
            return _noun(counted), {value}
        return None
    head = name.split("_")[-1]
    if isinstance(value, list):
        return _noun(head), _entry_counts(value)
    if isinstance(value, str) and head.endswith("s") and _ENTRY_SPLIT.search(value):
        return _noun(head), _entry_counts(_ENTRY_SPLIT.split(value.strip()))
    return None


def _things_counted(value: str) -> list[tuple[str, int]]:
    """(the word naming a thing, singular; its quantity) for each entry of a text value
    that counts a thing ("2 wool blanket" -> ("blanket", 2), "a yoga mat" -> ("mat", 1)).
    The naming words stop at a word that ends a count's window ("a pair of shoes":
    "pair"); a word of two letters names no thing ("10 am")."""
    things = []
    for entry in _ENTRY_SPLIT.split(value.strip()):
        match = _COUNTED_THING.match(entry.strip())
        if match is None:
            continue
        words = re.split(r"[ -]", match.group("thing"))
        ends = [i for i, word in enumerate(words) if word in _WINDOW_ENDS]
        words = words[: ends[0]] if ends else words
        if words and len(words[-1]) > 2:  # "10 am" is a time, not ten of a thing
            things.append((_noun(words[-1]), int(match.group("n") or 1)))
    return things


def result_counts(messages: Sequence[Mapping[str, Any]]) -> dict[str, list[set[int]]]:
    """What the results not yet told (`turn_history.untold`) count: counted word (singular) ->
    the counts each list, count field or counted thing gives for it (see the module
    docstring)."""
    counts: dict[str, list[set[int]]] = {}
    for _, _, payload in tool_payloads(messages, untold_only=True):
        result = payload.get("result")
        if payload.get("status") != "resolved" or not isinstance(result, Mapping):
            continue
        for field, value in result.items():
            found = _field_counts(str(field), value)
            if found is not None:
                counts.setdefault(found[0], []).append(found[1])
            if isinstance(value, str):
                for thing, quantity in _things_counted(value):
                    counts.setdefault(thing, []).append({quantity})
    return counts


def _said_as(count: int, like: str) -> str:
    """`count` written as `like` is (digits, or a word in its case)."""
    if like.isdigit() or count >= len(_COUNT_WORDS):
        return str(count)
    word = _COUNT_WORDS[count]
    return word.capitalize() if like[:1].isupper() else word


def _number(token: str) -> int | None:
    if token.isdigit():
        return int(token)
    return _WORD_VALUES.get(token.lower())


class CountCheck:
    """Corrects, as the answer streams, a count its results contradict (see the module
    docstring). `push(piece)` returns the text that may be said now; `finish()` the
    rest. `corrected` lists (what was said, what replaced it; "" when left out)."""

    def __init__(self, counts: Mapping[str, Sequence[set[int]]]) -> None:
        self._counts = counts
        self._held = ""
        self.corrected: list[tuple[str, str]] = []

    def push(self, piece: str) -> str:
        if not self._counts:
            return piece
        self._held += piece
        return self._release(final=False)

    def finish(self) -> str:
        return self._release(final=True) if self._counts else ""

    def _release(self, *, final: bool) -> str:
        out = ""
        while True:
            held = self._held
            tokens = list(_TOKEN.finditer(held))
            # a token at the end may still grow ("thr" -> "three"): never judged yet
            whole = [t for t in tokens if final or t.end() < len(held)]
            number = next((t for t in whole if _number(t.group()) is not None), None)
            if number is None:
                cut = len(held) if final or len(whole) == len(tokens) else tokens[-1].start()
                out, self._held = out + held[:cut], held[cut:]
                return out
            out, held = out + held[: number.start()], held[number.start() :]
            self._held = held
            said = number.group()
            clause = re.search(r"[.!?:;,]", held[len(said) :])
            end = len(held) if clause is None else len(said) + clause.start()
            after = [t for t in _TOKEN.finditer(held, len(said)) if t.start() < end]
            # a whole word that ends the window ("27562 is") decides it as its end does
            ended = any(
                t.end() < len(held) and t.group().lower() in _WINDOW_ENDS
                for t in after[:NOUN_WINDOW_WORDS]
            )
            if not (final or ended or clause is not None or len(after) > NOUN_WINDOW_WORDS):
                return out  # the counted word may still come
            window = after[:NOUN_WINDOW_WORDS]
            ends = [i for i, t in enumerate(window) if t.group().lower() in _WINDOW_ENDS]
            fixed = self._checked(held, said, window[: ends[0]] if ends else window)
            if fixed is None:
                out, self._held = out + said, held[len(said) :]
            else:
                text, used = fixed
                out, self._held = out + text, held[used:]

    def _checked(
        self, held: str, said: str, window: Sequence[re.Match[str]]
    ) -> tuple[str, int] | None:
        """When the word the number `said` (at the start of `held`) counts is one the
        results count, and none of them gives that number: the words from the number to
        that word, corrected or without the number, and how much of `held` they replace.
        None when nothing is wrong."""
        count = _number(said)
        for match in window:
            given = self._counts.get(_noun(match.group()))
            if given is None:
                continue
            if count is None or any(count in counts for counts in given):
                return None
            entries = {min(counts) for counts in given}  # each list's entries
            words = held[len(said) : match.end()]
            if len(entries) == 1:
                right = entries.pop()
                text = _said_as(right, said) + _agreeing(words, count, right)
            else:  # the results count it more than one way: the count is left out
                text = words.lstrip()
                text = text[:1].upper() + text[1:] if said[:1].isupper() else text
            self.corrected.append((held[: match.end()], text))
            return text, match.end()
        return None
