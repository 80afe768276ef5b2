"""Fitting a rendered conversation into a context window: the context-budget policy.

The ledger keeps everything; this module decides what one *request* shows the
model when the whole rendering would not fit. It works on rendered OpenAI
messages (`ledger.render`'s output), so the tool-calling protocol stays valid:
it only ever removes whole blocks (a user turn, or an assistant message with
all its tool messages) and shortens message *content*, never ids or calls.

The policy, in order:

1. **Large contents are capped.** A tool result (or user message, or
   assistant text) longer than a quarter of the budget is cut to that size,
   keeping its head and tail around a marker that says how much was left
   out. The cap depends only on the budget, so the same message renders the
   same way in every later request (a 1 MB result is shown once, capped, and
   costs the same in every later request instead of 1 MB).
2. **Old turns are elided, in steps.** Turns (a user message and everything
   up to the next one) are dropped oldest first. A forward pass over the
   turns moves the window start only when the rendering overflows the budget,
   and then far enough that the kept part fits in `LOW_WATER` of it; the
   decision at each turn depends only on the turns before it. So between two
   elision steps every rendering is an extension of the previous one
   (append-stable: a server's prefix cache keeps working), and a step happens
   about once per `1 - LOW_WATER` of the budget's worth of new conversation,
   not on every turn.
3. **Elided turns leave a digest.** A short extractive digest of what was
   elided (what the caller said, what the agent said, which tools returned
   what, each clipped) is appended to the system message. It changes only at
   an elision step, when the prefix changes anyway. No LLM summary: it would
   cost a round trip on the caller's time and could invent facts.
4. **One huge turn is squeezed.** If the current turn alone overflows, its
   oldest blocks after the user message are dropped (never the last one),
   then the largest contents are halved until the whole fits or nothing is
   left to shorten.

Sizes are estimated, not tokenised (`CHARS_PER_TOKEN`): the server's own
context-length error is the ground truth, and the LLM client lowers the
budget when it sees one (see `voice_agent.llm`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CHARS_PER_TOKEN",
    "LOW_WATER",
    "FitResult",
    "estimate_tokens",
    "fit_messages",
]

Message = dict[str, Any]

CHARS_PER_TOKEN = 3.0
"""Characters per token for estimates. BPE tokenisers average ~4 on English
prose and ~3 on JSON and digits; 3 errs on the side of a smaller rendering."""

MESSAGE_OVERHEAD_TOKENS = 6
"""Tokens a chat template adds per message (role markers, separators)."""

LOW_WATER = 0.5
"""After an elision step the kept turns fill at most this fraction of the budget,
so the next step is half a budget of conversation away (fewer prefix changes)."""

CONTENT_CAP_FRACTION = 0.25
"""No single message content may take more than this fraction of the budget."""

DIGEST_FRACTION = 0.10
"""The digest of elided turns takes at most this fraction of the budget."""

DIGEST_LINE_CHARS = 160
"""Each digest line is clipped to this many characters."""

MIN_CONTENT_CHARS = 200
"""Squeezing never shortens a content below this (a marker must still fit)."""


@dataclass(frozen=True)
class FitResult:
    """What `fit_messages` did: the messages to send and what it left out."""

    messages: list[Message]
    estimated_tokens: int
    elided_turns: int = 0
    elided_blocks: int = 0
    capped_contents: int = 0

    @property
    def changed(self) -> bool:
        """True when anything was elided or shortened."""
        return bool(self.elided_turns or self.elided_blocks or self.capped_contents)


def _chars(message: Message) -> int:
    return len(json.dumps(message, ensure_ascii=False))


def estimate_tokens(messages: Sequence[Message]) -> int:
    """Estimated prompt tokens of `messages` (JSON size / `CHARS_PER_TOKEN` + per-message overhead)."""
    return sum(_message_tokens(m) for m in messages)


def _message_tokens(message: Message) -> int:
    return int(_chars(message) / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS


def _shorten(text: str, limit: int) -> str:
    """`text` cut to about `limit` characters: head, a marker with what was left out, tail."""
    if len(text) <= limit:
        return text
    marker = (
        f" …[{len(text) - limit:,} characters left out here to fit the context window; "
        "the full text is in the call's record]… "
    )
    keep = max(0, limit - len(marker))
    head = keep * 2 // 3
    tail = keep - head
    return text[:head] + marker + (text[-tail:] if tail else "")


def _cap_content(message: Message, limit: int) -> tuple[Message, bool]:
    content = message.get("content")
    if not isinstance(content, str) or len(content) <= limit:
        return message, False
    return {**message, "content": _shorten(content, limit)}, True


def _split_turns(body: list[Message]) -> list[list[Message]]:
    """Turns: each starts at a user message (the first may start without one)."""
    turns: list[list[Message]] = []
    for message in body:
        if message.get("role") == "user" or not turns:
            turns.append([])
        turns[-1].append(message)
    return turns


def _split_blocks(turn: list[Message]) -> list[list[Message]]:
    """Blocks of a turn: a message with the tool messages that answer it."""
    blocks: list[list[Message]] = []
    for message in turn:
        if message.get("role") == "tool" and blocks:
            blocks[-1].append(message)
        else:
            blocks.append([message])
    return blocks


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= DIGEST_LINE_CHARS else text[: DIGEST_LINE_CHARS - 1] + "…"


def _digest_lines(messages: Sequence[Message]) -> list[str]:
    names: dict[str, str] = {}
    lines: list[str] = []
    for m in messages:
        role = m.get("role")
        if role == "user":
            lines.append(f"- caller: {_clip(m.get('content', ''))}")
        elif role == "assistant":
            if m.get("content"):
                lines.append(f"- agent: {_clip(m['content'])}")
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {})
                names[call.get("id", "")] = f"{fn.get('name', '?')}({fn.get('arguments', '')})"
        elif role == "tool":
            call = names.get(m.get("tool_call_id", ""), "a tool")
            lines.append(f"- {_clip(call + ' -> ' + str(m.get('content', '')))}")
    return lines


DIGEST_HEADER = (
    "\n\nEarlier in this call (older turns are left out to fit the context window; "
    "a digest, most recent last):\n"
)


def _digest(elided: Sequence[Message], limit_chars: int) -> str:
    """A bounded digest of elided messages; the most recent lines are kept."""
    lines = _digest_lines(elided)
    kept: list[str] = []
    size = len(DIGEST_HEADER)
    for line in reversed(lines):
        if size + len(line) + 1 > limit_chars:
            break
        kept.append(line)
        size += len(line) + 1
    if len(kept) < len(lines):
        kept.append(f"- ({len(lines) - len(kept)} earlier items not shown)")
    return DIGEST_HEADER + "\n".join(reversed(kept))


def fit_messages(messages: Sequence[Message], budget_tokens: int | None) -> FitResult:
    """Fit `messages` (a valid OpenAI conversation) into about `budget_tokens`.

    `budget_tokens` is what the prompt may use (the context window minus the
    response's `max_tokens` and the tools' schemas); None means no limit and
    returns the messages unchanged. The result is a valid conversation whose
    estimated size is within the budget unless even the system prompt and
    the last turn's minimal form exceed it (then it is as small as the policy
    can make it). Pure: the same input gives the same output.
    """
    items = list(messages)
    if budget_tokens is None:
        return FitResult(items, estimate_tokens(items))
    budget = max(1, int(budget_tokens))
    system: Message | None = items[0] if items and items[0].get("role") == "system" else None
    body = items[1:] if system is not None else items

    # 1. Cap single contents (depends on the budget only: append-stable).
    cap_chars = max(MIN_CONTENT_CHARS, int(budget * CONTENT_CAP_FRACTION * CHARS_PER_TOKEN))
    capped = 0
    capped_body: list[Message] = []
    for message in body:
        new, was_capped = _cap_content(message, cap_chars)
        capped += was_capped
        capped_body.append(new)

    # 2. Elide old turns in steps (a forward pass: the start only moves on overflow).
    digest_chars = int(budget * DIGEST_FRACTION * CHARS_PER_TOKEN)
    # JSON escaping (newlines, quotes) makes the digest a little longer than its characters.
    digest_tokens = int(digest_chars * 1.1 / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS
    system_tokens = _message_tokens(system) if system is not None else MESSAGE_OVERHEAD_TOKENS
    room = budget - system_tokens - digest_tokens
    turns = _split_turns(capped_body)
    sizes = [estimate_tokens(t) for t in turns]
    start, total = 0, 0
    for i, size in enumerate(sizes):
        total += size
        if total > room:
            while start < i and total > room * LOW_WATER:
                total -= sizes[start]
                start += 1
    elided = [m for t in turns[:start] for m in t]
    kept = [m for t in turns[start:] for m in t]

    # 3. The digest goes into the system message (or a new one).
    head: list[Message] = []
    if elided:
        digest = _digest(elided, digest_chars)
        if system is not None:
            head = [{**system, "content": str(system.get("content", "")) + digest}]
        else:
            head = [{"role": "system", "content": digest.lstrip()}]
    elif system is not None:
        head = [system]

    # 4. Squeeze a turn that overflows on its own.
    elided_blocks = 0
    if estimate_tokens(head) + estimate_tokens(kept) > budget and kept:
        kept, elided_blocks, squeezed = _squeeze(kept, budget - estimate_tokens(head))
        capped += squeezed
    result = head + kept
    return FitResult(
        result,
        estimate_tokens(result),
        elided_turns=start,
        elided_blocks=elided_blocks,
        capped_contents=capped,
    )


def _squeeze(kept: list[Message], room: int) -> tuple[list[Message], int, int]:
    """Make the last turn(s) fit in `room`: drop middle blocks, then halve the largest contents."""
    blocks = _split_blocks(kept)
    # Keep the first block (the turn's user message) and the last one; drop the oldest between.
    dropped = 0
    while len(blocks) > 2 and sum(estimate_tokens(b) for b in blocks) > room:
        del blocks[1]
        dropped += 1
    flat = [m for b in blocks for m in b]
    shortened = 0
    while estimate_tokens(flat) > room:
        sizes = [len(m["content"]) if isinstance(m.get("content"), str) else 0 for m in flat]
        biggest = max(range(len(flat)), key=sizes.__getitem__)
        if sizes[biggest] <= MIN_CONTENT_CHARS:
            break  # nothing left to shorten: as small as the policy can make it
        flat[biggest], _ = _cap_content(flat[biggest], max(MIN_CONTENT_CHARS, sizes[biggest] // 2))
        shortened += 1
    return flat, dropped, shortened
