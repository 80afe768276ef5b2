"""The pitch contour at the end of an utterance (``peripherals.prosody.final_contour``): glides
of known direction in voices of known pitch, at 16 kHz and on the 8 kHz phone path, and real
speech whose clause ends on a comma (a continuation rise) or a full stop."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from speech_helpers import audible_span, espeak

from peripherals import g711
from peripherals.prosody import final_contour
from peripherals.resample import resample

RATE = 16000


def voiced(f0: np.ndarray, rate: int = RATE) -> np.ndarray:
    """A voice-like harmonic complex following the per-sample pitch ``f0`` (Hz)."""
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum((0.6**k) * np.sin(k * phase) for k in range(1, 8))
    return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


def glide(base_hz: float, end_semitones: float, steady_s: float = 0.8, glide_s: float = 0.3):
    """``steady_s`` at ``base_hz``, then a glide of ``end_semitones`` over ``glide_s``, then
    0.25 s of silence (the pause the decision is made in)."""
    steady = np.full(int(steady_s * RATE), base_hz)
    ramp = base_hz * 2 ** (np.linspace(0, end_semitones, int(glide_s * RATE)) / 12)
    x = voiced(np.concatenate([steady, ramp]))
    return np.concatenate([x, np.zeros(int(0.25 * RATE), dtype=np.float32)])


def phone(x: np.ndarray) -> np.ndarray:
    return g711.round_trip(resample(x, RATE, 8000), "mulaw")


@pytest.mark.parametrize("base_hz", [95.0, 210.0])  # a low and a high voice
@pytest.mark.parametrize("rate", [16000, 8000])
def test_a_final_rise_and_a_final_fall_are_told_apart_in_any_voice(base_hz, rate):
    rise, fall = glide(base_hz, +5), glide(base_hz, -5)
    if rate == 8000:
        rise, fall = phone(rise), phone(fall)
    up, down = final_contour(rise, rate), final_contour(fall, rate)
    assert up is not None and down is not None
    # 5 semitones in 0.3 s is ~17 st/s; the last 200 ms of voicing are on the glide
    assert up.end_slope > 8 and down.end_slope < -8, (up, down)
    assert up.end_semitones > 1 and down.end_semitones < -1, (up, down)


def test_the_contour_is_relative_to_the_speaker_not_absolute():
    low, high = final_contour(glide(95.0, -4), RATE), final_contour(glide(210.0, -4), RATE)
    assert low is not None and high is not None
    assert low.end_semitones == pytest.approx(high.end_semitones, abs=0.6)
    assert low.end_slope == pytest.approx(high.end_slope, rel=0.3)


def test_too_little_voicing_gives_no_contour():
    assert final_contour(np.zeros(RATE, dtype=np.float32), RATE) is None
    noise = np.random.default_rng(3).standard_normal(RATE).astype(np.float32) * 0.1
    assert final_contour(noise, RATE) is None
    short = voiced(np.full(int(0.06 * RATE), 150.0))  # 60 ms of voicing
    assert final_contour(short, RATE) is None


def _espeak(text: str, voice: str) -> np.ndarray:
    y = espeak(text, voice, wpm=160, rate=RATE)
    _, end = audible_span(y)
    return np.concatenate([y[:end], np.zeros(int(0.25 * RATE), dtype=np.float32)])


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (Debian) not installed")
@pytest.mark.parametrize("voice", ["en-us+m3", "en-gb+f3"])
def test_a_clause_cut_at_its_comma_rises_where_the_full_sentence_falls(voice):
    """espeak-ng gives a comma its continuation rise and a full stop its fall: the same
    words, two endings (what a caller's "..., so" versus "." sounds like)."""
    comma = final_contour(_espeak("We moved to a new flat in the spring,", voice), RATE)
    stop = final_contour(_espeak("We moved to a new flat in the spring.", voice), RATE)
    assert comma is not None and stop is not None
    assert comma.end_slope > stop.end_slope + 10, (comma, stop)
    assert comma.end_slope > 8 > -8 > stop.end_slope, (comma, stop)
