"""How an utterance ended, from its pitch and level: the prosodic cues of an end of turn.

A finished statement usually ends on a *final fall*: the pitch drops below the
speaker's own middle and the level fades over the last syllable. A speaker who
holds the floor ("so the thing is, ...", "I'd like to change ...") tends to stay
level or rise at the pause. :func:`final_contour` measures that, speaker-relative
(semitones from the utterance's own median pitch, dB from its own loud part), so a
high or a low voice, a loud or a quiet line read the same.

Pitch is tracked on the audio resampled to 8 kHz (every caller's path has that
band, the phone path included) with a normalised autocorrelation (the YIN
difference function) in 40 ms frames every 10 ms, 60–400 Hz. Only the last
``LOOKBACK_S`` seconds of speech are analysed: a few milliseconds of numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from peripherals.audio import to_float32

PITCH_RATE = 8000  # Hz the pitch is tracked at (the phone band; cheap)
FRAME_S = 0.04  # analysis window (two periods of a 60 Hz voice... nearly three)
HOP_S = 0.01
F0_MIN_HZ = 60.0
F0_MAX_HZ = 400.0
YIN_THRESHOLD = 0.25  # a frame is voiced when its difference function dips below this
VOICED_LEVEL_DB = -30.0  # and it is within 30 dB of the utterance's loud frames
LOOKBACK_S = 3.0  # seconds of speech before the pause that are analysed
END_WINDOW_S = 0.2  # the "end": voiced frames in the last 200 ms of voicing
SILENT_DB = -60.0  # loudest frames below this (dB re full scale): nothing was said
MIN_VOICED_FRAMES = 12  # fewer voiced frames (120 ms) than this: no contour


@dataclass(frozen=True)
class Contour:
    """How the speech before a pause ended, relative to the same speaker's last seconds.

    ``end_semitones``: the median pitch of the last voiced 200 ms minus the median
    pitch of the analysed speech (negative: it ended low, a final fall).
    ``end_slope``: semitones per second over that last 200 ms (negative: falling).
    ``end_level_db``: the level of the last 100 ms of speech relative to the loud
    frames (90th percentile) of the analysed speech (negative: it faded).
    """

    end_semitones: float
    end_slope: float
    end_level_db: float
    voiced_frames: int


def _frames(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    if len(x) < size:
        return np.zeros((0, size), dtype=np.float32)
    n = 1 + (len(x) - size) // hop
    idx = np.arange(size)[None, :] + hop * np.arange(n)[:, None]
    return x[idx]


def _yin_f0(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the f0 (Hz, nan when unvoiced) and the difference function's minimum."""
    size = frames.shape[1]
    lag_min = int(PITCH_RATE / F0_MAX_HZ)
    lag_max = min(int(PITCH_RATE / F0_MIN_HZ), size // 2)
    w = size - lag_max
    f = frames - frames.mean(axis=1, keepdims=True)
    # d(tau) = sum (x[t] - x[t+tau])^2 over the first w samples, via FFT cross-correlation.
    n = 1 << int(np.ceil(np.log2(size + w)))
    spec_full = np.fft.rfft(f, n)
    spec_head = np.fft.rfft(f[:, :w], n)
    cross = np.fft.irfft(spec_full * np.conj(spec_head), n)[:, : lag_max + 1]
    sq = np.cumsum(np.concatenate([np.zeros((len(f), 1)), f**2], axis=1), axis=1)
    energy_head = sq[:, w][:, None]
    lags = np.arange(lag_max + 1)
    energy_shift = sq[:, lags + w] - sq[:, lags]
    d = energy_head + energy_shift - 2 * cross
    d[:, 0] = 0.0
    cum = np.cumsum(d[:, 1:], axis=1) / np.arange(1, lag_max + 1)[None, :]
    cmnd = np.ones_like(d)
    cmnd[:, 1:] = d[:, 1:] / np.maximum(cum, 1e-12)
    search = cmnd[:, lag_min : lag_max + 1]
    best = np.argmin(search, axis=1)
    minimum = search[np.arange(len(search)), best]
    # the first dip below the threshold, not the deepest (octave errors)
    below = search < YIN_THRESHOLD
    first = np.where(below.any(axis=1), below.argmax(axis=1), best)
    # walk to the local minimum after the first dip
    lag = first.copy()
    for i in range(len(lag)):
        j = lag[i]
        while j + 1 < search.shape[1] and search[i, j + 1] < search[i, j]:
            j += 1
        lag[i] = j
    tau = (lag + lag_min).astype(np.float64)
    f0 = np.where(minimum < YIN_THRESHOLD, PITCH_RATE / tau, np.nan)
    return f0, minimum


def final_contour(audio: np.ndarray, sample_rate: int) -> Contour | None:
    """The contour of the speech that ends ``audio`` (trailing silence is skipped), or
    None when there is too little voiced speech to tell."""
    x = to_float32(np.asarray(audio))
    x = x[-int((LOOKBACK_S + 2.0) * sample_rate) :]
    if sample_rate != PITCH_RATE:
        from peripherals.resample import resample

        x = resample(x, sample_rate, PITCH_RATE)
    size, hop = int(FRAME_S * PITCH_RATE), int(HOP_S * PITCH_RATE)
    frames = _frames(x.astype(np.float64), size, hop)
    if len(frames) < MIN_VOICED_FRAMES:
        return None
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.percentile(level, 95)
    if loud < SILENT_DB:
        return None
    speech = np.nonzero(level > loud - 35.0)[0]
    if not len(speech):
        return None
    last = speech[-1]
    first = max(0, last - int(LOOKBACK_S / HOP_S))
    frames, level = frames[first : last + 1], level[first : last + 1]
    f0, _ = _yin_f0(frames)
    ref = np.percentile(level, 90)
    f0[level < ref + VOICED_LEVEL_DB] = np.nan
    voiced = np.nonzero(~np.isnan(f0))[0]
    if len(voiced) < MIN_VOICED_FRAMES:
        return None
    st = 12 * np.log2(f0 / np.nanmedian(f0))
    # drop octave jumps against the running median (one-frame errors)
    st[np.abs(st - np.nanmedian(st)) > 9] = np.nan
    voiced = np.nonzero(~np.isnan(st))[0]
    if len(voiced) < MIN_VOICED_FRAMES:
        return None
    end_frames = voiced[voiced >= voiced[-1] - int(END_WINDOW_S / HOP_S)]
    end_st = float(np.median(st[end_frames]) - np.median(st[voiced]))
    if len(end_frames) >= 3:
        t = end_frames * HOP_S
        slope = float(np.polyfit(t, st[end_frames], 1)[0])
    else:
        slope = 0.0
    tail = level[-int(0.1 / HOP_S) :]
    end_level = float(np.mean(tail) - ref)
    return Contour(round(end_st, 2), round(slope, 1), round(end_level, 1), len(voiced))
