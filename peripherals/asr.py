"""Streaming speech recognition: the ``StreamingAsr`` protocol and ``WhisperStreamingAsr``.

Whisper is not a streaming model; streaming is built from re-decoding the
growing utterance at a fixed audio cadence and committing words with the
LocalAgreement-2 policy (``peripherals.stable_prefix``). The final decode
can start speculatively when the VAD suspects the end of speech.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from peripherals.audio import ModelNotInstalledError, PeripheralError, rms_dbfs, to_float32
from peripherals.log_mel import LogMelStream, log_mel
from peripherals.models import ModelRef, resolve_asr_model
from peripherals.resample import Resampler
from peripherals.stable_prefix import StablePrefix

ASR_RATE = 16000  # Whisper's input rate (Hz)

# Utterances quieter than this are silence: no decode at all (dBFS RMS).
SILENCE_FLOOR_DBFS = -60.0
# Whisper's own silence rule: a segment is dropped when no_speech_prob is
# above this *and* its mean token log-probability is below LOGPROB_FLOOR.
NO_SPEECH_PROB = 0.6
LOGPROB_FLOOR = -1.0
# A segment this unlikely is dropped whatever no_speech_prob says (nats/token).
LOGPROB_HARD_FLOOR = -1.6
# Text this repetitive (gzip ratio) is a decoding loop, not speech.
COMPRESSION_RATIO_MAX = 2.4
# Whisper's stock phrases on near-silence. Dropped only when the utterance is
# shorter than HALLUCINATION_MAX_S or quieter than HALLUCINATION_RMS_DBFS,
# so a user who really says "thank you" out loud is still heard.
KNOWN_HALLUCINATIONS = frozenset(
    {
        "you",
        "thank you",
        "thanks for watching",
        "thank you for watching",
        "thank you very much",
        "please subscribe",
        "bye",
    }
)
HALLUCINATION_MAX_S = 0.35  # seconds of audio
HALLUCINATION_RMS_DBFS = -40.0  # dBFS RMS over the utterance


def is_stock_phrase(text: str) -> bool:
    """`text` is only one of Whisper's stock phrases on unclear audio ("Thank you.", "you"),
    whatever its case and punctuation (`KNOWN_HALLUCINATIONS`)."""
    return _plain(text) in KNOWN_HALLUCINATIONS


# Whisper's encoder reads a 30 s window whatever the utterance's length, and that
# encoder pass is most of a decode. Encoding only the utterance plus WINDOW_TAIL_S,
# but at least ``window_s`` (default DEFAULT_WINDOW_S), took 0.30x the decode time on
# 154 caller turns (7 espeak voices, questions, pausing sentences, digit strings), with
# WER 0.159 vs 0.151 at 16 kHz and 0.367 vs 0.406 on the 8 kHz phone path
# (bench/asr_window.py). Floors below 10 s dropped words on the phone path (seconds).
DEFAULT_WINDOW_S = 10.0
WINDOW_TAIL_S = 1.0
FULL_WINDOW_S = 30.0  # Whisper's own window: longer audio goes through faster-whisper's chunking
MEL_FRAMES_PER_S = 100  # Whisper's log-mel hop is 10 ms
HOP_SAMPLES = ASR_RATE // MEL_FRAMES_PER_S
# A short utterance whose short-window decode the rules above drop entirely is decoded again
# as Whisper's stock decode does (30 s window, zero-valued padding) and judged by the same
# rules: tiny.en is less sure of one or two words in the short window ("I see." -> "Happy",
# -1.9 nats/token). On 210 short replies (10 phrases, 7 espeak voices, 3 cuts) the short
# window kept nothing for 10, the stock decode gave words for 8 (6 right); on 30 noise
# bursts neither gave a word. Costs one stock decode per dropped short sound (seconds).
STOCK_RETRY_MAX_S = 2.0
# (turn7) The same stock decode, at any length, for a final decode dropped whole because it
# looped (the loop or runaway rule) or after an earlier decode of the same utterance heard
# words: a loop is the decoder failing, not evidence of silence. "My account number is six one
# three three five" (espeak en-us-nyc+f5, 185 wpm, read in groups, 6 s with its pauses): the
# 10 s window looped ("6, 1, 3, 3, 5, 5, 5, 5, ...", runaway, compression 3.6) at 16 and 8 kHz
# and the turn got no answer; the stock decode gave "My count time limit 6, 1, 3, 3, 5".
# Its result passes the same rules; it costs one stock decode, only when a final was dropped.
# What fills the window after the utterance. "silence": the log-mel of digital silence, what
# Whisper was trained on (openai-whisper pads the audio with 30 s of zeros before the log-mel);
# "zeros": zero-valued features (faster-whisper's pad_or_trim), to the model a steady noise
# floor rather than silence. Measured in bench/asr_window.py (see docs/turn_taking.md).
WindowPad = Literal["silence", "zeros"]
DEFAULT_WINDOW_PAD: WindowPad = "silence"
N_FFT = 400  # Whisper's STFT size (samples): the frames that straddle the audio's end need it
# A decode stops after MAX_TOKENS_BASE + MAX_TOKENS_PER_S tokens per second of audio: speech is
# ~4-6 tokens/s (digits read one by one with commas ~7), so only a decoding loop ("2 9 2 9 ...")
# reaches it; without the bound a loop runs to 224 tokens (CTranslate2 returns at most half of
# Whisper's max_length of 448; ~2 s of CPU here) before the compression rule drops it.
MAX_TOKENS_BASE = 16
MAX_TOKENS_PER_S = 12.0
# A decode that stops within this many tokens of its budget is that loop, cut short: it is
# dropped as the full-length loop was (its first 50 tokens pass the compression rule: "6, 1, 4,
# 4, 3, 4, 3, 4, ..."), so the budget changes the time a loop costs, not the transcript.
RUNAWAY_MARGIN_TOKENS = 4


class AsrError(PeripheralError):
    """A decode failed (the cause is chained)."""


class DecodeVoided(Exception):
    """A decode whose result nobody wants any more stopped at a stage boundary (features,
    encoder, decoder): its worker thread is free for the next decode sooner."""


@dataclass(frozen=True)
class AsrPartial:
    """A partial transcript: ``text`` is the committed prefix (it only grows
    within an utterance); ``unstable`` is the rest of the latest hypothesis."""

    text: str
    unstable: str
    audio_s: float  # utterance audio covered by the decode (seconds)
    decode_s: float  # wall time of the decode (seconds)


@dataclass(frozen=True)
class AsrFinal:
    """The final transcript of an utterance (``""`` for silence or noise)."""

    text: str
    audio_s: float
    decode_s: float
    speculative: bool  # True when the decode started at SpeechPaused was kept
    # The rules dropped the final decode whole and the stock decode was tried (see
    # STOCK_RETRY_MAX_S); ``text`` is the stock decode's.
    retried: bool = False


class StreamingAsr(Protocol):
    """Speech recognition of one utterance at a time.

    Feed the audio of one VAD speech segment with ``push`` (called from the
    event loop; never blocks); adapters report growing partial transcripts
    through the ``on_partial`` callback they are built with. ``speech_paused``
    may start the final decode early; ``speech_resumed`` discards it.
    ``paused_text`` waits for that early decode and returns its text (None
    when there is none or it was voided), which is what ``finalize`` returns
    when no speech came after the pause.
    ``finalize`` returns the final transcript and readies the next utterance;
    ``discard`` drops the utterance without decoding. ``aclose`` is idempotent.
    """

    def push(self, samples: np.ndarray, sample_rate: int) -> None: ...

    def speech_paused(self) -> None: ...

    def speech_resumed(self) -> None: ...

    async def paused_text(self) -> str | None: ...

    async def finalize(self) -> AsrFinal: ...

    async def discard(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class DecodeStages:
    """Where one short-window decode's time went (seconds): the log-mel window, Whisper's
    encoder, its decoder (``generate``: prompt, no-speech probability, greedy steps), and the
    tokens the decoder produced. For profiling (``bench/asr_profile.py``)."""

    features_s: float
    encode_s: float
    generate_s: float
    tokens: int


@dataclass(frozen=True)
class _Decoded:
    text: str
    decode_s: float
    dropped: bool = False  # the decoder wrote words that the rules dropped whole
    retried: bool = False  # ... and the stock decode was tried (its text is ``text``)
    stages: DecodeStages | None = None  # the kept decode's stages (short window only)


def _plain(text: str) -> str:
    return re.sub(r"[^\w' ]+", "", text.lower()).strip()


async def _cancel_and_wait(task: asyncio.Task[object] | None) -> None:
    """Cancel an owned task and wait until it is done, without raising its outcome."""
    if task is None:
        return
    task.cancel()
    await asyncio.wait([task])


def load_whisper(model: str | ModelRef | None = None, cpu_threads: int = 1) -> Any:
    """Load a faster-whisper model (CPU, int8) once; ``WhisperStreamingAsr(whisper=...)`` shares it."""
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise ModelNotInstalledError(
            "WhisperStreamingAsr needs faster-whisper: pip install 'faster-whisper>=1.1,<2'"
        ) from exc
    ref = model if isinstance(model, ModelRef) else resolve_asr_model(model)
    return WhisperModel(
        ref.location, device="cpu", compute_type="int8", cpu_threads=cpu_threads, num_workers=1
    )


class WhisperStreamingAsr:
    """``StreamingAsr`` with faster-whisper (CTranslate2, CPU, int8).

    Partial decodes run every ``partial_interval_s`` of new audio (skipped
    while a decode is still running), greedy (beam 1); ``final_beam_size``
    sets the final decode's beam. Decodes run in worker threads this object
    owns, so the event loop never blocks: partials one at a time in one, the
    end-of-turn decodes in another, so the decode a caller waits on never
    queues behind a partial that the pause made stale. Loading the
    model takes ~0.5 s; build the object before latency matters.

    Several streams may share one loaded model (``whisper``: a
    ``faster_whisper.WhisperModel``; ``final_whisper``, when given, is another copy
    of it for the end-of-turn decodes, e.g. loaded with more threads) and run their
    decodes on an
    ``executor`` they do not own (a fair scheduler's lane in a worker that
    serves many calls); the executor is then shut down with
    ``cancel_futures`` on ``aclose``, never waited for. ``final_executor``
    (default: ``executor``) runs the end-of-turn decodes, the ones a caller
    waits on, so a scheduler can put them ahead of partials;
    ``partials_allowed()`` (when given) is asked before each partial decode,
    so a shared pool with a backlog skips the partials and keeps its time for
    the finals.

    Each decode encodes a window of the utterance plus ``WINDOW_TAIL_S`` (at
    least ``window_s``; 30 s is Whisper's stock window) instead of 30 s of
    mostly padding: the encoder's cost follows the window, so a short turn's
    final decode takes ~0.3x the time (see ``DEFAULT_WINDOW_S``). Utterances
    longer than 30 s - ``WINDOW_TAIL_S`` go through faster-whisper's own
    30 s chunking.
    """

    def __init__(
        self,
        model: str | ModelRef | None = None,
        *,
        on_partial: Callable[[AsrPartial], None] | None = None,
        cpu_threads: int = 1,  # leaves the other core of a 2-core box to TTS
        final_cpu_threads: int | None = None,  # end-of-turn decodes (None: cpu_threads)
        language: str = "en",
        partial_interval_s: float = 1.0,  # ~half the machine at 1 s; 0.5 s takes it all
        final_beam_size: int = 1,
        initial_prompt: str | None = None,
        whisper: Any = None,
        final_whisper: Any = None,
        executor: Executor | None = None,
        final_executor: Executor | None = None,
        partials_allowed: Callable[[], bool] | None = None,
        window_s: float = DEFAULT_WINDOW_S,
        window_pad: WindowPad = DEFAULT_WINDOW_PAD,
    ) -> None:
        if window_pad not in ("silence", "zeros"):
            raise ValueError(f"window_pad must be 'silence' or 'zeros', got {window_pad!r}")
        if not 0.0 < window_s <= FULL_WINDOW_S:
            raise ValueError(f"window_s must be in (0, {FULL_WINDOW_S:g}], got {window_s}")
        ref = model if isinstance(model, ModelRef) else resolve_asr_model(model)
        self.model_ref = ref
        self._model = whisper if whisper is not None else load_whisper(ref, cpu_threads)
        # The end-of-turn decodes may run on another copy of the model with more threads:
        # the caller waits on them, and nothing else decodes at that moment.
        if (
            final_whisper is None
            and whisper is None
            and final_cpu_threads not in (None, cpu_threads)
        ):
            final_whisper = load_whisper(ref, final_cpu_threads or cpu_threads)
        self._final_model = final_whisper if final_whisper is not None else self._model
        self._on_partial = on_partial
        self._language = language
        self._interval = int(partial_interval_s * ASR_RATE)
        self._final_beam = final_beam_size
        self._prompt = initial_prompt
        self._executor: Executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="whisper"
        )
        self._own_final: Executor | None = None
        if final_executor is None and executor is None:
            self._own_final = final_executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="whisper-final"
            )
        self._final_executor: Executor = final_executor or self._executor
        self._partials_allowed = partials_allowed
        self._window_s = window_s
        self._window_pad: WindowPad = window_pad
        self._windows: dict[int, _Window] = {}  # per model (id), built on its first decode
        self._stock_windows: dict[int, _Window] = {}  # the same, for STOCK_RETRY_MAX_S
        self._closed = False
        self._error: BaseException | None = None
        self._reset_utterance()

    def _reset_utterance(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._length = 0
        self._since_partial = 0
        self._resampler: Resampler | None = None
        self._policy = StablePrefix()
        self._partial_task: asyncio.Task[None] | None = None
        self._partial_void = threading.Event()
        self._speculative: asyncio.Task[_Decoded] | None = None
        self._speculative_void = threading.Event()
        self._speculative_length = 0
        self._heard = False  # a decode of this utterance (partial or early) kept words
        # The utterance's log-mel frames, computed as its audio arrives (a model without a
        # feature extractor, a test's stand-in, has none).
        extractor = getattr(self._final_model, "feature_extractor", None)
        self._mel = LogMelStream(extractor.mel_filters) if extractor is not None else None

    # -- feeding -------------------------------------------------------------

    def push(self, samples: np.ndarray, sample_rate: int) -> None:
        """Append audio of the current utterance; may start a partial decode."""
        self._check()
        x = to_float32(samples)
        if sample_rate != ASR_RATE:
            if self._resampler is None or self._resampler.in_rate != sample_rate:
                self._resampler = Resampler(sample_rate, ASR_RATE)
            x = self._resampler.process(x)
        if len(x) == 0:
            return
        self._chunks.append(x)
        self._length += len(x)
        self._since_partial += len(x)
        if self._mel is not None:
            self._mel.push(x)
        busy = self._partial_task is not None or self._speculative is not None
        allowed = self._partials_allowed is None or self._partials_allowed()
        if (
            self._since_partial >= self._interval
            and not busy
            and self._on_partial is not None
            and allowed
        ):
            self._since_partial = 0
            self._partial_void = threading.Event()
            self._partial_task = asyncio.get_running_loop().create_task(
                self._run_partial(self._audio(), self._partial_void)
            )

    def speech_paused(self) -> None:
        """The VAD suspects the end: start the final decode of the audio so far.

        A partial decode still running is stale from here on and stops at its next stage
        (it would take CPU from the decode the caller may be waiting on); the next push
        after speech resumes may start a fresh one."""
        self._check()
        if self._speculative is None and self._length > 0:
            if self._partial_task is not None:
                self._partial_void.set()
                self._since_partial = self._interval
            self._speculative_length = self._length
            self._speculative_void = threading.Event()
            self._speculative = asyncio.get_running_loop().create_task(
                self._decode(self._audio(), self._final_beam, void=self._speculative_void)
            )

    def speech_resumed(self) -> None:
        """Speech came back: the speculative final decode is void (its thread stops it at
        the next stage boundary, so a decode voided during the encoder skips the decoder)."""
        if self._speculative is not None:
            self._speculative_void.set()
            self._speculative.cancel()  # the result, if it still comes, is dropped
            self._speculative = None

    # -- results -------------------------------------------------------------

    async def paused_text(self) -> str | None:
        """Text of the early final decode started by ``speech_paused``, once it is done.

        None when no early decode runs, or when it was voided (``speech_resumed``,
        the utterance finalized or discarded) or failed before it finished.
        Waiting here never cancels the decode. Unless speech resumes,
        ``finalize`` returns this same text.
        """
        task = self._speculative
        if task is None:
            return None
        await asyncio.wait([task])
        if task is not self._speculative or task.cancelled() or task.exception() is not None:
            return None
        return task.result().text

    async def finalize(self) -> AsrFinal:
        """Final transcript of the utterance; readies the next one.

        Keeps the speculative decode when one is pending (the audio after
        ``speech_paused`` was silence by the VAD's account); otherwise decodes
        the whole utterance.
        """
        self._check()
        audio_s = self._length / ASR_RATE
        try:
            self._partial_void.set()  # stale: the final decode covers its audio
            await _cancel_and_wait(self._partial_task)
            self._check()
            if self._speculative is not None:
                decoded = await self._speculative
                audio_s = self._speculative_length / ASR_RATE
                decoded = await self._second_decode(decoded, self._speculative_length)
                return AsrFinal(
                    decoded.text, audio_s, decoded.decode_s, True, retried=decoded.retried
                )
            if self._resampler is not None:
                tail = self._resampler.flush()
                if len(tail):
                    self._chunks.append(tail)
                    self._length += len(tail)
                    if self._mel is not None:
                        self._mel.push(tail)
            decoded = await self._decode(self._audio(), self._final_beam)
            decoded = await self._second_decode(decoded, self._length)
            return AsrFinal(
                decoded.text, self._length / ASR_RATE, decoded.decode_s, False, decoded.retried
            )
        finally:
            if self._speculative is not None and not self._speculative.done():
                self._speculative_void.set()
                self._speculative.cancel()
            self._reset_utterance()

    async def discard(self) -> None:
        """Drop the current utterance without a final decode."""
        self._partial_void.set()
        self._speculative_void.set()
        await _cancel_and_wait(self._partial_task)
        await _cancel_and_wait(self._speculative)
        self._reset_utterance()

    async def aclose(self) -> None:
        """Stop decoding and release the worker thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self.discard()
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._own_final is not None:
            self._own_final.shutdown(wait=False, cancel_futures=True)

    # -- internals -----------------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise PeripheralError("WhisperStreamingAsr is closed")
        if self._error is not None:
            error, self._error = self._error, None
            raise AsrError(f"a partial decode failed: {error!r}") from error

    def _audio(self) -> np.ndarray:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32)

    async def _run_partial(self, audio: np.ndarray, void: threading.Event) -> None:
        try:
            decoded = await self._decode(audio, beam_size=1, final=False, void=void)
        except asyncio.CancelledError:
            raise
        except DecodeVoided:
            return
        except Exception as exc:  # surfaced by the next push/finalize
            self._error = exc
            return
        finally:
            if self._partial_task is asyncio.current_task():
                self._partial_task = None
        update = self._policy.update(decoded.text.split())
        if update.added and self._on_partial is not None:
            self._on_partial(
                AsrPartial(
                    update.text, " ".join(update.tail), len(audio) / ASR_RATE, decoded.decode_s
                )
            )

    async def _decode(
        self,
        audio: np.ndarray,
        beam_size: int,
        final: bool = True,
        void: threading.Event | None = None,
        stock: bool = False,
    ) -> _Decoded:
        loop = asyncio.get_running_loop()
        executor = self._final_executor if final else self._executor
        cached = self._mel.snapshot() if self._mel is not None else None
        decoded = await loop.run_in_executor(
            executor, self._decode_blocking, audio, beam_size, final, void, cached, stock
        )
        if decoded.text:
            self._heard = True
        return decoded

    async def _second_decode(self, decoded: _Decoded, length: int) -> _Decoded:
        """(turn7) The final ``decoded`` (of the utterance's first ``length`` samples) again,
        as Whisper's stock decode, when the rules dropped it whole although an earlier decode
        of the utterance kept words (see ``STOCK_RETRY_MAX_S``); otherwise ``decoded``."""
        if decoded.text or not decoded.dropped or decoded.retried or not self._heard:
            return decoded
        if length / ASR_RATE + WINDOW_TAIL_S > FULL_WINDOW_S:
            return decoded
        again = await self._decode(self._audio()[:length], self._final_beam, stock=True)
        return _Decoded(again.text, decoded.decode_s + again.decode_s, again.dropped, retried=True)

    def _decode_blocking(
        self,
        audio: np.ndarray,
        beam_size: int,
        final: bool = True,
        void: threading.Event | None = None,
        cached: tuple[list[np.ndarray], int] | None = None,
        stock: bool = False,
    ) -> _Decoded:
        """One decode in a worker thread; raises ``DecodeVoided`` at a stage boundary once
        ``void`` is set (the asyncio side no longer waits for it). ``cached``: the log-mel
        frames of the utterance computed as it arrived (``LogMelStream.snapshot``).
        ``stock``: Whisper's stock decode only (the second decode of a dropped final)."""
        stop = void.is_set if void is not None else None
        if stop is not None and stop():
            raise DecodeVoided
        model = self._final_model if final else self._model
        started = time.perf_counter()
        level = rms_dbfs(audio)
        if len(audio) == 0 or level < SILENCE_FLOOR_DBFS:
            return _Decoded("", time.perf_counter() - started)
        audio_s = len(audio) / ASR_RATE
        retried = False
        if stock and audio_s + WINDOW_TAIL_S <= FULL_WINDOW_S:
            segments = [self._stock_decode(model, audio, beam_size, audio_s, stop)]
            retried = True
        elif self._window_s < FULL_WINDOW_S and audio_s + WINDOW_TAIL_S <= FULL_WINDOW_S:
            window = self._windows.get(id(model))
            if window is None:
                window = self._windows[id(model)] = _Window(
                    model, self._language, self._prompt, self._window_pad
                )
            frames = max(self._window_s, audio_s + WINDOW_TAIL_S) * MEL_FRAMES_PER_S
            segments = [
                window.decode(
                    audio, int(np.ceil(frames)), beam_size, max_tokens(audio_s), stop, cached
                )
            ]
            if (
                final
                and segments[0].text
                and not _kept(segments)
                and (audio_s <= STOCK_RETRY_MAX_S or _looped(segments[0]))  # (turn7: loops)
            ):
                segments = [self._stock_decode(model, audio, beam_size, audio_s, stop)]
                retried = True
        else:
            found, _info = model.transcribe(
                audio,
                language=self._language,
                beam_size=beam_size,
                temperature=0.0,  # no temperature fallback: it invents text on noise and costs time
                condition_on_previous_text=False,
                vad_filter=False,  # the caller gates on our own VAD
                without_timestamps=True,
                initial_prompt=self._prompt,
            )
            segments = [
                _Segment(s.text, s.no_speech_prob, s.avg_logprob, s.compression_ratio)
                for s in found
            ]
        text = _kept(segments)
        stages = segments[0].stages if len(segments) == 1 else None
        if not _plain(text):
            text = ""
        elif _plain(text) in KNOWN_HALLUCINATIONS and (
            audio_s < HALLUCINATION_MAX_S or level < HALLUCINATION_RMS_DBFS
        ):
            text = ""
        dropped = not text and any(_plain(s.text) for s in segments)
        return _Decoded(text, time.perf_counter() - started, dropped, retried, stages)

    def _stock_decode(
        self,
        model: Any,
        audio: np.ndarray,
        beam_size: int,
        audio_s: float,
        stop: Callable[[], bool] | None = None,
    ) -> _Segment:
        """Whisper's stock decode of a short utterance (faster-whisper's: the 30 s window,
        zero-valued padding), for one the short window left with nothing kept."""
        window = self._stock_windows.get(id(model))
        if window is None:
            window = self._stock_windows[id(model)] = _Window(
                model, self._language, self._prompt, "zeros"
            )
        frames = int(FULL_WINDOW_S * MEL_FRAMES_PER_S)
        return window.decode(audio, frames, beam_size, max_tokens(audio_s), stop)


def _kept(segments: list[_Segment]) -> str:
    """The text of the segments that pass the silence, likelihood and loop rules."""
    texts = [
        s.text.strip()
        for s in segments
        if not (s.no_speech_prob > NO_SPEECH_PROB and s.avg_logprob < LOGPROB_FLOOR)
        and s.avg_logprob >= LOGPROB_HARD_FLOOR
        and s.compression_ratio <= COMPRESSION_RATIO_MAX
        and not s.runaway
    ]
    return " ".join(t for t in texts if t)


def _looped(segment: _Segment) -> bool:
    """(turn7) The decode ran into a loop: the compression or runaway rule drops it."""
    return segment.runaway or segment.compression_ratio > COMPRESSION_RATIO_MAX


@dataclass(frozen=True)
class _Segment:
    """One decoded window with the scores the silence and loop rules read."""

    text: str
    no_speech_prob: float
    avg_logprob: float  # nats per token
    compression_ratio: float
    runaway: bool = False  # the decode ran into its token budget (a decoding loop)
    stages: DecodeStages | None = None


def max_tokens(audio_s: float) -> int:
    """The most tokens a decode of ``audio_s`` seconds may produce (see ``MAX_TOKENS_PER_S``)."""
    return int(MAX_TOKENS_BASE + MAX_TOKENS_PER_S * audio_s)


def _max_length(tokens: int, prompt: int, limit: int) -> int:
    """CTranslate2's Whisper ``max_length`` that lets a decode produce ``tokens`` tokens after a
    ``prompt``-token prompt: it returns at most half of ``max_length`` (measured: 10 -> 5,
    100 -> 50, 448 -> 224), so twice the tokens; never above the model's ``limit``."""
    return min(limit, 2 * tokens + prompt)


def window_features(
    extractor: Any,
    audio: np.ndarray,
    frames: int,
    pad: WindowPad = DEFAULT_WINDOW_PAD,
    cached: tuple[list[np.ndarray], int] | None = None,
) -> np.ndarray:
    """Whisper's log-mel features of ``audio`` in a window of ``frames`` frames.

    ``pad="silence"`` gives what the log-mel of ``audio`` followed by digital silence gives
    (column for column), without computing the silence: only the frames that straddle the
    audio's end are computed, the rest is the constant a silent frame takes after Whisper's
    normalisation (``max(-10, M - 8)``, shifted and scaled, with ``M`` the loudest value).
    ``pad="zeros"`` fills with zero-valued features. Audio longer than the window is cut.
    ``cached``: a ``LogMelStream`` snapshot of this audio's stream; its frames are reused
    (only those that straddle the audio's end are computed).
    """
    filters = extractor.mel_filters
    if pad == "silence":
        features = log_mel(audio, cached, filters, trailing_zeros=N_FFT)
        # (log10 value + 4) / 4 after the clip at max - 8; a silent frame's log10 value is -10
        fill = max(-1.5, float(features.max()) - 2.0)
    else:
        features = log_mel(audio, cached, filters)
        fill = 0.0
    out = np.full((features.shape[0], frames), fill, dtype=np.float32)
    used = min(frames, features.shape[1])
    out[:, :used] = features[:, :used]
    return out


class _Window:
    """One greedy/beam Whisper decode of a window shorter than 30 s.

    faster-whisper pads every window to 30 s; this does what its
    ``generate_with_fallback`` does at temperature 0 (same prompt, suppressed
    tokens, scores), but encodes only ``frames`` log-mel frames, the utterance
    followed by ``pad`` (see :func:`window_features`).
    """

    def __init__(
        self,
        model: Any,
        language: str,
        initial_prompt: str | None,
        pad: WindowPad = DEFAULT_WINDOW_PAD,
    ) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._pad: WindowPad = pad
        self._model = model
        self._tokenizer = Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=language if model.model.is_multilingual else None,
        )
        previous = self._tokenizer.encode(" " + initial_prompt.strip()) if initial_prompt else []
        self._prompt = model.get_prompt(self._tokenizer, previous, without_timestamps=True)
        self._suppress = list(get_suppressed_tokens(self._tokenizer, (-1,)) or ())

    def decode(
        self,
        audio: np.ndarray,
        frames: int,
        beam_size: int,
        max_tokens: int | None = None,
        stop: Callable[[], bool] | None = None,
        cached: tuple[list[np.ndarray], int] | None = None,
    ) -> _Segment:
        """Decode ``audio`` in a window of ``frames``; raises ``DecodeVoided`` between the
        stages (features, encoder, decoder) once ``stop()`` is true. ``cached``: the log-mel
        frames of the audio's stream computed so far (``LogMelStream.snapshot``)."""
        from faster_whisper.transcribe import get_compression_ratio

        started = time.perf_counter()
        features = window_features(self._model.feature_extractor, audio, frames, self._pad, cached)
        if stop is not None and stop():
            raise DecodeVoided
        featured = time.perf_counter()
        encoded = self._model.encode(features)
        if stop is not None and stop():
            raise DecodeVoided
        encoded_at = time.perf_counter()
        limit = self._model.max_length
        result = self._model.model.generate(
            encoded,
            [self._prompt],
            beam_size=beam_size,
            patience=1.0,
            length_penalty=1.0,
            max_length=limit
            if max_tokens is None
            else _max_length(max_tokens, len(self._prompt), limit),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens = result.sequences_ids[0]
        stages = DecodeStages(
            featured - started, encoded_at - featured, time.perf_counter() - encoded_at, len(tokens)
        )
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        text = self._tokenizer.decode(tokens).strip()
        runaway = max_tokens is not None and len(tokens) >= max_tokens - RUNAWAY_MARGIN_TOKENS
        return _Segment(
            text, result.no_speech_prob, avg_logprob, get_compression_ratio(text), runaway, stages
        )
