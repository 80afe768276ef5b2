"""Whisper-style log-mel features in numpy (the input of Smart Turn v3).

The same computation as Hugging Face's ``WhisperFeatureExtractor`` (80 Slaney
mel bands, 25 ms periodic-Hann windows every 10 ms, centred with reflect
padding, power spectrum, log10, clamped to 8 decades below the maximum, then
scaled to about [-1, 1]), written from its published behaviour so that the
turn model needs neither ``transformers`` nor ``pipecat``. Checked against
Pipecat's vendored copy to float32 precision (tests/peripherals/test_periph_mel.py).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MEL_RATE = 16000  # Hz: the rate the features are defined at
N_FFT = 400  # samples: 25 ms analysis window
HOP = 160  # samples: 10 ms between frames
N_MELS = 80
_FLOOR = 1e-10  # power floor before the log (avoids log(0))
_NORM_EPS = 1e-7  # variance floor of the waveform normalisation
_DYNAMIC_RANGE = 8.0  # decades of log10 power kept below the maximum


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    step = np.log(6.4) / 27.0
    return np.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / step)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    step = np.log(6.4) / 27.0
    return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp(step * (m - 15.0)))


@functools.cache
def mel_filterbank() -> np.ndarray:
    """Triangular, area-normalised (Slaney) filters, shape ``(N_FFT // 2 + 1, N_MELS)``."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(MEL_RATE / 2), N_MELS + 2))
    bins = np.linspace(0, MEL_RATE // 2, N_FFT // 2 + 1)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower[None, :]) / (centre - lower)[None, :]
    falling = (upper[None, :] - bins[:, None]) / (upper - centre)[None, :]
    tri = np.maximum(0.0, np.minimum(rising, falling))
    return tri * (2.0 / (upper - lower))[None, :]


@functools.cache
def _window() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window


def log_mel(audio: np.ndarray, n_samples: int, *, normalize: bool = True) -> np.ndarray:
    """Features of ``audio`` (mono, 16 kHz) zero-padded or cut to ``n_samples``.

    Returns float32 of shape ``(N_MELS, n_samples // HOP)``. ``normalize``
    scales the (padded) waveform to zero mean and unit variance first, as the
    Smart Turn feature extractor does.
    """
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio, got shape {audio.shape}")
    x = np.zeros(n_samples, dtype=np.float32)
    take = min(len(audio), n_samples)
    x[:take] = audio[:take]
    if normalize:
        x = (x - x.mean()) / np.sqrt(x.var() + _NORM_EPS)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _window(), axis=-1)) ** 2  # (frames, bins)
    mel = np.maximum(_FLOOR, power @ mel_filterbank()).T  # (N_MELS, frames)
    logs = np.log10(mel)[:, :-1]  # the centred STFT has one frame more than n_samples // HOP
    logs = np.maximum(logs, logs.max() - _DYNAMIC_RANGE)
    return ((logs + 4.0) / 4.0).astype(np.float32)
