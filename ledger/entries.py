"""The ledger's entry models: frozen, past-tense, tagged with a `type` discriminator.

Callers build a payload without `seq`/`t` (they default to -1 / 0.0) and hand it
to `Ledger.append`, which returns a copy carrying the assigned sequence number
and clock time. `Entry` is the one union type of the family; `ENTRY_ADAPTER`
parses any entry from a dict or JSON text by its `type`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

__all__ = [
    "ENTRY_ADAPTER",
    "OUTCOME_TYPES",
    "AgentTextPlanned",
    "AgentTextPlayed",
    "Entry",
    "ForkAdopted",
    "ForkDiscarded",
    "ForkOpened",
    "LlmRequestStarted",
    "LlmResponseFinished",
    "Note",
    "Outcome",
    "SessionEnded",
    "SessionStarted",
    "ToolCallCancelled",
    "ToolCallFailed",
    "ToolCallResolved",
    "ToolCallStarted",
    "ToolCallTimedOut",
    "UserUtterance",
]


class _EntryBase(BaseModel):
    """Fields every entry has. `seq` and `t` are assigned by `Ledger.append`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = -1
    t: float = 0.0


class SessionStarted(_EntryBase):
    """The session began; `started_at` is the ISO wall-clock time (for humans only)."""

    type: Literal["SessionStarted"] = "SessionStarted"
    session_id: str
    started_at: str
    meta: dict[str, Any] = Field(default_factory=dict)


class UserUtterance(_EntryBase):
    """A transcript of the user's speech; only `final` ones reach the model."""

    type: Literal["UserUtterance"] = "UserUtterance"
    turn_id: int
    text: str
    final: bool = True


class LlmRequestStarted(_EntryBase):
    """A response started: an LLM generation, whose model saw the ledger rendered at this
    point, or (`reason` `canned`) the engine's own words, which no model saw."""

    type: Literal["LlmRequestStarted"] = "LlmRequestStarted"
    response_id: str
    reason: Literal["user_turn", "tool_results", "hold", "continuation", "canned"]
    mode: str

    @property
    def by_model(self) -> bool:
        """A model generates this response (not the engine's `canned` words alone)."""
        return self.reason != "canned"


class AgentTextPlanned(_EntryBase):
    """A sentence/chunk of a response handed to the speech output.

    `canned`: the engine's own words (a hold phrase, the apology, an acknowledgement,
    a read-back), not the model's; the model's context shows them apart
    (`ledger.render.ENGINE_SPEAKER`).
    """

    type: Literal["AgentTextPlanned"] = "AgentTextPlanned"
    response_id: str
    text: str
    canned: bool = False


class AgentTextPlayed(_EntryBase):
    """What the user actually heard of a response (the whole heard text, not a delta)."""

    type: Literal["AgentTextPlayed"] = "AgentTextPlayed"
    response_id: str
    text: str
    interrupted: bool = False


class LlmResponseFinished(_EntryBase):
    """The LLM generation of a response ended (at most once per response)."""

    type: Literal["LlmResponseFinished"] = "LlmResponseFinished"
    response_id: str
    finish_reason: Literal["stop", "tool_calls", "cancelled", "error"]
    error: str | None = None
    completion_tokens: int | None = None  # generated tokens (the server's count or an estimate)


class ToolCallStarted(_EntryBase):
    """A tool call started; `arguments` is the raw JSON text the model sent."""

    type: Literal["ToolCallStarted"] = "ToolCallStarted"
    call_id: str
    response_id: str
    name: str
    arguments: str
    kind: Literal["read", "write"]
    speculative: bool = False
    fork_id: str | None = None
    depends_on: list[str] = Field(default_factory=list)


class ToolCallResolved(_EntryBase):
    """A call returned `result` (any JSON value)."""

    type: Literal["ToolCallResolved"] = "ToolCallResolved"
    call_id: str
    result: JsonValue


class ToolCallFailed(_EntryBase):
    """A call failed (also invalid arguments, unknown tool)."""

    type: Literal["ToolCallFailed"] = "ToolCallFailed"
    call_id: str
    error: str


class ToolCallTimedOut(_EntryBase):
    """A call ran past its timeout and was abandoned."""

    type: Literal["ToolCallTimedOut"] = "ToolCallTimedOut"
    call_id: str
    timeout_s: float


class ToolCallCancelled(_EntryBase):
    """A call was cancelled (barge-in policy, discarded fork, session end)."""

    type: Literal["ToolCallCancelled"] = "ToolCallCancelled"
    call_id: str
    reason: str


class ForkOpened(_EntryBase):
    """A speculative fork opened on a stable partial transcript."""

    type: Literal["ForkOpened"] = "ForkOpened"
    fork_id: str
    transcript: str
    trigger: Literal["partial", "pause"] = "partial"  # a partial transcript, or the user's pause
    turn_id: int | None = None  # the user turn it speculates on


class ForkAdopted(_EntryBase):
    """The fork closed; `adopted` maps final call_id -> speculative call_id.

    `whole`: the fork's generation itself became the turn's answer (then the
    mapping may be empty: it made no call).
    """

    type: Literal["ForkAdopted"] = "ForkAdopted"
    fork_id: str
    adopted: dict[str, str] = Field(default_factory=dict)
    whole: bool = False  # its generation became the turn's answer (not only its calls)
    completion_tokens: int | None = None  # what the fork's generation cost


class ForkDiscarded(_EntryBase):
    """The fork closed without adopting anything."""

    type: Literal["ForkDiscarded"] = "ForkDiscarded"
    fork_id: str
    reason: str
    completion_tokens: int | None = None  # what the fork's generation cost


class Note(_EntryBase):
    """A free-form remark for humans; never rendered to the model."""

    type: Literal["Note"] = "Note"
    text: str
    level: Literal["info", "warning", "error"] = "info"


class SessionEnded(_EntryBase):
    """The session is over."""

    type: Literal["SessionEnded"] = "SessionEnded"
    reason: str


Outcome: TypeAlias = ToolCallResolved | ToolCallFailed | ToolCallTimedOut | ToolCallCancelled
"""The four ways a tool call ends."""

OUTCOME_TYPES: tuple[type[BaseModel], ...] = (
    ToolCallResolved,
    ToolCallFailed,
    ToolCallTimedOut,
    ToolCallCancelled,
)

Entry: TypeAlias = Annotated[
    SessionStarted
    | UserUtterance
    | LlmRequestStarted
    | AgentTextPlanned
    | AgentTextPlayed
    | LlmResponseFinished
    | ToolCallStarted
    | ToolCallResolved
    | ToolCallFailed
    | ToolCallTimedOut
    | ToolCallCancelled
    | ForkOpened
    | ForkAdopted
    | ForkDiscarded
    | Note
    | SessionEnded,
    Field(discriminator="type"),
]
"""Any ledger entry, discriminated by `type`."""

ENTRY_ADAPTER: TypeAdapter[Entry] = TypeAdapter(Entry)
"""Parses one entry: `ENTRY_ADAPTER.validate_json(line)` / `.validate_python(dict)`."""
