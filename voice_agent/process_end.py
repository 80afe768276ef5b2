"""Ending the ``voice-agent`` process in bounded time once its command is done.

A command is done when it returns: its session has ended and its ledger is
closed (every line handed to the OS). Two things a tool can leave behind used
to keep the process alive after that, silently and for ever:

- a *thread* the tool started and never stopped: Python joins every
  non-daemon thread before it exits (an ``async def`` tool runs on the main
  thread, so a ``threading.Thread`` it starts is non-daemon by default);
- a *job* on the event loop's default executor (``asyncio.to_thread``,
  ``loop.run_in_executor(None, ...)``) that never returns: ``asyncio.run``
  joins that executor on its way out.

:func:`ending_loops` gives every event loop the command creates a default
executor whose jobs run on a bounded pool of daemon threads and whose
shutdown waits at most `EXIT_GRACE_S`. :func:`end_process` runs last, where the process ends
(``voice_agent.cli.main``): it gives the threads the command left running
`EXIT_GRACE_S` to finish, then names each one still running (the tool that
started it, the code it is stuck in) on standard error and ends the process
at once with the command's status. A clean exit prints nothing and waits for
nothing.

What the interpreter still does once the command is done is collect its whole heap,
which took 3-9 s on a loaded machine after a second Ctrl-C (session 13: the process
"Garbage-collecting" 2.5 s after its last line, load 16). The heap is frozen
(``gc.freeze``) before the process ends: its last collections see only what the exit
handlers make, and every exit handler still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import gc
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .tool_exec import EXEC_PREFIX, running_tool, started_by

__all__ = ["EXIT_GRACE_S", "end_process", "ending_loops", "ending_signals", "leftovers"]

EXIT_GRACE_S = 3.0
"""How long (wall seconds) threads and jobs still running after the session ended get
to finish: an ASR decode or a SQLite commit in flight takes well under a second even
on a busy machine; a person at the terminal should see the prompt again promptly."""


def ending_signals() -> list[signal.Signals]:
    """The signals that end a command the way Ctrl-C does (the session closes, a write in
    flight gets its grace, the ledger records ``SessionEnded``): SIGINT, SIGTERM (a
    service manager, ``kill``, a bench's timeout) and SIGHUP (the terminal or SSH session
    closed), unless SIGHUP is ignored (``nohup``: it must stay so). Python's default for
    SIGHUP ended the process at once, the session file ending mid-call (hostile9)."""
    found = [signal.SIGINT, signal.SIGTERM]
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is not None and signal.getsignal(hangup) is not signal.SIG_IGN:
        found.append(hangup)
    return found


# Default-executor jobs running now (thread -> what it runs, and for which tool).
_JOBS: dict[threading.Thread, str] = {}
_JOBS_LOCK = threading.Lock()


def _describe(fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
    """The function a default-executor job runs ("_watch_forever"), through
    ``asyncio.to_thread``'s ``partial(context.run, func, ...)`` wrapping."""
    target: Any = fn
    while isinstance(target, functools.partial):
        target, args = target.func, (*target.args, *args)
    if isinstance(getattr(target, "__self__", None), contextvars.Context) and args:
        target = args[0]
    return getattr(target, "__qualname__", None) or repr(target)


#: Worker threads one loop's default executor runs at most (asyncio's own default is
#: ``min(32, cpus + 4)``): enough for every job the product runs at once (a model load,
#: SQLite calls, a few tools) plus a few tools stuck past their timeout, each of which
#: holds a worker until it returns.
MAX_JOB_WORKERS = 32


