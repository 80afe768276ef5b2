"""Admission: at most ``max_calls`` calls at once, up to ``max_waiting`` more queued in order.

:class:`Admission` is shared by every call of a worker process, across threads
and event loops (the media-stream server runs its calls in one loop; the
LiveKit worker runs each call in a job thread with a loop of its own), so it
is guarded by a ``threading.Lock`` and hands a freed slot to the first queued
call through that call's own loop (``call_soon_threadsafe``).

- :meth:`try_enter` takes a free slot now or returns False.
- :meth:`queue` reserves a place in the queue (or raises :class:`QueueFull`);
  the returned :class:`Ticket`'s ``wait(timeout_s)`` resolves when a slot is
  handed over (first come, first served) or raises ``TimeoutError``; its
  ``cancel()`` leaves the queue (the caller hung up while waiting).
- :meth:`leave` frees a slot: the first call still waiting gets it at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

from fsm import Clock, MonotonicClock, fail_after


class QueueFull(RuntimeError):
    """Every slot is taken and the queue holds ``max_waiting`` calls already."""


class Ticket:
    """A queued call's place in line (from :meth:`Admission.queue`)."""

    def __init__(self, admission: Admission, loop: asyncio.AbstractEventLoop) -> None:
        self._admission = admission
        self._loop = loop
        self.granted: asyncio.Future[None] = loop.create_future()

    async def wait(self, timeout_s: float, clock: Clock | None = None) -> None:
        """Until a slot is this call's (then it must :meth:`Admission.leave` once), or
        ``TimeoutError`` after ``timeout_s`` seconds on ``clock`` (the call has left the
        queue)."""
        try:
            async with fail_after(clock or MonotonicClock(), timeout_s):
                await asyncio.shield(self.granted)
        except BaseException:
            self.cancel()
            raise

    def cancel(self) -> None:
        """Leave the queue, or give back the slot if it had been handed over already."""
        if self._admission._withdraw(self):
            self._admission.leave()

    def _grant(self) -> None:  # in the ticket's loop
        if self.granted.done():  # withdrawn meanwhile: the slot goes to the next in line
            self._admission.leave()
        else:
            self.granted.set_result(None)


class Admission:
    """Slots and a first-come-first-served queue for calls (thread-safe; see the module)."""

    def __init__(self, max_calls: int, max_waiting: int = 0) -> None:
        if max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        self.max_calls = max_calls
        self.max_waiting = max_waiting
        self._active = 0
        self._queue: deque[Ticket] = deque()
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        """Calls holding a slot."""
        return self._active

    @property
    def waiting(self) -> int:
        """Calls in the queue."""
        return len(self._queue)

    def load(self) -> float:
        """The LiveKit worker's reported load: calls running and waiting over slots and queue
        places, so 1.0 (no more dispatches) once the queue is full too; with no queue, once
        every slot is taken."""
        return min(1.0, (self._active + len(self._queue)) / (self.max_calls + self.max_waiting))

    def can_take(self) -> bool:
        """A new call would get a slot or a place in the queue."""
        return self._active < self.max_calls or len(self._queue) < self.max_waiting

    def try_enter(self) -> bool:
        """Take a free slot now (nobody queued before this call), or False."""
        with self._lock:
            if self._active < self.max_calls and not self._queue:
                self._active += 1
                return True
            return False

    def queue(self) -> Ticket:
        """A place in the queue, or :class:`QueueFull`. Call from the waiting call's loop."""
        ticket = Ticket(self, asyncio.get_running_loop())
        with self._lock:
            if self._active < self.max_calls and not self._queue:
                self._active += 1
                ticket.granted.set_result(None)
                return ticket
            if len(self._queue) >= self.max_waiting:
                raise QueueFull(
                    f"the worker is full ({self.max_calls} calls, {len(self._queue)} waiting)"
                )
            self._queue.append(ticket)
        return ticket

    def leave(self) -> None:
        """Free a slot: the first queued call gets it (in its own loop), else it is free."""
        with self._lock:
            if self._queue:
                ticket = self._queue.popleft()
                ticket._loop.call_soon_threadsafe(ticket._grant)
                return
            self._active = max(0, self._active - 1)

    def _withdraw(self, ticket: Ticket) -> bool:
        """Take ``ticket`` out of the queue; True if it holds a slot already."""
        with self._lock:
            if ticket in self._queue:
                self._queue.remove(ticket)
                ticket.granted.cancel()
                return False
        granted = ticket.granted
        if granted.done():
            return not granted.cancelled()
        granted.cancel()  # a grant is on its way: _grant sees it done and passes the slot on
        return False
