"""The ledger's derived state: responses, calls, futures and forks, folded entry by entry.

`LedgerState.apply(entry)` validates an entry against everything seen so far
and raises `LedgerError` *before* changing anything, so a rejected append
leaves the state untouched. The records here are private and mutable; the
public, frozen views are in `ledger.views`.

Futures: every call owns a future that receives at most one outcome. When a
fork is adopted, the final call shares the speculative call's future, so an
outcome recorded under either id settles both (and a second one is rejected).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.entries import (
    AgentTextPlanned,
    AgentTextPlayed,
    Entry,
    ForkAdopted,
    ForkDiscarded,
    ForkOpened,
    LlmRequestStarted,
    LlmResponseFinished,
    Outcome,
    SessionStarted,
    ToolCallCancelled,
    ToolCallFailed,
    ToolCallResolved,
    ToolCallStarted,
    ToolCallTimedOut,
)
from ledger.errors import LedgerError

__all__ = ["RESULT_SUFFIX", "CallRecord", "ForkRecord", "Future", "LedgerState", "ResponseRecord"]

RESULT_SUFFIX = "-result"
"""Suffix of the synthetic `get_result` tool_call id that reports a late outcome."""


@dataclass
class Future:
    """The running work behind one call (shared by an adopted pair)."""

    outcome: Outcome | None = None


@dataclass
class ResponseRecord:
    """One LLM response: its request, text and (non-speculative) calls."""

    started: LlmRequestStarted
    planned: list[AgentTextPlanned] = field(default_factory=list)
    played: AgentTextPlayed | None = None
    finished: LlmResponseFinished | None = None
    call_ids: list[str] = field(default_factory=list)

    @property
    def planned_text(self) -> str:
        """The planned chunks, each stripped, joined by single spaces (blank chunks skipped)."""
        return join_chunks([chunk.text for chunk in self.planned])

    @property
    def produced_text(self) -> bool:
        """True if the model generated any non-blank text (the engine's canned words are not
        the model's)."""
        return any(c.text.strip() for c in self.planned if not c.canned) or bool(self.model_text)

    @property
    def text(self) -> str:
        """What the caller was given of it: the played text if recorded, else the planned
        text (the engine's canned words included)."""
        if self.played is not None:
            return self.played.text.strip()
        return self.planned_text

    @property
    def model_text(self) -> str:
        """The model's own words of `text`: without the engine's (`canned_text`)."""
        return self._split()[0]

    @property
    def canned_text(self) -> str:
        """The engine's own words of `text` (chunks planned as `canned`: a hold phrase, the
        apology), in the order said."""
        return self._split()[1]

    def _split(self) -> tuple[str, str]:
        """(the model's words, the engine's words) of `text`.

        Without a played record, the planned chunks by their `canned` mark. With one, the
        heard text is matched against the planned chunks in order: a canned chunk found in
        it is the engine's, everything else heard is the model's (its sentences may be
        heard rejoined or cut: a barge-in). A canned chunk cut off before its end is not
        found and counts as the model's: the caller heard a fragment of it at most.
        """
        if self.played is None:
            return (
                join_chunks([c.text for c in self.planned if not c.canned]),
                join_chunks([c.text for c in self.planned if c.canned]),
            )
        heard = " ".join(self.played.text.split())
        if not any(c.canned for c in self.planned):
            return heard, ""
        model: list[str] = []
        engine: list[str] = []
        rest = heard
        for chunk in self.planned:
            words = " ".join(chunk.text.split())
            at = rest.find(words) if words else -1
            if at < 0:
                continue
            model.append(rest[:at])
            (engine if chunk.canned else model).append(words)
            rest = rest[at + len(words) :]
        model.append(rest)
        return join_chunks(model), join_chunks(engine)


@dataclass
class CallRecord:
    """One tool call and the future it is bound to."""

    started: ToolCallStarted
    future: Future
    adopted_from: str | None = None
    adopted_by: str | None = None
    adopted_seq: int | None = None

    @property
    def outcome_seq(self) -> int | None:
        """Ledger position from which this call counts as settled, or None while pending.

        For an adopted final call it is the later of its outcome and the
        adoption: before the adoption, the final call was still pending.
        """
        outcome = self.future.outcome
        if outcome is None:
            return None
        if self.adopted_seq is not None:
            return max(outcome.seq, self.adopted_seq)
        return outcome.seq


@dataclass
class ForkRecord:
    """One speculative fork and its calls."""

    opened: ForkOpened
    closed: ForkAdopted | ForkDiscarded | None = None
    call_ids: list[str] = field(default_factory=list)


def join_chunks(chunks: list[str]) -> str:
    """Join text chunks: each stripped, blank ones skipped, separated by one space."""
    return " ".join(chunk.strip() for chunk in chunks if chunk.strip())


class LedgerState:
    """Everything derived from the entries so far; validates each new entry."""

    def __init__(self, session_id: str | None) -> None:
        self.session_id = session_id
        self.session_started: SessionStarted | None = None
        self.responses: dict[str, ResponseRecord] = {}
        self.calls: dict[str, CallRecord] = {}
        self.forks: dict[str, ForkRecord] = {}
        # The seqs of the requests a model saw (`LlmRequestStarted.by_model`), in order:
        # a call's outcome is inlined unless one of them came between its start and it.
        self.model_request_seqs: list[int] = []
        self._reserved_ids: set[str] = set()

    def apply(self, entry: Entry) -> None:
        """Validate `entry` against the state, then fold it in.

        Raises LedgerError (and changes nothing) if the entry breaks the protocol.
        """
        self._check(entry)
        self._fold(entry)

    # -- validation ------------------------------------------------------------

    def _check(self, entry: Entry) -> None:
        match entry:
            case SessionStarted():
                if self.session_started is not None:
                    raise LedgerError(f"session {entry.session_id!r} already started")
                if self.session_id is not None and entry.session_id != self.session_id:
                    raise LedgerError(
                        f"SessionStarted for {entry.session_id!r} in the ledger of "
                        f"session {self.session_id!r}"
                    )
            case LlmRequestStarted():
                if entry.response_id in self.responses:
                    raise LedgerError(f"response {entry.response_id!r} already started")
            case AgentTextPlanned() | AgentTextPlayed():
                self._response(entry.response_id, entry.type)
            case LlmResponseFinished():
                if self._response(entry.response_id, entry.type).finished is not None:
                    raise LedgerError(f"response {entry.response_id!r} already finished")
            case ToolCallStarted():
                self._check_call_started(entry)
            case ToolCallResolved() | ToolCallFailed() | ToolCallTimedOut() | ToolCallCancelled():
                call = self.calls.get(entry.call_id)
                if call is None:
                    raise LedgerError(f"{entry.type} for unknown call {entry.call_id!r}")
                if call.future.outcome is not None:
                    previous = call.future.outcome
                    raise LedgerError(
                        f"{entry.type} for call {entry.call_id!r}, which already has an "
                        f"outcome ({previous.type} for {previous.call_id!r} at seq {previous.seq})"
                    )
            case ForkOpened():
                if entry.fork_id in self.forks:
                    raise LedgerError(f"fork {entry.fork_id!r} already opened")
            case ForkAdopted():
                self._open_fork(entry.fork_id, entry.type)
                self._check_adoption(entry)
            case ForkDiscarded():
                self._open_fork(entry.fork_id, entry.type)
            case _:
                pass

    def _response(self, response_id: str, what: str) -> ResponseRecord:
        response = self.responses.get(response_id)
        if response is None:
            raise LedgerError(f"{what} for response {response_id!r}, which never started")
        return response

    def _open_fork(self, fork_id: str | None, what: str) -> ForkRecord:
        fork = self.forks.get(fork_id) if fork_id is not None else None
        if fork is None:
            raise LedgerError(f"{what} for unknown fork {fork_id!r}")
        if fork.closed is not None:
            raise LedgerError(
                f"{what} for fork {fork_id!r}, already closed by {fork.closed.type} "
                f"at seq {fork.closed.seq}"
            )
        return fork

    def _check_call_started(self, entry: ToolCallStarted) -> None:
        if entry.call_id in self._reserved_ids:
            raise LedgerError(
                f"duplicate call id {entry.call_id!r} (ids and their {RESULT_SUFFIX!r} "
                "forms must be unique)"
            )
        if entry.call_id + RESULT_SUFFIX in self._reserved_ids:
            raise LedgerError(f"call id {entry.call_id!r} clashes with an existing call's id")
        if entry.speculative:
            self._open_fork(entry.fork_id, f"speculative call {entry.call_id!r}")
        else:
            self._response(entry.response_id, f"call {entry.call_id!r}")

    def _check_adoption(self, entry: ForkAdopted) -> None:
        if len(set(entry.adopted.values())) != len(entry.adopted):
            raise LedgerError(f"fork {entry.fork_id!r}: a speculative call is adopted twice")
        for final_id, spec_id in entry.adopted.items():
            final = self.calls.get(final_id)
            spec = self.calls.get(spec_id)
            where = f"fork {entry.fork_id!r} adopting {spec_id!r} as {final_id!r}"
            if final is None or final.started.speculative:
                raise LedgerError(f"{where}: {final_id!r} is not a known final call")
            if spec is None or not spec.started.speculative:
                raise LedgerError(f"{where}: {spec_id!r} is not a known speculative call")
            if spec.started.fork_id != entry.fork_id:
                raise LedgerError(f"{where}: {spec_id!r} belongs to fork {spec.started.fork_id!r}")
            if final.adopted_from is not None or spec.adopted_by is not None:
                raise LedgerError(f"{where}: already adopted")
            if final.future.outcome is not None:
                raise LedgerError(f"{where}: {final_id!r} already has its own outcome")
            if final.started.name != spec.started.name:
                raise LedgerError(
                    f"{where}: names differ ({final.started.name!r} vs {spec.started.name!r})"
                )

    # -- folding -----------------------------------------------------------------

    def _fold(self, entry: Entry) -> None:
        match entry:
            case SessionStarted():
                self.session_started = entry
                if self.session_id is None:
                    self.session_id = entry.session_id
            case LlmRequestStarted():
                self.responses[entry.response_id] = ResponseRecord(started=entry)
                if entry.by_model:
                    self.model_request_seqs.append(entry.seq)
            case AgentTextPlanned():
                self.responses[entry.response_id].planned.append(entry)
            case AgentTextPlayed():
                self.responses[entry.response_id].played = entry
            case LlmResponseFinished():
                self.responses[entry.response_id].finished = entry
            case ToolCallStarted():
                self.calls[entry.call_id] = CallRecord(started=entry, future=Future())
                self._reserved_ids.update((entry.call_id, entry.call_id + RESULT_SUFFIX))
                if entry.speculative:
                    assert entry.fork_id is not None  # checked in _check_call_started
                    self.forks[entry.fork_id].call_ids.append(entry.call_id)
                else:
                    self.responses[entry.response_id].call_ids.append(entry.call_id)
            case ToolCallResolved() | ToolCallFailed() | ToolCallTimedOut() | ToolCallCancelled():
                self.calls[entry.call_id].future.outcome = entry
            case ForkOpened():
                self.forks[entry.fork_id] = ForkRecord(opened=entry)
            case ForkAdopted():
                self.forks[entry.fork_id].closed = entry
                for final_id, spec_id in entry.adopted.items():
                    final, spec = self.calls[final_id], self.calls[spec_id]
                    final.future = spec.future
                    final.adopted_from = spec_id
                    final.adopted_seq = entry.seq
                    spec.adopted_by = final_id
            case ForkDiscarded():
                self.forks[entry.fork_id].closed = entry
            case _:
                pass
