"""GBNF grammars that make a small model's tool calls well-formed.

With tools offered, the model's reply is constrained to one of:

- plain text: one or more characters, the first not whitespace, none of
  them ``<``, ``{`` or a backtick (so text
  can never be mistaken for, or degenerate into, a half-written call, and no
  markup reaches the speech output);
- optional plain text followed by one or more calls, separated by a newline,
  each exactly as Qwen's chat template writes them::

      <tool_call>
      {"name": "<one of the tool names>", "arguments": <JSON matching that tool's parameters>}
      </tool_call>

  or the same JSON object without the tags. The 0.5B model, asked for a
  call, starts with ``{`` far more often than with ``<tool_call>``; since
  text may not contain ``{``, a ``{`` can only open a call, and the grammar
  then holds it to the exact shape (`output_parser` reads both forms).

``tool_choice="none"`` allows only plain text, ``"required"`` only calls, a
named function exactly one call of it; ``parallel_tool_calls=False`` allows at
most one call. The argument grammars come from llama.cpp's JSON-schema
converter (`llama_cpp.llama_grammar.SchemaConverter`).
"""

from __future__ import annotations

import ctypes
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from voice_agent.local_llm.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

#: OpenAI's rule for function names; it also keeps names safe inside GBNF and JSON literals.
_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

#: Characters plain text may not contain when tools are offered: "<" and "{"
#: open calls; "`" because the 0.5B model otherwise opens a ```json fence
#: as text before its call (and markdown fences are noise to a TTS anyway).
TEXT_FORBIDDEN = "<{`"
#: ... and in speech chosen by the decision step, also "_": tool names are snake_case.
SPEECH_FORBIDDEN = TEXT_FORBIDDEN + "_"

_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}

#: The converter's string character rule admits raw control characters (a raw
#: newline inside a string is invalid JSON); this one follows RFC 8259.
_STRICT_CHAR_RULE = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'
_CHAR_RULE_RE = re.compile(r"^char ::= .*$", re.MULTILINE)


class GrammarError(ValueError):
    """The tools or tool_choice cannot be turned into a valid grammar."""


def tool_names(tools: Sequence[Mapping[str, Any]]) -> list[str]:
    """The function names of OpenAI ``tools`` entries, validated."""
    names: list[str] = []
    for tool in tools:
        function = tool.get("function") if tool.get("type", "function") == "function" else None
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not _TOOL_NAME_RE.match(name):
            raise GrammarError(f"tool has no valid function name: {tool!r}")
        names.append(name)
    if len(set(names)) != len(names):
        raise GrammarError(f"duplicate tool names: {names}")
    return names


def forced_tool_name(tool_choice: Any) -> str | None:
    """The function name a ``tool_choice`` object forces, or None for a string choice."""
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str):
            raise GrammarError(f"tool_choice names no function: {tool_choice!r}")
        return name
    if tool_choice not in (None, "auto", "none", "required"):
        raise GrammarError(f"unsupported tool_choice: {tool_choice!r}")
    return None


