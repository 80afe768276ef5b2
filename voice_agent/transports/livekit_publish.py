"""The conversation as LiveKit's own front-ends expect it: transcripts and the agent's state.

Transcripts go on the ``lk.transcription`` text-stream topic, one stream per
update, with LiveKit's attributes:

- ``lk.segment_id``: one id per utterance (a user turn, an agent response);
  every update of the utterance carries it, so a front-end replaces the
  segment's text rather than appending;
- ``lk.transcription_final``: ``"false"`` for partials and the agent's text as
  it is planned, ``"true"`` once — the user's final transcript, or what the
  caller actually *heard* of the agent's response (cut at a barge-in);
- ``lk.transcribed_track_id``: the audio track the text belongs to (the
  caller's microphone track, the agent's published track);
- the stream's sender is the participant the words belong to (the caller's
  identity for their words, the agent's own identity for its own).

The agent's state goes into the ``lk.agent.state`` participant attribute
(``initializing``, ``listening``, ``thinking``, ``speaking``), mapped from the
FSM's transition notifications (the user speaking is ``listening`` for the
agent, as in LiveKit Agents).

Everything is published in order by one owned task; a failure (a room that
just disconnected) is logged and counted, never raised into the engine.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fsm import Clock, MonotonicClock, move_on_after
from ledger import Ledger
from ledger import entries as le

from ..voice.tasks import TaskTracker

log = logging.getLogger(__name__)

TOPIC_TRANSCRIPTION = "lk.transcription"
ATTR_SEGMENT_ID = "lk.segment_id"
ATTR_FINAL = "lk.transcription_final"
ATTR_TRACK_ID = "lk.transcribed_track_id"
ATTR_AGENT_STATE = "lk.agent.state"

# The FSM's floor → LiveKit's AgentState ("initializing", "idle", "listening",
# "thinking", "speaking"). While the user speaks the agent is listening.
AGENT_STATES: dict[str, str] = {
    "listening": "listening",
    "user_speaking": "listening",
    "thinking": "thinking",
    "speaking": "speaking",
    "ended": "idle",
}


@dataclass(frozen=True)
class TranscriptUpdate:
    """One ``lk.transcription`` stream: ``text`` is the utterance so far (or all of it)."""

    sender_identity: str
    segment_id: str
    text: str
    final: bool
    track_id: str | None = None

    def attributes(self) -> dict[str, str]:
        attrs = {ATTR_SEGMENT_ID: self.segment_id, ATTR_FINAL: "true" if self.final else "false"}
        if self.track_id:
            attrs[ATTR_TRACK_ID] = self.track_id
        return attrs


@dataclass(frozen=True)
class StateUpdate:
    """The ``lk.agent.state`` attribute's new value."""

    state: str


@dataclass
class _Segments:
    user: dict[int, str] = field(default_factory=dict)  # turn id → segment id
    agent: dict[str, str] = field(default_factory=dict)  # response id → segment id
    agent_text: dict[str, str] = field(default_factory=dict)  # response id → planned so far


def _segment_id() -> str:
    return "SG_" + uuid.uuid4().hex[:12]


