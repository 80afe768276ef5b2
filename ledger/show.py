"""A readable transcript of a recorded session (`voice-agent ledger show FILE`), and
the list of the sessions in a directory (`voice-agent ledger show DIRECTORY`).

One line per entry: time relative to the first entry, a word for the kind of
entry, ids and names, clipped text; then a summary (user turns, responses
and interruptions, calls by status, speculation and forks). It reads any
entry sequence, also one that breaks the ledger protocol (it is a diagnosis
tool), and never renders raw JSON beyond `WIDTH` characters per value.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from ledger.entries import (
    ENTRY_ADAPTER,
    AgentTextPlanned,
    AgentTextPlayed,
    Entry,
    ForkAdopted,
    ForkDiscarded,
    ForkOpened,
    LlmRequestStarted,
    LlmResponseFinished,
    Note,
    SessionEnded,
    SessionStarted,
    ToolCallCancelled,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallStarted,
    ToolCallTimedOut,
    UserUtterance,
)

__all__ = ["WIDTH", "format_directory", "format_session"]

WIDTH = 80
"""Longest text/value shown on one line (characters); longer ones end in an ellipsis."""

_KIND_WIDTH = 16  # column width of the kind word (characters)


def _clip(text: str, width: int = WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _quote(text: str) -> str:
    return f'"{_clip(text)}"'


def _json(value: object) -> str:
    return _clip(json.dumps(value, ensure_ascii=False))


def _describe(
    entry: Entry, names: dict[str, str], discarded: frozenset[str] = frozenset()
) -> tuple[str, str]:
    """The kind word and the detail text of one entry line (``discarded``: speculative
    calls no final call adopted)."""
    match entry:
        case SessionStarted():
            meta = f" {_json(entry.meta)}" if entry.meta else ""
            return "session", f"{entry.session_id} started at {entry.started_at}{meta}"
        case UserUtterance():
            kind = "user" if entry.final else "user (partial)"
            return kind, f"turn {entry.turn_id} {_quote(entry.text)}"
        case LlmRequestStarted():
            return "llm", f"{entry.response_id} request ({entry.reason}, {entry.mode})"
        case AgentTextPlanned():
            kind = "engine (planned)" if entry.canned else "agent (planned)"
            return kind, f"{entry.response_id} {_quote(entry.text)}"
        case AgentTextPlayed():
            cut = " [interrupted]" if entry.interrupted else ""
            return "agent (heard)", f"{entry.response_id} {_quote(entry.text)}{cut}"
        case LlmResponseFinished():
            error = f": {_clip(entry.error)}" if entry.error else ""
            return "llm", f"{entry.response_id} finished ({entry.finish_reason}){error}"
        case ToolCallStarted():
            after = f" after {', '.join(entry.depends_on)}" if entry.depends_on else ""
            detail = f"{entry.call_id} {entry.name}({_clip(entry.arguments)}) {entry.kind}"
            if entry.speculative:  # a fork's call: drawn with ~, struck through when discarded
                if entry.call_id in discarded:
                    text = f"{detail} [speculative, fork {entry.fork_id}, discarded]{after}"
                    return "call ~>", _strike(text)
                return "call ~>", f"{detail} [speculative, fork {entry.fork_id}]{after}"
            return "call ->", f"{detail}{after}"
        case ToolCallResolved():
            return "  <- resolved", f"{_call(entry.call_id, names)}: {_json(entry.result)}"
        case ToolCallFailed():
            return "  <- failed", f"{_call(entry.call_id, names)}: {_clip(entry.error)}"
        case ToolCallTimedOut():
            return "  <- timed out", f"{_call(entry.call_id, names)} after {entry.timeout_s:g}s"
        case ToolCallCancelled():
            return "  <- cancelled", f"{_call(entry.call_id, names)}: {_clip(entry.reason)}"
        case ForkOpened():
            return "fork", f"{entry.fork_id} opened on {_quote(entry.transcript)}"
        case ForkAdopted():
            pairs = ", ".join(f"{final} <- {spec}" for final, spec in entry.adopted.items())
            return "fork", f"{entry.fork_id} adopted {pairs or 'nothing'}"
        case ForkDiscarded():
            return "fork", f"{entry.fork_id} discarded ({_clip(entry.reason)})"
        case Note():
            return "note", f"[{entry.level}] {_clip(entry.text)}"
        case SessionEnded():
            return "session", f"ended ({_clip(entry.reason)})"


def _strike(text: str) -> str:
    """``text`` struck through (combining long stroke overlay after each character)."""
    return "".join(ch + "\u0336" for ch in text)


def entry_call(entry: Entry) -> str | None:
    """The call id an entry is about, if any."""
    return getattr(entry, "call_id", None)


def _call(call_id: str, names: dict[str, str]) -> str:
    name = names.get(call_id)
    return f"{call_id} {name}" if name else call_id


def _summary(entries: Sequence[Entry]) -> list[str]:
    turns = {e.turn_id for e in entries if isinstance(e, UserUtterance) and e.final}
    responses = [e for e in entries if isinstance(e, LlmRequestStarted)]
    interrupted = {
        e.response_id for e in entries if isinstance(e, AgentTextPlayed) and e.interrupted
    }
    started = [e for e in entries if isinstance(e, ToolCallStarted)]
    status: dict[str, str] = {}
    for entry in entries:
        match entry:
            case ToolCallResolved():
                status[entry.call_id] = "resolved"
            case ToolCallFailed():
                status[entry.call_id] = "failed"
            case ToolCallTimedOut():
                status[entry.call_id] = "timed out"
            case ToolCallCancelled():
                status[entry.call_id] = "cancelled"
            case _:
                pass
    adopted = {
        final: spec
        for e in entries
        if isinstance(e, ForkAdopted)
        for final, spec in e.adopted.items()
    }
    final_calls = Counter(
        status.get(c.call_id) or status.get(adopted.get(c.call_id, ""), "pending")
        for c in started
        if not c.speculative
    )
    speculative = [c for c in started if c.speculative]
    forks = Counter(
        e.type for e in entries if isinstance(e, ForkOpened | ForkAdopted | ForkDiscarded)
    )
    by_status = ", ".join(f"{count} {name}" for name, count in sorted(final_calls.items()))
    return [
        f"user turns: {len(turns)}",
        f"responses: {len(responses)} ({len(interrupted)} interrupted)",
        f"calls: {sum(final_calls.values())}" + (f" ({by_status})" if by_status else ""),
        f"speculative calls: {len(speculative)} ({len(set(adopted.values()))} adopted)",
        f"forks: {forks['ForkOpened']} opened, {forks['ForkAdopted']} adopted, "
        f"{forks['ForkDiscarded']} discarded",
        *_unfinished_writes(entries, started, status),
    ]


def _unfinished_writes(
    entries: Sequence[Entry], started: Sequence[ToolCallStarted], status: dict[str, str]
) -> list[str]:
    """(hostile9) A session cut short (no `SessionEnded`: killed, the machine went down)
    whose write has an intent and no outcome: the write may have been applied. Said
    plainly, with its intent's key, so nobody repeats it blindly."""
    if any(isinstance(e, SessionEnded) for e in entries):
        return []
    keys: dict[str, str] = {}
    for entry in entries:
        if isinstance(entry, Note):
            call_id, _, rest = entry.text.partition(": ")
            for lead in ("write intent ", "retrying intent "):
                if rest.startswith(lead):
                    keys[call_id] = rest[len(lead) :].split(" ", 1)[0]
    lines = []
    for call in started:
        if call.kind == "write" and not call.speculative and call.call_id not in status:
            key = f", intent {keys[call.call_id]}" if call.call_id in keys else ""
            lines.append(
                f"write with no outcome: {call.name} ({call.call_id}{key}) "
                f"{call.arguments}: the session ended without a record of it (killed?); it "
                "may have been applied: check before repeating it"
            )
    return lines


