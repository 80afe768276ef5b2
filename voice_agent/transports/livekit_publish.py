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

Both come from the transport seam's notifications (:class:`TranscriptUpdated`
from the ledger, :class:`AgentStateChanged` from the FSM). Everything is
published in order by one owned task; a failure (a room that just
disconnected) is logged and counted, never raised into the engine.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from fsm import Clock, MonotonicClock, move_on_after

from ..voice.tasks import TaskTracker
from .base import AgentStateChanged, TranscriptUpdated

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


def _segment_id() -> str:
    return "SG_" + uuid.uuid4().hex[:12]


class RoomPublisher:
    """Publishes the seam's transcript and state notifications to a room's local participant.

    ``caller_identity`` / ``caller_track_id`` and ``agent_track_id`` may be set
    later (the caller joins, the agent's track is published); updates use the
    values current when they are made. ``aclose`` publishes what is queued
    (for a bounded time) and stops.
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
        # (role, the engine's segment id) → LiveKit segment id, until the segment is final
        self._segments: dict[tuple[str, str], str] = {}
        self._queue: asyncio.Queue[TranscriptUpdate | StateUpdate | None] = asyncio.Queue()
        self._tasks = TaskTracker("room-publisher")
        self._worker: asyncio.Task[None] | None = None
        self._state: str | None = None
        self.published: list[TranscriptUpdate | StateUpdate] = []
        self.failures = 0
        self._closed = False

    # ------------------------------------------------------------ inputs (the transport seam)
    def state_changed(self, change: AgentStateChanged) -> None:
        """The FSM's floor changed: publish LiveKit's name for the new one (deduplicated)."""
        self.set_state(AGENT_STATES.get(change.state, change.state))

    def set_state(self, lk_state: str) -> None:
        """Publish ``lk.agent.state = lk_state`` unless it is the current value."""
        if lk_state != self._state:
            self._state = lk_state
            self._put(StateUpdate(lk_state))

    def transcript_updated(self, update: TranscriptUpdated) -> None:
        """A transcript segment changed: publish it as the participant who spoke it."""
        if update.role == "user":
            if not self.caller_identity:
                return
            sender, track = self.caller_identity, self.caller_track_id
        else:
            sender, track = self._local.identity, self.agent_track_id
        key = (update.role, update.segment_id)
        sid = self._segments.setdefault(key, _segment_id())
        if update.final:
            del self._segments[key]
        self._put(TranscriptUpdate(sender, sid, update.text, update.final, track))

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
