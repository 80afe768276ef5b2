"""A fake voice on a virtual clock, for measuring the engine's timing without a real TTS.

Not a voice: :class:`WordTts` is a FAKE text-to-speech that makes ``per_word``
samples of tone per word at once and records each chunk it was asked to say
with the clock time. :func:`play_in_step` plays a :class:`TimelineSink` in step
with the clock, as a sound card would play it in real time, so what the caller
would hear and when lands on the sink's timeline. The hold-phrase and repeat
benchmarks and their engine tests share both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from fsm import Clock
from peripherals.audio import AudioChunk
from voice_agent.voice.output import AudioSpeechOutput
from voice_agent.voice.sinks import TimelineSink

RATE = 16000
PER_WORD = 4000  # samples of fake speech per word: 0.25 s, a speaking rate of 240 words/min
TICK_S = 0.01  # the sink plays in steps of this many clock seconds


class WordTts:
    """A fake TTS: ``per_word`` samples per word, at once; records every chunk it was asked."""

    output_rate = RATE

    def __init__(self, clock: Clock, per_word: int = PER_WORD) -> None:
        self.clock = clock
        self.per_word = per_word
        self.asked: list[tuple[float, str]] = []  # (clock time, chunk)

    async def synthesize(
        self, text: str, sample_rate: int | None = None
    ) -> AsyncIterator[AudioChunk]:
        self.asked.append((self.clock.now(), text))
        samples = self.per_word * len(text.split())
        yield AudioChunk(np.full(samples, 0.5, dtype=np.float32), RATE)

    async def aclose(self) -> None:
        pass


async def play_in_step(
    sink: TimelineSink, output: AudioSpeechOutput, clock: Clock, tick_s: float = TICK_S
) -> None:
    """Play ``sink`` in step with ``clock`` (``tick_s`` at a time) and let ``output`` see
    what was played, until cancelled."""
    while True:
        await clock.sleep(tick_s)
        sink.advance(round(sink.sample_rate * tick_s))
        output.poll()
