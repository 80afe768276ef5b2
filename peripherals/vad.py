"""Voice activity detection: the ``Vad`` protocol, ``SileroVad`` and ``VadSegmenter``.

``SileroVad`` runs the Silero ONNX model with onnxruntime alone (no torch),
one frame at a time, carrying the recurrent state and the audio context
between calls. ``VadSegmenter`` turns per-frame probabilities into
speech-segment events with hysteresis, timed in samples of stream time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from peripherals.audio import ModelNotInstalledError, to_float32
from peripherals.models import ModelRef, resolve_vad_model

# Frame and context sizes the Silero model was trained with (samples).
_FRAME = {16000: 512, 8000: 256}  # 32 ms
_CONTEXT = {16000: 64, 8000: 32}  # 4 ms of the previous frame, prepended
_STATE_SHAPE = (2, 1, 128)  # standard model: stacked LSTM (h, c)
_HC_SHAPE = (1, 1, 128)  # faster-whisper v6 variant: separate h and c
# 2x interpolation filter for 8 kHz input to a 16 kHz-only model: 31 taps
# (windowed sinc, cutoff 4 kHz) delay the signal by 15 samples at 16 kHz
# (< 1 ms). soxr's streaming resampler releases output in ~100 ms blocks,
# far too bursty for a 32 ms VAD.
_UPSAMPLE_TAPS = 31


class _Upsampler2x:
    """Low-latency streaming 8 kHz -> 16 kHz interpolation (zero-stuff + FIR)."""

    def __init__(self) -> None:
        n = np.arange(_UPSAMPLE_TAPS) - (_UPSAMPLE_TAPS - 1) / 2
        self._taps = (np.sinc(n / 2) * np.hamming(_UPSAMPLE_TAPS)).astype(np.float32)
        self._history = np.zeros(_UPSAMPLE_TAPS - 1, dtype=np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        stuffed = np.zeros(2 * len(x), dtype=np.float32)
        stuffed[::2] = x
        y = np.concatenate([self._history, stuffed])
        self._history = y[-(_UPSAMPLE_TAPS - 1) :]
        return np.convolve(y, self._taps, mode="valid").astype(np.float32)


class Vad(Protocol):
    """Per-frame speech probability for a mono stream at ``sample_rate``.

    ``probability`` must be called with consecutive frames of exactly
    ``frame_size`` samples (float32 in [-1, 1] or int16); it is stateful.
    ``reset`` forgets the stream.
    """

    @property
    def sample_rate(self) -> int: ...

    @property
    def frame_size(self) -> int: ...

    def probability(self, frame: np.ndarray) -> float: ...

    def reset(self) -> None: ...


@runtime_checkable
class PeekingVad(Vad, Protocol):
    """A ``Vad`` that can also read the newest audio between frames without advancing:
    ``peek(recent)`` is the probability of the last ``frame_size`` samples of ``recent``
    (at least ``peek_samples`` long) from the state after the last ``probability`` frame."""

    @property
    def peek_samples(self) -> int: ...

    def peek(self, recent: np.ndarray) -> float: ...


def _session(path: str, threads: int) -> object:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelNotInstalledError(
            "SileroVad needs onnxruntime: pip install 'onnxruntime>=1.17,<2'"
        ) from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Busy-waiting threads would steal the core that ASR or TTS is using.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


def load_silero_session(model: str | ModelRef | None = None, threads: int = 1) -> object:
    """One Silero ONNX session to share among many ``SileroVad(session=...)`` streams."""
    ref = model if isinstance(model, ModelRef) else resolve_vad_model(model)
    return _session(ref.location, threads)


# Silero's recurrent state drifts over a long silence: after 20 s or more of digital
# silence (or of -70 dBFS noise) the onset of "Wait, I have another question." (piper,
# 8 and 16 kHz) first scored >= 0.5 0.6 s into the speech, against 0.04-0.08 s after 1-15 s
# of it; a fresh state scores it at once (session 15). So the state is reset once the stream
# has been quiet this long (s): every frame below ``QUIET_PROBABILITY``, well under any
# speech threshold.
RESET_AFTER_QUIET_S = 5.0
QUIET_PROBABILITY = 0.1


class SileroVad:
    """Streaming Silero VAD over onnxruntime, at 16 kHz (512-sample frames)
    or 8 kHz (256-sample frames).

    Two model layouts are supported, told apart by their input names: the
    standard model (``input``, ``state`` [2,1,128], ``sr``), which runs
    natively at both rates, and faster-whisper's v6 variant (``input``,
    ``h``, ``c``), which is 16 kHz only — at 8 kHz its input is upsampled to
    16 kHz by a short interpolation filter (under 1 ms of extra lag).

    The recurrent state is reset after ``RESET_AFTER_QUIET_S`` of quiet frames (the
    audio context is kept): else speech after a long silence is heard late.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        model: str | ModelRef | None = None,
        threads: int = 1,
        session: object | None = None,
    ) -> None:
        if sample_rate not in _FRAME:
            raise ValueError(f"SileroVad runs at 16000 or 8000 Hz, got {sample_rate}")
        ref = model if isinstance(model, ModelRef) else resolve_vad_model(model)
        self.model_path = ref.location
        # The stream's state lives in this object; an onnxruntime session is stateless
        # and thread-safe, so many streams may share one (``load_silero_session``).
        self._session = session if session is not None else _session(ref.location, threads)
        names = {i.name for i in self._session.get_inputs()}  # type: ignore[attr-defined]
        if {"input", "state", "sr"} <= names:
            self._layout: Literal["standard", "hc"] = "standard"
        elif {"input", "h", "c"} <= names:
            self._layout = "hc"
        else:
            raise ValueError(f"{ref.location} is not a Silero VAD model (inputs {sorted(names)})")
        self._rate = sample_rate
        self._model_rate = sample_rate if self._layout == "standard" else 16000
        self._upsampler = _Upsampler2x() if self._model_rate != sample_rate else None
        self._reset_after = int(RESET_AFTER_QUIET_S * self._model_rate / _FRAME[self._model_rate])
        self.reset()

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def frame_size(self) -> int:
        return _FRAME[self._rate]

    def reset(self) -> None:
        """Forget the stream: zero state and context."""
        self._reset_state()
        self._context = np.zeros(_CONTEXT[self._model_rate], dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)  # upsampled audio awaiting a model frame
        self._last_prob = 0.0
        if self._upsampler is not None:
            self._upsampler = _Upsampler2x()

    def _reset_state(self) -> None:
        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._h = np.zeros(_HC_SHAPE, dtype=np.float32)
        self._c = np.zeros(_HC_SHAPE, dtype=np.float32)
        self._quiet = 0  # model frames in a row below QUIET_PROBABILITY

    def probability(self, frame: np.ndarray) -> float:
        """Speech probability in [0, 1] of the next ``frame_size`` samples."""
        if len(frame) != self.frame_size:
            raise ValueError(f"expected a frame of {self.frame_size} samples, got {len(frame)}")
        x = to_float32(frame)
        if self._upsampler is None:
            return self._step(x)
        self._pending = np.concatenate([self._pending, self._upsampler.process(x)])
        size = _FRAME[self._model_rate]
        while len(self._pending) >= size:
            self._step(self._pending[:size])
            self._pending = self._pending[size:]
        return self._last_prob

    def _step(self, x: np.ndarray) -> float:
        """One model frame of the stream; the state is reset after a long quiet."""
        self._last_prob = self._run(x)
        self._quiet = self._quiet + 1 if self._last_prob < QUIET_PROBABILITY else 0
        if self._quiet >= self._reset_after:
            self._reset_state()
        return self._last_prob

    @property
    def peek_samples(self) -> int:
        """Samples of the newest audio :meth:`peek` needs (a frame, its context, filter room)."""
        if self._upsampler is None:
            return self.frame_size + len(self._context)
        return self.frame_size + (len(self._context) + _UPSAMPLE_TAPS) // 2 + 1

    def peek(self, recent: np.ndarray) -> float:
        """Speech probability of the newest ``frame_size`` samples of ``recent`` (at least
        :attr:`peek_samples` long), read with the state after the last :meth:`probability`
        frame. The stream is left as it was: a look at audio that does not end on the frame
        grid, for a listener that wants the newest sound sooner than the next frame."""
        x = to_float32(recent)
        if len(x) < self.peek_samples:
            raise ValueError(f"peek needs {self.peek_samples} samples, got {len(x)}")
        if self._upsampler is not None:
            x = _Upsampler2x().process(x)
        size, context = _FRAME[self._model_rate], len(self._context)
        return self._run(x[-size:], x[-size - context : -size], keep=False)

    def _run(self, x: np.ndarray, context: np.ndarray | None = None, keep: bool = True) -> float:
        """One model step on frame ``x`` (after ``context``, default the stream's); ``keep``
        False leaves the stream's state and context untouched."""
        window = np.concatenate([self._context if context is None else context, x])[np.newaxis, :]
        if keep:
            self._context = x[-len(self._context) :].copy()
        run = self._session.run  # type: ignore[attr-defined]
        if self._layout == "standard":
            out, state = run(
                None,
                {
                    "input": window,
                    "state": self._state,
                    "sr": np.array(self._model_rate, dtype=np.int64),
                },
            )
            if keep:
                self._state = state
        else:
            out, h, c = run(None, {"input": window, "h": self._h, "c": self._c})
            if keep:
                self._h, self._c = h, c
        return float(np.asarray(out).reshape(-1)[0])


