"""Whisper's log-mel computed as the audio arrives (``peripherals.log_mel``) is faster-whisper's
own, frame for frame, whatever the pieces the audio came in and wherever a decode cuts it."""

from __future__ import annotations

import numpy as np
import pytest
from faster_whisper.feature_extractor import FeatureExtractor
from hypothesis import given, settings
from hypothesis import strategies as st

from peripherals.log_mel import LogMelStream, final_frames, log_mel

EXTRACTOR = FeatureExtractor(feature_size=80)


def _audio(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.2 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 24000),
    piece=st.sampled_from([1, 7, 160, 320, 512, 1600]),
    cut=st.floats(0.0, 1.0),
    trailing=st.sampled_from([0, 400]),
)
def test_streamed_frames_give_the_extractors_features_for_any_prefix(
    n: int, piece: int, cut: float, trailing: int
) -> None:
    x = _audio(n)
    stream = LogMelStream(EXTRACTOR.mel_filters)
    for i in range(0, n, piece):
        stream.push(x[i : i + piece])
    assert stream.frames == final_frames(n)
    prefix = x[: max(1, int(n * cut))]  # a decode's snapshot may be shorter than the stream
    expected = EXTRACTOR(np.concatenate([prefix, np.zeros(trailing, np.float32)]))
    got = log_mel(prefix, stream.snapshot(), EXTRACTOR.mel_filters, trailing)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_decode_at_the_end_computes_only_the_frames_at_the_end(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from peripherals import log_mel as module

    x = _audio(48000)
    stream = LogMelStream(EXTRACTOR.mel_filters)
    for i in range(0, len(x), 320):
        stream.push(x[i : i + 320])
    computed: list[int] = []
    real = module.log_mel_frames

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = real(*args, **kwargs)
        computed.append(out.shape[1])
        return out

    monkeypatch.setattr(module, "log_mel_frames", counting)
    features = log_mel(x, stream.snapshot(), EXTRACTOR.mel_filters, 400)
    assert features.shape[1] == 303 and computed == [303 - final_frames(48000)]
    assert computed[0] <= 6  # the frames that read the end, not 3 s of them


@pytest.mark.parametrize("n", [0, 150, 201])
def test_a_stream_too_short_for_two_frames_falls_back_to_the_whole_computation(n: int) -> None:
    x = _audio(max(n, 1))[:n]
    stream = LogMelStream(EXTRACTOR.mel_filters)
    stream.push(x)
    audio = x if n else np.zeros(1, np.float32)
    expected = EXTRACTOR(np.concatenate([audio, np.zeros(400, np.float32)]))
    np.testing.assert_allclose(
        log_mel(audio, stream.snapshot(), EXTRACTOR.mel_filters, 400), expected, atol=1e-5
    )
