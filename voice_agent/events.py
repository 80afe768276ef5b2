"""The agent's events: immutable, past-tense facts the agent FSM reacts to.

Transports and peripherals post them (user speech, transcripts, playout), the
LLM stream and the tool scheduler post them (deltas, calls, outcomes), timers
post them. The FSM in :mod:`voice_agent.agent_fsm` is the only place that
decides what each one means in each state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fsm import ActionFailed, Event

__all__ = [
    "ActionFailed",
    "AgentEvent",
    "DtmfReceived",
    "Event",
    "ForkAdopted",
    "ForkDiscarded",
    "ForkOpened",
    "LlmFailed",
    "LlmStalled",
    "LlmTextDelta",
    "LlmToolCallIssued",
    "LlmTurnFinished",
    "PlayoutFinished",
    "PlayoutStarted",
    "SessionEnded",
    "TimerFired",
    "ToolCallFailed",
    "ToolCallResolved",
    "TranscriptFinal",
    "TranscriptPartial",
    "UserSpeechEnded",
    "UserSpeechPaused",
    "UserSpeechResumed",
    "UserBackchanneled",
    "UserSpeechStarted",
]


@dataclass(frozen=True, kw_only=True)
class UserSpeechStarted(Event):
    """The VAD (or a transport) says the user started speaking."""


@dataclass(frozen=True, kw_only=True)
class UserSpeechEnded(Event):
    """The VAD says the user stopped speaking (the final transcript follows)."""


@dataclass(frozen=True, kw_only=True)
class UserSpeechPaused(Event):
    """The user went quiet: the turn may be over. ``text`` is the early final transcript.

    The agent may start a preemptive generation on it, adopted if the final
    transcript says the same and dropped if the user goes on.
    """

    text: str


@dataclass(frozen=True, kw_only=True)
class UserSpeechResumed(Event):
    """The user spoke again after a pause: the turn was not over."""


@dataclass(frozen=True, kw_only=True)
class UserBackchanneled(Event):
    """The user gave listener feedback ("mhm", "yeah") while the agent spoke: not a barge-in.

    The agent's voice went on (after a short pause at the speech's onset);
    the feedback is recorded, nothing else changes.
    """

    text: str


@dataclass(frozen=True, kw_only=True)
class TranscriptPartial(Event):
    """A stable partial transcript of the user's ongoing turn."""

    text: str


@dataclass(frozen=True, kw_only=True)
class TranscriptFinal(Event):
    """The final transcript of a user turn (text typed in a text transport).

    ``unheard``: the text is empty although the caller spoke (the voice input's partial or
    early transcripts had words, or the VAD heard a second of voice): the speech recognition
    could not make it out, so the agent asks the caller to say it again. An empty text
    without it (a cough, a click) just returns the agent to listening."""

    text: str
    unheard: bool = False


@dataclass(frozen=True, kw_only=True)
class LlmTextDelta(Event):
    """A piece of the LLM's text for response ``response_id``."""

    response_id: str
    text: str


@dataclass(frozen=True, kw_only=True)
class LlmToolCallIssued(Event):
    """A tool call's JSON is complete in the stream of ``response_id``."""

    response_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, kw_only=True)
class LlmTurnFinished(Event):
    """The LLM stream of ``response_id`` ended normally."""

    response_id: str
    finish_reason: str


@dataclass(frozen=True, kw_only=True)
class LlmFailed(Event):
    """The LLM request of ``response_id`` failed after the client's retries."""

    response_id: str
    error: str


@dataclass(frozen=True, kw_only=True)
class LlmStalled(Event):
    """The LLM stream of ``response_id`` has produced nothing for ``silent_s`` seconds.

    Posted by the generation's silence watch (:mod:`voice_agent.llm_watch`) so
    the caller hears a hold phrase instead of silence; at the watch's deadline
    :class:`LlmFailed` follows.
    """

    response_id: str
    silent_s: float
    long_wait: bool = False  # the wait is long (past the short holds): say so, once per caller turn
    # False: no hold yet; the text paused right after a sentence's final mark, which the
    # output keeps for a continuation ("9." " a.m."): have it said now
    hold: bool = True


@dataclass(frozen=True, kw_only=True)
class ToolCallResolved(Event):
    """A tool future finished with a value (already in the ledger)."""

    call_id: str


@dataclass(frozen=True, kw_only=True)
class ToolCallFailed(Event):
    """A tool future failed, timed out or was cancelled (already in the ledger), or a
    write overran its timeout and still runs (the ledger shows it pending; its outcome
    follows as another event)."""

    call_id: str
    error: str


@dataclass(frozen=True, kw_only=True)
class PlayoutStarted(Event):
    """The first audio (or text) of ``response_id`` reached the user."""

    response_id: str


@dataclass(frozen=True, kw_only=True)
class PlayoutFinished(Event):
    """Response ``response_id`` has been fully played (or was cut off)."""

    response_id: str
    heard: str
    interrupted: bool = False


@dataclass(frozen=True, kw_only=True)
class ForkOpened(Event):
    """A speculative fork was opened on a stable partial transcript."""

    fork_id: str


@dataclass(frozen=True, kw_only=True)
class ForkAdopted(Event):
    """The final turn adopted a fork's speculative calls."""

    fork_id: str


@dataclass(frozen=True, kw_only=True)
class ForkDiscarded(Event):
    """A fork's speculative work was thrown away."""

    fork_id: str


@dataclass(frozen=True, kw_only=True)
class DtmfReceived(Event):
    """A telephone keypad digit arrived."""

    digit: str


@dataclass(frozen=True, kw_only=True)
class TimerFired(Event):
    """A named timer the agent armed has expired."""

    name: str
    token: int = 0


@dataclass(frozen=True, kw_only=True)
class SessionEnded(Event):
    """The session is over (hang-up, transfer, fatal error, end of input)."""

    reason: str
    detail: str = field(default="")


AgentEvent = (
    UserSpeechStarted
    | UserSpeechEnded
    | UserSpeechPaused
    | UserSpeechResumed
    | UserBackchanneled
    | TranscriptPartial
    | TranscriptFinal
    | LlmTextDelta
    | LlmToolCallIssued
    | LlmTurnFinished
    | LlmFailed
    | LlmStalled
    | ToolCallResolved
    | ToolCallFailed
    | PlayoutStarted
    | PlayoutFinished
    | ForkOpened
    | ForkAdopted
    | ForkDiscarded
    | DtmfReceived
    | TimerFired
    | SessionEnded
    | ActionFailed
)
