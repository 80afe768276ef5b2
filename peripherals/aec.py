"""Acoustic echo cancellation: ``EchoCanceller`` / ``WebRtcEchoCanceller`` (livekit), ``NullEchoCanceller``.

An echo canceller removes from the microphone signal (near end) what the
speaker played (far end) after it came back through the room, and keeps the
rest — the user's voice, even while the agent talks. It is the full-duplex
alternative to ``peripherals.half_duplex.HalfDuplexGate``.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import numpy as np

from peripherals.audio import PeripheralError, to_float32, to_int16

_PIP_LIVEKIT = "pip install 'livekit>=1.1,<2'"

# WebRTC's audio processing module works on 10 ms frames at these rates only (Hz).
APM_SAMPLE_RATES = (8000, 16000, 32000, 48000)
FRAME_S = 0.01  # the APM's frame length (seconds); buffering adds at most this much latency


class EchoCancellerUnavailableError(PeripheralError):
    """The package that implements the echo canceller is not installed; the
    message names the pip command that installs it."""


class EchoCanceller(Protocol):
    """Removes the echo of played audio from microphone audio, as a stream.

    Audio is mono ``float32`` in [-1, 1] or ``int16`` at ``sample_rate``, in
    chunks of any length. Both directions are continuous streams that must
    advance together in real time:

    - ``note_played(samples)``: the far end — exactly what the speaker plays,
      as it is handed to the device, silence included (feed zeros while
      nothing plays, so the two streams stay in step).
    - ``process_mic(samples)``: the near end — microphone audio in; returns
      the cleaned audio completed so far, in the input's dtype. Samples are
      returned in order, none dropped or repeated; the output may lag the
      input by less than one 10 ms frame (with chunks that are multiples of
      10 ms, output length equals input length and nothing lags).

    Threading: ``note_played`` may be called from the audio output callback
    thread and ``process_mic`` from the audio input callback thread at the
    same time; each call is short and non-blocking apart from an internal
    lock held for one frame's processing.
    """

    @property
    def sample_rate(self) -> int: ...

    def note_played(self, samples: np.ndarray) -> None: ...

    def process_mic(self, samples: np.ndarray) -> np.ndarray: ...

    def close(self) -> None:
        """Release what the canceller holds (idempotent). Afterwards ``process_mic``
        returns its input unchanged and ``note_played`` ignores it."""


def _mono(samples: np.ndarray) -> np.ndarray:
    if samples.ndim != 1:
        raise ValueError(f"echo canceller needs mono 1-D samples, got shape {samples.shape}")
    return samples


class NullEchoCanceller:
    """An ``EchoCanceller`` that cancels nothing: ``process_mic`` returns its
    input unchanged (the same array) and ``note_played`` is ignored."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self._sample_rate = sample_rate

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def note_played(self, samples: np.ndarray) -> None:
        _mono(samples)

    def process_mic(self, samples: np.ndarray) -> np.ndarray:
        return _mono(samples)

    def close(self) -> None:
        """Nothing to release."""


class _FrameBuffer:
    """Collects int16 samples and hands them out as whole frames (not thread-safe)."""

    def __init__(self, frame_size: int) -> None:
        self._frame_size = frame_size
        self._pending = np.zeros(0, dtype=np.int16)

    def frames(self, samples: np.ndarray) -> list[np.ndarray]:
        """Append ``samples`` and take every complete frame; the rest waits."""
        data = np.concatenate([self._pending, to_int16(samples)])
        whole = len(data) - len(data) % self._frame_size
        self._pending = data[whole:]
        return [data[i : i + self._frame_size] for i in range(0, whole, self._frame_size)]


