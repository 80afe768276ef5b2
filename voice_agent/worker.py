"""A worker process: the models held once, several concurrent calls.

:class:`Worker` loads the speech models once — the Silero VAD's ONNX session,
the Whisper model, the piper voice — and resolves the LLM endpoint once (the
embedded llama.cpp server is started once and shared; a remote endpoint is a
URL). Each call then gets its own conversation, ledger and audio pipeline
(VAD state, ASR stream, sentence TTS, speech output) through
:func:`~voice_agent.transports.call.run_call`, over any transport.

CPU-heavy work is scheduled fairly: every call's Whisper decodes go through
one :class:`~voice_agent.fair_executor.FairExecutor` and its piper sentences
through another, one lane per call, so the call that has received the least
CPU runs next and a talkative call cannot starve a quiet one, and end-of-turn
decodes (someone waits on them) go before partial transcripts, which are
skipped altogether while other decodes wait (see ``fair_executor``). The VAD runs in the event loop (≈0.1 ms per 32 ms frame).

Admission (:mod:`voice_agent.admission`): at most ``worker.max_calls`` calls
run at once; up to ``worker.max_waiting`` more wait in line, first come first
served, and hear ``worker.hold_message`` every ``worker.hold_interval_s``
while they wait (:mod:`voice_agent.waiting_room`, through their own
transport); after ``worker.wait_timeout_s`` a waiting caller hears
``worker.queue_apology`` and the call ends unserved (its ledger says so).
Beyond the queue :meth:`Worker.run_call` raises :class:`CallRefused` at once,
so a full worker refuses new calls instead of degrading all of them (the
media-stream server then closes the socket and the provider plays its
fallback; a LiveKit worker reports itself full).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fsm import Clock, Event
from peripherals.tts import PhraseCache

from .admission import Admission, QueueFull
from .config import Config, VoiceConfig
from .fair_executor import FairExecutor, Lane
from .session import llm_endpoint
from .tools import ToolRegistry
from .transports.base import Transport
from .transports.call import Call, CallResult, run_call
from .voice.input import Playback, VoiceInput
from .waiting_room import CallNotServed, QueueWait, WaitingRoom, admitted, record_unserved

log = logging.getLogger(__name__)


class CallRefused(RuntimeError):
    """The worker is full (``max_calls`` running and ``max_waiting`` queued): refused at once."""


class SharedSpeechModels:
    """VAD session, Whisper model, piper voice and end-of-turn model loaded once; a lane per
    call on each pool.

    ``asr_threads`` / ``tts_threads`` threads serve the decodes / sentences of
    every call (piper's phonemizer is not thread-safe: one TTS thread).
    """

    def __init__(self, cfg: VoiceConfig) -> None:
        from peripherals.asr import load_whisper
        from peripherals.tts import load_piper_voice
        from peripherals.vad import load_silero_session

        self.cfg = cfg
        self.whisper = load_whisper(cfg.asr_model, cfg.asr_threads)
        # The end-of-turn decodes (the ones a caller waits on) on a copy with more threads.
        self.final_whisper = (
            load_whisper(cfg.asr_model, cfg.asr_final_threads)
            if cfg.asr_final_threads != cfg.asr_threads
            else self.whisper
        )
        self.voice = load_piper_voice(cfg.tts_voice, cfg.tts_threads)
        # answers' first chunks, kept for every call (all calls run on one event loop)
        self.phrases = PhraseCache(cfg.tts_phrase_cache)
        self.vad_session = load_silero_session()
        self._turn_detectors: dict[int, Any] = {}  # Smart Turn per VAD rate (stateless, shared)
        self.asr_pool = FairExecutor("asr", threads=1)
        self.tts_pool = FairExecutor("tts", threads=1)
        self._warm_up()

    def _warm_up(self) -> None:
        from piper import SynthesisConfig

        for _ in self.voice.synthesize("Hello.", syn_config=SynthesisConfig()):
            pass

    def turn_detector(self, sample_rate: int) -> Any:
        """The end-of-turn model for streams at ``sample_rate``, loaded once per VAD rate."""
        from .voice.build import build_turn_detector, vad_rate

        rate = vad_rate(sample_rate)
        if rate not in self._turn_detectors:
            self._turn_detectors[rate] = (
                build_turn_detector(self.cfg, rate) if self.cfg.turn.detection == "model" else None
            )
        return self._turn_detectors[rate]

    async def synthesize(self, text: str, rate: int) -> np.ndarray:
        """``text`` spoken by the shared voice at ``rate`` Hz (on the TTS scheduler)."""
        tts = self.for_call("waiting-room").open_tts(rate)
        try:
            parts = [chunk.samples async for chunk in tts.synthesize(text)]
        finally:
            await tts.aclose()
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)

    def for_call(self, name: str) -> CallModels:
        """The models as one call sees them (its own lanes)."""
        return CallModels(self, self.asr_pool.lane(name), self.tts_pool.lane(name))

    def close(self) -> None:
        self.asr_pool.shutdown()
        self.tts_pool.shutdown()


@dataclass
class CallModels:
    """A call's view of :class:`SharedSpeechModels` (a ``SpeechModels``)."""

    shared: SharedSpeechModels
    asr_lane: Lane
    tts_lane: Lane

    def open_tts(self, output_rate: int) -> Any:
        from peripherals.tts import PiperTts

        from .voice.build import tts_options

        cfg = self.shared.cfg
        return PiperTts(
            output_rate=output_rate,
            loaded=self.shared.voice,
            executor=self.tts_lane,
            **tts_options(cfg),
        )

    def phrase_cache(self) -> PhraseCache:
        return self.shared.phrases

    def open_input(
        self,
        *,
        sample_rate: int,
        post: Callable[[Event], None],
        agent_busy: Callable[[], bool],
        playback: Playback | None,
    ) -> VoiceInput:
        from peripherals.asr import AsrPartial, WhisperStreamingAsr
        from peripherals.vad import SileroVad

        from .voice.build import build_input, build_vad, vad_rate

        cfg = self.shared.cfg

        def make_asr(on_partial: Callable[[AsrPartial], None]) -> WhisperStreamingAsr:
            return WhisperStreamingAsr(
                cfg.asr_model,
                on_partial=on_partial,
                partial_interval_s=cfg.asr_partial_interval_s,
                window_s=cfg.asr_window_s,
                window_pad=cfg.asr_window_pad,
                whisper=self.shared.whisper,
                final_whisper=self.shared.final_whisper,
                executor=self.asr_lane,
                final_executor=self.asr_lane.urgent,
                # Partials only while no decode waits: under load the finals get the time.
                partials_allowed=lambda: self.shared.asr_pool.backlog() == 0,
            )

        vad = SileroVad(vad_rate(sample_rate), session=self.shared.vad_session)
        return build_input(
            cfg,
            post,
            agent_busy=agent_busy,
            playback=playback,
            sample_rate=sample_rate,
            vad=build_vad(cfg, sample_rate, vad=vad),
            make_asr=make_asr,
            turn_detector=self.shared.turn_detector(sample_rate),
        )


@dataclass
class WorkerStats:
    """What the worker did (for ``phone serve``'s status and the load bench)."""

    active: int = 0
    waiting: int = 0
    served: int = 0
    refused: int = 0  # refused at once: slots and queue full
    queued: int = 0  # calls that waited in line (served or not)
    not_served: int = 0  # left the queue unserved: timed out (apology played) or hung up
    failed: int = 0
    started_at: float = field(default_factory=time.monotonic)

    def cpu_s(self) -> float:
        """CPU seconds of this process and its children (the embedded LLM server) so far."""
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Worker:
    """Holds the models once and runs up to ``config.worker.max_calls`` calls at a time.

    >>> async with Worker(config) as worker:
    ...     result = await worker.run_call(transport, meta={"call_sid": "CA…"})
    """

    def __init__(
        self,
        config: Config,
        *,
        tools: ToolRegistry | None = None,
        clock: Clock | None = None,
        models: SharedSpeechModels | None = None,
    ) -> None:
        self._config = config
        self._tools = tools
        self._clock = clock
        self._models = models
        self._owns_models = models is None
        self._stack = AsyncExitStack()
        self.admission = Admission(config.worker.max_calls, config.worker.max_waiting)
        self._waiting_room: WaitingRoom | None = None
        self.stats = WorkerStats()
        self.calls: dict[str, Call] = {}
        self.config = config  # with the LLM endpoint resolved once entered

    @property
    def max_calls(self) -> int:
        return self._config.worker.max_calls

    async def __aenter__(self) -> Worker:
        llm = await self._stack.enter_async_context(llm_endpoint(self._config))
        prewarm = self._config.llm.prewarm
        if prewarm is None:
            prewarm = self._config.llm.base_url is None
        self.config = self._config.model_copy(
            update={"llm": llm.model_copy(update={"prewarm": prewarm})}
        )
        if self._models is None:
            self._models = await asyncio.to_thread(SharedSpeechModels, self._config.voice)
        self._waiting_room = WaitingRoom(
            self._config.worker, self._models.synthesize, clock=self._clock
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the shared LLM server and the schedulers (idempotent; calls end first)."""
        await self._stack.aclose()
        if self._models is not None and self._owns_models:
            self._models.close()
            self._models = None

    @contextlib.asynccontextmanager
    async def _slot(self, transport: Transport) -> AsyncIterator[QueueWait | None]:
        """A slot for the call on ``transport``: at once, or after waiting in line with the
        hold message (yields how it waited); :class:`CallRefused` when the queue is full,
        :class:`CallNotServed` when it left the queue without a slot."""
        assert self._waiting_room is not None

        def on_wait(delta: int) -> None:
            self.stats.waiting += delta
            self.stats.queued += max(0, delta)

        try:
            async with admitted(
                self.admission, self._waiting_room, transport, on_wait=on_wait
            ) as wait:
                self.stats.active += 1
                try:
                    yield wait
                finally:
                    self.stats.active -= 1
        except QueueFull as exc:
            self.stats.refused += 1
            raise CallRefused(str(exc)) from None
        except CallNotServed:
            self.stats.not_served += 1
            raise

    async def run_call(
        self,
        transport: Transport,
        *,
        meta: Mapping[str, object] | None = None,
        on_call: Callable[[Call], None] | None = None,
    ) -> CallResult:
        """Run one call on ``transport`` with the shared models.

        A full worker queues the call (the caller hears the hold message) or raises
        :class:`CallRefused` at once when the queue is full too. A queued call that gets
        no slot in ``worker.wait_timeout_s`` (it hears the apology first) or whose caller
        hangs up while waiting raises :class:`CallNotServed`; its ledger is written.
        """
        assert self._models is not None, "use the worker as an async context manager"
        try:
            async with self._slot(transport) as wait:
                return await self._serve(transport, meta, on_call, wait)
        except CallNotServed as exc:
            record_unserved(self.config, transport, meta, exc, clock=self._clock)
            raise

    async def _serve(
        self,
        transport: Transport,
        meta: Mapping[str, object] | None,
        on_call: Callable[[Call], None] | None,
        wait: QueueWait | None,
    ) -> CallResult:
        if wait is not None:
            meta = {**(meta or {}), "queue": wait.meta()}
        assert self._models is not None
        name = f"call-{self.stats.served + self.stats.active}"
        registered: list[str] = []

        def track(call: Call) -> None:
            key = call.agent.ledger.session_id
            self.calls[key] = call
            registered.append(key)
            if on_call is not None:
                on_call(call)

        try:
            result = await run_call(
                self.config,
                transport,
                models=self._models.for_call(name),
                tools=self._tools,
                clock=self._clock,
                meta=meta,
                on_call=track,
            )
        except Exception:
            self.stats.failed += 1
            raise
        finally:
            for key in registered:
                self.calls.pop(key, None)
        self.stats.served += 1
        return result
