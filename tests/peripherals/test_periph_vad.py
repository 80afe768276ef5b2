"""Silero VAD and the segmenter on real (synthesised) speech."""

from __future__ import annotations

import numpy as np
import pytest

from peripherals.vad import (
    SileroVad,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    VadSegmenter,
)

SENTENCE = "I would like to check the status of my order please."


def run(segmenter: VadSegmenter, samples: np.ndarray, step: int) -> list:
    events = []
    for i in range(0, len(samples), step):
        events += segmenter.process(samples[i : i + step])
    return events


@pytest.mark.parametrize("rate", [16000, 8000])
def test_one_segment_with_start_and_end_near_the_truth(speech_factory, rate: int) -> None:
    speech = speech_factory(SENTENCE, rate)
    events = run(VadSegmenter(SileroVad(rate)), speech.samples, step=rate // 50)
    started = [e for e in events if isinstance(e, SpeechStarted)]
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(started) == 1 and len(ended) == 1, events
    assert abs(started[0].t - speech.start_s) < 0.1
    assert abs(ended[0].t - speech.end_s) < 0.1
    # The suspected end comes first, at the same time as the end.
    pauses = [e for e in events if isinstance(e, SpeechPaused)]
    assert pauses[-1].t == ended[0].t
    assert events.index(pauses[-1]) < events.index(ended[0])
    assert started[0].sample == round(started[0].t * rate)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_silence_and_quiet_white_noise_produce_no_segment(rate: int) -> None:
    segmenter = VadSegmenter(SileroVad(rate))
    assert run(segmenter, np.zeros(3 * rate, dtype=np.float32), 320) == []
    noise = (np.random.default_rng(1).standard_normal(5 * rate) * 0.003).astype(
        np.float32
    )  # ≈ -50 dBFS
    assert run(segmenter, noise, 320) == []
    assert segmenter.flush() == []


def test_events_do_not_depend_on_chunk_sizes(speech_factory) -> None:
    speech = speech_factory(SENTENCE, 16000)
    whole = VadSegmenter(SileroVad(16000)).process(speech.samples)
    rng = np.random.default_rng(7)
    segmenter = VadSegmenter(SileroVad(16000))
    pieces, i = [], 0
    while i < len(speech.samples):
        n = int(rng.integers(1, 3000))
        pieces += segmenter.process(speech.samples[i : i + n])
        i += n
    assert pieces == whole


def test_int16_input_gives_the_same_events(speech_factory) -> None:
    speech = speech_factory(SENTENCE, 16000)
    bounds = (SpeechStarted, SpeechEnded)
    as_float = [
        e for e in VadSegmenter(SileroVad(16000)).process(speech.samples) if isinstance(e, bounds)
    ]
    as_int16 = [
        e
        for e in VadSegmenter(SileroVad(16000)).process((speech.samples * 32767).astype(np.int16))
        if isinstance(e, bounds)
    ]
    assert (
        [type(e) for e in as_float] == [type(e) for e in as_int16] == [SpeechStarted, SpeechEnded]
    )
    assert all(abs(a.t - b.t) <= 0.032 for a, b in zip(as_float, as_int16, strict=True))


def test_short_pause_is_a_pause_and_long_pause_ends_the_segment(speech_factory) -> None:
    rate = 16000
    word = speech_factory("Hello there.", rate, before_s=0.0, after_s=0.0).samples
    gap_short = np.zeros(int(0.15 * rate), dtype=np.float32)  # + piper's own ~0.2 s tail
    gap_long = np.zeros(int(1.0 * rate), dtype=np.float32)
    signal = np.concatenate([gap_long, word, gap_short, word, gap_long, word, gap_long])
    events = VadSegmenter(SileroVad(rate), min_silence_s=0.5).process(signal)
    kinds = [type(e) for e in events]
    assert kinds.count(SpeechStarted) == 2
    assert kinds.count(SpeechEnded) == 2
    assert SpeechResumed in kinds[: kinds.index(SpeechEnded)]


def test_flush_closes_an_open_segment(speech_factory) -> None:
    speech = speech_factory(SENTENCE, 16000, after_s=0.0)
    segmenter = VadSegmenter(SileroVad(16000))
    events = segmenter.process(speech.samples)
    assert [type(e) for e in events].count(SpeechStarted) == 1
    assert segmenter.speaking
    tail = segmenter.flush()
    assert isinstance(tail[-1], SpeechEnded) and not segmenter.speaking


def test_frame_size_is_enforced_and_rates_are_validated() -> None:
    vad = SileroVad(16000)
    assert vad.frame_size == 512 and SileroVad(8000).frame_size == 256
    with pytest.raises(ValueError):
        vad.probability(np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError):
        SileroVad(44100)


@pytest.mark.parametrize("rate", [16000, 8000])
def test_speech_after_a_long_silence_starts_as_soon_as_after_a_short_one(
    speech_factory, rate: int
) -> None:
    """Silero's recurrent state drifted over a long digital silence: after 30 s of it, the
    speech below started 0.6 s late at 8 kHz (after 1 s: 0.05 s), and a caller who talked
    over the agent heard its voice resume mid-word (session 15). The state is now reset
    after ``RESET_AFTER_QUIET_S`` of quiet."""
    speech = speech_factory("Wait, I have another question.", rate, before_s=30.0)
    short = speech.samples[int(29 * rate) :]  # the same speech after 1 s of silence
    long_start = first_start(speech.samples, rate) - 29.0
    assert long_start - first_start(short, rate) < 0.04  # at most a frame or so apart
    assert long_start - (speech.start_s - 29.0) < 0.15


def first_start(samples: np.ndarray, rate: int) -> float:
    """When the segmenter's first segment starts (s of stream time)."""
    started = [e for e in run(VadSegmenter(SileroVad(rate)), samples, rate // 50)]
    return next(e.t for e in started if isinstance(e, SpeechStarted))