def build_tool_grammar(
    tools: Sequence[Mapping[str, Any]],
    tool_choice: Any = "auto",
    parallel_tool_calls: bool = True,
    text_first: bool = False,
) -> str:
    """The GBNF grammar (root rule ``root``) for a reply given these tools.

    `text_first` (used after tool results, ``tool_choice="auto"`` only) makes
    the reply start with text: the small model otherwise repeats the call it
    just got the answer to instead of reporting the answer.

    Raises `GrammarError` for invalid tool names, a forced function that is
    not among the tools, or a parameters schema the converter rejects.
    """
    # Imported here so that prompt/grammar code stays importable without llama.cpp.
    from llama_cpp.llama_grammar import SchemaConverter

    names = tool_names(tools)
    forced = forced_tool_name(tool_choice)
    if forced is not None and forced not in names:
        raise GrammarError(f"tool_choice forces {forced!r}, which is not among the tools {names}")

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    call_rules: dict[str, str] = {}
    for index, (name, tool) in enumerate(zip(names, tools, strict=True)):
        schema = tool["function"].get("parameters") or _NO_PARAMETERS
        try:
            resolved = converter.resolve_refs(dict(schema), f"tool-{index}")
            args_rule = converter.visit(resolved, f"tc-args-{index}")
        except Exception as exc:  # the converter raises bare Exceptions for bad schemas
            raise GrammarError(f"cannot build a grammar for tool {name!r}: {exc}") from exc
        head = _literal(f'{{"name": "{name}", "arguments": ')
        call_rules[f"tc-obj-{index}"] = f'{head} {args_rule} "}}"'
        call_rules[f"tc-call-{index}"] = (
            f"{_literal(TOOL_CALL_OPEN + chr(10))} tc-obj-{index} {_literal(chr(10) + TOOL_CALL_CLOSE)}"
            f" | tc-obj-{index}"
        )

    if forced is not None:
        root = f"tc-call-{names.index(forced)}"
    else:
        calls = "tc-call" if not parallel_tool_calls else 'tc-call ( "\\n" tc-call )*'
        root = {
            "none": "tc-text",
            "required": calls,
        }.get(
            str(tool_choice),
            f"tc-text ( {calls} )?" if text_first else f"tc-text ( {calls} )? | {calls}",
        )

    lines = [
        f"root ::= {root}",
        f"tc-text ::= [^{TEXT_FORBIDDEN} \\t\\n\\r] tc-char*",
        f"tc-char ::= [^{TEXT_FORBIDDEN}]",
        "tc-call ::= " + " | ".join(r for r in call_rules if r.startswith("tc-call-")),
        *(f"{rule} ::= {body}" for rule, body in call_rules.items()),
        _converted_rules(converter),
    ]
    return "\n".join(lines) + "\n"


def choice_grammar(options: Sequence[str], closing: str = '"') -> str:
    """A grammar whose only outputs are one of `options` followed by `closing`.

    The decision step: after ``{"name": "`` the model can only write a tool
    name (or the reply option) and the closing quote.
    """
    if not options:
        raise GrammarError("a choice needs at least one option")
    alternatives = " | ".join(_literal(option) for option in options)
    return f"root ::= ( {alternatives} ) {_literal(closing)}\n"


def calls_grammar(tools: Sequence[Mapping[str, Any]], first: str, more_calls: int) -> str:
    """The rest of a reply whose first call, `first`, is written up to its arguments.

    The model continues after ``<tool_call>\n{"name": "FIRST", "arguments": ``:
    the arguments under FIRST's JSON schema, ``}`` and ``</tool_call>``, then
    at most `more_calls` further calls (each in the template's tagged form),
    then the end of the turn. No text can follow a call.
    """
    from llama_cpp.llama_grammar import SchemaConverter

    names = tool_names(tools)
    if first not in names:
        raise GrammarError(f"{first!r} is not among the tools {names}")
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    args_rules: dict[str, str] = {}
    for index, (name, tool) in enumerate(zip(names, tools, strict=True)):
        schema = tool["function"].get("parameters") or _NO_PARAMETERS
        try:
            resolved = converter.resolve_refs(dict(schema), f"tool-{index}")
            args_rules[name] = converter.visit(resolved, f"tc-args-{index}")
        except Exception as exc:  # the converter raises bare Exceptions for bad schemas
            raise GrammarError(f"cannot build a grammar for tool {name!r}: {exc}") from exc
    close = _literal("}\n" + TOOL_CALL_CLOSE)
    lines = [f"root ::= {args_rules[first]} {close} tc-more-0"]
    for depth in range(more_calls):
        nested = f" tc-more-{depth + 1}" if depth + 1 < more_calls else ""
        lines.append(f'tc-more-{depth} ::= ( "\\n" tc-next{nested} )?')
    if more_calls == 0:
        lines.append('tc-more-0 ::= ""')
    else:
        alternatives = " | ".join(
            f"{_literal(TOOL_CALL_OPEN + chr(10) + '{' + chr(34) + 'name' + chr(34) + ': ' + chr(34) + name + chr(34) + ', ' + chr(34) + 'arguments' + chr(34) + ': ')} {args_rules[name]} {close}"
            for name in names
        )
        lines.append(f"tc-next ::= {alternatives}")
    lines.append(_converted_rules(converter))
    return "\n".join(lines) + "\n"


