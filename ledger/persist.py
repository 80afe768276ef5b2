"""Writing a ledger as JSON lines, and reading it back.

One entry per line, `entry.model_dump(mode="json")`, flushed to the OS at each
write, so a killed process loses nothing it appended (`durable=True` also
fsyncs, which survives a power cut at the price of a disk flush per entry).
Private digits are masked before a line is written (`redact_entry`); the
in-memory ledger keeps the raw text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from ledger.entries import (
    ENTRY_ADAPTER,
    AgentTextPlanned,
    AgentTextPlayed,
    Entry,
    ForkOpened,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallStarted,
    UserUtterance,
)
from ledger.errors import LedgerError
from ledger.redact import redact, redact_json_text, redact_json_value

__all__ = ["JsonlSink", "Redactor", "load_jsonl", "redact_entry"]

Redactor = Callable[[str], str]
"""Masks private text; `ledger.redact.redact` by default."""


def redact_entry(entry: Entry, redactor: Redactor = redact) -> Entry:
    """Return `entry` with private text masked by `redactor` (the entry itself is unchanged).

    Masked: user text (`UserUtterance.text`, `ForkOpened.transcript`), agent
    text (`AgentTextPlanned`/`AgentTextPlayed`), tool arguments, every string
    inside a `ToolCallResolved.result`, and `ToolCallFailed.error` (errors
    often echo the arguments). With the default redactor, arguments stay
    valid JSON (`redact_json_text`).
    """
    match entry:
        case UserUtterance() | AgentTextPlanned() | AgentTextPlayed():
            return entry.model_copy(update={"text": redactor(entry.text)})
        case ForkOpened():
            return entry.model_copy(update={"transcript": redactor(entry.transcript)})
        case ToolCallStarted():
            arguments = (
                redact_json_text(entry.arguments)
                if redactor is redact
                else redactor(entry.arguments)
            )
            return entry.model_copy(update={"arguments": arguments})
        case ToolCallResolved():
            result = (
                redact_json_value(entry.result)
                if redactor is redact
                else _map_strings(entry.result, redactor)
            )
            return entry.model_copy(update={"result": result})
        case ToolCallFailed():
            return entry.model_copy(update={"error": redactor(entry.error)})
        case _:
            return entry


def _map_strings(value: object, redactor: Redactor) -> object:
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, list):
        return [_map_strings(item, redactor) for item in value]
    if isinstance(value, dict):
        return {key: _map_strings(item, redactor) for key, item in value.items()}
    return value


class JsonlSink:
    """A ledger sink appending one JSON line per entry to `path`.

    The file is opened for append (created if missing). If it ends in a torn
    line (a crash mid-write), that fragment is cut off first, so new lines
    never glue onto it. Pass `redactor=None` to write raw text (tests, local
    debugging). `write` after `close` raises LedgerError; `close` is idempotent.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        redactor: Redactor | None = redact,
        *,
        durable: bool = False,
    ) -> None:
        self.path = Path(path)
        self._redactor = redactor
        self._durable = durable
        _cut_torn_tail(self.path)
        self._file = open(self.path, "a", encoding="utf-8")

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._file.closed

    def write(self, entry: Entry) -> None:
        """Write `entry` (redacted) as one line and flush it (and fsync if durable)."""
        if self._file.closed:
            raise LedgerError(f"JsonlSink for {self.path} is closed")
        if self._redactor is not None:
            entry = redact_entry(entry, self._redactor)
        line = json.dumps(entry.model_dump(mode="json"), ensure_ascii=False)
        self._file.write(line + "\n")
        self._file.flush()
        if self._durable:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush and close the file; idempotent."""
        if not self._file.closed:
            self._file.close()


def _cut_torn_tail(path: Path) -> None:
    """Truncate `path` after its last newline if it ends mid-line."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as file:
        file.seek(-1, os.SEEK_END)
        if file.read(1) == b"\n":
            return
        file.seek(0)
        data = file.read()
        file.truncate(data.rfind(b"\n") + 1)


def load_jsonl(path: str | os.PathLike[str]) -> list[Entry]:
    """Read the entries written by `JsonlSink`, in file order.

    Blank lines are skipped. A corrupt *last* line is taken to be a write cut
    short by a crash and ignored; a corrupt line before it raises LedgerError
    naming the file and line number.
    """
    # split on "\n" only: str.splitlines would also split on U+2028 etc. inside JSON strings
    lines = Path(path).read_text(encoding="utf-8", errors="replace").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    entries: list[Entry] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entries.append(ENTRY_ADAPTER.validate_json(line))
        except ValidationError as error:
            if number == len(lines):
                break  # torn final write
            raise LedgerError(f"{path}:{number}: corrupt ledger line: {error}") from error
    return entries
