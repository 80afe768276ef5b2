"""The words an answer from tool results may use: the result's, not the caller's framing.

Asked "Has order 3307 been dispatched?" with a result that says ``shipped``, the
1.5B answered "... has been dispatched"; asked whether order 40716 "has left the
warehouse yet", with ``out for delivery``, it said "... has left the warehouse"
(bench e11, e01, session 7): the answer took the caller's words instead of the
result's, and a note asking for the result's words, or quoting them, changed
nothing. So the answer's grammar leaves those words out: a word of the caller's
latest words that nothing the agent was given says (`caller_only_words`: not a
result's key or value, not a call's argument, not the called tools' names and
descriptions, not the system prompt, not a common word, not a name) cannot
start a word of the answer (its stem is banned as a prefix, any case). The model
then says what it has: "... has shipped".

`speech_grammar_without` builds that grammar: the speech grammar's rules (no
markup, no tool name, digits only as the conversation's numbers) with words as
letter runs that do not start with a banned stem.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from voice_agent.local_llm.chat_format import ChatFormatError, content_text
from voice_agent.local_llm.grammar import SPEECH_FORBIDDEN

#: Shortest word that is banned (letters): shorter words carry no fact of their own.
MIN_BANNED_LETTERS = 4
#: Common words never banned: what a caller asks with, not what they ask about.
_COMMON = frozenset(
    "this that these those what when where which while whom whose with without would could "
    "should shall will been being have having does doing done did there their they them then "
    "than from into onto over under about after before again also just only very much many "
    "more most some such your yours mine please thanks thank hello okay yeah sure know want "
    "need like tell give take make call check look find help able still here well good great "
    "today right sorry morning evening afternoon night hi hey anyway actually really maybe "
    "going gonna wanna something anything nothing everything someone anyone".split()
)
_WORD_RE = re.compile(r"[A-Za-z]+")
_SUFFIX_RE = re.compile(r"(?:ing|ed|es|s)$")


def _stem(word: str) -> str:
    """A word without an inflection's ending, and without a final "e" ("warehouse" ->
    "warehous": the 1.5B, with "warehouse" banned, said "warehousing"), when at least
    `MIN_BANNED_LETTERS` remain."""
    stem = _SUFFIX_RE.sub("", word)
    if len(stem) < MIN_BANNED_LETTERS:
        stem = word
    if stem.endswith("e") and len(stem) - 1 >= MIN_BANNED_LETTERS:
        stem = stem[:-1]
    return stem


def _said_in(stem: str, vocabulary: set[str]) -> bool:
    """Whether a stem is a word of the vocabulary, as itself, inflected, or by its first
    five letters ("deliver" in "delivery")."""
    probe = stem[:5] if len(stem) >= 5 else stem
    return any(
        word.startswith(probe) or (len(word) >= 4 and stem.startswith(word)) for word in vocabulary
    )


def _result_texts(messages: Sequence[Mapping[str, Any]]) -> list[str]:
    texts: list[str] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            try:
                texts.append(content_text(message.get("content")))
            except ChatFormatError:
                continue
        elif role == "assistant":
            for call in message.get("tool_calls") or ():
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping):
                    texts.append(str(function.get("name", "")).replace("_", " "))
                    texts.append(str(function.get("arguments", "")).replace("_", " "))
    return texts


def caller_only_words(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Stems of the caller's latest words that nothing the agent was given says (see the
    module docstring), lower-case, sorted."""
    latest = next(
        (content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
        "",
    )
    given = _result_texts(messages)
    if messages and messages[0].get("role") == "system":
        given.append(content_text(messages[0].get("content")))
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, Mapping):
            given.append(json.dumps(function).replace("_", " "))
    vocabulary = {w.lower() for text in given for w in _WORD_RE.findall(text)}
    banned: set[str] = set()
    for match in _WORD_RE.finditer(latest):
        word = match.group()
        before = latest[: match.start()].rstrip()
        if word[0].isupper() and before and before[-1] not in ".?!":
            continue  # a name ("Denver", "Sam"), not at a sentence's start
        lowered = word.lower()
        if len(lowered) < MIN_BANNED_LETTERS or lowered in _COMMON:
            continue
        stem = _stem(lowered)
        if not _said_in(stem, vocabulary) and lowered not in vocabulary:
            banned.add(stem)
    return sorted(banned)


