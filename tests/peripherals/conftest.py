"""Shared fixtures for the peripherals tests: real speech synthesised with piper."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from portaudio_fakes import StuckPortAudioStream, install_stuck_streams

from peripherals.resample import resample


@dataclass(frozen=True)
class Speech:
    """Synthesised speech padded with silence, and where the speech really is."""

    samples: np.ndarray  # float32
    sample_rate: int
    start_s: float  # first audible sample
    end_s: float  # last audible sample
    text: str


@functools.cache
def _voice():  # type: ignore[no-untyped-def]
    from piper import PiperVoice

    from peripherals.models import resolve_tts_voice

    ref = resolve_tts_voice()
    return PiperVoice.load(ref.model_path, ref.config_path)


@functools.cache
def _native(text: str) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    # No noise: piper samples durations and voice at random by default, so a test's caller
    # sounded different on every run (a CI run's "Where is my order?" scored 0.19 once).
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(_voice().synthesize(text, syn_config=config))
    return np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32), chunks[
        0
    ].sample_rate


def make_speech(
    text: str, rate: int, before_s: float = 1.0, after_s: float = 1.5, gain: float = 0.5
) -> Speech:
    audio, native = _native(text)
    x = resample(audio, native, rate) * gain
    audible = np.nonzero(np.abs(x) > 0.02 * np.max(np.abs(x)))[0]
    pad_before = np.zeros(int(before_s * rate), dtype=np.float32)
    pad_after = np.zeros(int(after_s * rate), dtype=np.float32)
    return Speech(
        samples=np.concatenate([pad_before, x, pad_after]).astype(np.float32),
        sample_rate=rate,
        start_s=before_s + audible[0] / rate,
        end_s=before_s + audible[-1] / rate,
        text=text,
    )


@pytest.fixture(scope="session")
def speech_factory():  # type: ignore[no-untyped-def]
    return make_speech


@pytest.fixture
def stuck_streams(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[StuckPortAudioStream]]:
    """``AudioInput``/``AudioOutput`` open fakes of a stuck PortAudio stream
    (``portaudio_fakes``): the streams opened, each released at the end."""
    streams = install_stuck_streams(monkeypatch)
    yield streams
    for stream in streams:
        stream.release()