#: Words speech may not contain, in any case, anywhere in a word: the agent's own
#: machinery, never words to the caller. "function" (and "functions", "functional"):
#: the 0.5B said 'You can call the "reply" function ...' (bench r19, session 6), and
#: checking held speech for it (`respond.names_a_function`) cannot unsay streamed
#: speech. "caller": the prompts and notes speak of "the caller" ("The caller just
#: asked ...": the 0.5B, r23; "Could you tell me the caller's phone number?": the
#: 1.5B); the agent speaks to the caller as "you". "reply": the decision's option for
#: speaking (`respond.REPLY`), an English word, so the "_" rule does not keep it out
#: ("replies", "replying" go with it; the agent can say "answer"). Anywhere in a word,
#: not only at its start: a model whose " function" is refused can write "function"
#: glued to the word before it ("thefunction", read out as "the function"), as the
#: 1.5B glued a banned "warehouse" ("yourwarehouse", session 8). The price: "malfunction"
#: and "dysfunction" cannot be said either. A word that only starts like one ("fun",
#: "call", "callback", "rep") is free.
UNSPEAKABLE_WORDS = ("function", "caller", "reply")

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"


def speech_grammar(
    allowed_numbers: Iterable[str],
    banned: Iterable[str] = (),
    banned_starts: Iterable[str] = (),
    speakable: Iterable[str] = (),
    *,
    continuing: bool = False,
) -> str:
    """Plain speech in which every digit run is one of `allowed_numbers` and no word
    holds a banned stem: the grammar of everything the agent speaks.

    Text may not contain ``<``, ``{``, a backtick (markup, calls) or ``_`` (a
    tool name or a decision option is never spoken: they are snake_case). A
    word (a run of ASCII letters, any case) may not contain one of
    `UNSPEAKABLE_WORDS` or of `banned` anywhere, nor start with one of
    `banned_starts` (an answer from results leaves out the caller's own words:
    `answer_words.answer_bans`), unless the word starts with one of `speakable`:
    words the agent was given stay speakable though a banned start begins them
    ("sent" banned, "sentence" given; the word "sent" itself stays banned). Digits may only be written as one of the
    numbers found in the conversation (what the caller said, tool results, the
    system prompt; ASCII digits), two never touching: a small model cannot
    state an hour, an amount or an order number that nobody gave it. (Numbers
    written as words are not caught here.) Text starts with a non-space
    character unless `continuing`: it goes on after words already said.

    The grammar is right-linear and deterministic (a finite automaton: each
    rule's alternatives start with disjoint characters, so no text can be read
    two ways): its state is either in a word (the state of an Aho-Corasick
    automaton over the banned patterns, a short stem anchored at the word's
    start; a letter that would complete a pattern has no move), in a number (a
    node of the trie of the allowed numbers), or between words (`sp-b`). One
    builder for every speech (before session 9 the answer from results had its
    own); `bench/speech_grammar_cost.py` measures what it costs per request.
    """
    numbers = {n for n in allowed_numbers if n.isascii() and n.isdigit()}
    patterns = {w.lower() for w in [*UNSPEAKABLE_WORDS, *banned] if w.isascii() and w.isalpha()}
    kept = frozenset(w.lower() for w in speakable if w.isascii() and w.isalpha())
    for stem in banned_starts:
        if stem.isascii() and stem.isalpha():
            patterns |= _start_patterns(stem.lower(), kept)
    letter_moves, unending = _word_states(frozenset(patterns))
    number_prefixes = sorted({n[:i] for n in numbers for i in range(1, len(n) + 1)})
    number_rules = {digits: f"sp-n{i}" for i, digits in enumerate(number_prefixes)}

    def digit_moves(digits: str) -> list[str]:
        """Alternatives for a number's next digit."""
        return [f"[{d}] {number_rules[digits + d]}" for d in _DIGITS if digits + d in number_rules]

    other = f"[^{SPEECH_FORBIDDEN}0-9a-zA-Z]"  # ends a word or a number
    other_first = other if continuing else f"[^{SPEECH_FORBIDDEN}0-9a-zA-Z \\t\\n\\r]"

    def alternatives(state: str, boundary: str, digits: str | None) -> list[str]:
        """A word's next letter from `state`, a `boundary` character, then a number's
        next digit after `digits` (None: no digit may follow): the likeliest first. A
        word that may not end in `state` (a banned whole word) only takes a letter."""
        moves = letter_moves[state]
        if state in unending:
            return moves
        return [
            *moves[:1],
            f"{boundary} sp-b",
            *moves[1:],
            *(digit_moves(digits) if digits is not None else []),
        ]

    lines = [
        "root ::= " + " | ".join(alternatives("^", other_first, "")),
        "sp-b ::= " + " | ".join([*alternatives("^", other, ""), '""']),
    ]
    for state, rule in _state_rules(letter_moves).items():  # a number may follow a word
        end = [] if state in unending else ['""']
        lines.append(f"{rule} ::= " + " | ".join([*alternatives(state, other, ""), *end]))
    for digits, rule in number_rules.items():
        body = digit_moves(digits)
        if digits in numbers:  # a whole number: then anything but a digit, or the end
            body += [*alternatives("^", other, None), '""']
        lines.append(f"{rule} ::= " + " | ".join(body))
    return "\n".join(lines) + "\n"


