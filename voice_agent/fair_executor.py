"""Fair CPU scheduling across calls: one pool of worker threads, one lane per call.

A worker process serves several calls with one ASR model and one TTS voice.
Their CPU-heavy jobs (Whisper decodes, piper sentences) go through a
:class:`FairExecutor`: each call submits to its own :class:`Lane` (a
``concurrent.futures.Executor``, so ``loop.run_in_executor(lane, ...)``
works), and whenever a thread is free it runs the next job of the lane that
has received the *least CPU time so far* (start-time fair queueing, like the
Linux CFS's virtual runtime). A call that submits a lot (partials every
second on a long monologue) cannot starve one that submits a little (one
final decode): the latter's lane is behind, so its job goes first. A new lane
starts at the smallest virtual time of the lanes with work, and a lane back
from idle keeps at most ``IDLE_CREDIT_S`` of advantage, so a call that was
quiet for minutes does not bank credit and then monopolise the pool.

Two classes of work: a lane's *urgent* jobs (``lane.urgent``, an executor
view: the end-of-turn decode someone is waiting on) run before any lane's
ordinary jobs (a partial transcript, nice to have), fairly among themselves;
under overload the partials wait, never a caller's answer.

Jobs within one lane and class run in submission order. Cancelling a job's future
before it starts removes it; a running job finishes (a decode is not
interruptible) and its result is dropped by its awaiting side.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# A lane back from idle keeps at most this much CPU time of advantage over the lanes that
# have work (seconds). Enough for a quiet call's next decode or sentence (0.2-1 s) to go
# first; not enough for a call that was idle for minutes to monopolise the pool.
IDLE_CREDIT_S = 1.0


class _Job:
    __slots__ = ("args", "fn", "future", "kwargs", "urgent")

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        urgent: bool = False,
    ):
        self.urgent = urgent
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.future: Future[Any] = Future()


class Lane(Executor):
    """One call's queue in a :class:`FairExecutor` (an ``Executor``; shut down per call)."""

    def __init__(self, pool: FairExecutor, name: str) -> None:
        self._pool = pool
        self.name = name
        self.jobs: deque[_Job] = deque()
        self.urgent_jobs: deque[_Job] = deque()
        self.urgent = _UrgentView(self)
        self.vtime = 0.0  # CPU seconds received, offset so lanes compare fairly
        self.cpu_s = 0.0  # CPU seconds actually received (wall time of its jobs)
        self.jobs_run = 0
        self.closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._submit(_Job(fn, args, kwargs))

    def _submit(self, job: _Job) -> Future[Any]:
        if self.closed:
            raise RuntimeError(f"lane {self.name!r} is shut down")
        self._pool._enqueue(self, job)
        return job.future

    @property
    def pending(self) -> bool:
        return bool(self.jobs or self.urgent_jobs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting jobs; with ``cancel_futures`` drop the ones not started."""
        self._pool._close_lane(self, cancel_futures)


class _UrgentView(Executor):
    """``lane.urgent``: submits the lane's jobs ahead of every ordinary job."""

    def __init__(self, lane: Lane) -> None:
        self._lane = lane

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._lane._submit(_Job(fn, args, kwargs, urgent=True))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._lane.shutdown(wait, cancel_futures=cancel_futures)


class FairExecutor:
    """``threads`` worker threads serving :class:`Lane` s fairly (see the module doc)."""

    def __init__(self, name: str, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.name = name
        self._cond = threading.Condition()
        self._lanes: list[Lane] = []
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def lane(self, name: str) -> Lane:
        """A new lane (one per call)."""
        lane = Lane(self, name)
        with self._cond:
            busy = [ln.vtime for ln in self._lanes if ln.pending]
            lane.vtime = min(busy) if busy else max((ln.vtime for ln in self._lanes), default=0.0)
            self._lanes.append(lane)
        return lane

    def backlog(self) -> int:
        """Jobs waiting for a thread (all lanes, both classes)."""
        with self._cond:
            return sum(len(ln.jobs) + len(ln.urgent_jobs) for ln in self._lanes)

    @property
    def lanes(self) -> list[Lane]:
        with self._cond:
            return list(self._lanes)

    def shutdown(self) -> None:
        """Stop the threads after the jobs running now; queued jobs are cancelled (idempotent)."""
        with self._cond:
            self._closed = True
            for lane in self._lanes:
                for job in (*lane.jobs, *lane.urgent_jobs):
                    job.future.cancel()
                lane.jobs.clear()
                lane.urgent_jobs.clear()
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5)

    # -- internals -----------------------------------------------------------
    def _enqueue(self, lane: Lane, job: _Job) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError(f"executor {self.name!r} is shut down")
            if not lane.pending:  # back from idle: no credit for the time it had nothing to do
                busy = [ln.vtime for ln in self._lanes if ln.pending and ln is not lane]
                if busy:
                    lane.vtime = max(lane.vtime, min(busy) - IDLE_CREDIT_S)
            (lane.urgent_jobs if job.urgent else lane.jobs).append(job)
            self._cond.notify()

    def _close_lane(self, lane: Lane, cancel: bool) -> None:
        with self._cond:
            lane.closed = True
            if cancel:
                for job in (*lane.jobs, *lane.urgent_jobs):
                    job.future.cancel()
                lane.jobs.clear()
                lane.urgent_jobs.clear()
            if not lane.pending and lane in self._lanes:
                self._lanes.remove(lane)

    def _next(self) -> tuple[Lane, _Job] | None:
        """The urgent, else ordinary, job of the lane furthest behind (call with the lock held)."""
        while True:
            urgent = [ln for ln in self._lanes if ln.urgent_jobs]
            ready = urgent or [ln for ln in self._lanes if ln.jobs]
            if not ready:
                return None
            lane = min(ready, key=lambda ln: ln.vtime)
            job = (lane.urgent_jobs if urgent else lane.jobs).popleft()
            if lane.closed and not lane.pending and lane in self._lanes:
                self._lanes.remove(lane)
            if job.future.set_running_or_notify_cancel():
                return lane, job

    def _work(self) -> None:
        while True:
            with self._cond:
                picked = self._next()
                while picked is None:
                    if self._closed:
                        return
                    self._cond.wait()
                    picked = self._next()
            lane, job = picked
            started = time.perf_counter()
            try:
                result = job.fn(*job.args, **job.kwargs)
            except BaseException as exc:  # handed to the awaiting side, never lost
                job.future.set_exception(exc)
            else:
                job.future.set_result(result)
            took = time.perf_counter() - started
            with self._cond:
                lane.vtime += took
                lane.cpu_s += took
                lane.jobs_run += 1
