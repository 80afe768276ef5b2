"""`Ledger`: the session's append-only, timestamped log, and what is derived from it.

Not thread-safe: append from one thread (the event loop's). Time comes from the
injected clock (`fsm.clock.Clock`); only `now()` is used.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Any, Protocol

from fsm.clock import Clock
from ledger.entries import Entry
from ledger.errors import LedgerClosed, LedgerError
from ledger.render import render_state, transcript_state
from ledger.state import LedgerState
from ledger.views import CallView, ResponseView, call_view, response_view

__all__ = ["Ledger", "Sink", "Subscriber"]

Subscriber = Callable[[Entry], None]
"""Called synchronously with each appended entry (after the sinks)."""


class Sink(Protocol):
    """Where appended entries are written (e.g. `JsonlSink`).

    A sink that writes in the background may also have ``drain()`` (wait until
    everything given is written); `Ledger.close` calls it before refusing appends;
    and ``on_written(seq, callback)`` (call back once entry ``seq`` and those before it
    are stored: `JsonlSink.on_written`); `Ledger.persisted` waits for it.
    """

    def write(self, entry: Entry) -> None:
        """Record one entry; called synchronously on each append, in ledger order."""
        ...

    def close(self) -> None:
        """Release resources; idempotent."""
        ...


def _drain(sink: Sink) -> None:
    """Let a sink that writes in the background (`JsonlSink.drain`) finish what it was given:
    what it reports meanwhile (a storage fault) can still be appended."""
    drain = getattr(sink, "drain", None)
    if callable(drain):
        drain()


class Ledger:
    """The shared ledger of one voice-agent session.

    `append` validates each entry against the ledger's protocol (raising
    `LedgerError` and recording nothing if it breaks it), stamps it with the
    next `seq` (0, 1, 2, ...) and `t = clock.now()`, then writes it to every
    sink and calls every subscriber, in append order. An entry appended from
    inside a sink or subscriber is recorded at once and delivered after the
    current one. If sinks or subscribers raise, the entry stays recorded, the
    remaining ones still run, and the error (an ExceptionGroup if several)
    propagates out of the `append` that triggered the delivery.
    """

    def __init__(self, session_id: str, clock: Clock, sinks: Sequence[Sink] = ()) -> None:
        self._session_id = session_id
        self._clock = clock
        self._sinks = tuple(sinks)
        self._subscribers: list[Subscriber] = []
        self._entries: list[Entry] = []
        self._state = LedgerState(session_id)
        self._undelivered: deque[Entry] = deque()
        self._delivering = False
        self._closed = False

    @classmethod
    def from_entries(
        cls, entries: Iterable[Entry], clock: Clock, sinks: Sequence[Sink] = ()
    ) -> Ledger:
        """Rebuild a ledger from recorded entries (e.g. `load_jsonl`), keeping their seq and t.

        The session id is taken from the `SessionStarted` entry (else `""`).
        Raises LedgerError if the entries are out of sequence or break the
        protocol. Sinks only receive entries appended afterwards.
        """
        items = list(entries)
        session_id = next((e.session_id for e in items if e.type == "SessionStarted"), "")
        ledger = cls(session_id, clock, sinks)
        for index, entry in enumerate(items):
            if entry.seq != index:
                raise LedgerError(f"entry {index} ({entry.type}) has seq {entry.seq}, not {index}")
            ledger._state.apply(entry)
            ledger._entries.append(entry)
        return ledger

    # -- appending -----------------------------------------------------------------

    def append(self, payload: Entry) -> Entry:
        """Record `payload` (its seq/t are replaced) and return the stamped entry.

        Raises LedgerError if the entry breaks the protocol: an outcome for an
        unknown call or a call that already has one; a duplicate call id; a
        non-speculative call, planned/played text or finish for a response that
        never started; a second finish of a response; a fork adoption/discard
        for an unknown or closed fork (and the other checks in `ledger.state`).
        Raises LedgerClosed after `close()`.
        """
        if self._closed:
            raise LedgerClosed(f"ledger of session {self._session_id!r} is closed")
        entry = payload.model_copy(update={"seq": len(self._entries), "t": self._clock.now()})
        self._state.apply(entry)
        self._entries.append(entry)
        self._undelivered.append(entry)
        if not self._delivering:
            self._deliver()
        return entry

    def _deliver(self) -> None:
        self._delivering = True
        errors: list[Exception] = []
        try:
            while self._undelivered:
                entry = self._undelivered.popleft()
                for target in (*[s.write for s in self._sinks], *self._subscribers):
                    try:
                        target(entry)
                    except Exception as error:  # re-raised below, after everyone got the entry
                        errors.append(error)
        finally:
            self._delivering = False
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup("ledger sinks/subscribers failed", errors)

    def persisted(self, seq: int | None = None) -> Future[None]:
        """A future done once every sink has stored entry ``seq`` (default: the last one
        appended) and every entry before it (`JsonlSink.on_written`): done at once for
        sinks that store on append, or when nothing was appended.

        The engine waits for it before anything changes the world (a write tool runs),
        so the file never lacks the intent of a write that ran. The future may complete
        on a sink's writer thread (``asyncio.wrap_future`` awaits it on a loop)."""
        done: Future[None] = Future()
        if seq is None:
            seq = len(self._entries) - 1
        waits = [s for s in self._sinks if callable(getattr(s, "on_written", None))]
        if seq < 0 or not waits:
            done.set_result(None)
            return done
        left = [len(waits)]
        guard = threading.Lock()

        def one_stored() -> None:
            with guard:
                left[0] -= 1
                last = left[0] == 0
            if last and not done.done():
                try:
                    done.set_result(None)
                except InvalidStateError:  # the waiter gave up (cancelled) meanwhile
                    pass

        for sink in waits:
            sink.on_written(seq, one_stored)  # type: ignore[attr-defined]
        return done

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(entry)` for every later append; returns an idempotent unsubscribe."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def close(self) -> None:
        """Drain and close every sink and refuse further appends; idempotent."""
        if self._closed:
            return
        errors: list[Exception] = []
        for sink in self._sinks:
            try:
                _drain(sink)
            except Exception as error:  # re-raised below, after every sink was closed
                errors.append(error)
        self._closed = True
        for sink in self._sinks:
            try:
                sink.close()
            except Exception as error:  # re-raised below, after every sink was closed
                errors.append(error)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup("closing ledger sinks failed", errors)

    # -- reading -------------------------------------------------------------------

    @property
    def session_id(self) -> str:
        """The session this ledger records."""
        return self._session_id

    @property
    def entries(self) -> tuple[Entry, ...]:
        """All entries so far, in append order (`entries[i].seq == i`)."""
        return tuple(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def call(self, call_id: str) -> CallView:
        """The call with this id; raises KeyError for an unknown id."""
        record = self._state.calls.get(call_id)
        if record is None:
            raise KeyError(call_id)
        return call_view(record)

    def pending_calls(self) -> list[CallView]:
        """Calls without an outcome, in start order; one per future.

        A speculative call that was adopted is represented by its final call.
        """
        return [
            call_view(record)
            for record in self._state.calls.values()
            if record.future.outcome is None and record.adopted_by is None
        ]

    def response(self, response_id: str) -> ResponseView:
        """The response with this id; raises KeyError for an unknown id."""
        record = self._state.responses.get(response_id)
        if record is None:
            raise KeyError(response_id)
        return response_view(record)

    def responses(self) -> list[ResponseView]:
        """All responses in start order."""
        return [response_view(record) for record in self._state.responses.values()]

    def render_messages(self, system_prompt: str | None = None) -> list[dict[str, Any]]:
        """The ledger as OpenAI chat messages (rules in `ledger.render`)."""
        return render_state(self._state, self._entries, system_prompt)

    def transcript(self) -> str:
        """`user: ...` / `agent: ...` lines; the agent's lines are what was played."""
        return transcript_state(self._state, self._entries)
