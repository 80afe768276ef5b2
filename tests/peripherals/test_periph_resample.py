"""Resampling (soxr) and sample-format conversions."""

from __future__ import annotations

import numpy as np
import pytest

from peripherals.audio import rms_dbfs, to_float32, to_int16
from peripherals.resample import Resampler, resample

RATES = [8000, 16000, 22050, 24000, 48000]


def tone(freq: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@pytest.mark.parametrize("src", RATES)
@pytest.mark.parametrize("dst", RATES)
def test_one_shot_keeps_length_ratio_and_pitch(src: int, dst: int) -> None:
    out = resample(tone(440, src), src, dst)
    assert abs(len(out) - dst) <= 1
    assert out.dtype == np.float32
    assert abs(peak_hz(out, dst) - 440) < 2


@pytest.mark.parametrize(("src", "dst"), [(22050, 16000), (16000, 48000), (48000, 8000)])
def test_streaming_matches_one_shot_length(src: int, dst: int) -> None:
    x = tone(300, src, 2.0)
    resampler = Resampler(src, dst)
    rng = np.random.default_rng(3)
    pieces, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 2000))
        pieces.append(resampler.process(x[i : i + n]))
        i += n
    pieces.append(resampler.flush())
    out = np.concatenate(pieces)
    assert abs(len(out) - 2 * dst) <= 2
    assert abs(peak_hz(out, dst) - 300) < 2


def test_int16_in_int16_out_and_equal_rates_pass_through() -> None:
    x = to_int16(tone(440, 16000))
    assert resample(x, 16000, 8000).dtype == np.int16
    assert Resampler(16000, 8000).process(x).dtype == np.int16
    assert resample(x, 16000, 16000) is x


def test_conversions_round_trip_and_clip() -> None:
    x = np.array([0.0, 0.5, -0.5, 1.5, -1.5], dtype=np.float32)
    pcm = to_int16(x)
    assert pcm.tolist() == [0, 16384, -16384, 32767, -32768]
    assert np.allclose(to_float32(pcm)[:3], x[:3], atol=1e-4)
    assert rms_dbfs(np.zeros(10, dtype=np.float32)) == -120.0
    assert abs(rms_dbfs(np.ones(10, dtype=np.float32)) - 0.0) < 1e-6
