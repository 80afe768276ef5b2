"""`HelperProcess`: CPU-bound work of the ledger's writer run in one child process.

Masking a ledger line is pure-Python regular-expression work, and CPython's `re`
holds the interpreter lock for a whole scan: in a thread, one scan of a 2 MB
text that finds nothing (the URL or number-word patterns over prose) still
stops the event loop for up to a second at a time. A child process does not.

The child is ``python -c`` running `serve_stdio` (not `multiprocessing`: its
spawn re-imports the parent's main module, which re-runs a script that lacks
the ``if __name__ == "__main__"`` guard; fork is unsafe in a process running
threads), started on first use, so a session that never writes a large
entry never starts one. It runs in its own session (a Ctrl-C at the terminal
reaches the parent only: the parent decides what it means) and ends when its
standard input closes, i.e. at `close` or when the parent dies. Its first frame
says it has started (its imports done): a `run`'s `timeout_s` bounds the work from
there, and the start has its own bound (`START_TIMEOUT_S`), so a slow start on a busy
machine is never taken for slow work.

Requests and replies are pickles framed by an 8-byte length on the child's
standard input/output, one at a time. Whatever goes wrong with the child (it
cannot start, it dies, an argument cannot be pickled) is logged once and the
work is done in this process instead: slower, never lost.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any, TypeVar

__all__ = ["START_TIMEOUT_S", "HelperProcess", "HelperTimeout"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_CHILD = "from ledger.helper_process import serve_stdio; serve_stdio()"
_FRAME = struct.Struct("<Q")  # the length of the pickle that follows (bytes)
_STARTED = b""  # the child's first frame, sent once its imports are done

START_TIMEOUT_S = 30.0
"""Most wall seconds a new child may take to start (the interpreter, then the ledger
package imported) before it is taken for broken and the work is done here: 0.4 s on
an idle 2-core machine, 2-3.6 s at load 16 (session 14: counted in the masking's 3 s
budget, it had the first large entry of a session written clipped)."""


def _send(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


def _receive(stream: IO[bytes]) -> bytes | None:
    """One framed payload, or None at the end of the stream."""
    head = stream.read(_FRAME.size)
    if len(head) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(head)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return payload


class HelperTimeout(TimeoutError):
    """The child did not answer within the `timeout_s` given to `HelperProcess.run`."""


def _readable(stream: IO[bytes], timeout_s: float) -> bool:
    """Whether `stream` (a pipe) has data, or its end, within `timeout_s` seconds."""
    ready, _, _ = select.select([stream], [], [], max(0.0, timeout_s))
    return bool(ready)


class HelperProcess:
    """Runs `fn(*args)` in one child process, started on first use.

    `run` blocks its caller (call it from a worker thread, not the event loop)
    and returns `fn`'s result or raises `fn`'s exception. `fn` must be a
    module-level function and its arguments picklable; when the child cannot
    be used, `run` calls `fn` here. `close` stops the child and is idempotent;
    `run` after `close` calls `fn` here. Calls are served one at a time.
    """

    def __init__(self, name: str = "ledger helper") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._unusable = False  # the child failed once (or was closed): work runs here

    def run(self, fn: Callable[..., T], *args: object, timeout_s: float | None = None) -> T:
        """`fn(*args)`, computed in the child process when it can be.

        With `timeout_s` (wall seconds, counted once the child has started and has the
        request), a child that has not answered by then is killed (the next call starts
        another) and `HelperTimeout` is raised: the caller decides what to do instead of
        waiting (hostile9: the session file's masking is bounded)."""
        with self._lock:
            child = self._started()
            if child is not None:
                try:
                    request = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
                except (pickle.PicklingError, TypeError, AttributeError) as error:
                    log.warning(
                        "%s: cannot pass %s to the helper process (%s)", self._name, fn, error
                    )
                else:
                    late = False
                    try:
                        assert child.stdin is not None and child.stdout is not None
                        _send(child.stdin, request)
                        late = timeout_s is not None and not _readable(child.stdout, timeout_s)
                        if late:
                            self._stop(kill=True)  # the next call starts another child
                            raise HelperTimeout(f"{fn.__name__} took over {timeout_s:g} s")
                        reply = _receive(child.stdout)
                        if reply is None:
                            raise OSError(f"the helper process ended (status {child.poll()})")
                        failed, value = pickle.loads(reply)
                    except (OSError, EOFError, pickle.UnpicklingError) as error:
                        if late:  # HelperTimeout is an OSError: not a broken child
                            raise
                        self._give_up(error)
                    else:
                        if failed:
                            raise value
                        return value  # type: ignore[no-any-return]
        return fn(*args)

    def _started(self) -> subprocess.Popen[bytes] | None:
        if self._unusable:
            return None
        if self._child is None:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            try:
                child = subprocess.Popen(
                    [sys.executable, "-c", _CHILD],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    env=env,
                    start_new_session=True,
                )
            except OSError as error:
                self._unusable = True
                log.warning(
                    "%s: cannot start a helper process (%s); working here", self._name, error
                )
                return None
            self._child = child
            assert child.stdout is not None
            if not _readable(child.stdout, START_TIMEOUT_S):
                self._give_up(OSError(f"it did not start within {START_TIMEOUT_S:g} s"), kill=True)
                return None
            if _receive(child.stdout) != _STARTED:
                self._give_up(OSError(f"it ended before it started (status {child.poll()})"))
                return None
        return self._child

    def _give_up(self, error: BaseException, *, kill: bool = False) -> None:
        self._unusable = True
        log.warning(
            "%s: the helper process failed (%s: %s); working in this process",
            self._name,
            type(error).__name__,
            error,
        )
        self._stop(kill=kill)

    def _stop(self, *, kill: bool = False) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if kill:  # mid-request or mid-start: it would not see its input close before then
            child.kill()
        for stream in (child.stdin, child.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            child.wait(timeout=5)  # it ends at the end of its input
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def close(self) -> None:
        """Stop the child process (after the call it serves); idempotent."""
        with self._lock:
            self._unusable = True
            self._stop()


def _serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """The child's loop: run each request, reply with (failed, value), until input ends."""
    while (payload := _receive(requests)) is not None:
        fn, args = pickle.loads(payload)
        try:
            reply: Any = (False, fn(*args))
        except Exception as error:  # handed back to the caller, who raises it
            reply = (True, error)
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # an unpicklable result or error: say what it was
            data = pickle.dumps((True, RuntimeError(f"{type(error).__name__}: {error}")))
        _send(replies, data)


def serve_stdio() -> None:
    """The child's entry point: requests on standard input, replies on standard output."""
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed by the work must not corrupt the replies
    _send(replies, _STARTED)
    _serve(sys.stdin.buffer, replies)