def _state_rules(states: Mapping[str, object]) -> dict[str, str]:
    """The rule name of each word state (every state but the word's start, "^")."""
    return {state: f"sp-w{i}" for i, state in enumerate(s for s in states if s != "^")}


def _start_patterns(stem: str, kept: frozenset[str]) -> set[str]:
    """The patterns (for `_word_states`) that ban every word starting with `stem` but the
    `kept` words and the words they begin: "^stem" when no kept word starts with it,
    else, along the kept words' letters, each letter that leaves them ("^stemx") and
    each word that ends before one is complete ("^stem$")."""
    below = sorted(w for w in kept if w.startswith(stem) and w != stem)
    if not below:
        return {"^" + stem}
    patterns: set[str] = set()
    frontier = [stem]
    while frontier:
        prefix = frontier.pop()
        if prefix in below:
            continue  # a kept word: it, and any word it begins, may be said
        patterns.add(f"^{prefix}$")
        onward = {w[len(prefix)] for w in below if w.startswith(prefix) and len(w) > len(prefix)}
        for letter in _LETTERS:
            if letter in onward:
                frontier.append(prefix + letter)
            else:
                patterns.add(f"^{prefix}{letter}")
    return patterns


@functools.lru_cache(maxsize=64)  # the plain speech's patterns recur on every request
def _word_states(patterns: frozenset[str]) -> tuple[dict[str, list[str]], frozenset[str]]:
    """(Cached: the caller must not change what it returns.) The states of a word that
    holds none of `patterns` (an Aho-Corasick automaton; a pattern starting with "^"
    only at the word's start, one ending with "$" only as the whole word), each with
    its alternatives for the next letter (GBNF: a letter class and the next state's
    rule), the one most letters go to first: llama.cpp tries a token against the
    alternatives in order; and the states in which the word may not end (a whole-word
    pattern's letters read).

    A state is the longest pattern prefix that "^" followed by the word's letters ends
    with; a letter that completes a pattern leads nowhere. States are listed from the
    word's start ("^"), breadth first, so the rule names are stable."""
    prefixes = {p[:i] for p in patterns for i in range(len(p) + 1)}
    fails: dict[str, str] = {}
    moves_to: dict[tuple[str, str], str] = {}
    holds: dict[str, bool] = {}

    def fail(state: str) -> str:
        """The longest proper suffix of `state` that is a pattern prefix."""
        if state not in fails:
            fails[state] = next(
                state[i:] for i in range(1, len(state) + 1) if state[i:] in prefixes
            )
        return fails[state]

    def move(state: str, letter: str) -> str:
        """The state after `letter` (the automaton's goto, falling back along `fail`)."""
        key = (state, letter)
        if key not in moves_to:
            if state + letter in prefixes:
                moves_to[key] = state + letter
            else:
                moves_to[key] = move(fail(state), letter) if state else ""
        return moves_to[key]

    def holds_pattern(state: str) -> bool:
        """Whether text whose longest pattern-prefix suffix is `state` ends in a pattern."""
        if state not in holds:
            holds[state] = state in patterns or (bool(state) and holds_pattern(fail(state)))
        return holds[state]

    def step(state: str, letter: str) -> str | None:
        target = move(state, letter)
        return None if holds_pattern(target) else target

    transitions: dict[str, dict[str, str]] = {}
    frontier = ["^"]
    while frontier:
        state = frontier.pop(0)
        transitions[state] = {}
        for letter in _LETTERS:
            target = step(state, letter)
            if target is not None:
                transitions[state][letter] = target
                if target not in transitions and target not in frontier:
                    frontier.append(target)
    rules = _state_rules(transitions)
    moves: dict[str, list[str]] = {}
    for state, targets in transitions.items():
        by_rule: dict[str, list[str]] = {}
        for letter, target in targets.items():
            by_rule.setdefault(rules[target], []).append(letter)
        moves[state] = [
            f"[{_ranges(chars)}{_ranges(c.upper() for c in chars)}] {rule}"
            for rule, chars in sorted(by_rule.items(), key=lambda move: (-len(move[1]), move[0]))
        ]
    unending = frozenset(s for s in transitions if s + "$" in patterns)
    return moves, unending


