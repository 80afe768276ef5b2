"""A child process that never outlives its parent.

A child started by the agent or a benchmark (the local LLM server) calls
`exit_with_parent()` first thing in its ``main``, before anything slow (model
assembly and loading take seconds to minutes). From then on, however the
parent ends (a clean exit, SIGTERM, Ctrl-C, SIGKILL, a crash), the child stops
on its own:

- The parent holds the write end of the child's stdin pipe and never writes.
  When the parent's process ends, the kernel closes it and the child's read
  returns end-of-file at once.
- If the write end was inherited by another process (a ``fork`` without
  ``exec`` in the parent), end-of-file never comes; the child also notices
  that its parent process changed (``os.getppid()``, re-parented to init or a
  subreaper) within `POLL_S`.

Either way the child sends itself SIGTERM, so its own graceful stop runs (or
the default action ends it, while no handler is installed yet), and if it is
still alive `grace_s` later it exits with `os._exit`.

``PR_SET_PDEATHSIG`` is not used: Linux sends it when the *thread* that forked
the child exits, not the process (prctl(2)); asyncio forks from whichever
thread runs the event loop, so a launcher used from a short-lived thread would
have its server killed while the parent lived on. A process group is not
used either: only a terminal's Ctrl-C reaches a whole group, and the pipe
covers that case and every other one.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading

#: Seconds between two checks of the parent's pid: how long a child whose
#: stdin pipe leaked into another process may outlive its parent.
POLL_S = 0.2
#: Seconds the child's own graceful stop may take before it is forced.
DEFAULT_GRACE_S = 5.0


def exit_with_parent(grace_s: float = DEFAULT_GRACE_S, stdin_fd: int | None = None) -> None:
    """Stop this process when its parent ends (see the module docstring).

    ``stdin_fd`` is the pipe the parent holds open (default: this process's
    stdin); nothing is ever read from it but end-of-file. Returns at once; a
    daemon thread watches.
    """
    fd = sys.stdin.fileno() if stdin_fd is None else stdin_fd
    parent = os.getppid()
    watcher = threading.Thread(
        target=_watch, args=(fd, parent, grace_s), name="parent-watch", daemon=True
    )
    watcher.start()


def _watch(fd: int, parent: int, grace_s: float) -> None:
    while not _parent_gone(fd, parent):
        pass
    with contextlib.suppress(OSError, ValueError):  # the parent's end of stderr may be gone too
        print(f"parent process {parent} ended; stopping", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Event().wait(grace_s)
    os._exit(1)


def _parent_gone(fd: int, parent: int) -> bool:
    """Wait up to `POLL_S`; True when the pipe reached end-of-file or the parent changed."""
    try:
        readable, _, _ = select.select([fd], [], [], POLL_S)
        if readable and not os.read(fd, 4096):
            return True
    except OSError:
        return True  # the descriptor itself is gone
    return os.getppid() != parent
