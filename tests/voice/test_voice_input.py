"""VoiceInput with the real Silero VAD and streaming Whisper: the events it posts for
synthesized speech, the minimum barge-in duration, and the half-duplex gate."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from voice_helpers import ORDER_QUESTION, RATE, caller_recording, speech

from peripherals.half_duplex import HalfDuplexGate
from voice_agent.config import VoiceConfig
from voice_agent.events import (
    Event,
    TranscriptFinal,
    TranscriptPartial,
    UserSpeechEnded,
    UserSpeechStarted,
)
from voice_agent.voice.build import build_input

FRAME = 320  # 20 ms


async def feed(voice, x: np.ndarray, pace_s: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    """Feed 20 ms frames, sleeping ``pace_s`` after each (0.02: real time)."""
    for i in range(0, len(x), FRAME):
        await voice.process(x[i : i + FRAME])
        await asyncio.sleep(pace_s)


class StepClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


async def test_an_utterance_posts_start_partials_end_then_the_final_transcript() -> None:
    events: list[Event] = []
    cfg = VoiceConfig(asr_partial_interval_s=0.5)
    voice = build_input(cfg, events.append, agent_busy=lambda: False)
    x, utts = caller_recording([(0.5, ORDER_QUESTION, 1.3)], 4.5)
    try:
        await feed(voice, x, pace_s=0.02)  # partials need decode time between pushes: real time
    finally:
        await voice.aclose()
    kinds = [type(e) for e in events]
    assert kinds[0] is UserSpeechStarted and kinds[-2:] == [UserSpeechEnded, TranscriptFinal]
    partials = [e.text for e in events if isinstance(e, TranscriptPartial)]
    assert partials, "a 3 s utterance decoded every 0.5 s yields partials"
    assert all(len(a) < len(b) for a, b in zip(partials, partials[1:], strict=False))
    final = events[-1]
    assert isinstance(final, TranscriptFinal) and "427" in final.text
    (turn,) = voice.turns
    assert abs(turn.speech_start_s - utts[0].start_s) < 0.15
    assert 0 <= turn.speech_end_s - utts[0].end_s < 0.25  # type: ignore[operator]
    assert turn.final_speculative  # the decode started at the pause was kept


async def test_while_the_agent_talks_a_cough_does_not_barge_in_but_speech_does() -> None:
    events: list[Event] = []
    voice = build_input(VoiceConfig(min_barge_in_ms=250), events.append, agent_busy=lambda: True)
    word, _, _ = speech("Stop.")
    cough = word[np.argmax(np.abs(word) > 0.05) :][: int(0.15 * RATE)]  # 150 ms burst
    silence = np.zeros(RATE, dtype=np.float32)
    try:
        await feed(voice, np.concatenate([silence, cough, silence]))
        assert events == []
        assert voice.turns == [] or all(t.dropped for t in voice.turns)
        x, utts = caller_recording([(0.2, "Wait, I have another question.", 1.0)], 3.0)
        await feed(voice, x)
    finally:
        await voice.aclose()
    assert isinstance(events[0], UserSpeechStarted)
    turn = [t for t in voice.turns if not t.dropped][0]
    assert turn.posted_start_s - turn.speech_start_s >= 0.25  # type: ignore[operator]
    assert isinstance(events[-1], TranscriptFinal) and "question" in events[-1].text.lower()


async def test_the_gate_hides_the_agents_own_voice_but_not_a_louder_caller() -> None:
    clock = StepClock()
    gate = HalfDuplexGate(clock=clock)
    events: list[Event] = []
    voice = build_input(VoiceConfig(), events.append, agent_busy=lambda: True, gate=gate)
    echo, _, _ = speech("Your order has shipped and arrives on Friday.", gain=0.5)
    try:
        for i in range(0, len(echo), FRAME):  # the speaker plays it, the mic hears it as loud
            clock.t += FRAME / RATE
            gate.note_played(echo[i : i + FRAME])
            await voice.process(echo[i : i + FRAME])
        assert events == [] and gate.suppressed > 0
        # The caller talks over the agent, much louder than the echo of its voice at the mic.
        loud, _, _ = speech("Wait, I have another question.", gain=1.0)
        played = np.resize(echo, len(loud)) * 0.1
        for i in range(0, len(loud), FRAME):
            clock.t += FRAME / RATE
            gate.note_played(played[i : i + FRAME])
            await voice.process(loud[i : i + FRAME] + played[i : i + FRAME])
        await feed(voice, np.zeros(RATE, dtype=np.float32))
    finally:
        await voice.aclose()
    assert isinstance(events[0], UserSpeechStarted)
    assert any(isinstance(e, TranscriptFinal) and e.text for e in events)


@pytest.mark.parametrize("rate", [8000])
async def test_telephone_rate_input_is_recognised(rate: int) -> None:
    from peripherals.resample import resample

    events: list[Event] = []
    voice = build_input(VoiceConfig(sample_rate=rate), events.append, agent_busy=lambda: False)
    x, _ = caller_recording([(0.3, ORDER_QUESTION, 1.0)], 4.0)
    x8 = resample(x, RATE, rate)
    try:
        for i in range(0, len(x8), 160):
            await voice.process(x8[i : i + 160])
    finally:
        await voice.aclose()
    assert isinstance(events[-1], TranscriptFinal) and "427" in events[-1].text
