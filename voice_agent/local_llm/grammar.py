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
import re
from collections.abc import Mapping, Sequence
from typing import Any

from voice_agent.local_llm.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

#: OpenAI's rule for function names; it also keeps names safe inside GBNF and JSON literals.
_TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

#: Characters plain text may not contain when tools are offered: "<" and "{"
#: open calls; "`" because the 0.5B model otherwise opens a ```json fence
#: as text before its call (and markdown fences are noise to a TTS anyway).
TEXT_FORBIDDEN = "<{`"

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
        _CHAR_RULE_RE.sub(lambda _: _STRICT_CHAR_RULE, converter.format_grammar()),
    ]
    return "\n".join(lines) + "\n"


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


def _literal(text: str) -> str:
    escaped = (
        text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'
