"""Whisper's log-mel frames of a growing utterance, computed as its audio arrives.

Each log-mel frame reads 400 samples (25 ms) around its 10 ms hop; only the final
normalisation (the clip at the loudest value - 8, the shift and scale) reads the whole
utterance. ``LogMelStream`` computes every frame as soon as its samples are in (pure numpy,
a few frames per push), so a decode at the end of speech computes only the frames that
straddle the end of the audio instead of the whole utterance (≈10 ms of a 3 s question's
decode on this CPU). ``log_mel`` joins the two into what faster-whisper's
``FeatureExtractor`` gives for the same audio (same operations, frame for frame).
"""

from __future__ import annotations

import numpy as np

N_FFT = 400  # Whisper's STFT size (samples at 16 kHz)
HOP = 160  # Whisper's hop (10 ms)
_HALF = N_FFT // 2  # the STFT is centred: frame j reads samples [j*HOP - 200, j*HOP + 200)
EXTRACTOR_PADDING = 160  # zeros faster-whisper's FeatureExtractor appends before its STFT


def final_frames(length: int) -> int:
    """Frames whose samples all lie within the first ``length`` samples (the rest read past
    the end: padding now, more audio later). Frame 0 also reads the reflection of samples
    1..200, so nothing is final before 201 samples."""
    return 0 if length <= _HALF else (length - _HALF) // HOP + 1


class LogMelStream:
    """The log10 mel energies (before Whisper's normalisation) of the frames of a stream of
    16 kHz audio, computed as it is pushed. ``snapshot()`` hands the frames so far to a
    decode in another thread (the list only grows; a snapshot is never changed)."""

    def __init__(self, mel_filters: np.ndarray) -> None:
        self._filters = np.asarray(mel_filters, dtype=np.float32)
        self._window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
        self._blocks: list[np.ndarray] = []  # (n_mels, k) blocks of final frames, in order
        self._count = 0  # final frames computed
        self._length = 0  # samples pushed
        self._head = np.zeros(0, dtype=np.float32)  # samples until the reflection is known
        # the centred (reflect-padded at the start) signal from padded index _start on
        self._padded: np.ndarray | None = None
        self._start = 0

    @property
    def frames(self) -> int:
        return self._count

    def push(self, x: np.ndarray) -> None:
        """Append 16 kHz float32 samples; computes the frames they complete."""
        x = np.asarray(x, dtype=np.float32)
        self._length += len(x)
        if self._padded is None:
            self._head = np.concatenate([self._head, x])
            if len(self._head) <= _HALF:
                return
            # numpy's "reflect" pad, as the extractor's centred STFT does
            self._padded = np.concatenate([self._head[_HALF:0:-1], self._head])
            self._head = np.zeros(0, dtype=np.float32)
        else:
            self._padded = np.concatenate([self._padded, x])
        done = final_frames(self._length)
        if done <= self._count:
            return
        block = log_mel_frames(
            self._padded,
            self._count * HOP - self._start,
            done - self._count,
            self._window,
            self._filters,
        )
        self._blocks.append(block)
        self._count = done
        drop = self._count * HOP - self._start  # the next frame starts here
        self._padded = self._padded[drop:]
        self._start += drop

    def snapshot(self) -> tuple[list[np.ndarray], int]:
        """The frames so far: (blocks, count)."""
        return list(self._blocks), self._count


def log_mel_frames(
    padded: np.ndarray, offset: int, count: int, window: np.ndarray, filters: np.ndarray
) -> np.ndarray:
    """log10 mel energies of ``count`` frames of a centred signal, the first starting at
    ``offset`` (as faster-whisper's FeatureExtractor computes them, before normalising)."""
    frames = np.lib.stride_tricks.sliding_window_view(padded[offset:], N_FFT)[::HOP][:count]
    spectrum = np.fft.rfft(frames * window, n=N_FFT, axis=-1).astype(np.complex64)
    magnitudes = (np.abs(spectrum) ** 2).T
    return np.log10(np.clip(filters @ magnitudes, a_min=1e-10, a_max=None))


def log_mel(
    audio: np.ndarray,
    cached: tuple[list[np.ndarray], int] | None,
    filters: np.ndarray,
    trailing_zeros: int = 0,
) -> np.ndarray:
    """Whisper's normalised log-mel of ``audio`` followed by ``trailing_zeros`` zeros, as
    ``FeatureExtractor()(concatenate([audio, zeros]))`` gives it, reusing the ``cached``
    frames of a ``LogMelStream`` that was pushed ``audio`` (or more of the same stream)."""
    x = np.concatenate(
        [
            np.asarray(audio, dtype=np.float32),
            np.zeros(trailing_zeros + EXTRACTOR_PADDING, np.float32),
        ]
    )
    total = (len(x) + 2 * _HALF - N_FFT) // HOP  # the extractor drops its last frame
    blocks, count = cached if cached is not None else ([], 0)
    reuse = min(count, final_frames(len(audio)), total)
    if reuse < 2:  # the first two frames read the reflection of the start
        reuse, blocks = 0, []
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    filters = np.asarray(filters, dtype=np.float32)
    if reuse == 0:
        padded = np.pad(x, (_HALF, _HALF), mode="reflect")
        fresh = log_mel_frames(padded, 0, total, window, filters)
        log_spec = fresh
    else:
        # frames from ``reuse`` on read x[reuse*HOP - 200 :] and the reflection of its end
        tail = np.pad(x[reuse * HOP - _HALF :], (0, _HALF), mode="reflect")
        fresh = log_mel_frames(tail, 0, total - reuse, window, filters)
        kept = np.concatenate(blocks, axis=1)[:, :reuse] if blocks else np.zeros((len(filters), 0))
        log_spec = np.concatenate([kept.astype(np.float32), fresh], axis=1)
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)