class _EndingExecutor(ThreadPoolExecutor):
    """A loop's default executor: a bounded pool of daemon worker threads (a job that never
    returns cannot hold the process), started as jobs need them and reused when idle;
    ``shutdown(wait=True)`` waits at most `EXIT_GRACE_S`. A ``ThreadPoolExecutor`` only
    because asyncio requires one; its own pool is not used."""

    def __init__(self, grace_s: float) -> None:
        super().__init__(max_workers=1, thread_name_prefix="asyncio-job")
        self._max_workers = MAX_JOB_WORKERS
        self._grace_s = grace_s
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._workers: set[threading.Thread] = set()
        self._idle_workers = threading.Semaphore(0)
        self._guard = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        tool = running_tool()
        label = _describe(fn, args) + (f" of tool {tool}" if tool else "")
        with self._guard:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._queue.put(_Job(future, label, functools.partial(fn, *args, **kwargs)))
            # an idle worker takes it; else a new one, up to the bound (then it waits its turn)
            if not self._idle_workers.acquire(blocking=False) and (
                len(self._workers) < self._max_workers
            ):
                worker = threading.Thread(
                    target=self._work, name=f"asyncio-job-{len(self._workers)}", daemon=True
                )
                self._workers.add(worker)
                worker.start()
        return future

    def _work(self) -> None:
        me = threading.current_thread()
        while (job := self._queue.get()) is not None:
            future = job.future
            if not future.set_running_or_notify_cancel():
                self._idle_workers.release()
                continue
            with _JOBS_LOCK:
                _JOBS[me] = job.label
            try:
                result: Any = job.call()
                error: BaseException | None = None
            except BaseException as exc:  # handed to the waiter, as ThreadPoolExecutor does
                result, error = None, exc
            with _JOBS_LOCK:
                _JOBS.pop(me, None)
            del job
            # Idle before the waiter learns the outcome: the job it submits next finds this
            # worker instead of starting another.
            self._idle_workers.release()
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
            del future, result, error  # no reference to the outcome kept while idle
        with self._guard:
            self._workers.discard(me)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._guard:
            if not self._closed:
                self._closed = True
                if cancel_futures:
                    while True:
                        try:
                            job = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if job is not None:
                            job.future.cancel()
                for _ in self._workers:
                    self._queue.put(None)  # each worker ends after the jobs queued before
            workers = list(self._workers)
        if wait:
            deadline = time.monotonic() + self._grace_s
            for worker in workers:
                worker.join(max(0.0, deadline - time.monotonic()))


@dataclass(frozen=True)
class _Job:
    future: Future[Any]
    label: str  # what it runs, for the leftovers' message
    call: Callable[[], Any]


class _EndingLoop(asyncio.SelectorEventLoop):
    """An event loop whose interrupts land where it can take them (session 12).

    - **Any thread.** Python runs a signal's handler (``asyncio.run``'s Ctrl-C,
      `_terminate_as_interrupt`'s SIGTERM) on the main thread, but the OS may deliver the
      signal to any thread: a tool's, the chat's standard-input reader. The main thread
      asleep in the loop's ``select`` learnt of it only when something else woke the
      loop; an idle loop did not answer Ctrl-C or ``kill`` until then. While it runs on
      the main thread, the loop registers a wake-up socket (``signal.set_wakeup_fd``),
      as asyncio's own ``add_signal_handler`` does, unless other code has set one.
    - **At a safe point.** ``asyncio.run`` answers a second Ctrl-C by raising
      KeyboardInterrupt from its handler, that is at whatever line the main thread runs:
      inside a task's coroutine (which then ends with it, skipping its own cleanup, and
      whoever waits for that task waits for ever) or inside the loop's bookkeeping
      between taking a callback off its queue and running it (a task's wake-up lost).
      SIGINT's handler is instead run as the loop's next callback, between callbacks, so
      the interrupt leaves every task to be cancelled and cleaned up as on the first.
      A loop stuck in one callback still answers: a signal that arrives while the
      previous one still waits for the loop runs its handler at once.
    """

    def run_forever(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return super().run_forever()
        with self._signals_wake_the_loop(), self._interrupts_between_callbacks():
            return super().run_forever()

    @contextmanager
    def _signals_wake_the_loop(self) -> Iterator[None]:
        wake, woken = socket.socketpair()
        wake.setblocking(False)
        woken.setblocking(False)
        ours = False
        with contextlib.suppress(ValueError):  # ValueError: not the main interpreter
            previous = signal.set_wakeup_fd(wake.fileno(), warn_on_full_buffer=False)
            ours = previous == -1
            if not ours:  # someone else's (a library's add_signal_handler): theirs wakes it
                signal.set_wakeup_fd(previous)
        if ours:
            self.add_reader(woken.fileno(), _drain, woken)
        try:
            yield
        finally:
            if ours:
                self.remove_reader(woken.fileno())
                current = signal.set_wakeup_fd(-1)
                if current != wake.fileno():  # replaced while the loop ran: leave theirs
                    signal.set_wakeup_fd(current)
            wake.close()
            woken.close()

    @contextmanager
    def _interrupts_between_callbacks(self) -> Iterator[None]:
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):  # ignored, or the OS default: nothing of Python's runs
            yield
            return
        waiting = False

        def run(signum: int) -> None:
            nonlocal waiting
            waiting = False
            handler(signum, None)

        def deferred(signum: int, frame: Any) -> None:
            nonlocal waiting
            if waiting:  # the loop has not taken the last one: it is stuck, answer now
                handler(signum, frame)
                return
            waiting = True
            self.call_soon_threadsafe(run, signum)

        signal.signal(signal.SIGINT, deferred)
        try:
            yield
        finally:
            if signal.getsignal(signal.SIGINT) is deferred:
                signal.signal(signal.SIGINT, handler)


