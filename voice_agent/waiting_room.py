"""The waiting room: a queued caller hears a hold message, never silence.

When every slot of a worker is taken and the queue has room
(``worker.max_waiting``), a new call waits in line (:mod:`voice_agent.admission`).
Meanwhile :class:`WaitingRoom` plays ``worker.hold_message`` to it through the
call's own transport — so in the call's rate and codec (8 kHz μ-law on
Twilio, linear PCM on Vonage, the LiveKit track) — every
``worker.hold_interval_s`` seconds (start to start), and drains the caller's
audio so nothing piles up for the engine. Three endings:

- a slot is handed over: the hold message stops at once (``clear``) and the
  call starts; :class:`QueueWait` says how long it waited (the ledger's
  ``SessionStarted.meta.queue``);
- ``worker.wait_timeout_s`` passes: the caller hears ``worker.queue_apology``,
  then :class:`CallNotServed` (``reason="queue timeout"``);
- the caller hangs up while waiting: :class:`CallNotServed`
  (``reason="caller hung up while queued"``).

A call that was never served still gets a ledger (:func:`record_unserved`):
``SessionStarted`` (with the queue figures), a ``Note``, ``SessionEnded``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from fsm import Clock, MonotonicClock, fail_after
from ledger import JsonlSink, Ledger, check_directory
from ledger import entries as le

from .admission import Admission, Ticket
from .config import Config, WorkerConfig
from .transports.base import Transport

log = logging.getLogger(__name__)

# After the apology: how long past its own duration we wait for it to be heard (s). A stalled
# provider must not keep a call that will not be served.
APOLOGY_MARGIN_S = 5.0

Synthesize = Callable[[str, int], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class QueueWait:
    """How a queued call waited: seconds in line and hold messages played."""

    waited_s: float
    hold_messages: int

    def meta(self) -> dict[str, object]:
        return {"waited_s": round(self.waited_s, 2), "hold_messages": self.hold_messages}


class CallNotServed(Exception):
    """The call left the queue without a slot (``reason``: queue timeout, or the caller left)."""

    def __init__(self, reason: str, wait: QueueWait) -> None:
        super().__init__(f"{reason} after {wait.waited_s:.1f} s in the queue")
        self.reason = reason
        self.wait = wait


class WaitingRoom:
    """Plays the hold message to queued calls (one per worker, shared by its threads;
    messages cached per rate)."""

    def __init__(
        self, cfg: WorkerConfig, synthesize: Synthesize, *, clock: Clock | None = None
    ) -> None:
        self._cfg = cfg
        self._synthesize = synthesize
        self._clock = clock or MonotonicClock()
        # (text, rate) -> audio. No lock: the LiveKit worker's calls run in several event
        # loops; two calls synthesizing the same message at once only cost a sentence of CPU.
        self._cache: dict[tuple[str, int], np.ndarray] = {}

    async def audio(self, text: str, rate: int) -> np.ndarray:
        """``text`` spoken at ``rate`` Hz (synthesized once per rate, then cached)."""
        key = (text, rate)
        if key not in self._cache:
            self._cache[key] = await self._synthesize(text, rate)
        return self._cache[key]

    async def wait(self, ticket: Ticket, transport: Transport) -> QueueWait:
        """Hold ``transport``'s caller in line until ``ticket`` gets a slot (returns how the
        wait went; the slot is then the caller's) or :class:`CallNotServed`."""
        t0 = self._clock.now()
        played = [0]
        granted = asyncio.ensure_future(ticket.wait(self._cfg.wait_timeout_s, self._clock))
        gone = asyncio.ensure_future(_drain(transport))
        holding = asyncio.ensure_future(self._hold_loop(transport, played))
        try:
            await asyncio.wait({granted, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            holding.cancel()
            gone.cancel()
            if not granted.done():
                granted.cancel()
            # return_exceptions: the three ended as told; a cancellation of this wait
            # itself still propagates from here
            await asyncio.gather(holding, gone, granted, return_exceptions=True)
        transport.output.clear()  # the hold message stops at once
        wait = QueueWait(self._clock.now() - t0, played[0])
        if not granted.cancelled() and granted.exception() is None:
            return wait
        if gone.done() and not gone.cancelled():
            raise CallNotServed("caller hung up while queued", wait)
        exc = granted.exception() if not granted.cancelled() else None
        if isinstance(exc, TimeoutError):
            await self._apologize(transport)
            raise CallNotServed("queue timeout", wait)
        if exc is not None:
            raise exc
        raise asyncio.CancelledError  # only cancellation of this wait itself gets here

    async def _hold_loop(self, transport: Transport, played: list[int]) -> None:
        out = transport.output
        audio = await self.audio(self._cfg.hold_message, out.sample_rate)
        while True:
            started = self._clock.now()
            await out.write(audio)
            played[0] += 1
            await out.wait_drained()
            rest = self._cfg.hold_interval_s - (self._clock.now() - started)
            await self._clock.sleep(max(0.0, rest))

    async def _apologize(self, transport: Transport) -> None:
        out = transport.output
        try:
            audio = await self.audio(self._cfg.queue_apology, out.sample_rate)
            await out.write(audio)
            async with fail_after(self._clock, len(audio) / out.sample_rate + APOLOGY_MARGIN_S):
                await out.wait_drained()
        except TimeoutError:
            log.warning("%s: the queue apology was not played out in time", transport.name)


@contextlib.asynccontextmanager
async def admitted(
    admission: Admission,
    room: WaitingRoom,
    transport: Transport,
    *,
    on_wait: Callable[[int], None] | None = None,
) -> AsyncIterator[QueueWait | None]:
    """Hold a slot of ``admission`` for the call on ``transport`` while the block runs.

    A free slot is taken at once (yields None); otherwise the call waits in line in
    ``room`` hearing the hold message (yields its :class:`QueueWait`); ``on_wait(+1)``
    / ``on_wait(-1)`` bracket the wait. Raises :class:`~voice_agent.admission.QueueFull`
    at once when the queue is full, :class:`CallNotServed` when the call left the queue
    unserved. The slot is given back (to the next in line) when the block ends.
    """
    wait: QueueWait | None = None
    if not admission.try_enter():
        ticket = admission.queue()
        if not ticket.granted.done():
            if on_wait is not None:
                on_wait(1)
            try:
                wait = await room.wait(ticket, transport)
            finally:
                if on_wait is not None:
                    on_wait(-1)
    try:
        yield wait
    finally:
        admission.leave()


async def _drain(transport: Transport) -> None:
    """Read and drop the caller's audio while queued; returns when the caller hangs up."""
    async with contextlib.aclosing(transport.audio_in()) as frames:  # type: ignore[type-var]
        async for _ in frames:
            pass


def record_unserved(
    config: Config,
    transport: Transport,
    meta: Mapping[str, object] | None,
    exc: CallNotServed,
    *,
    clock: Clock | None = None,
) -> Path | None:
    """A ledger for a call that left the queue unserved; its path (None without persistence)."""
    session_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    sinks = []
    path: Path | None = None
    if config.ledger.persist:
        try:
            path = check_directory(config.ledger.directory) / f"{session_id}.jsonl"
            sinks.append(JsonlSink(path))
        except Exception as err:  # the log below still says what happened
            log.error("no ledger for the unserved call: %s", err)
            path = None
    ledger = Ledger(session_id, clock or MonotonicClock(), sinks=sinks)
    ledger.append(
        le.SessionStarted(
            session_id=session_id,
            started_at=datetime.now(UTC).isoformat(),
            meta={"transport": transport.name, **(meta or {}), "queue": exc.wait.meta()},
        )
    )
    ledger.append(le.Note(text=f"not served: {exc}", level="warning"))
    ledger.append(le.SessionEnded(reason=exc.reason))
    for sink in sinks:
        sink.close()
    log.warning("%s call not served: %s (ledger %s)", transport.name, exc, path)
    return path