class RoomPublisher:
    """Publishes ledger transcripts and FSM states to a room's local participant.

    ``caller_identity`` / ``caller_track_id`` and ``agent_track_id`` may be set
    later (the caller joins, the agent's track is published); updates use the
    values current when they are made. ``attach(ledger)`` subscribes; feed
    state changes to :meth:`on_state` (or FSM ``TraceRecord``s to
    :meth:`on_transition`). ``aclose`` publishes what is queued (bounded) and stops.
    """

    def __init__(
        self,
        local_participant: Any,
        *,
        caller_identity: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._local = local_participant
        self._clock = clock or MonotonicClock()
        self.caller_identity = caller_identity
        self.caller_track_id: str | None = None
        self.agent_track_id: str | None = None
        self._segments = _Segments()
        self._queue: asyncio.Queue[TranscriptUpdate | StateUpdate | None] = asyncio.Queue()
        self._tasks = TaskTracker("room-publisher")
        self._worker: asyncio.Task[None] | None = None
        self._state: str | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.published: list[TranscriptUpdate | StateUpdate] = []
        self.failures = 0
        self._closed = False

    # ------------------------------------------------------------ inputs
    def attach(self, ledger: Ledger) -> None:
        """Publish the transcripts ``ledger`` records from now on."""
        self._unsubscribe = ledger.subscribe(self.on_entry)

    def on_transition(self, record: Any) -> None:
        """An FSM transition notification (``fsm.TraceRecord``): publish the new floor."""
        if record.outcome == "transition":
            self.on_state(str(record.target))

    def on_state(self, fsm_state: str) -> None:
        """The agent's floor is now ``fsm_state``; publish LiveKit's name for it if it changed."""
        self.set_state(AGENT_STATES.get(fsm_state, fsm_state))

    def set_state(self, lk_state: str) -> None:
        """Publish ``lk.agent.state = lk_state`` (deduplicated)."""
        if lk_state != self._state:
            self._state = lk_state
            self._put(StateUpdate(lk_state))

    def on_entry(self, entry: le.Entry) -> None:
        """A ledger entry: user utterances and the agent's planned/played text become transcripts."""
        seg = self._segments
        if isinstance(entry, le.UserUtterance):
            if not self.caller_identity:
                return
            sid = seg.user.setdefault(entry.turn_id, _segment_id())
            if entry.final:
                seg.user.pop(entry.turn_id, None)
            self._put(
                TranscriptUpdate(
                    self.caller_identity, sid, entry.text, entry.final, self.caller_track_id
                )
            )
        elif isinstance(entry, le.AgentTextPlanned):
            sid = seg.agent.setdefault(entry.response_id, _segment_id())
            so_far = (seg.agent_text.get(entry.response_id, "") + " " + entry.text).strip()
            seg.agent_text[entry.response_id] = so_far
            self._put(
                TranscriptUpdate(self._local.identity, sid, so_far, False, self.agent_track_id)
            )
        elif isinstance(entry, le.AgentTextPlayed):
            sid = seg.agent.pop(entry.response_id, "") or _segment_id()
            seg.agent_text.pop(entry.response_id, None)
            self._put(
                TranscriptUpdate(self._local.identity, sid, entry.text, True, self.agent_track_id)
            )

    # ------------------------------------------------------------ output
    def _put(self, update: TranscriptUpdate | StateUpdate) -> None:
        if self._closed:
            return
        if self._worker is None:
            self._worker = self._tasks.spawn(self._run(), "publish")
        self._queue.put_nowait(update)

    async def _run(self) -> None:
        while True:
            update = await self._queue.get()
            if update is None:
                return
            try:
                await self._publish(update)
                self.published.append(update)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the room went away: the engine carries on regardless
                self.failures += 1
                log.warning("could not publish %s to the room: %s", type(update).__name__, exc)

    async def _publish(self, update: TranscriptUpdate | StateUpdate) -> None:
        if isinstance(update, StateUpdate):
            await self._local.set_attributes({ATTR_AGENT_STATE: update.state})
            return
        writer = await self._local.stream_text(
            topic=TOPIC_TRANSCRIPTION,
            attributes=update.attributes(),
            sender_identity=update.sender_identity,
        )
        await writer.write(update.text)
        await writer.aclose()

    async def aclose(self, timeout_s: float = 2.0) -> None:
        """Publish what is queued (for at most ``timeout_s``), then stop (idempotent)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._queue.put_nowait(None)
            async with move_on_after(self._clock, timeout_s) as scope:
                await self._worker
            if scope.expired:
                log.warning("room publisher: %d updates not published", self._queue.qsize())
        await self._tasks.aclose()
