"""One call in a LiveKit room: the LiveKit :class:`~.base.Transport`, run by :func:`run_call`.

:class:`RoomCall` serves the first caller (a phone leg or a browser
participant) in an already connected room:

- it publishes the agent's voice as a ``LocalAudioTrack`` on an
  ``rtc.AudioSource`` (:class:`RoomAudioSink`, the transport's ``output``; a
  barge-in clears its queue at once) and sets ``lk.agent.state``
  (``initializing`` until the engine runs);
- it waits for the caller, reads the ``sip.*`` attributes of a phone leg, and
  puts the call (the caller's number masked) into the ledger's ``SessionStarted``;
- ``audio_in`` reads the caller's microphone track as 16 kHz mono
  ``rtc.AudioStream`` frames; a track that is unpublished and published again
  (a reconnecting phone leg) is picked up again;
- the seam's notifications (FSM floor changes, transcripts) go to the room
  through :class:`RoomPublisher`;
- ``sip_dtmf_received`` becomes :class:`DtmfReceived`; ``transfer``,
  ``hang_up`` and ``send_dtmf`` are the call control (``livekit-api``,
  ``publish_dtmf``);
- ``audio_in`` ends — and with it the call — when the caller leaves, when a
  phone leg's ``sip.callStatus`` turns ``hangup``, when the room is
  disconnected for good (the SDK resumes transient drops by itself), or after
  a transfer; the engine may end it first (a hang-up). The ledger is written
  entry by entry and closed on every path: nothing is lost with the room.

The room is anything with ``rtc.Room``'s surface (``on``/``off``, ``name``,
``local_participant``, ``remote_participants``): the worker passes the real
one, tests :class:`voice_agent.bench.livekit_loopback.LoopbackRoom`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ledger import entries as le

from ..agent import Agent
from ..config import Config
from ..tools import ToolRegistry
from ..waiting_room import CallNotServed, QueueWait, record_unserved
from .base import AgentStateChanged, CallHandle, TranscriptUpdated, TransportBase
from .call import Call, PerCallModels, SpeechModels, run_call
from .livekit_audio import CALLER_RATE, RoomAudioSink, caller_audio
from .livekit_publish import RoomPublisher
from .livekit_sip import (
    CallControlError,
    RoomCallControl,
    SipCaller,
    dtmf_event,
    mask_number,
    sip_caller,
)

log = logging.getLogger(__name__)

AGENT_RATE = 24000  # the agent's voice into the AudioSource (Hz); WebRTC resamples to Opus' 48 kHz
AGENT_TRACK_NAME = "agent-voice"
# RFC 4733 event codes of the keypad keys (what LiveKit SIP sends as DTMF).
DTMF_CODES = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}
DTMF_GAP_S = 0.1  # between two tones: IVRs miss digits sent back to back (s)
DTMF_PAUSE_S = 0.5  # a "w" in the digits (s), as on a phone's dialler


@dataclass
class RoomCallResult:
    """What one call did (for the worker's log and for tests)."""

    entries: list[le.Entry]
    ledger_path: Path | None
    caller_identity: str
    sip: SipCaller | None
    end_reason: str


def _is_agent(participant: Any) -> bool:
    from livekit import rtc

    return bool(participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT)


def _is_audio(track: Any) -> bool:
    from livekit import rtc

    return bool(track.kind == rtc.TrackKind.KIND_AUDIO)


class RoomCall(TransportBase):
    """The LiveKit transport for one caller in ``room`` (see the module docstring)."""

    name = "livekit"
    realtime = True
    carries_line_codec = True  # SIP callers have the codec on the wire; a room never simulates one

    def __init__(
        self,
        room: Any,
        config: Config,
        *,
        call_control: RoomCallControl | None = None,
        tools: ToolRegistry | None = None,
        models: SpeechModels | None = None,
        agent_rate: int = AGENT_RATE,
        admit: Callable[[RoomCall], AbstractAsyncContextManager[QueueWait | None]] | None = None,
    ) -> None:
        self.room = room
        self.admit = admit
        self.config = config
        self.call_control = call_control
        self.tools = tools
        self.models = models
        self.agent_rate = agent_rate
        self.publisher = RoomPublisher(room.local_participant)
        self.caller: Any = None
        self.sip: SipCaller | None = None
        self.call: Call | None = None  # the running call, once the engine runs
        self.source: Any = None
        self.agent_track: Any = None
        self._sink: RoomAudioSink | None = None
        self._caller_joined = asyncio.Event()
        self._tracks: asyncio.Queue[Any] = asyncio.Queue()  # caller tracks; None: the call ended
        self._track: Any = None  # the track being read (read again by the next audio_in)
        self._ended = False
        self._handlers: list[tuple[str, Callable[..., None]]] = []

    @property
    def agent(self) -> Agent | None:
        """The engine serving the caller, once it runs."""
        return self.call.agent if self.call is not None else None

    # ------------------------------------------------------------ Transport
    @property
    def input_rate(self) -> int:
        return CALLER_RATE

    @property
    def output(self) -> RoomAudioSink:
        if self._sink is None:
            raise RuntimeError("the agent's track is not published yet")
        return self._sink

    async def audio_in(self) -> AsyncIterator[np.ndarray]:
        """The caller's frames, track after track, until the call ends on the room's side.

        May be iterated again after an earlier iteration was closed (the waiting room
        drains the caller's audio while the call is queued): it goes on with the same track.
        """
        while not self._ended:
            if self._track is None:
                self._track = await self._tracks.get()
            if self._track is None:
                return
            # aclosing: when the call ends the AudioStream is closed at once, not at GC
            stream = caller_audio(self._track, sample_rate=CALLER_RATE)
            async with contextlib.aclosing(stream) as frames:
                async for frame in frames:
                    if self._ended:
                        return
                    yield frame
            self._track = None  # this track ended: wait for the next one

    def attach(self, call: CallHandle) -> None:
        super().attach(call)
        self.publisher.set_state("listening")

    def state_changed(self, change: AgentStateChanged) -> None:
        self.publisher.state_changed(change)

    def transcript_updated(self, update: TranscriptUpdated) -> None:
        self.publisher.transcript_updated(update)

    async def transfer(self, destination: str) -> None:
        """Transfer the phone caller to ``destination``; the call then ends here ("transferred").

        Raises :class:`CallControlError` when the caller is not a phone leg, no
        server API is configured, or the server refuses (the message says which).
        """
        if self.call_control is None or self.sip is None:
            raise CallControlError("transfer needs a phone caller (SIP) and the LiveKit server API")
        await self.call_control.transfer(self.sip.identity, destination)
        self._end("transferred")

    async def hang_up(self) -> None:
        """End the call for everyone (the room is deleted; the phone leg hangs up)."""
        if self.call_control is None:
            raise CallControlError("hang-up needs the LiveKit server API (LIVEKIT_URL and keys)")
        await self.call_control.hang_up()
        self._end("hung up")

    async def send_dtmf(self, digits: str) -> None:
        """Play keypad tones to the phone leg (``w``: a half-second pause)."""
        for digit in digits:
            if digit == "w":
                await asyncio.sleep(DTMF_PAUSE_S)
                continue
            if digit not in DTMF_CODES:
                raise CallControlError(f"not a DTMF digit: {digit!r}")
            await self.room.local_participant.publish_dtmf(code=DTMF_CODES[digit], digit=digit)
            await asyncio.sleep(DTMF_GAP_S)

    # ------------------------------------------------------------ room events
    def _on(self, event: str, handler: Callable[..., None]) -> None:
        self.room.on(event, handler)
        self._handlers.append((event, handler))

    def _end(self, reason: str) -> None:
        """The call is over on the room's side: ``audio_in`` returns with ``reason``."""
        if self._ended:
            return
        self._ended = True
        self._end_reason = reason
        self._tracks.put_nowait(None)
        self._caller_joined.set()

    def _consider(self, participant: Any) -> None:
        if self.caller is not None or _is_agent(participant):
            return
        self.caller = participant
        self.sip = sip_caller(participant)
        self.publisher.caller_identity = participant.identity
        for publication in list(getattr(participant, "track_publications", {}).values()):
            track = getattr(publication, "track", None)
            if track is not None and _is_audio(track):
                self._take_track(track, publication)
        self._caller_joined.set()

    def _take_track(self, track: Any, publication: Any) -> None:
        self.publisher.caller_track_id = getattr(publication, "sid", None)
        self._tracks.put_nowait(track)

    def _on_participant_connected(self, participant: Any) -> None:
        self._consider(participant)

    def _on_participant_disconnected(self, participant: Any) -> None:
        if self.caller is not None and participant.identity == self.caller.identity:
            self._end("caller left")

    def _on_track_subscribed(self, track: Any, publication: Any, participant: Any) -> None:
        if self.caller is None:
            self._consider(participant)
        if (
            self.caller is not None
            and participant.identity == self.caller.identity
            and _is_audio(track)
        ):
            self._take_track(track, publication)

    def _on_dtmf(self, dtmf: Any) -> None:
        event = dtmf_event(dtmf, self.caller.identity if self.caller is not None else None)
        if event is not None and self._call is not None:
            self._call.post(event)

    def _on_disconnected(self, reason: Any = None) -> None:
        self._end("room disconnected")

    def _on_attributes_changed(self, changed: Any, participant: Any) -> None:
        if self.caller is not None and participant.identity == self.caller.identity:
            self.sip = sip_caller(participant)
            if self.sip is not None and self.sip.call_status == "hangup":
                self._end("caller hung up")

    # ------------------------------------------------------------ run
    async def _publish_voice(self) -> None:
        from livekit import rtc

        self.source = rtc.AudioSource(self.agent_rate, 1)
        self.agent_track = rtc.LocalAudioTrack.create_audio_track(AGENT_TRACK_NAME, self.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await self.room.local_participant.publish_track(self.agent_track, options)
        self.publisher.agent_track_id = getattr(publication, "sid", None)
        self._sink = RoomAudioSink(self.source)

    def _meta(self) -> dict[str, object]:
        meta: dict[str, object] = {"room": str(self.room.name), "caller": self.caller.identity}
        if self.sip is not None:  # a phone leg's identity is "sip_" + the caller's number
            meta["caller"] = mask_number(self.caller.identity)
            meta["sip"] = self.sip.describe()
        return meta

    async def run(self) -> RoomCallResult:
        """Serve the call until it ends; always releases the audio, the ledger and the handlers."""
        self._on("participant_connected", self._on_participant_connected)
        self._on("participant_disconnected", self._on_participant_disconnected)
        self._on("track_subscribed", self._on_track_subscribed)
        self._on("sip_dtmf_received", self._on_dtmf)
        self._on("disconnected", self._on_disconnected)
        self._on("participant_attributes_changed", self._on_attributes_changed)
        self.publisher.set_state("initializing")
        config = self.config.model_copy(
            update={"voice": self.config.voice.model_copy(update={"sample_rate": CALLER_RATE})}
        )
        try:
            await self._publish_voice()
            for participant in list(self.room.remote_participants.values()):
                self._consider(participant)
            await self._caller_joined.wait()
            if self.caller is None:
                return RoomCallResult([], None, "", None, self._end_reason)

            def on_call(call: Call) -> None:
                self.call = call

            try:
                async with (
                    self.admit(self) if self.admit is not None else contextlib.nullcontext()
                ) as wait:
                    meta = self._meta()
                    if wait is not None:
                        meta["queue"] = wait.meta()
                    result = await run_call(
                        config,
                        self,
                        models=self.models or PerCallModels(config.voice),
                        tools=self.tools,
                        meta=meta,
                        on_call=on_call,
                    )
            except CallNotServed as exc:
                return await self._not_served(exc)
            ended = [e for e in result.entries if isinstance(e, le.SessionEnded)]
            return RoomCallResult(
                entries=result.entries,
                ledger_path=result.ledger_path,
                caller_identity=self.caller.identity,
                sip=self.sip,
                end_reason=ended[-1].reason if ended else result.end_reason,
            )
        finally:
            await self.aclose()

    async def _not_served(self, exc: CallNotServed) -> RoomCallResult:
        """The queue gave up on the call (the caller heard the apology) or the caller left."""
        path = record_unserved(self.config, self, self._meta(), exc)
        if exc.reason == "queue timeout" and self.call_control is not None:
            try:
                await self.call_control.hang_up()  # the room goes, and the phone leg with it
            except Exception as err:
                log.warning(
                    "room %s: hang-up after the queue apology failed: %s", self.room.name, err
                )
        return RoomCallResult([], path, self.caller.identity, self.sip, exc.reason)

    async def aclose(self) -> None:
        """Stop publishing, release the audio source and the room handlers (idempotent)."""
        for event, handler in self._handlers:
            self.room.off(event, handler)
        self._handlers.clear()
        await self.publisher.aclose()
        if self._sink is not None:
            await self._sink.aclose()
        if self.source is not None:
            source, self.source = self.source, None
            await source.aclose()
