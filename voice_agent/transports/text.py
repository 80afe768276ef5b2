"""``voice-agent chat``: a text conversation in the terminal, on the same engine.

Each line typed is a final transcript. Typing while the agent is still
answering is a barge-in (the answer is cut; the ledger keeps what was shown).
Tool futures are shown as they start and resolve. When standard input is not
a terminal (a script, a pipe), each line waits until the agent is idle, so a
scripted conversation does not interrupt itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from ledger import Ledger, mask_url_secrets
from ledger import entries as le

from ..agent import Agent
from ..config import Config
from ..events import SessionEnded, TranscriptFinal
from ..output import TextOutput
from ..session import open_session

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.05  # how often a scripted chat checks that the agent is idle, seconds


def _short(value: object, width: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


class FutureMonitor:
    """Prints tool calls and futures as the ledger records them."""

    def __init__(self, ledger: Ledger, stream: TextIO) -> None:
        self._stream = stream
        self._started: dict[str, le.ToolCallStarted] = {}
        self._unsubscribe = ledger.subscribe(self._on_entry)

    def _on_entry(self, entry: le.Entry) -> None:
        if isinstance(entry, le.ToolCallStarted):
            self._started[entry.call_id] = entry
            self._print(
                f"  ⧗ {entry.name}({_short(entry.arguments, 60)}) started [{entry.call_id}]"
            )
        elif isinstance(
            entry,
            le.ToolCallResolved | le.ToolCallFailed | le.ToolCallTimedOut | le.ToolCallCancelled,
        ):
            started = self._started.get(entry.call_id)
            took = f"{entry.t - started.t:.2f}s" if started else "?"
            name = started.name if started else entry.call_id
            if isinstance(entry, le.ToolCallResolved):
                self._print(f"  ✓ {name} → {_short(entry.result)} ({took})")
            elif isinstance(entry, le.ToolCallFailed):
                self._print(f"  ✗ {name} failed: {_short(entry.error)} ({took})")
            elif isinstance(entry, le.ToolCallTimedOut):
                self._print(f"  ✗ {name} timed out after {entry.timeout_s:g}s")
            else:
                self._print(f"  ✗ {name} cancelled: {entry.reason}")
        elif isinstance(entry, le.Note) and entry.level != "info":
            self._print(f"  ! {entry.text}")

    def _print(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._unsubscribe()


class _LineReader:
    """Lines of ``stdin`` read by a daemon thread of the chat's own ("chat-input").

    A read blocked on a terminal or pipe that never sends another line cannot be
    interrupted; on the loop's default executor it was taken for a tool's leftover job
    when the chat ended by SIGTERM/SIGHUP: 3 s of waiting, then "1 thread(s) still run
    ... job TextIOWrapper.readline" on the user's terminal (hostile9). A daemon thread
    is left behind silently at exit. The thread reads only when asked for a line."""

    def __init__(self, stdin: TextIO) -> None:
        self._stdin = stdin
        self._loop = asyncio.get_running_loop()
        self._wanted = threading.Semaphore(0)
        self._lines: asyncio.Queue[str] = asyncio.Queue()
        self._thread: threading.Thread | None = None

    async def readline(self) -> str:
        """The next line ("" at the end of input, or when it cannot be read)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, name="chat-input", daemon=True)
            self._thread.start()
        self._wanted.release()
        return await self._lines.get()

    def _read(self) -> None:
        line = "x"
        while line:
            self._wanted.acquire()
            try:
                line = self._stdin.readline()
            except (OSError, ValueError) as exc:  # closed or unreadable: the end of input
                log.warning("chat: cannot read standard input (%s); ending", exc)
                line = ""
            try:
                self._loop.call_soon_threadsafe(self._lines.put_nowait, line)
            except RuntimeError:  # the loop is closed: the chat is over
                return


async def _read_lines(agent: Agent, stdin: TextIO, interactive: bool, stream: TextIO) -> None:
    reader = _LineReader(stdin)
    while True:
        if not interactive:
            while not agent.is_idle():
                await asyncio.sleep(IDLE_POLL_S)
        line = await reader.readline()
        if not line:
            break
        text = line.strip()
        if text in ("/quit", "/exit"):
            break
        if text:
            if not interactive:
                stream.write(f"you> {text}\n")
            agent.post(TranscriptFinal(text=text))
    if not interactive:
        while not agent.is_idle():
            await asyncio.sleep(IDLE_POLL_S)
    agent.post(SessionEnded(reason="end of input"))


class ChatStdout:
    """The chat's standard output. When its reader goes away (``voice-agent chat | head``)
    the chat ends quietly: the session ends ("output closed", the ledger saved) and the
    command's status is 141 (128 + SIGPIPE, as any Unix tool). Writing to the closed pipe
    raised BrokenPipeError inside the agent's actions: a dozen tracebacks, then
    'unexpected error: ExceptionGroup' or a chat that never ended (hostile7)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.gone = False
        self.on_gone: Callable[[], None] | None = None

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ConnectionResetError):
                self._reader_left()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except (BrokenPipeError, ConnectionResetError):
                self._reader_left()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def _reader_left(self) -> None:
        self.gone = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            # what is still buffered would fail again at the interpreter's exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        if self.on_gone is not None:
            self.on_gone()


def _quiet_on_the_users_signal(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's handler of errors nobody retrieved, minus the user's own interrupt.

    A second Ctrl-C that lands while `asyncio.run` cancels the chat's last tasks ends a
    task with KeyboardInterrupt; asyncio then printed "Task exception was never
    retrieved" and a traceback under the chat's last line (seen once in five CI runs
    of session 9, hostile8's ctrl-c-twice test). The session's end is in the ledger and the exit status is 130: nothing is
    left to say. Every other error goes to asyncio's default handler."""
    if isinstance(context.get("exception"), (KeyboardInterrupt, SystemExit)):
        return
    loop.default_exception_handler(context)


async def run_chat(config: Config, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Run a text conversation until end of input or ``/quit``; returns an exit status
    (141 when standard output's reader went away)."""
    out = ChatStdout(stdout)
    stdout = out  # type: ignore[assignment]
    interactive = stdin.isatty()
    reconfigure = getattr(stdin, "reconfigure", None)
    if reconfigure is not None:
        # bytes the terminal's encoding cannot decode (a Latin-1 paste, a binary file piped
        # in) become U+FFFD: strict decoding ended the chat, surrogateescape poisoned it
        reconfigure(errors="replace")
    output = TextOutput(stdout)
    asyncio.get_running_loop().set_exception_handler(_quiet_on_the_users_signal)
    async with open_session(config, output, transport="text") as session:
        monitor = FutureMonitor(session.ledger, stdout)
        stdout.write(
            f"voice-agent chat — mode {config.agent.mode}, model {session.llm_config.model} "
            f"at {mask_url_secrets(session.llm_config.base_url or '')}. Type /quit to leave.\n"
        )
        if session.ledger_path:
            stdout.write(f"ledger: {session.ledger_path}\n")
        stdout.flush()
        agent = session.agent
        out.on_gone = lambda: agent.post(SessionEnded(reason="output closed"))
        if out.gone:  # already while the banner was written
            out.on_gone()
        try:
            async with asyncio.TaskGroup() as tg:
                runner = tg.create_task(agent.run())
                reader = tg.create_task(_read_lines(agent, stdin, interactive, stdout))
                await asyncio.wait({runner, reader}, return_when=asyncio.FIRST_COMPLETED)
                if runner.done():
                    reader.cancel()  # the session is over; standard input may never end
        finally:
            monitor.close()
    return 141 if out.gone else 0
