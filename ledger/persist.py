"""Writing a ledger as JSON lines, and reading it back.

One entry per line, `entry.model_dump(mode="json")`, handed to the OS at each
write, so a killed process loses nothing it appended (`durable=True` also
fsyncs, which survives a power cut at the price of a disk flush per entry).
Private digits and URL secrets are masked before a line is written
(`redact_entry`); the in-memory ledger keeps the raw text. Masking costs up to
seconds per megabyte of text, so an entry with more than `INLINE_CHARS`
characters of text (a tool's multi-megabyte result) is masked and written by a
writer thread, and every entry after it waits in the same queue behind it:
the appending thread (the event loop) never waits for the masking, the file
keeps the ledger's order, and each entry is written once. A small entry with
nothing queued before it is written at once, as before. `on_written(seq, callback)`
tells when an entry (and every one before it) has been handed to the OS: the
engine waits for it before a write tool runs, so a process killed while the queue
is behind never leaves a write applied without its intent in the file (hostile9).

A storage fault (disk full, I/O error) never reaches the ledger's caller: the
sink keeps the lines it could not write in memory, reports the fault once
(`on_status`), retries at each later write, and reports again when it has
caught up. `check_directory` is the start-up check that a sessions directory
is usable, with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import threading
import typing
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from ledger.entries import ENTRY_ADAPTER, Entry, ToolCallStarted, UserUtterance
from ledger.errors import LedgerError
from ledger.helper_process import HelperProcess, HelperTimeout
from ledger.redact import (
    redact_continuing,
    redact_json_numbers,
    redact_json_text,
    redact_secrets,
)

__all__ = [
    "INLINE_CHARS",
    "MASK_BUDGET_S",
    "JsonlSink",
    "Redactor",
    "StatusReporter",
    "check_directory",
    "clipped_entry",
    "load_jsonl",
    "redact_entry",
]

log = logging.getLogger(__name__)

Redactor = Callable[[str], str]
"""Masks private text; `ledger.redact.redact_secrets` by default."""

StatusReporter = Callable[[str, Literal["info", "warning", "error"]], None]
"""Told (text, level) when persistence fails and when it recovers."""

# Fields that name things rather than hold what people said: never masked (a call id
# such as call_00000001 has 8 digits but is not private).
_IDENTIFIERS = frozenset(
    {
        "seq", "t", "type", "session_id", "call_id", "response_id", "fork_id", "turn_id",
        "name", "kind", "started_at", "depends_on", "adopted",
    }
)  # fmt: skip


def _is_literal(entry: Entry, field: str) -> bool:
    annotation = type(entry).model_fields[field].annotation
    return typing.get_origin(annotation) is Literal


def redact_entry(entry: Entry, redactor: Redactor = redact_secrets) -> Entry:
    """Return `entry` with private text masked by `redactor` (the entry itself is unchanged).

    Every free-text field of every entry type is masked (user and agent text,
    transcripts, notes, errors, reasons, session metadata), not a list of
    known fields, so a new entry type is private by default. Tool arguments
    stay valid JSON and account-like JSON numbers in arguments, results and
    metadata become mask strings (with the default redactor). Identifiers
    (ids, names, kinds) and enumerations are left as they are.
    """
    default = redactor is redact_secrets
    update: dict[str, Any] = {}
    for field in type(entry).model_fields:
        if field in _IDENTIFIERS:
            continue
        value = getattr(entry, field)
        if isinstance(entry, ToolCallStarted) and field == "arguments":
            masked: Any = redact_json_text(value) if default else redactor(value)
        elif isinstance(value, str):
            if _is_literal(entry, field):
                continue
            masked = redactor(value)
        elif isinstance(value, dict | list):
            masked = redact_json_numbers(value) if default else _map_strings(value, redactor)
        else:
            continue
        if masked != value:
            update[field] = masked
    return entry.model_copy(update=update) if update else entry


def _map_strings(value: object, redactor: Redactor) -> object:
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, list):
        return [_map_strings(item, redactor) for item in value]
    if isinstance(value, dict):
        return {key: _map_strings(item, redactor) for key, item in value.items()}
    return value


def check_directory(directory: str | os.PathLike[str]) -> Path:
    """Make sure sessions can be written in `directory` (created if missing); return it.

    Raises LedgerError saying what is wrong (not a directory, read-only,
    no space, no permission) so that a program fails at start-up, not mid-call.
    """
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LedgerError(f"{path} exists and is not a directory") from None
    except OSError as error:
        raise LedgerError(f"cannot create {path}: {error.strerror or error}") from None
    if not path.is_dir():
        raise LedgerError(f"{path} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-", delete=True) as probe:
            probe.write(b"{}\n")
            probe.flush()
    except OSError as error:
        raise LedgerError(f"cannot write in {path}: {error.strerror or error}") from None
    return path


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

INLINE_CHARS = 4096
"""Most characters of text (strings, and the JSON of numbers) an entry may hold to be
masked and written on the appending thread: masking costs 0.5-5 ms per 1,000 characters
here (worst case: runs of digits among letters), so at most a few milliseconds, well
within one 20 ms audio frame. A larger entry goes through the writer thread."""


MASK_BUDGET_S = 3.0
"""Most wall seconds the masking of one large entry may take in the helper process
before the entry is written clipped instead (`clipped_entry`). Every later entry waits
behind it in the file, and a write tool waits for its intent to be written (hostile9):
2 MB of prose masks in about 1-2 s on a loaded 2-core machine, 2 MB of digits among
letters (`a1a1...`) in 10-20 s. About two hold phrases' worth of waiting for a write.
The helper's start is not counted (it has its own bound, `START_TIMEOUT_S`), and
without a redactor nothing is masked, so nothing is clipped."""

_CLIP_TAIL = re.compile(r"[\d\s.,:;/\-]+$")  # a number cut at the end of a clipped head


def clipped_entry(entry: Entry, keep: int = INLINE_CHARS) -> Entry:
    """`entry` with each field holding more than `keep` characters of text cut to its
    head (a dict's becomes ``{"clipped": head}``, a list's ``[head]``), saying how much
    was left out. The head never ends in a digit run (a number cut in two could leave
    fewer digits than masking needs). Cheap to mask: what `JsonlSink` writes when masking
    a large entry takes over `MASK_BUDGET_S`; the in-memory ledger keeps it whole."""
    update: dict[str, Any] = {}
    for field in type(entry).model_fields:
        if field in _IDENTIFIERS:
            continue
        value = getattr(entry, field)
        if _text_size(value, keep) <= keep:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        head = _CLIP_TAIL.sub("", text[:keep])
        note = (
            f" … [{len(text):,} characters; the rest is not in the session file: masking "
            f"it took over {MASK_BUDGET_S:g} s]"
        )
        if isinstance(value, dict):
            update[field] = {"clipped": head + note}
        elif isinstance(value, list | tuple):
            update[field] = [head + note]
        elif isinstance(value, str):
            update[field] = head + note
    return entry.model_copy(update=update) if update else entry


def _text_size(value: object, budget: int) -> int:
    """Characters of text in `value` (strings, keys, numbers), counted until `budget` is passed."""
    size = 0
    stack = [value]
    while stack and size <= budget:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item)
        elif isinstance(item, dict):
            size += sum(len(key) for key in item if isinstance(key, str))
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, int | float) and not isinstance(item, bool):
            size += 20  # at most the digits of a float or a 64-bit integer
    return size


def _entry_size(entry: Entry, budget: int) -> int:
    return _text_size([getattr(entry, field) for field in type(entry).model_fields], budget)


def encode_line(entry: Entry, redactor: Redactor | None, carried: str) -> tuple[bytes, str]:
    """`entry` as one UTF-8 JSON line, masked by `redactor`, and the digits to carry.

    `carried` is the digit run the caller's last utterance ended with: with the
    default redactor a number read over several utterances is masked piece by
    piece (`redact_continuing`). Returns the line and the new carried digits.
    A module-level function, so that the helper process can run it.
    """
    if redactor is redact_secrets and isinstance(entry, UserUtterance):
        # a number the caller reads over several utterances ("4111" ... "1111 ..."):
        # each piece is masked once the number so far is long enough
        text, carried = redact_continuing(entry.text, carried)
        entry = entry.model_copy(update={"text": text})
    if redactor is not None:
        entry = redact_entry(entry, redactor)
    line = json.dumps(entry.model_dump(mode="json"), ensure_ascii=False) + "\n"
    try:
        return line.encode("utf-8"), carried
    except UnicodeEncodeError:
        # a lone surrogate (undecodable input bytes, half a UTF-16 pair) is not text:
        # written as U+FFFD, so the line is UTF-8 and JSON every reader accepts
        return _LONE_SURROGATE.sub("\ufffd", line).encode("utf-8"), carried


class JsonlSink:
    """A ledger sink appending one JSON line per entry to `path`.

    The file is opened for append (created if missing). If it ends in a torn
    line (a crash mid-write), that fragment is cut off first, so new lines
    never glue onto it. Pass `redactor=None` to write raw text (tests, local
    debugging). `write` after `close` raises LedgerError; `close` is idempotent.

    `write` never raises for a storage fault: a line that cannot be written
    (its partial bytes cut off again) waits in memory with every later one;
    each write retries them in order. `on_status(text, level)` is told once
    when writing starts failing and once when it has caught up (it may append
    to the ledger: the sink is re-entrant); without it the fault is logged.
    `on_status` is only ever called on the thread that calls `write`/`close`
    (a fault met by the writer thread is told at the next `write`, or `close`).

    An entry with more than `INLINE_CHARS` characters of text, and every entry
    written while one is queued, is masked and written by a writer thread
    (started when needed, ended when the queue is empty; not a daemon, so the
    interpreter's exit waits for the queue to be written); the large ones are
    masked in a `HelperProcess` (the interpreter lock would otherwise still
    stall the appending thread). `close` waits for both. Like the ledger,
    `write` is called from one thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        redactor: Redactor | None = redact_secrets,
        *,
        durable: bool = False,
        on_status: StatusReporter | None = None,
    ) -> None:
        self.path = Path(path)
        self._redactor = redactor
        self._durable = durable
        self._on_status = on_status
        _cut_torn_tail(self.path)
        # read and write: a file deleted while in use is copied back from this descriptor
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size  # bytes of complete lines in the file
        self._backlog: deque[bytes] = deque()
        self._fault: OSError | None = None
        self._flushing = False
        self._caller_digits = ""  # digits the caller's last utterance ended with (unwritten)
        # Entries waiting for the writer thread, and the thread while it runs; both
        # guarded by `_lock`. The thread ends (and `_writer` becomes None) when `_queued`
        # is empty, so "no writer" means nothing is queued or being written.
        self._lock = threading.Lock()
        self._queued: deque[tuple[Entry, bool]] = deque()  # (entry, large)
        self._helper = HelperProcess(f"ledger writer of {self.path.name}")
        self._writer: threading.Thread | None = None
        self._told: deque[tuple[str, Literal["info", "warning", "error"]]] = deque()
        # The highest seq handed to the OS (or kept in memory after a reported storage
        # fault), and the callbacks waiting for a seq; both guarded by `_lock`.
        self._written_seq = -1
        self._waiting: list[tuple[int, Callable[[], None]]] = []

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._fd is None

    @property
    def pending(self) -> int:
        """Entries not yet in the file (queued for the writer thread, or waiting in memory
        after a storage fault)."""
        with self._lock:
            return len(self._backlog) + len(self._queued)  # the one being written included

    @property
    def fault(self) -> OSError | None:
        """The storage error that keeps entries in memory right now, if any."""
        return self._fault

    def on_written(self, seq: int, callback: Callable[[], None]) -> None:
        """Call `callback()` once the entry `seq` and every one before it are handed to the
        OS (in the file unless the process dies with the machine; fsynced if durable),
        or kept in memory after a storage fault the sink has reported (`on_status`), or
        once the sink is closed; at once, on this thread, when that is already so.
        Otherwise `callback` runs on the writer thread: it must only hand the news on
        (`loop.call_soon_threadsafe`, `Future.set_result`)."""
        with self._lock:
            now = (
                self._fd is None
                or self._written_seq >= seq
                or (self._writer is None and not self._queued)
            )
            if not now:
                self._waiting.append((seq, callback))
        if now:
            callback()

    def _mark_written(self, seq: int) -> None:
        """Entries up to `seq` are written (or kept after a reported fault): tell waiters."""
        with self._lock:
            self._written_seq = max(self._written_seq, seq)
            ready = [cb for s, cb in self._waiting if s <= self._written_seq]
            self._waiting = [(s, cb) for s, cb in self._waiting if s > self._written_seq]
        for callback in ready:
            _call_safely(callback)

    def _release_waiting(self) -> None:
        with self._lock:
            ready, self._waiting = [cb for _, cb in self._waiting], []
        for callback in ready:
            _call_safely(callback)

    def write(self, entry: Entry) -> None:
        """Write `entry` (redacted) as one line (and fsync if durable); keep it if that fails.

        A large entry, or any entry while one is queued, is handed to the writer
        thread (in order) and this returns at once.
        """
        if self._fd is None:
            raise LedgerError(f"JsonlSink for {self.path} is closed")
        large = _entry_size(entry, INLINE_CHARS) > INLINE_CHARS
        with self._lock:
            inline = self._writer is None and not large
            if not inline:
                self._queued.append((entry, large))
                if self._writer is None:
                    self._writer = threading.Thread(
                        target=self._write_queued, name=f"ledger-writer {self.path.name}"
                    )
                    self._writer.start()
        if inline:
            self._write_entry(entry)
        self._tell_deferred()

    def _write_entry(self, entry: Entry, *, large: bool = False) -> None:
        """Redact, encode and write one entry (on one thread at a time, in ledger order);
        a `large` one is redacted in the helper process when the redactor allows it."""
        if large and self._redactor in (None, redact_secrets):  # module functions: picklable
            try:
                data, self._caller_digits = self._helper.run(
                    encode_line,
                    entry,
                    self._redactor,
                    self._caller_digits,
                    timeout_s=None if self._redactor is None else MASK_BUDGET_S,
                )
            except HelperTimeout:
                log.warning(
                    "masking ledger entry %s (%s) for %s took over %g s: its large fields are "
                    "written clipped to their first %d characters",
                    entry.seq,
                    entry.type,
                    self.path,
                    MASK_BUDGET_S,
                    INLINE_CHARS,
                )
                data, self._caller_digits = encode_line(
                    clipped_entry(entry), self._redactor, self._caller_digits
                )
        else:
            data, self._caller_digits = encode_line(entry, self._redactor, self._caller_digits)
        self._backlog.append(data)
        self._flush()
        self._mark_written(entry.seq)

    def _write_queued(self) -> None:
        """The writer thread: write queued entries in order until none is left."""
        while True:
            with self._lock:
                if not self._queued:
                    self._writer = None
                    return
                entry, large = self._queued[0]
            try:
                self._write_entry(entry, large=large)
            except Exception:  # a bug, not a storage fault: say it, keep the rest going
                log.exception("could not write a ledger entry (seq %s) to %s", entry.seq, self.path)
                self._mark_written(entry.seq)  # nobody may wait for it for ever
            with self._lock:
                self._queued.popleft()

    def drain(self) -> None:
        """Wait until the writer thread has written every entry given so far (into the file,
        or into memory after a storage fault), then tell its news (`on_status`)."""
        writer = self._writer
        if writer is not None:
            writer.join()
        self._tell_deferred()

    def _tell(self, text: str, level: Literal["info", "warning", "error"]) -> None:
        if self._on_status is None:
            return
        if threading.current_thread() is self._writer:
            self._told.append((text, level))  # told on the appending thread (it owns the ledger)
        else:
            self._on_status(text, level)

    def _tell_deferred(self) -> None:
        while self._told and self._on_status is not None:
            text, level = self._told.popleft()
            self._on_status(text, level)

    def _flush(self) -> None:
        if self._flushing or self._fd is None:
            return  # re-entered from on_status: the outer loop writes it
        self._flushing = True
        try:
            if self._backlog:
                try:
                    self._ensure_linked()
                except OSError as error:
                    self._failed(error)
                    return
            while self._backlog and self._fd is not None:
                data = self._backlog[0]
                try:
                    self._write_line(self._fd, data)
                except OSError as error:
                    self._failed(error)
                    return
                self._backlog.popleft()
                self._size += len(data)
            if self._fault is not None:
                self._recovered()
        finally:
            self._flushing = False

    def _ensure_linked(self) -> None:
        """Put the session file back if it was deleted while in use (hostile9).

        A clean-up job, ``rm -r sessions/`` or a user tidying up: the sink went on writing
        into the deleted file and the whole ledger was lost from disk without a word. Its
        lines are still readable through this descriptor: they are copied into a new
        file at the same path (the directory made again if it went too; a
        ``-restored`` name if another file took the path meanwhile), which is used from
        then on, and the ledger is told. Raises OSError when that cannot be done (then it
        is a storage fault: the lines wait in memory and this is tried again)."""
        assert self._fd is not None
        mine = os.fstat(self._fd)
        if mine.st_nlink > 0:
            return
        with contextlib.suppress(OSError):  # a file system that counts no links: still ours
            if os.path.samestat(mine, os.stat(self.path)):
                return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        target = self.path
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL
        try:
            new = os.open(target, flags, 0o644)
        except FileExistsError:  # another file has the name now: never mix the two
            target = self.path.with_name(f"{self.path.stem}-restored{self.path.suffix}")
            new = os.open(target, (flags & ~os.O_EXCL) | os.O_TRUNC, 0o644)
        try:
            offset = 0
            while offset < self._size:
                chunk = os.pread(self._fd, min(1 << 20, self._size - offset), offset)
                if not chunk:
                    break
                self._write_line(new, chunk, keep=0)
                offset += len(chunk)
        except OSError:
            os.close(new)
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise
        old, self._fd = self._fd, new
        os.close(old)
        self.path = target
        text = (
            f"the session file was deleted while the call ran; it is written again at "
            f"{target} with everything so far (nothing lost)"
        )
        log.warning("%s", text)
        self._tell(text, "warning")

    def _write_line(self, fd: int, data: bytes, keep: int | None = None) -> None:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self._durable:
                os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, self._size if keep is None else keep)  # no torn line left
            except OSError:
                pass  # the next successful write starts after the fragment; load_jsonl stops there
            raise

    def _failed(self, error: OSError) -> None:
        first = self._fault is None
        self._fault = error
        if first:
            text = (
                f"cannot write the session ledger to {self.path} "
                f"({error.strerror or error}); the call goes on, entries are kept in "
                "memory and written when the storage recovers"
            )
            log.error("%s", text)
            self._tell(text, "error")

    def _recovered(self) -> None:
        self._fault = None
        text = f"the session ledger is written to {self.path} again; nothing was lost"
        log.warning("%s", text)
        self._tell(text, "warning")

    def close(self) -> None:
        """Wait for the writer thread, write what is still waiting (one last try), then
        close the file; idempotent."""
        if self._fd is None:
            return
        self.drain()
        self._helper.close()
        self._flush()
        if self._backlog:
            log.error(
                "%d ledger entries could not be written to %s (%s); they are lost from disk",
                len(self._backlog),
                self.path,
                self._fault,
            )
        fd, self._fd = self._fd, None
        os.close(fd)
        self._release_waiting()


def _call_safely(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # a waiter's bug must not stop the writer (or the ledger's order)
        log.exception("an on_written callback failed")


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


def _first_problem(error: ValidationError) -> str:
    """The first problem pydantic found, in a few words, without the line's text (a binary
    file's bytes, or a megabyte of JSON, on the terminal) (hostile8)."""
    problems = error.errors(include_url=False, include_input=False)
    if not problems:
        return "not a ledger entry"
    first = problems[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "tagged-union")
    text = f"{where}: {first['msg']}" if where else str(first["msg"])
    more = f"; {len(problems) - 1} more" if len(problems) > 1 else ""
    return text[:200] + more


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
            raise LedgerError(
                f"{path}:{number}: corrupt ledger line ({_first_problem(error)}); is it a "
                "session file?"
            ) from error
    return entries
