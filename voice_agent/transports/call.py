"""One call through any transport: the audio pipeline wired once, for every way in.

:func:`run_call` takes a :class:`~.base.Transport` and runs a session on it:

    transport.audio_in() ─▶ VoiceInput (VAD, streaming ASR, barge-in rule) ─▶ Agent (FSM, ledger)
    Agent ─▶ AudioSpeechOutput (sentences ─▶ TTS) ─▶ transport.output (clear() on barge-in)
    Agent FSM transitions ─▶ transport.state_changed;  ledger ─▶ transport.transcript_updated

The speech models come from a :class:`SpeechModels` (built per call from
``Config.voice`` by default; a :class:`~voice_agent.worker.Worker` shares
one set among its calls). The call ends when the transport's audio ends
(the caller hung up: ``SessionEnded(transport.end_reason)``) or when the
agent ends the session; either way everything the call opened is closed
and the ledger is complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fsm import Clock, Event, TraceRecord
from ledger import entries as le
from peripherals.audio import AudioSink
from peripherals.audio_io import AudioDeviceError
from peripherals.tts import PhraseCache, Tts

from ..agent import Agent
from ..agent_fsm import AGENT_BUSY, S
from ..call_control import CallAction, HangUp, SendDtmf, Transfer
from ..config import Config, VoiceConfig
from ..events import SessionEnded, UserSpeechPaused, UserSpeechResumed
from ..recording import CallRecorder, RecordingSink
from ..session import open_session
from ..tools import ToolRegistry
from ..voice.input import Playback, PlaybackPause, UtteranceTiming, VoiceInput
from ..voice.line import LineSink, simulates_line, through_line
from ..voice.output import AudioSpeechOutput
from .base import AgentStateChanged, CallControlUnsupported, TranscriptUpdated, Transport

log = logging.getLogger(__name__)


class SpeechModels(Protocol):
    """Where a call gets its speech models; the call closes what it opened."""

    def open_tts(self, output_rate: int) -> Tts:
        """A TTS producing audio at ``output_rate``."""

    def phrase_cache(self) -> PhraseCache:
        """The kept audio of answers' first chunks that the call's speech output uses (a
        worker's calls share one: an opening heard in one call plays at once in the next)."""

    def open_input(
        self,
        *,
        sample_rate: int,
        post: Callable[[Event], None],
        agent_busy: Callable[[], bool],
        playback: Playback | None,
    ) -> VoiceInput:
        """A :class:`VoiceInput` for caller frames at ``sample_rate``."""


class PerCallModels:
    """Loads VAD, ASR and TTS for each call (``voice-agent console`` / ``run``: one call)."""

    def __init__(self, cfg: VoiceConfig) -> None:
        self._cfg = cfg

    def open_tts(self, output_rate: int) -> Tts:
        from ..voice.build import build_tts

        return build_tts(self._cfg, output_rate)

    def phrase_cache(self) -> PhraseCache:
        return PhraseCache(self._cfg.tts_phrase_cache)

    def open_input(
        self,
        *,
        sample_rate: int,
        post: Callable[[Event], None],
        agent_busy: Callable[[], bool],
        playback: Playback | None,
    ) -> VoiceInput:
        from ..voice.build import build_input

        return build_input(
            self._cfg, post, agent_busy=agent_busy, playback=playback, sample_rate=sample_rate
        )


@dataclass
class CallResult:
    """What one call did."""

    session_id: str
    entries: list[le.Entry]
    ledger_path: Path | None
    utterances: list[UtteranceTiming]
    playback_pauses: list[PlaybackPause]
    end_reason: str


class Call:
    """A running call: the :class:`~.base.CallHandle` its transport sees, and call control."""

    def __init__(self, transport: Transport, agent: Agent, output: AudioSpeechOutput) -> None:
        self.transport = transport
        self.agent = agent
        self.output = output
        self.voice: VoiceInput | None = None
        self.state: S = S(agent.state)
        self._agent_segments: dict[str, str] = {}  # response id -> planned text so far

    # ---- CallHandle
    def post(self, event: Event) -> None:
        self.agent.post(event)

    def settled(self) -> bool:
        voice_settled = self.voice is None or self.voice.settled  # turn scoring, early decodes
        return self.agent.is_settled() and not self.output.synthesis_pending and voice_settled

    def done(self) -> bool:
        in_speech = self.voice is not None and self.voice.in_speech
        return self.agent.is_idle() and not self.output.busy and not in_speech

    def poll_output(self) -> None:
        self.output.poll()

    # ---- what the engine tells the transport
    def agent_busy(self) -> bool:
        """The agent holds the floor (thinking or speaking), from the FSM's notifications."""
        return self.state in AGENT_BUSY

    def on_transition(self, record: TraceRecord) -> None:
        """The agent FSM's transition notification: track the floor, tell the transport."""
        if record.outcome not in ("transition", "final") or record.source == record.target:
            return
        self.state = S(record.target)
        self._notify(
            self.transport.state_changed,
            AgentStateChanged(previous=record.source, state=record.target, t=record.t),
        )

    def on_entry(self, entry: le.Entry) -> None:
        """A ledger entry: transcripts for the transport."""
        update: TranscriptUpdated | None = None
        if isinstance(entry, le.UserUtterance):
            update = TranscriptUpdated(
                role="user",
                segment_id=f"user-{entry.turn_id}",
                text=entry.text,
                final=entry.final,
                t=entry.t,
            )
        elif isinstance(entry, le.AgentTextPlanned):
            text = (self._agent_segments.get(entry.response_id, "") + " " + entry.text).strip()
            self._agent_segments[entry.response_id] = text
            update = TranscriptUpdated(
                role="agent", segment_id=entry.response_id, text=text, final=False, t=entry.t
            )
        elif isinstance(entry, le.AgentTextPlayed):
            self._agent_segments.pop(entry.response_id, None)
            update = TranscriptUpdated(
                role="agent",
                segment_id=entry.response_id,
                text=entry.text,
                final=True,
                t=entry.t,
                interrupted=entry.interrupted,
            )
        if update is not None:
            self._notify(self.transport.transcript_updated, update)

    def _notify(self, fn: Callable[[Any], None], value: object) -> None:
        try:
            fn(value)
        except Exception:  # a display must not take the call down; the ledger is unaffected
            log.exception("%s transport: %s failed", self.transport.name, fn.__name__)

    # ---- call control
    async def perform(self, action: CallAction) -> bool:
        """Carry out a call-control action through the transport; the ledger records it.

        Returns whether it was carried out. A hang-up also ends the session.
        """
        ledger = self.agent.ledger
        ledger.append(le.Note(text=f"call control: {action!r}", level="info"))
        try:
            if isinstance(action, Transfer):
                await self.transport.transfer(action.destination)
            elif isinstance(action, HangUp):
                await self.transport.hang_up()
            elif isinstance(action, SendDtmf):
                await self.transport.send_dtmf(action.digits)
        except CallControlUnsupported as exc:
            ledger.append(le.Note(text=f"call control unsupported: {exc}", level="warning"))
            return False
        except Exception as exc:
            log.exception("%s transport: %r failed", self.transport.name, action)
            ledger.append(
                le.Note(text=f"call control failed: {type(exc).__name__}: {exc}", level="error")
            )
            return False
        if isinstance(action, HangUp):
            self.agent.post(SessionEnded(reason="hang-up", detail=action.reason))
        return True


def _save_recording(recorder: CallRecorder, path: Path) -> None:
    """Write the call recording; a failure is logged, never raised (the call is over)."""
    try:
        recorder.save(path)
        log.info("call recording: %s", path)
    except Exception as exc:
        log.error("could not write the call recording %s: %s", path, exc)


def _input_poster(agent: Agent, realtime: bool) -> Callable[[Event], None]:
    """Everything in real time; no pause events on a stream clock that waits for the engine.

    (With generation taking no stream time a preemptive answer gains nothing, and a held
    preemptive generation never counts as settled, so the clock could not reach the end
    of the pause.)
    """
    if realtime:
        return agent.post

    def post(event: Event) -> None:
        if not isinstance(event, UserSpeechPaused | UserSpeechResumed):
            agent.post(event)

    return post


async def run_call(
    config: Config,
    transport: Transport,
    *,
    models: SpeechModels | None = None,
    tools: ToolRegistry | None = None,
    clock: Clock | None = None,
    meta: Mapping[str, object] | None = None,
    on_call: Callable[[Call], None] | None = None,
) -> CallResult:
    """Run one session on ``transport`` until either side ends it; returns what happened.

    The transport belongs to the caller (it is not closed here). ``meta`` goes
    into the ledger's ``SessionStarted`` (call ids, caller number).
    ``on_call`` sees the running :class:`Call` once it is wired (call control).
    """
    models = models or PerCallModels(config.voice)
    tts = models.open_tts(transport.output.sample_rate)
    sink: AudioSink = transport.output
    recorder: CallRecorder | None = None
    if config.ledger.record_audio and config.ledger.persist:
        sink = RecordingSink(transport.output)
        recorder = CallRecorder(sink, transport.input_rate)
    law = config.voice.line_codec
    line = simulates_line(law, transport)
    if line:
        sink = LineSink(sink, law)
    output = AudioSpeechOutput(
        tts,
        sink,
        prepare_ahead=config.voice.tts_prepare_held,
        phrase_cache=models.phrase_cache(),
    )
    call: Call | None = None
    voice: VoiceInput | None = None

    def on_transition(record: TraceRecord) -> None:
        if call is not None:
            call.on_transition(record)

    try:
        async with open_session(
            config,
            output,
            clock=clock,
            tools=tools,
            transport=transport.name,
            meta=meta,
            on_transition=on_transition,
        ) as session:
            agent = session.agent
            call = Call(transport, agent, output)
            unsubscribe = session.ledger.subscribe(call.on_entry)
            voice = models.open_input(
                sample_rate=transport.input_rate,
                post=_input_poster(agent, transport.realtime),
                agent_busy=call.agent_busy,
                playback=output,
            )
            call.voice = voice
            transport.attach(call)
            agent.conversation.call.perform = call.perform  # tools' hang-up/transfer/DTMF
            if on_call is not None:
                on_call(call)

            async def pump() -> None:
                try:
                    async for frame in transport.audio_in():
                        if line:
                            frame = through_line(frame, law)
                        if recorder is not None:
                            recorder.caller_frame(frame)
                        await voice.process(frame)
                except AudioDeviceError as exc:  # (hostile8) a device gone mid-call: said plainly
                    log.error("%s transport: %s; the call ends", transport.name, exc)
                    agent.post(SessionEnded(reason=f"audio device lost: {exc}", detail=repr(exc)))
                except Exception as exc:  # the call ends, recorded; never a silent hang
                    log.exception("%s transport: the caller's audio failed", transport.name)
                    agent.post(SessionEnded(reason="transport failed", detail=repr(exc)))
                else:
                    agent.post(SessionEnded(reason=transport.end_reason))

            try:
                async with asyncio.TaskGroup() as tg:
                    feeding = tg.create_task(pump(), name=f"{transport.name}-audio-in")
                    await agent.run()
                    feeding.cancel()
            finally:
                unsubscribe()
                await voice.aclose()
                await output.aclose()
                if recorder is not None and session.ledger_path is not None:
                    _save_recording(recorder, session.ledger_path.with_suffix(".wav"))
            return CallResult(
                session_id=session.ledger.session_id,
                entries=list(session.ledger.entries),
                ledger_path=session.ledger_path,
                utterances=voice.turns,
                playback_pauses=voice.playback_pauses,
                end_reason=transport.end_reason,
            )
    finally:
        if voice is not None:
            await voice.aclose()
        await output.aclose()
        await tts.aclose()