def _drain(sock: socket.socket) -> None:
    """Reading the wake-up bytes is all: the handlers run on the main thread once awake."""
    with contextlib.suppress(OSError):
        while sock.recv(4096):
            pass


class _EndingPolicy(asyncio.DefaultEventLoopPolicy):
    def __init__(self, grace_s: float) -> None:
        super().__init__()
        self._grace_s = grace_s

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = _EndingLoop()
        loop.set_default_executor(_EndingExecutor(self._grace_s))
        return loop


@contextmanager
def ending_loops(grace_s: float = EXIT_GRACE_S) -> Iterator[None]:
    """Within this block, every new event loop (``asyncio.run``) gets a default executor
    that cannot keep the process alive (see the module doc); the previous event loop
    policy is restored after it."""
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_EndingPolicy(grace_s))
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)


def _where(thread: threading.Thread) -> str:
    """The innermost line ``thread`` is running: "in _watch_forever (tools.py:12)"."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return ""
    code = frame.f_code
    return f", now in {code.co_name} ({Path(code.co_filename).name}:{frame.f_lineno})"


def leftovers(before: Collection[threading.Thread]) -> tuple[list[str], list[str]]:
    """What still runs that was not running in ``before``: (non-daemon threads, which keep
    the process alive; default-executor jobs, which are abandoned at exit), each described."""
    me = threading.current_thread()
    threads = [
        f"thread {t.name!r}"
        + (f" started while tool {started_by(t)} ran" if started_by(t) else "")
        + _where(t)
        for t in threading.enumerate()
        if t is not me and t not in before and not t.daemon and t.is_alive()
    ]
    with _JOBS_LOCK:
        jobs = [(t, f"job {label}") for t, label in _JOBS.items() if t.is_alive()]
    jobs += [  # a plain-function tool still running past its timeout (a daemon thread)
        (t, "tool " + t.name.removeprefix(EXEC_PREFIX).replace(":", " (", 1) + ")")
        for t in threading.enumerate()
        if t.name.startswith(EXEC_PREFIX) and t not in before and t.is_alive()
    ]
    return threads, [label + _where(t) for t, label in jobs]


def end_process(
    status: int,
    before: Collection[threading.Thread],
    *,
    stderr: TextIO | None = None,
    grace_s: float = EXIT_GRACE_S,
    exit_now: Callable[[int], object] = os._exit,
    freeze_heap: Callable[[], None] = gc.freeze,
) -> int:
    """Let the process end with ``status`` within about ``grace_s`` seconds.

    ``before`` is the threads that ran before the command began (the command's
    own leftovers are judged, not the caller's). Threads the command left
    running get ``grace_s`` to finish; if some are still running, each is named
    on ``stderr`` and the process ends at once (``exit_now``, after flushing
    the standard streams and logging), since Python would otherwise wait for
    them for ever. Default-executor jobs still running are named too (they are
    abandoned, they cannot hold the process). Returns ``status`` when nothing
    holds the process, the heap frozen (``freeze_heap``, see the module doc).
    """
    stream = stderr if stderr is not None else sys.stderr
    deadline = time.monotonic() + grace_s
    me = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not me and thread not in before and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    threads, jobs = leftovers(before)
    freeze_heap()
    if not threads and not jobs:
        return status
    what = threads + jobs
    stream.write(
        f"voice-agent: the session is over and its ledger is saved, but {len(what)} "
        f"thread(s) still run {grace_s:g} s later:\n" + "".join(f"  {line}\n" for line in what)
    )
    if not threads:
        stream.write("voice-agent: they are abandoned (daemon threads cannot hold the process).\n")
        stream.flush()
        return status
    stream.write(
        "voice-agent: exiting without waiting for them (code that starts a thread should "
        "stop it, or start it with daemon=True).\n"
    )
    logging.shutdown()
    for out in (sys.stdout, sys.stderr, stream):
        try:
            out.flush()
        except (OSError, ValueError):  # a closed or broken stream: nothing more can be said
            pass
    exit_now(status)
    return status  # reached only when exit_now returns (tests)
