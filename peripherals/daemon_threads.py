"""An executor that runs each job on a new daemon thread of its own.

For a call that may block in C or Python for ever (a hung tool, PortAudio stuck on a
dead audio server): the default executor's few workers would be used up by a few such
calls, and its threads are joined when the loop and the interpreter shut down, so one
stuck call would keep the process from ending. Going through ``loop.run_in_executor``
keeps the job visible to the loop (virtual-time loops wait for executor jobs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any


class DaemonThreads(Executor):
    """Runs each job on a new daemon thread named ``name``."""

    def __init__(self, name: str) -> None:
        self._name = name

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the waiter, whatever it is
                future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            else:
                future.set_result(result)

        threading.Thread(target=work, name=self._name, daemon=True).start()
        return future