def format_session(entries: Sequence[Entry]) -> str:
    """Format a session's entries as readable lines followed by a summary."""
    if not entries:
        return "(empty ledger)"
    origin = entries[0].t
    names = {e.call_id: e.name for e in entries if isinstance(e, ToolCallStarted)}
    adopted = {s for e in entries if isinstance(e, ForkAdopted) for s in e.adopted.values()}
    closed = {e.fork_id for e in entries if isinstance(e, ForkAdopted | ForkDiscarded)}
    discarded = frozenset(
        e.call_id
        for e in entries
        if isinstance(e, ToolCallStarted)
        and e.speculative
        and e.fork_id in closed
        and e.call_id not in adopted
    )
    lines = []
    for entry in entries:
        kind, detail = _describe(entry, names, discarded)
        if kind.startswith("  <-") and entry_call(entry) in discarded:
            kind, detail = kind.replace("<-", "<~"), _strike(detail)
        lines.append(f"+{entry.t - origin:7.3f}s  {kind:<{_KIND_WIDTH}} {detail}")
    lines.append("-" * 40)
    lines.extend(_summary(entries))
    return "\n".join(lines)


# Bytes read from the end of a session file to find its last entry (the end of a session
# is a short line; a longer last line is read whole by a second try).
_TAIL_BYTES = 8192


def _first_and_last(path: Path) -> tuple[Entry | None, Entry | None]:
    """The first and last entries of a session file, reading only its ends (None when a
    line does not parse: an empty, torn or foreign file)."""

    def parse(line: bytes) -> Entry | None:
        try:
            return ENTRY_ADAPTER.validate_json(line)
        except (ValidationError, ValueError):
            return None

    with open(path, "rb") as file:
        first = parse(file.readline())
        size = file.seek(0, os.SEEK_END)
        tail = b""
        for span in (_TAIL_BYTES, size):
            file.seek(max(0, size - span))
            tail = file.read()
            lines = [line for line in tail.split(b"\n") if line.strip()]
            if len(lines) > 1 or span >= size:
                break
    lines = [line for line in tail.split(b"\n") if line.strip()]
    last = next((e for e in (parse(line) for line in reversed(lines[-2:])) if e), None)
    return first, last


def format_directory(directory: str | os.PathLike[str]) -> str:
    """One line per session file (``*.jsonl``) in `directory`, oldest first: its name,
    when it started, its transport, and how it ended ("no end recorded" for a session
    cut short); then how to show one. Reads only each file's first and last lines."""
    path = Path(directory)
    files = sorted(p for p in path.glob("*.jsonl") if p.is_file())
    if not files:
        return (
            f"no session files (*.jsonl) in {path}; sessions are written to "
            "ledger.directory (see `voice-agent config`)"
        )
    lines = []
    for file in files:
        try:
            first, last = _first_and_last(file)
        except OSError as error:
            lines.append(f"{file.name}  (cannot read: {error.strerror or error})")
            continue
        if not isinstance(first, SessionStarted):
            lines.append(f"{file.name}  (not a session ledger, or its first line is torn)")
            continue
        started = first.started_at[:19].replace("T", " ")
        transport = first.meta.get("transport", "?")
        ended = (
            f"ended: {_clip(last.reason, 40)}"
            if isinstance(last, SessionEnded)
            else "no end recorded"
        )
        entries = f"{last.seq + 1} entries" if last is not None else "last line torn"
        lines.append(f"{file.name}  {started}  {transport:<8} {entries:>12}  {ended}")
    lines.append(f"{len(files)} session(s); show one with: voice-agent ledger show FILE")
    return "\n".join(lines)