@dataclass(frozen=True)
class SpeechStarted:
    """Speech began at ``t`` seconds of stream time (sample ``sample``)."""

    t: float
    sample: int
    type: Literal["SpeechStarted"] = field(default="SpeechStarted", init=False)


@dataclass(frozen=True)
class SpeechPaused:
    """Suspected end: the first frame below the end threshold after speech
    starts at ``t``. Emitted at once, so a final ASR decode can start early."""

    t: float
    sample: int
    type: Literal["SpeechPaused"] = field(default="SpeechPaused", init=False)


@dataclass(frozen=True)
class SpeechResumed:
    """Speech came back at ``t`` before the pause became an end."""

    t: float
    sample: int
    type: Literal["SpeechResumed"] = field(default="SpeechResumed", init=False)


@dataclass(frozen=True)
class SpeechEnded:
    """The segment ended at ``t`` (where its final silence began); emitted
    once that silence has lasted ``min_silence_s``."""

    t: float
    sample: int
    type: Literal["SpeechEnded"] = field(default="SpeechEnded", init=False)


VadEvent = SpeechStarted | SpeechPaused | SpeechResumed | SpeechEnded


class VadSegmenter:
    """Speech segments from a ``Vad``, for audio chunks of any length.

    Hysteresis: speech starts on a frame with probability ≥ ``start_threshold``
    and is confirmed once it has lasted ``min_speech_s`` without a frame below
    ``end_threshold`` (``SpeechStarted`` then carries the first frame's time);
    while speaking, the first frame below ``end_threshold`` emits
    ``SpeechPaused``, dated at the end of the last frame ≥ ``start_threshold``
    (the model's probability lags the audio by a frame or two); a frame ≥ ``start_threshold`` before ``min_silence_s`` of
    pause emits ``SpeechResumed``; otherwise ``SpeechEnded`` follows with the
    pause's start time. Times are frame boundaries, in seconds of stream time
    (samples fed / sample rate). Events come in the order
    Started (Paused (Resumed | Ended))*.
    """

    def __init__(
        self,
        vad: Vad,
        *,
        start_threshold: float = 0.5,  # Silero's recommended speech threshold (probability)
        end_threshold: float = 0.35,  # 0.15 below start: hysteresis against flicker (probability)
        min_speech_s: float = 0.1,  # shorter bursts (clicks, breaths) are not speech (seconds)
        min_silence_s: float = 0.5,  # pause that ends a turn; shorter ones are within it (seconds)
    ) -> None:
        if not 0.0 < end_threshold <= start_threshold < 1.0:
            raise ValueError("need 0 < end_threshold <= start_threshold < 1")
        self.vad = vad
        self.start_threshold = start_threshold
        self.end_threshold = end_threshold
        rate = vad.sample_rate
        self._min_speech = int(round(min_speech_s * rate))
        self._min_silence = int(round(min_silence_s * rate))
        self._buffer = np.zeros(0, dtype=np.float32)
        self._position = 0  # samples of stream consumed into frames
        self._candidate: int | None = None  # start sample of unconfirmed speech
        self._speaking = False
        self._pause: int | None = None  # start sample of the current pause
        self._confident_end = 0  # end sample of the last frame >= start_threshold
        self._extra_silence = 0  # samples added to the current pause's min silence
        self.last_probability = 0.0
        # The newest audio, for a look at the tail between frames (tail_quiet).
        self._peek_need = vad.peek_samples if isinstance(vad, PeekingVad) else 0
        self._recent = np.zeros(0, dtype=np.float32)

    @property
    def speaking(self) -> bool:
        """True between ``SpeechStarted`` and ``SpeechEnded`` (pauses included)."""
        return self._speaking

    @property
    def onset_pending(self) -> bool:
        """A frame reached ``start_threshold`` and awaits ``min_speech_s`` to confirm it.

        The earliest sign of speech (a frame or two after its onset): a
        listener that must react at once (pause playback) reads it; it turns
        into ``SpeechStarted`` or goes back to False without an event.
        """
        return self._candidate is not None

    def extend_pause(self, seconds: float) -> None:
        """Require ``seconds`` more silence before the current pause ends the segment.

        For a caller that knows the speech is probably unfinished (e.g. its
        transcript so far ends with a comma). Applies to the current pause
        only; the next pause starts from ``min_silence_s`` again.
        """
        if self._pause is not None:
            self._extra_silence = int(round(seconds * self.vad.sample_rate))

    def set_pause_silence(self, seconds: float) -> None:
        """Make the current pause end the segment once it has lasted ``seconds`` in all.

        For an end-of-turn decision made during the pause (a turn model, the
        transcript so far): shorter than ``min_silence_s`` ends it sooner (at
        the next frame if that much silence has passed already), longer
        waits more. Applies to the current pause only, like :meth:`extend_pause`.
        """
        if self._pause is not None:
            self._extra_silence = int(round(seconds * self.vad.sample_rate)) - self._min_silence

    @property
    def pause_silence_s(self) -> float | None:
        """Seconds the current pause has lasted (None outside a pause)."""
        if self._pause is None:
            return None
        return (self._position - self._pause) / self.vad.sample_rate

    @property
    def time(self) -> float:
        """Stream time analysed so far, in seconds."""
        return self._position / self.vad.sample_rate

    @property
    def fed_samples(self) -> int:
        """Samples fed so far (frames analysed plus those waiting for a whole frame)."""
        return self._position + len(self._buffer)

    @property
    def speech_end_sample(self) -> int:
        """While speaking: the end of the last frame at or above ``start_threshold`` (where a
        pause would be dated)."""
        return self._confident_end

    def tail_quiet(self, below: float | None = None) -> bool:
        """Speech goes on by the frames (no pause yet), but the newest audio already reads as
        silence: the VAD's probability of the last ``frame_size`` samples fed, which end
        between two frames, is below ``below`` (default ``end_threshold``; read without
        advancing the stream).

        A frame grid of 32 ms sees the end of speech a frame late; this look sees it as soon
        as the newest samples are quiet (~35 ms sooner on average), for a listener that may
        start work early and drop it if the speech goes on (the ASR's end-of-turn decode).
        False when the VAD cannot peek, outside speech, in a pause, or on the frame grid
        (the last frame's own probability is then the newest word).
        """
        if (
            not self._peek_need
            or not self._speaking
            or self._pause is not None
            or not len(self._buffer)
            or len(self._recent) < self._peek_need
        ):
            return False
        assert isinstance(self.vad, PeekingVad)
        return self.vad.peek(self._recent) < (self.end_threshold if below is None else below)

    def process(self, samples: np.ndarray) -> list[VadEvent]:
        """Feed the next chunk (float32 or int16 at the VAD's rate); returns new events."""
        x = to_float32(samples)
        if self._peek_need:
            self._recent = np.concatenate([self._recent, x])[-self._peek_need :]
        self._buffer = np.concatenate([self._buffer, x])
        size = self.vad.frame_size
        events: list[VadEvent] = []
        n = len(self._buffer) // size
        for i in range(n):
            prob = self.vad.probability(self._buffer[i * size : (i + 1) * size])
            self.last_probability = prob
            events.extend(self._step(prob, self._position, self._position + size))
            self._position += size
        self._buffer = self._buffer[n * size :]
        return events

    def _event(self, cls: type[VadEvent], sample: int) -> VadEvent:
        return cls(t=sample / self.vad.sample_rate, sample=sample)

    def _step(self, prob: float, start: int, end: int) -> list[VadEvent]:
        if not self._speaking:
            if self._candidate is None:
                if prob >= self.start_threshold:
                    self._candidate = start
            elif prob < self.end_threshold:
                self._candidate = None
            if self._candidate is not None and end - self._candidate >= self._min_speech:
                self._speaking, self._pause, self._confident_end = True, None, end
                started = self._candidate
                self._candidate = None
                return [self._event(SpeechStarted, started)]
            return []
        if self._pause is None:
            if prob >= self.start_threshold:
                self._confident_end = end
            elif prob < self.end_threshold:
                # The pause began where the model was last confident, not where
                # its (lagging) probability crossed the lower threshold.
                self._pause = self._confident_end
                return [self._event(SpeechPaused, self._pause)]
            return []
        if prob >= self.start_threshold:
            self._pause, self._confident_end, self._extra_silence = None, end, 0
            return [self._event(SpeechResumed, start)]
        if end - self._pause >= self._min_silence + self._extra_silence:
            ended, self._speaking, self._pause = self._pause, False, None
            self._extra_silence = 0
            return [self._event(SpeechEnded, ended)]
        return []

    def flush(self) -> list[VadEvent]:
        """End of stream: close an open segment (at its pause, or at the stream end)."""
        self._candidate = None
        if not self._speaking:
            return []
        events: list[VadEvent] = []
        if self._pause is None:
            self._pause = self._position
            events.append(self._event(SpeechPaused, self._position))
        events.append(self._event(SpeechEnded, self._pause))
        self._speaking, self._pause = False, None
        return events

    def reset(self) -> None:
        """Forget the stream (and reset the VAD); stream time restarts at 0."""
        self.vad.reset()
        self._buffer = np.zeros(0, dtype=np.float32)
        self._recent = np.zeros(0, dtype=np.float32)
        self._position = 0
        self._candidate = None
        self._speaking = False
        self._pause = None
        self._confident_end = 0