def _ranges(chars: Iterable[str]) -> str:
    """A character class's body for these letters, runs written as ranges ("a-eg-z"):
    llama.cpp's matcher scans a class's ranges one by one."""
    return _ranges_of("".join(sorted(set(chars))))


@functools.lru_cache(maxsize=1024)
def _ranges_of(chars: str) -> str:
    codes = [ord(c) for c in chars]
    runs: list[list[int]] = []
    for code in codes:
        if runs and code == runs[-1][1] + 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    return "".join(
        chr(a) if a == b else f"{chr(a)}{chr(b)}" if b == a + 1 else f"{chr(a)}-{chr(b)}"
        for a, b in runs
    )


def check_grammar(grammar: str, root: str = "root") -> None:
    """Parse `grammar` with llama.cpp's own parser; raise `GrammarError` if it fails.

    Uses no model (a grammar is parsed before any vocabulary is consulted),
    so it is cheap enough to run on every request.
    """
    from llama_cpp import llama_cpp as native

    sampler = native.llama_sampler_init_grammar(
        ctypes.c_void_p(0), grammar.encode("utf-8"), root.encode("utf-8")
    )
    if not sampler:
        raise GrammarError("llama.cpp rejected the grammar (its parser printed why on stderr)")
    native.llama_sampler_free(sampler)


def _converted_rules(converter: Any) -> str:
    """The converter's rules, strings per RFC 8259, JSON laid out as `to_json` writes it."""
    return canonical_json_layout(
        _CHAR_RULE_RE.sub(lambda _: _STRICT_CHAR_RULE, converter.format_grammar())
    )


#: A GBNF literal ("..."), a character class ([...]) or anything else up to the next one.
_GBNF_PIECE_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|[^"\[]+')


def canonical_json_layout(rules: str) -> str:
    """Rewrite llama.cpp's JSON-schema rules to allow exactly one layout: ``{"a": 1, "b": [2]}``.

    The converter lets optional whitespace (its ``space`` rule) follow every
    brace, bracket, comma, colon and value. Allowing only the layout that
    `chat_format.to_json` writes (", " and ": ", nothing inside the braces)
    changes no value a call can carry, and it makes the punctuation and
    property names between the values *forced*: the grammar admits a single
    next character there, which the engine evaluates in one batch instead of
    sampling it token by token (`sampling.TokenSampler.forced_text`). The
    1.5B and 0.5B write this layout anyway when left free. The ``space``
    rule itself stays defined (unused).
    """
    out = []
    for line in rules.splitlines():
        if line.startswith("space ::="):
            out.append(line)
            continue
        pieces = _GBNF_PIECE_RE.findall(line)
        text = ""
        for piece in pieces:
            if piece.startswith(('"', "[")):
                text += piece
            else:
                text += re.sub(r"\bspace\b", "\x00", piece)
        # \x00 marks a `space` reference; literals and classes never contain a raw NUL.
        text = text.replace('\x00 ":" \x00', '": "').replace('"," \x00', '", "')
        text = text.replace('"{" \x00', '"{"').replace('"[" \x00', '"["')
        out.append(re.sub(r" ?\x00", "", text))
    return "\n".join(out)


def _literal(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'
