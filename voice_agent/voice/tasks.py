"""A small owner for background tasks: every task it starts is tracked and cancelled by it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskTracker:
    """Starts named tasks, keeps them until they finish, cancels them on ``aclose``.

    A task that fails (anything but cancellation) is logged with its traceback
    at error level and recorded in ``failures``: nothing fails silently.
    """

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._tasks: set[asyncio.Task[Any]] = set()
        self.failures: list[BaseException] = []

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start ``coro`` as a task owned here (needs a running loop)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self._owner}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.failures.append(exc)
            log.error("%s failed", task.get_name(), exc_info=exc)

    @property
    def pending(self) -> int:
        """Tasks started here that have not finished yet."""
        return len(self._tasks)

    def cancel(self, task: asyncio.Task[Any] | None) -> None:
        """Cancel one owned task (no wait; it is still tracked until it ends)."""
        if task is not None and not task.done():
            task.cancel()

    async def aclose(self) -> None:
        """Cancel every owned task and wait for them (idempotent)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
