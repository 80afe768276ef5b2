"""The two speech-grammar builders as they were before they became one (main at 4f6cc84).

Kept verbatim (only renamed: `old_speech_grammar` was `grammar.speech_grammar`,
`old_speech_grammar_without` was `answer_words.speech_grammar_without`) so that
`test_local_llm_speech_grammar_equivalence.py` can show, on llama.cpp's own grammar
matcher, that the one builder (`grammar.speech_grammar`) accepts what they accepted,
and exactly where it does not. Not product code: nothing else may import it.
"""

from __future__ import annotations

from collections.abc import Iterable

SPEECH_FORBIDDEN = "<{`_"  # grammar.SPEECH_FORBIDDEN at 4f6cc84 (unchanged since)
OLD_UNSPEAKABLE_WORDS = ("function", "caller", "reply")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _grammar_literal(text: str) -> str:  # grammar._literal
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def old_speech_grammar(allowed_numbers: Iterable[str], continuing: bool = False) -> str:
    """Plain speech in which every digit run is one of `allowed_numbers`.

    The reply step. Text may not contain ``<``, ``{``, a backtick (markup,
    calls) or ``_`` (a tool name or a decision option is never spoken: they
    are snake_case), nor a word that starts with one of `OLD_UNSPEAKABLE_WORDS`;
    it must start with a non-space character, and may write digits only as
    one of the numbers found in the conversation (what the caller said, tool
    results, the system prompt): a small model cannot state an hour, an
    amount or an order number that nobody gave it. (Numbers written as words
    are not caught here.) `continuing`: the text goes on after words already
    said, so it may start with a space.

    The grammar is right-linear (a finite automaton): its state is where the
    text is in a word (at a word's start, in a word that cannot become an
    unspeakable one, or part-way through one: `sp-t-fun` after "fun") and
    whether a number just ended (a digit may not follow it: two numbers
    written together make one nobody gave).
    """
    numbers = sorted({n for n in allowed_numbers if n.isdigit()}, key=lambda n: (-len(n), n))
    prefixes = sorted(
        {w[:i] for w in OLD_UNSPEAKABLE_WORDS for i in range(1, len(w))}
    )  # the trie's inner nodes
    banned = set(OLD_UNSPEAKABLE_WORDS)

    def state(prefix: str) -> str:
        return f"sp-t-{prefix}" if prefix else "sp-w"

    def letters(chars: Iterable[str]) -> str:
        chosen = sorted(set(chars))
        return "".join(chosen) + "".join(c.upper() for c in chosen)

    def after(prefix: str | None) -> list[tuple[str, str]]:
        """(letter class, next rule) for a letter written at a word start (None) or in
        the middle of an unspeakable word's first letters `prefix`."""
        base = "" if prefix is None else prefix
        moves: dict[str, str] = {}
        for letter in _LETTERS:
            word = base + letter
            if word in banned:
                moves[letter] = ""  # no move: the word would be said
            elif word in prefixes:
                moves[letter] = state(word)
            else:
                moves[letter] = "sp-w"
        out: list[tuple[str, str]] = []
        for target in sorted({t for t in moves.values() if t}):
            out.append((f"[{letters(c for c, t in moves.items() if t == target)}]", target))
        return out

    other = f"[^{SPEECH_FORBIDDEN}0-9a-zA-Z]"  # ends a word
    other_first = f"[^{SPEECH_FORBIDDEN}0-9a-zA-Z \\t\\n\\r]"
    number = ["sp-num sp-n"] if numbers else []

    def alternatives(moves: list[tuple[str, str]], boundary: str, with_number: bool) -> str:
        parts = [f"{cls} {target}" for cls, target in moves] + [f"{boundary} sp-b"]
        return " | ".join(parts + (number if with_number else []))

    start = after(None)
    first = alternatives(start, other if continuing else other_first, True)
    lines = [
        f"root ::= {first}",
        f'sp-b ::= {alternatives(start, other, True)} | ""',
        f'sp-n ::= {alternatives(start, other, False)} | ""',
        f"sp-w ::= [a-zA-Z] sp-w | {other} sp-b | {' | '.join(number + [chr(34) * 2])}",
    ]
    for prefix in prefixes:
        lines.append(f'{state(prefix)} ::= {alternatives(after(prefix), other, True)} | ""')
    if numbers:
        lines.append("sp-num ::= " + " | ".join(_grammar_literal(n) for n in numbers))
    return "\n".join(lines) + "\n"


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


def old_speech_grammar_without(
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
