"""Piper TTS: rates, durations, time to first audio, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import numpy as np
import pytest

from peripherals.audio import rms_dbfs
from peripherals.tts import PiperTts

pytestmark = pytest.mark.realtime  # first-chunk latency is wall time

SENTENCE = "Your order shipped yesterday and should arrive on Friday afternoon."
LONG = " ".join(
    f"This is sentence number {i} of a rather long answer that nobody will hear." for i in range(40)
)


@pytest.fixture(scope="module")
def tts():  # type: ignore[no-untyped-def]
    engine = PiperTts(output_rate=24000)
    engine.warm_up()
    yield engine
    asyncio.run(engine.aclose())


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
async def test_audio_comes_at_the_requested_rate_with_plausible_duration(
    tts: PiperTts, rate: int
) -> None:
    started = time.perf_counter()
    first: float | None = None
    chunks = []
    async for chunk in tts.synthesize(SENTENCE, sample_rate=rate):
        first = first if first is not None else time.perf_counter() - started
        chunks.append(chunk)
    elapsed = time.perf_counter() - started
    audio = np.concatenate([c.samples for c in chunks])
    seconds = len(audio) / rate
    assert first is not None
    print(
        f"TTS {rate} Hz: first chunk {first * 1000:.0f} ms, RTF {elapsed / seconds:.3f}, {seconds:.2f} s audio"
    )
    assert all(c.sample_rate == rate and c.samples.dtype == np.float32 for c in chunks)
    n_words = len(SENTENCE.split())
    assert n_words / 5.0 < seconds < n_words / 1.5  # 1.5 to 5 words per second
    assert rms_dbfs(audio) > -30.0
    assert float(np.max(np.abs(audio))) <= 1.0


async def test_one_chunk_per_sentence_and_nothing_for_empty_text(tts: PiperTts) -> None:
    chunks = [c async for c in tts.synthesize("Hello there. How are you? Fine.")]
    assert len(chunks) == 3
    assert [c async for c in tts.synthesize("   ")] == []


class _GatedVoice:
    """A real piper voice that counts the sentences it makes per text and holds the
    second sentence of `held` until `gate` is set (a sentence in flight, on demand)."""

    def __init__(self, voice: Any, held: str) -> None:
        self.config = voice.config
        self._voice, self._held = voice, held
        self.made: dict[str, int] = {}
        self.reached, self.gate = threading.Event(), threading.Event()

    def synthesize(self, text: str, syn_config: Any = None) -> Iterator[Any]:
        for i, chunk in enumerate(self._voice.synthesize(text, syn_config=syn_config)):
            if text == self._held and i == 1:
                self.reached.set()
                self.gate.wait(timeout=60)
            self.made[text] = self.made.get(text, 0) + 1
            yield chunk


async def _until(flag: threading.Event, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not flag.is_set():
        assert time.monotonic() < deadline, "the worker never got there"
        await asyncio.sleep(0.01)


async def test_cancellation_does_not_wait_for_the_sentence_in_flight_and_stops_the_rest(
    tts: PiperTts,
) -> None:
    voice = _GatedVoice(tts._voice, held=LONG)
    gated = PiperTts(loaded=voice, output_rate=24000)
    got_first = asyncio.Event()

    async def speak() -> None:
        async for _ in gated.synthesize(LONG):
            got_first.set()

    task = asyncio.create_task(speak())
    try:
        await asyncio.wait_for(got_first.wait(), timeout=60)
        await _until(voice.reached)  # the second sentence is in flight, held
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=30)
        # The task ended while its sentence was still held in the worker:
        assert task in done and not voice.gate.is_set()
        voice.gate.set()
        # The worker finishes the sentence in flight, not the other 38:
        chunks = [c async for c in gated.synthesize("Okay.")]
        assert len(chunks) == 1
        assert voice.made[LONG] == 2
    finally:
        voice.gate.set()
        task.cancel()
        await gated.aclose()


async def test_breaking_out_of_the_iteration_stops_production(tts: PiperTts) -> None:
    voice = _GatedVoice(tts._voice, held="")
    counted = PiperTts(loaded=voice, output_rate=24000)
    try:
        gen = counted.synthesize(LONG)
        assert isinstance(gen, AsyncGenerator)
        async for _ in gen:
            break
        await gen.aclose()
        chunks = [c async for c in counted.synthesize("Okay.")]
        assert len(chunks) == 1
        assert voice.made[LONG] == 1  # nothing after the sentence that was taken
    finally:
        await counted.aclose()


async def _say(engine: PiperTts, text: str) -> np.ndarray:
    return np.concatenate([c.samples async for c in engine.synthesize(text, sample_rate=16000)])


async def test_variability_zero_says_the_same_text_with_the_same_samples(tts: PiperTts) -> None:
    fixed = PiperTts(output_rate=16000, variability=0.0)
    try:
        first, second = await _say(fixed, SENTENCE), await _say(fixed, SENTENCE)
        assert np.array_equal(first, second)
        # The voice as trained draws its durations at random: two takes differ.
        takes = [await _say(tts, SENTENCE) for _ in range(3)]
        assert any(len(t) != len(takes[0]) or not np.array_equal(t, takes[0]) for t in takes[1:])
    finally:
        await fixed.aclose()


def test_the_lead_in_before_the_first_sound_is_cut_to_ten_ms() -> None:
    import numpy as np

    from peripherals.tts import lead_in_trimmed

    rate = 22050
    quiet = np.full(rate // 20, 1e-5, np.float32)  # 50 ms at -100 dBFS
    sound = np.full(rate // 10, 0.2, np.float32)
    trimmed = lead_in_trimmed(np.concatenate([quiet, sound]), rate)
    lead = np.flatnonzero(trimmed > 0.1)[0]
    assert rate // 200 <= lead <= rate // 100 + rate // 200  # 10 ms kept (within a 5 ms step)
    assert len(trimmed) - lead == len(sound)  # the sound itself is whole
    assert len(lead_in_trimmed(sound, rate)) == len(sound)  # nothing to cut
    assert len(lead_in_trimmed(quiet, rate)) == len(quiet)  # nothing audible: left alone


async def test_the_voice_configs_tts_threads_reach_piper_and_say_the_same() -> None:
    from voice_agent.config import VoiceConfig
    from voice_agent.voice.build import build_tts

    one = build_tts(VoiceConfig(tts_threads=1, tts_variability=0.0), 16000)
    two = build_tts(VoiceConfig(tts_threads=2, tts_variability=0.0), 16000)
    try:
        threads = [t._voice.session.get_session_options().intra_op_num_threads for t in (one, two)]
        assert threads == [1, 2]
        said = [
            np.concatenate([c.samples async for c in t.synthesize("Sure,")]) for t in (one, two)
        ]
        assert len(said[0]) == len(said[1]) > 1600  # the same words, more threads
        np.testing.assert_allclose(said[0], said[1], atol=1e-3)
    finally:
        await one.aclose()
        await two.aclose()


def test_phrase_cache_keeps_short_phrases_per_rate_and_drops_the_least_recently_used() -> None:
    from peripherals.tts import PhraseCache

    cache = PhraseCache(entries=2, max_chars=10)
    one, two, three = (np.full(100, v, np.float32) for v in (0.1, 0.2, 0.3))
    cache.put("Sure,", 16000, one)
    cache.put("Okay,", 16000, two)
    assert cache.get("Sure,", 8000) is None  # another rate is another phrase
    got = cache.get("Sure,", 16000)  # now the most recently used
    assert got is not None and np.array_equal(got, one)
    got[:] = 0.0  # a copy: the caller may change it
    cache.put("Right,", 16000, three)  # "Okay," gives way
    assert cache.get("Okay,", 16000) is None
    assert np.array_equal(cache.get("Sure,", 16000), one)  # type: ignore[arg-type]
    cache.put("Of course, sir.", 16000, one)  # longer than max_chars: not kept
    assert not cache.holds("Of course, sir.", 16000) and len(cache) == 2
    off = PhraseCache(entries=0)
    off.put("Sure,", 16000, one)
    assert len(off) == 0 and off.get("Sure,", 16000) is None
