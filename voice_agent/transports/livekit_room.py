"""One call in a LiveKit room: the caller's audio in, the agent's voice, transcripts and state out.

:class:`RoomCall` runs the engine for the first caller (a phone leg or a
browser participant) in an already connected room:

- it publishes the agent's voice as a ``LocalAudioTrack`` on an
  ``rtc.AudioSource`` (:class:`RoomAudioSink`; a barge-in clears its queue at
  once) and sets ``lk.agent.state`` (``initializing`` until the engine runs);
- it waits for the caller, reads ``sip.*`` attributes when the caller is a
  phone leg, and records the call (number masked) in the ledger;
- the caller's microphone track is read as 16 kHz mono ``rtc.AudioStream``
  frames into :class:`VoiceInput`; a track that is unpublished and published
  again (a reconnecting phone leg) is picked up again;
- transcripts and states are published by :class:`RoomPublisher`;
- ``sip_dtmf_received`` becomes :class:`DtmfReceived`;
- the call ends (``SessionEnded``) when the caller leaves, when the room is
  disconnected for good (the SDK resumes transient drops by itself), after a
  transfer or a hang-up, or when the engine ends it. The ledger is written
  entry by entry and closed on every path: nothing is lost with the room.

The room is anything with ``rtc.Room``'s surface (``on``/``off``, ``name``,
``local_participant``, ``remote_participants``): the worker passes the real
one, tests an event emitter with an autospecced local participant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger import entries as le

from ..agent import Agent
from ..config import Config
from ..events import Event, SessionEnded
from ..session import open_session
from ..tools import ToolRegistry
from ..voice.build import build_input, build_tts
from ..voice.output import AudioSpeechOutput
from .livekit_audio import CALLER_RATE, RoomAudioSink, caller_audio
from .livekit_publish import RoomPublisher
from .livekit_sip import CallControlError, RoomCallControl, SipCaller, dtmf_event, sip_caller

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


class RoomCall:
    """The engine serving one caller in ``room`` (see the module docstring)."""

    def __init__(
        self,
        room: Any,
        config: Config,
        *,
        call_control: RoomCallControl | None = None,
        tools: ToolRegistry | None = None,
        agent_rate: int = AGENT_RATE,
    ) -> None:
        self.room = room
        self.config = config
        self.call_control = call_control
        self.tools = tools
        self.agent_rate = agent_rate
        self.publisher = RoomPublisher(room.local_participant)
        self.caller: Any = None
        self.sip: SipCaller | None = None
        self._caller_joined = asyncio.Event()
        self._tracks: asyncio.Queue[Any] = asyncio.Queue()
        self._post: Callable[[Event], None] | None = None
        self._early_end: str | None = None  # the call ended before the engine ran
        self._handlers: list[tuple[str, Callable[..., None]]] = []
        self.source: Any = None
        self.agent_track: Any = None
        self.agent: Agent | None = None  # the engine, once the caller is there

    # ------------------------------------------------------------ room events
    def _on(self, event: str, handler: Callable[..., None]) -> None:
        self.room.on(event, handler)
        self._handlers.append((event, handler))

    def _end(self, reason: str) -> None:
        if self._post is not None:
            self._post(SessionEnded(reason=reason))
        elif self._early_end is None:
            self._early_end = reason
            self._caller_joined.set()

    def _consider(self, participant: Any) -> None:
        if self.caller is not None or _is_agent(participant):
            return
        self.caller = participant
        self.sip = sip_caller(participant)
        self.publisher.caller_identity = participant.identity
        for publication in list(getattr(participant, "track_publications", {}).values()):
            track = getattr(publication, "track", None)
            if track is not None and self._is_audio(track):
                self._take_track(track, publication)
        self._caller_joined.set()

    @staticmethod
    def _is_audio(track: Any) -> bool:
        from livekit import rtc

        return bool(track.kind == rtc.TrackKind.KIND_AUDIO)

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
            and self._is_audio(track)
        ):
            self._take_track(track, publication)

    def _on_dtmf(self, dtmf: Any) -> None:
        event = dtmf_event(dtmf, self.caller.identity if self.caller is not None else None)
        if event is not None and self._post is not None:
            self._post(event)

    def _on_disconnected(self, reason: Any = None) -> None:
        self._end("room disconnected")

    def _on_attributes_changed(self, changed: Any, participant: Any) -> None:
        if self.caller is not None and participant.identity == self.caller.identity:
            self.sip = sip_caller(participant)
            if self.sip is not None and self.sip.call_status == "hangup":
                self._end("caller hung up")

    # ------------------------------------------------------------ call control
    # RoomCall is the LiveKit transport's CallController (voice_agent.call_control).
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

    # ------------------------------------------------------------ run
    async def _publish_voice(self) -> None:
        from livekit import rtc

        self.source = rtc.AudioSource(self.agent_rate, 1)
        self.agent_track = rtc.LocalAudioTrack.create_audio_track(AGENT_TRACK_NAME, self.source)
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        publication = await self.room.local_participant.publish_track(self.agent_track, options)
        self.publisher.agent_track_id = getattr(publication, "sid", None)

    async def run(self) -> RoomCallResult:
        """Serve the call until it ends; always releases the audio, the ledger and the handlers."""
        self._on("participant_connected", self._on_participant_connected)
        self._on("participant_disconnected", self._on_participant_disconnected)
        self._on("track_subscribed", self._on_track_subscribed)
        self._on("sip_dtmf_received", self._on_dtmf)
        self._on("disconnected", self._on_disconnected)
        self._on("participant_attributes_changed", self._on_attributes_changed)
        cfg = self.config.voice.model_copy(update={"sample_rate": CALLER_RATE})
        self.publisher.set_state("initializing")
        tts = None
        sink: RoomAudioSink | None = None
        try:
            await self._publish_voice()
            tts = build_tts(cfg, self.agent_rate)
            sink = RoomAudioSink(self.source)
            output = AudioSpeechOutput(tts, sink)
            for participant in list(self.room.remote_participants.values()):
                self._consider(participant)
            await self._caller_joined.wait()
            if self._early_end is not None or self.caller is None:
                return RoomCallResult([], None, "", None, self._early_end or "no caller")
            async with open_session(
                self.config,
                output,
                tools=self.tools,
                transport="livekit",
                on_transition=self.publisher.on_transition,
            ) as session:
                return await self._converse(session, cfg, output)
        finally:
            for event, handler in self._handlers:
                self.room.off(event, handler)
            await self.publisher.aclose()
            if sink is not None:
                await sink.aclose()
            if self.source is not None:
                await self.source.aclose()
            if tts is not None:
                await tts.aclose()

    async def _converse(self, session: Any, cfg: Any, output: AudioSpeechOutput) -> RoomCallResult:
        agent = self.agent = session.agent
        ledger = session.ledger
        self.publisher.attach(ledger)
        meta = {"room": str(self.room.name), "caller": self.caller.identity}
        if self.sip is not None:
            meta.update(self.sip.describe())
        ledger.append(le.Note(text=f"LiveKit call: {meta}"))
        self._post = agent.post
        voice = build_input(
            cfg,
            agent.post,
            agent_busy=lambda: agent.state in ("thinking", "speaking"),
            playback=output,
        )

        async def listen() -> None:
            while True:
                track = await self._tracks.get()
                # aclosing: a cancelled listener closes the AudioStream at once, not at GC
                async with contextlib.aclosing(
                    caller_audio(track, sample_rate=CALLER_RATE)
                ) as frames:
                    async for frame in frames:
                        await voice.process(frame)

        try:
            self.publisher.on_state(agent.state)
            async with asyncio.TaskGroup() as tg:
                listener = tg.create_task(listen(), name="livekit-listen")
                await agent.run()
                listener.cancel()
        finally:
            self._post = None
            await voice.aclose()
            await output.aclose()
        ended = [e for e in ledger.entries if isinstance(e, le.SessionEnded)]
        return RoomCallResult(
            entries=list(ledger.entries),
            ledger_path=session.ledger_path,
            caller_identity=self.caller.identity,
            sip=self.sip,
            end_reason=ended[-1].reason if ended else "",
        )