class WebRtcEchoCanceller:
    """``EchoCanceller`` on WebRTC's audio processing module (AEC3), as
    shipped by the LiveKit Python SDK (``livekit.rtc.AudioProcessingModule``).

    Echo cancellation and a high-pass filter are always on; automatic gain
    control is off (it would change the levels the VAD is tuned for).
    ``noise_suppression`` adds WebRTC's noise suppressor: off by default,
    because on clean speech it cost Whisper words while the user talked over
    the agent (tests/peripherals/test_periph_aec.py; see docs/audio.md).

    ``stream_delay_ms`` is the hint WebRTC takes for the delay between a
    sample passed to ``note_played`` and its echo reaching ``process_mic``
    (output buffering + acoustic path + input buffering). ``None`` gives no
    hint: AEC3 finds the delay itself (measured here: the same cancellation
    with or without a correct hint).

    The APM needs exactly 10 ms frames: both directions are buffered into
    frames internally (see ``EchoCanceller`` for the latency contract). One
    lock serialises the APM calls and the buffers, so the two directions may
    be fed from the two audio callback threads. Processing costs well under
    a millisecond of CPU per 10 ms frame (about 0.05 ms at 16 kHz measured here).

    Raises ``EchoCancellerUnavailableError`` when ``livekit`` is missing and
    ``ValueError`` for a sample rate WebRTC does not support.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        *,
        noise_suppression: bool = False,
        stream_delay_ms: int | None = None,
    ) -> None:
        if sample_rate not in APM_SAMPLE_RATES:
            raise ValueError(
                f"WebRtcEchoCanceller supports sample rates {APM_SAMPLE_RATES}, got {sample_rate}"
            )
        if stream_delay_ms is not None and stream_delay_ms < 0:
            raise ValueError(f"stream_delay_ms must be >= 0, got {stream_delay_ms}")
        try:
            from livekit import rtc
        except (ImportError, OSError) as exc:  # OSError: its native library cannot load
            raise EchoCancellerUnavailableError(
                f"WebRtcEchoCanceller needs the livekit package (WebRTC audio processing): {_PIP_LIVEKIT}"
            ) from exc
        self._rtc: Any = rtc
        self._apm: Any = rtc.AudioProcessingModule(
            echo_cancellation=True,
            noise_suppression=noise_suppression,
            high_pass_filter=True,
            auto_gain_control=False,
        )
        self._sample_rate = sample_rate
        self._frame_size = int(sample_rate * FRAME_S)
        self._stream_delay_ms = stream_delay_ms
        self._played = _FrameBuffer(self._frame_size)
        self._mic = _FrameBuffer(self._frame_size)
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def frame_size(self) -> int:
        """Samples per 10 ms frame at ``sample_rate``."""
        return self._frame_size

    def _frame(self, frame: np.ndarray) -> Any:
        return self._rtc.AudioFrame(bytearray(frame.tobytes()), self._sample_rate, 1, len(frame))

    def note_played(self, samples: np.ndarray) -> None:
        """Feed far-end audio as it is played (any length; safe from the output callback)."""
        _mono(samples)
        with self._lock:
            if self._apm is None:
                return
            for frame in self._played.frames(samples):
                self._apm.process_reverse_stream(self._frame(frame))

    def process_mic(self, samples: np.ndarray) -> np.ndarray:
        """Cancel echo from microphone audio (any length; safe from the input callback).

        Returns the cleaned samples completed so far in the input's dtype
        (float32 for float input), possibly fewer or more than given: at most
        one 10 ms frame waits inside for the rest of its samples.
        """
        _mono(samples)
        cleaned: list[np.ndarray] = []
        with self._lock:
            if self._apm is None:
                return samples
            for frame in self._mic.frames(samples):
                audio_frame = self._frame(frame)
                if self._stream_delay_ms is not None:
                    self._apm.set_stream_delay_ms(self._stream_delay_ms)
                self._apm.process_stream(audio_frame)  # in place
                cleaned.append(np.frombuffer(audio_frame.data, dtype=np.int16).copy())
        out = np.concatenate(cleaned) if cleaned else np.zeros(0, dtype=np.int16)
        return out if samples.dtype == np.int16 else to_float32(out)

    def close(self) -> None:
        """Release the WebRTC module now, while livekit's native library is still loaded
        (idempotent). Left to the interpreter's exit, its handle is dropped after the
        library was shut down, and livekit prints an ``AssertionError`` traceback."""
        with self._lock:
            self._apm = None
