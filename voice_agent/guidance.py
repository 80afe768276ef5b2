"""Guidance: a tool result that carries no fact, only flags and a note for the agent.

Call control answers with what happens to the call, not with something to tell the
caller: ``{"ending": true, "note": "the call ends after your goodbye"}``. The note is
for a model that reads it (words, since a model reads words); the flags are for code.

`SAY_NOTHING_MORE` is the flag a reply goes by: the engine says what happens itself (a
transfer's "I'm transferring you now. Please hold."), so the agent's reply to that
result says nothing (the embedded server runs no model step, see
`voice_agent.local_llm.respond`). The tool sets it; nothing parses the note's English
for it. It rides inside the tool's result like any other key, so the OpenAI tool-calling
protocol is unchanged: another client sees one more boolean in a JSON object, and the
note still says it in words.
"""

from __future__ import annotations

from typing import Any

#: The key of a guidance result's words for the agent.
NOTE = "note"
#: The key of the flag that asks for no reply after the result (True when set).
SAY_NOTHING_MORE = "say_nothing_more"


def guidance(note: str, *, say_nothing_more: bool = False, **flags: bool) -> dict[str, Any]:
    """A guidance result: the tool's `flags` (``ending=True``), its `note` for the agent,
    and `SAY_NOTHING_MORE` when nothing is to be said after it."""
    result: dict[str, Any] = {**flags, NOTE: note}
    if say_nothing_more:
        result[SAY_NOTHING_MORE] = True
    return result


def is_guidance(result: object) -> bool:
    """True when `result` is guidance: an object with a string note and, besides it, only
    flags (booleans or nulls)."""
    return (
        isinstance(result, dict)
        and isinstance(result.get(NOTE), str)
        and all(isinstance(v, bool) or v is None for k, v in result.items() if k != NOTE)
    )


def says_nothing_more(result: object) -> bool:
    """True when `result` is guidance whose tool asked for no reply after it."""
    return isinstance(result, dict) and is_guidance(result) and result.get(SAY_NOTHING_MORE) is True
