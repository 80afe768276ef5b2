"""Answers' first chunks kept as audio across the responses of a call and the calls of a worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from peripherals.audio import AudioChunk
from voice_agent.config import VoiceConfig
from voice_agent.transports.call import PerCallModels
from voice_agent.voice.output import AudioSpeechOutput
from voice_agent.voice.sinks import TimelineSink

RATE = 16000


class Counting:
    """A real TTS that records the text of every synthesis."""

    def __init__(self, tts: Any) -> None:
        self.tts = tts
        self.asked: list[str] = []
        self.output_rate = tts.output_rate

    def synthesize(self, text: str, sample_rate: int | None = None) -> AsyncIterator[AudioChunk]:
        self.asked.append(text)
        return self.tts.synthesize(text, sample_rate)

    async def aclose(self) -> None:
        await self.tts.aclose()


async def say(output: AudioSpeechOutput, rid: str, text: str) -> None:
    output.push(rid, text)
    output.end(rid)
    for _ in range(2000):
        await asyncio.sleep(0.005)
        if not output.synthesis_pending:
            return
    raise AssertionError("synthesis never finished")


async def test_a_workers_calls_share_the_kept_openings() -> None:
    from voice_agent.worker import SharedSpeechModels

    shared = await asyncio.to_thread(SharedSpeechModels, VoiceConfig())
    try:
        first, second = shared.for_call("a"), shared.for_call("b")
        assert first.phrase_cache() is second.phrase_cache()
        spoken: list[list[str]] = []
        for call, text in ((first, "Okay, it has shipped."), (second, "Okay, it is on its way.")):
            tts = Counting(call.open_tts(RATE))
            output = AudioSpeechOutput(tts, TimelineSink(RATE), phrase_cache=call.phrase_cache())
            try:
                await say(output, "r1", text)
            finally:
                await output.aclose()
                await tts.aclose()
            spoken.append(tts.asked)
    finally:
        shared.close()
    assert spoken == [["Okay,", "it has shipped."], ["it is on its way."]]


def test_a_single_call_gets_a_cache_of_the_configured_size() -> None:
    assert PerCallModels(VoiceConfig(tts_phrase_cache=5)).phrase_cache().entries == 5
    off = PerCallModels(VoiceConfig(tts_phrase_cache=0)).phrase_cache()
    assert off.entries == 0
