"""Text to speech: the ``Tts`` protocol and ``PiperTts`` (piper-tts 1.8, onnxruntime)."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from peripherals.audio import AudioChunk, ModelNotInstalledError, PeripheralError
from peripherals.models import VoiceRef, resolve_tts_voice
from peripherals.resample import resample

_PIP_PIPER = "pip install 'piper-tts>=1.2,<2'  (or: pip install 'voice-agent[voice]')"

# Piper starts most utterances with 30-65 ms of near-digital silence (-90 dBFS) before the
# first phoneme ("Okay," 35 ms, "Yes," 65 ms; "Sure," none): at the start of an answer that is
# time the caller waits for nothing. lead_in_trimmed() cuts it to LEAD_IN_KEEP_S before the
# first 5 ms step above LEAD_IN_FLOOR_DBFS, keeping the attack of the first sound.
LEAD_IN_FLOOR_DBFS = -60.0
LEAD_IN_KEEP_S = 0.01
_LEAD_IN_STEP_S = 0.005


def lead_in_trimmed(audio: np.ndarray, rate: int) -> np.ndarray:
    """``audio`` without its leading silence, less ``LEAD_IN_KEEP_S`` (pure; all of it when
    nothing is louder than ``LEAD_IN_FLOOR_DBFS``)."""
    step = max(1, int(rate * _LEAD_IN_STEP_S))
    floor = 10 ** (LEAD_IN_FLOOR_DBFS / 20)
    n = len(audio) // step
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(np.square(audio[: n * step].reshape(n, step), dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms > floor)
    if len(loud) == 0:
        return audio
    start = max(0, int(loud[0]) * step - int(rate * LEAD_IN_KEEP_S))
    return audio[start:]


# A first chunk of an answer ("Sure,", "Okay,", "Let me check that for you.") is on the
# critical path: the caller hears nothing until it is synthesised (piper: 25-55 ms for a short
# clause on a quiet 2-core machine, 3-5x that under load). Agents open their answers with the
# same few phrases, so the audio of recent short first chunks is kept and played again at once.
PHRASE_CACHE_ENTRIES = 32  # phrases kept, least recently used dropped first (count)
# Only phrases this short are kept: ~3 s of speech at most, 0.3 MB at 24 kHz (characters).
PHRASE_CACHE_MAX_CHARS = 40


class PhraseCache:
    """The audio of short phrases already synthesised, by (text, sample rate).

    ``get`` returns a copy of the stored audio (the caller may change it) or None;
    ``put`` keeps a copy, dropping the least recently used phrase beyond ``entries``;
    text longer than ``max_chars`` is never kept, nor anything when ``entries`` is 0.
    Pure and synchronous: one event loop uses it; a repeated phrase sounds the same
    every time (the voice's random variation is fixed at its first synthesis).
    """

    def __init__(
        self, entries: int = PHRASE_CACHE_ENTRIES, max_chars: int = PHRASE_CACHE_MAX_CHARS
    ) -> None:
        if entries < 0 or max_chars < 1:
            raise ValueError("need entries >= 0 and max_chars >= 1")
        self.entries = entries
        self.max_chars = max_chars
        self._audio: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._audio)

    def holds(self, text: str, rate: int) -> bool:
        """Is ``text`` at ``rate`` kept (not counted as a hit or a miss)?"""
        return (text, rate) in self._audio

    def get(self, text: str, rate: int) -> np.ndarray | None:
        """A copy of the audio of ``text`` at ``rate``, or None (counted as a hit or a miss)."""
        audio = self._audio.get((text, rate))
        if audio is None:
            if self.entries and len(text) <= self.max_chars:
                self.misses += 1
            return None
        self._audio.move_to_end((text, rate))
        self.hits += 1
        return audio.copy()

    def put(self, text: str, rate: int, audio: np.ndarray) -> None:
        """Keep ``audio`` as ``text`` at ``rate`` (when short enough and non-empty)."""
        if not self.entries or len(text) > self.max_chars or len(audio) == 0:
            return
        self._audio[(text, rate)] = np.array(audio, dtype=np.float32, copy=True)
        self._audio.move_to_end((text, rate))
        while len(self._audio) > self.entries:
            self._audio.popitem(last=False)


class Tts(Protocol):
    """Speech synthesis.

    ``synthesize(text)`` yields mono float32 audio at ``output_rate`` (or the
    ``sample_rate`` given), piece by piece as it is produced (at least one
    piece per sentence). Cancelling the consumer (or closing the iterator)
    stops production promptly: no synthesis continues past the sentence in
    progress. ``aclose`` is idempotent.
    """

    @property
    def output_rate(self) -> int: ...

    def synthesize(
        self, text: str, sample_rate: int | None = None
    ) -> AsyncIterator[AudioChunk]: ...

    async def aclose(self) -> None: ...


def _session(path: str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Busy-waiting threads would steal the core that ASR is using.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


_DONE = object()


def load_piper_voice(voice: str | VoiceRef | None = None, threads: int = 1) -> Any:
    """Load a piper voice once; ``PiperTts(loaded=...)`` shares it.

    A shared voice must synthesize on one thread at a time (piper's
    phonemizer, espeak-ng, is not thread-safe): give its users one
    single-threaded executor.
    """
    try:
        from piper import PiperConfig, PiperVoice
    except ImportError as exc:
        raise ModelNotInstalledError(f"PiperTts needs piper-tts: {_PIP_PIPER}") from exc
    ref = voice if isinstance(voice, VoiceRef) else resolve_tts_voice(voice)
    if ref.source == "hub" and not ref.model_path.is_file():
        from piper.download_voices import download_voice

        # Needs the network (Hugging Face): fails offline with a URLError.
        download_voice(ref.spec, ref.model_path.parent)
    with open(ref.config_path, encoding="utf-8") as f:
        config = PiperConfig.from_dict(json.load(f))
    return PiperVoice(session=_session(str(ref.model_path), threads), config=config)


class PiperTts:
    """``Tts`` with a piper voice, synthesising in a worker thread it owns.

    Piper produces one chunk per sentence at the voice's native rate
    (22.05 kHz for the default voice); each is resampled to the requested
    rate. ``length_scale`` > 1 speaks slower; ``volume`` scales piper's
    peak-normalised output (1.0 = full scale). ``variability`` scales the
    voice's own random variation of sound and phoneme durations (piper's
    ``noise_scale`` and ``noise_w``): 1.0 sounds as the voice was trained,
    0.0 says the same text with the same samples every time.
    """

    def __init__(
        self,
        voice: str | VoiceRef | None = None,
        *,
        output_rate: int = 24000,
        threads: int = 1,  # leaves the other core of a 2-core box to ASR
        length_scale: float | None = None,
        volume: float = 0.8,  # headroom below full scale after piper's peak normalisation
        variability: float = 1.0,
        loaded: Any = None,
        executor: Executor | None = None,
    ) -> None:
        try:
            from piper import SynthesisConfig
        except ImportError as exc:
            raise ModelNotInstalledError(f"PiperTts needs piper-tts: {_PIP_PIPER}") from exc
        if loaded is None:
            ref = voice if isinstance(voice, VoiceRef) else resolve_tts_voice(voice)
            loaded = load_piper_voice(ref, threads)
        self._voice = loaded
        self._syn_config = SynthesisConfig(length_scale=length_scale, volume=volume)
        if variability != 1.0:
            self._syn_config.noise_scale = loaded.config.noise_scale * variability
            self._syn_config.noise_w_scale = loaded.config.noise_w_scale * variability
        self._output_rate = output_rate
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="piper"
        )
        self._closed = False

    @property
    def output_rate(self) -> int:
        return self._output_rate

    @property
    def native_rate(self) -> int:
        """The voice's own sample rate (Hz)."""
        return int(self._voice.config.sample_rate)

    def warm_up(self) -> None:
        """Run one short synthesis (blocking) so the first real one is not slower."""
        for _ in self._voice.synthesize("Hello.", syn_config=self._syn_config):
            pass

    async def synthesize(
        self, text: str, sample_rate: int | None = None
    ) -> AsyncIterator[AudioChunk]:
        """Yield the speech of ``text``, one chunk per sentence, at ``sample_rate``
        (default ``output_rate``). Empty or unspeakable text yields nothing."""
        if self._closed:
            raise PeripheralError("PiperTts is closed")
        rate = sample_rate or self._output_rate
        loop = asyncio.get_running_loop()
        sentences: Iterator[Any] = iter(self._voice.synthesize(text, syn_config=self._syn_config))
        try:
            while True:
                # One sentence per hop into the worker: cancelling the await
                # leaves at most that sentence running, and nothing after it.
                chunk: Any = await loop.run_in_executor(self._executor, next, sentences, _DONE)
                if chunk is _DONE:
                    return
                audio = np.asarray(chunk.audio_float_array, dtype=np.float32)
                yield AudioChunk(resample(audio, int(chunk.sample_rate), rate), rate)
        finally:
            # Close the generator in the worker too (generators are not thread-safe
            # while running); after a cancellation this waits behind the sentence in flight.
            if not self._closed:
                self._executor.submit(_close, sentences)

    async def aclose(self) -> None:
        """Release the worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)


def _close(gen: Iterator[Any]) -> None:
    close = getattr(gen, "close", None)
    if close is not None:
        close()