def _literal(text: str) -> str:
    """A GBNF string literal (digits only here: the conversation's numbers)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _either_case(ch: str) -> str:
    return f"[{ch.lower()}{ch.upper()}]"


#: A banned stem this long (letters) is banned anywhere inside a word, a shorter one
#: only at a word's start: the 1.5B glued "warehouse" to the word before it
#: ("yourwarehouse") when it was banned only as a start, while "come" and "turn" are
#: inside "welcome" and "return".
INSIDE_WORDS_LETTERS = 6


def _word_rules(banned: Iterable[str]) -> list[str]:
    """GBNF rules for ``aw-word``: a run of ASCII letters that holds no `banned` stem
    (case-insensitive): a stem of `INSIDE_WORDS_LETTERS` or more letters nowhere in
    it, a shorter one not at its start.

    The rules are the states of an Aho-Corasick automaton over the patterns (a short
    stem is anchored by "^", the word's start): each state is the longest pattern
    prefix the word so far ends with; a letter moves to the next state; a state in
    which a pattern is complete has no rule, so no word reaches it."""
    stems = sorted({s.lower() for s in banned if s and s.isalpha()})
    patterns = [s if len(s) >= INSIDE_WORDS_LETTERS else "^" + s for s in stems]
    prefixes = sorted(
        {p[:i] for p in patterns for i in range(len(p) + 1)}, key=lambda p: (len(p), p)
    )
    letters = "abcdefghijklmnopqrstuvwxyz"

    def state_of(text: str) -> str:
        """The longest pattern prefix that `text` ends with."""
        for start in range(len(text) + 1):
            if text[start:] in prefixes:
                return text[start:]
        return ""

    def banned_state(state: str) -> bool:
        return any(state.endswith(pattern) for pattern in patterns)

    names = {prefix: f"aw-s{i}" for i, prefix in enumerate(prefixes)}
    start = state_of("^")
    lines: list[str] = []
    for prefix in prefixes:
        if banned_state(prefix):
            continue
        moves: dict[str, list[str]] = {}
        for letter in letters:
            target = state_of(prefix + letter)
            if not banned_state(target):
                moves.setdefault(target, []).append(letter)
        body = " | ".join(
            f"[{''.join(c + c.upper() for c in chars)}] {names[target]}"
            for target, chars in sorted(moves.items())
        )
        if prefix == start:  # a word has one letter at least
            lines.append(f"aw-word ::= {body}")
        if prefix != "^":  # the word's start is no place to end it
            lines.append(f'{names[prefix]} ::= {body} | ""' if body else f'{names[prefix]} ::= ""')
    return lines


def speech_grammar_without(
    banned: Iterable[str], allowed_numbers: Iterable[str], continuing: bool = False
) -> str:
    """Plain speech as `grammar.speech_grammar` allows it (no ``<``, ``{``, backtick or
    ``_``; digits only as one of `allowed_numbers`; the first character not a space
    unless `continuing`), in which no word starts with a `banned` stem."""
    numbers = sorted({n for n in allowed_numbers if n.isdigit()}, key=lambda n: (-len(n), n))
    # A non-letter, non-digit character (a space, punctuation, a letter outside ASCII).
    nd = f"[^{SPEECH_FORBIDDEN}0-9a-zA-Z]"
    nd_first = nd if continuing else f"[^{SPEECH_FORBIDDEN}0-9a-zA-Z \\t\\n\\r]"
    if numbers:
        # Two numbers never touch ("40716" then "5" would write a number nobody gave).
        tail = f"( {nd} | aw-num {nd} )* aw-num?"
        lines = [
            f"aw-num ::= {' | '.join(_literal(n) for n in numbers)}",
            f"aw-gap ::= {nd} {tail} | aw-num ( {nd} {tail} )?",
            f"aw-gap1 ::= {nd_first} {tail} | aw-num ( {nd} {tail} )?",
        ]
    else:
        lines = [f"aw-gap ::= {nd}+", f"aw-gap1 ::= {nd_first} {nd}*"]
    return (
        "\n".join(
            [
                "root ::= aw-word ( aw-gap aw-word )* aw-gap? | aw-gap1 ( aw-word aw-gap )* aw-word?",
                *lines,
                *_word_rules(banned),
            ]
        )
        + "\n"
    )
