"""Running one tool invocation so that the tool cannot hold the engine.

An :class:`Execution` is the tool's work, started apart from whoever waits for
it: the scheduler waits on ``execution.future`` under a deadline and, at the
deadline, simply stops waiting. Nothing a tool does inside can defeat that:

- an ``async def`` tool runs as its own task on the event loop (a tool that
  swallows ``CancelledError`` keeps running as a stray, but nobody waits);
- a plain function runs in its own daemon thread (not the default executor's
  small pool, which a few hung tools would exhaust, starving every other
  tool and the loop's own ``to_thread`` users);
- an ``async def`` tool that blocks the event loop (``time.sleep`` in a
  coroutine, a synchronous HTTP client) is *isolated*: it runs on a private
  event loop in its own thread. Such calls written in the tool's body are
  found by reading its source before its first call (:func:`blocking_calls`);
  anything else is caught by the watchdog and isolated from the next call.

:class:`LoopWatchdog` is how the blocking is caught: a thread that expects the
loop to answer a heartbeat and, when it does not, names the task the loop is
stuck in. This is wall time by nature (a blocked loop is a real-time fault),
so it is the one place here that does not use the injected clock.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import inspect
import logging
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from peripherals.daemon_threads import DaemonThreads

log = logging.getLogger(__name__)

Where = Literal["loop", "thread", "isolated"]

EXEC_PREFIX = "tool-exec:"
"""Task and thread names of executions: ``tool-exec:<tool>:<call id>``."""

# How often the watchdog checks the loop (s): a check costs one loop callback.
HEARTBEAT_INTERVAL_S = 0.1
# The loop counts as blocked when a heartbeat has waited this long (s). Audio frames
# are 20 ms, so 250 ms of blocking is already an audible hiccup; a lower value
# would flag the ordinary scheduling jitter of a busy 2-core machine.
BLOCKED_AFTER_S = 0.25


_RUNNING_TOOL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "voice_agent_running_tool", default=None
)
# Non-daemon threads started while a tool ran, and which tool ("name (call id)"): what the
# process's end names when such a thread outlives the session (voice_agent.process_end).
_STARTED_BY: weakref.WeakKeyDictionary[threading.Thread, str] = weakref.WeakKeyDictionary()


def running_tool() -> str | None:
    """The tool ("name (call id)") whose execution the caller runs in, if any; threads
    and jobs such as ``asyncio.to_thread`` carry it (the context is copied)."""
    return _RUNNING_TOOL.get()


def started_by(thread: threading.Thread) -> str | None:
    """The tool ("name (call id)") that ran while ``thread`` (non-daemon) was started, if any.

    Found by comparing the threads before and after each execution: a thread that a
    tool running at the same time started is named too, hence "while"."""
    return _STARTED_BY.get(thread)


@contextmanager
def _noting_threads(label: str) -> Iterator[None]:
    before = set(threading.enumerate())
    try:
        yield
    finally:
        for thread in threading.enumerate():
            if thread not in before and not thread.daemon and thread not in _STARTED_BY:
                _STARTED_BY[thread] = label


@dataclass
class Execution:
    """One running invocation. ``future`` (on the engine's loop) gets its value or error."""

    name: str
    call_id: str
    where: Where
    future: asyncio.Future[Any]
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[Any] | None = None

    def cancel(self) -> bool:
        """Ask the work to stop: a task is cancelled; a thread cannot be (returns False)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            return True
        return False

    @property
    def done(self) -> bool:
        return self.future.done()


def start_execution(
    fn: Callable[..., Any],
    kwargs: dict[str, Any],
    *,
    name: str,
    call_id: str,
    isolated: bool = False,
) -> Execution:
    """Start ``fn(**kwargs)`` now: as a task (async), a thread (sync) or an isolated loop."""
    loop = asyncio.get_running_loop()
    label = f"{EXEC_PREFIX}{name}:{call_id}"
    context = contextvars.copy_context()
    context.run(_RUNNING_TOOL.set, f"{name} ({call_id})")
    if inspect.iscoroutinefunction(fn) and not isolated:
        task = loop.create_task(_contained(fn(**kwargs)), name=label, context=context)
        return Execution(name, call_id, "loop", task, task=task)
    future = loop.run_in_executor(DaemonThreads(label), context.run, _call_in_thread, fn, kwargs)
    return Execution(name, call_id, "isolated" if isolated else "thread", future)


def _call_in_thread(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    with _noting_threads(_RUNNING_TOOL.get() or "?"):
        result = fn(**kwargs)
        if inspect.isawaitable(result):  # an async tool isolated on its own loop
            result = asyncio.run(_awaited(result))
        return result


async def _awaited(awaitable: Any) -> Any:
    result = await awaitable
    while inspect.isawaitable(result):  # a tool that returned a coroutine: its value
        result = await result
    return result


async def _contained(coro: Any) -> Any:
    """Await a tool's coroutine on the engine's loop; what it raises stays its own.

    asyncio re-raises ``SystemExit`` and ``KeyboardInterrupt`` from a task out of
    the event loop, so a tool calling ``sys.exit()`` (or a library doing it for
    it) would end every call of the process. Raised by the tool, they are its
    failure (a ``RuntimeError`` naming them), like any other exception.
    Cancellation passes through.
    """
    try:
        with _noting_threads(_RUNNING_TOOL.get() or "?"):
            return await _awaited(coro)
    except asyncio.CancelledError:
        raise
    except Exception:
        raise
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, GeneratorExit, ... from the tool
        raise RuntimeError(f"the tool raised {exc!r}") from None


# Calls that block the calling thread; inside an ``async def`` they freeze the loop.
# (ruff's ASYNC2xx rules flag the same calls.) Keys are the dotted names as written.
_BLOCKING_CALLS = frozenset(
    {
        "time.sleep",
        "requests.get", "requests.post", "requests.put", "requests.patch",
        "requests.delete", "requests.head", "requests.request",
        "urllib.request.urlopen", "urlopen",
        "subprocess.run", "subprocess.call", "subprocess.check_call",
        "subprocess.check_output", "os.system",
        "socket.create_connection", "input",
    }
)  # fmt: skip


def blocking_calls(fn: Callable[..., Any]) -> list[str]:
    """Blocking calls written directly in the body of an ``async def`` ``fn`` (best effort).

    Reads the source (nothing is run); returns ``[]`` when there is no source
    or ``fn`` is not a coroutine function. What it cannot see (a blocking call
    inside a helper, a CPU-bound loop) the :class:`LoopWatchdog` catches.
    """
    if not inspect.iscoroutinefunction(fn):
        return []
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return []
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in _BLOCKING_CALLS and name not in found:
                found.append(name)
    return found


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


@dataclass(frozen=True)
class LoopBlocked:
    """The event loop did not run anything else for ``seconds`` while in ``task_name``."""

    task_name: str | None
    seconds: float


class LoopWatchdog:
    """Reports when the event loop stops answering, naming the task it is stuck in.

    Runs a daemon thread only while :meth:`hold` is held by someone (the
    scheduler holds it while an ``async def`` tool runs on the loop).
    ``on_blocked`` is called on the loop, once the loop is free again, with a
    :class:`LoopBlocked`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_blocked: Callable[[LoopBlocked], None],
        *,
        blocked_after_s: float = BLOCKED_AFTER_S,
        interval_s: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        self._loop = loop
        self._on_blocked = on_blocked
        self._blocked_after_s = blocked_after_s
        self._interval_s = interval_s
        self._holders = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def hold(self) -> None:
        """Someone needs watching: start the thread if it is not running."""
        with self._lock:
            self._holders += 1
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._watch, name="loop-watchdog", daemon=True
                )
                self._thread.start()

    def release(self) -> None:
        """One holder less; the thread ends when nobody holds it."""
        with self._lock:
            self._holders = max(0, self._holders - 1)
            if self._holders == 0:
                self._stop.set()

    def close(self) -> None:
        """Stop watching (idempotent)."""
        with self._lock:
            self._holders = 0
            self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval_s):
            beat = threading.Event()
            sent = time.monotonic()
            try:
                self._loop.call_soon_threadsafe(beat.set)
            except RuntimeError:
                return  # the loop is closed
            if beat.wait(self._blocked_after_s):
                continue
            task = asyncio.current_task(self._loop)
            task_name = task.get_name() if task is not None else None
            while not beat.wait(self._interval_s):
                if self._loop.is_closed():
                    return
            report = LoopBlocked(task_name, time.monotonic() - sent)
            try:
                self._loop.call_soon_threadsafe(self._on_blocked, report)
            except RuntimeError:
                return
