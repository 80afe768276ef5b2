"""VoiceInput with the real Silero VAD and streaming Whisper: the events it posts for
synthesized speech (pauses included), the minimum barge-in duration with the agent's
voice paused meanwhile, and the half-duplex gate."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from voice_helpers import ORDER_QUESTION, RATE, burst, caller_recording, speech

from peripherals.asr import AsrFinal
from peripherals.half_duplex import HalfDuplexGate
from voice_agent.config import VoiceConfig
from voice_agent.events import (
    Event,
    TranscriptFinal,
    TranscriptPartial,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechResumed,
    UserSpeechStarted,
)
from voice_agent.voice.build import build_input, build_vad
from voice_agent.voice.input import RESUME_AFTER_SILENCE_S, VoiceInput

FRAME = 320  # 20 ms


async def feed(voice, x: np.ndarray, pace_s: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    """Feed 20 ms frames, sleeping ``pace_s`` after each (0.02: real time)."""
    for i in range(0, len(x), FRAME):
        await voice.process(x[i : i + FRAME])
        await asyncio.sleep(pace_s)


async def let_the_turn_end(voice) -> None:  # type: ignore[no-untyped-def]
    """Audio fed faster than real time outruns the end-of-turn decision (a real decode and
    the turn model), which holds the pause open: wait for it, then feed a little silence."""
    while not voice.settled:
        await asyncio.sleep(0.01)
    await feed(voice, np.zeros(RATE // 5, dtype=np.float32))


class RecordingPlayback:
    """Stands in for the agent's voice: records pause/resume calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.paused = False

    def pause(self) -> None:
        self.calls.append("pause")
        self.paused = True

    def resume(self) -> None:
        self.calls.append("resume")
        self.paused = False


class CountingAsr:
    """A StreamingAsr whose transcript is the number of seconds it was fed ("1.2 s").

    The early decode finishes at once, so pause events do not depend on decode speed.
    """

    def __init__(self, on_partial: object) -> None:
        self.samples = 0
        self.early: str | None = None

    def push(self, samples: np.ndarray, sample_rate: int) -> None:
        self.samples += len(samples)

    def speech_paused(self) -> None:
        self.early = f"{self.samples / RATE:.1f} s"

    def speech_resumed(self) -> None:
        self.early = None

    async def paused_text(self) -> str | None:
        await asyncio.sleep(0)
        return self.early

    async def finalize(self) -> AsrFinal:
        text, speculative = (
            (self.early, True) if self.early else (f"{self.samples / RATE:.1f} s", False)
        )
        self.samples, self.early = 0, None
        return AsrFinal(text, 0.0, 0.0, speculative=speculative)

    async def discard(self) -> None:
        self.samples, self.early = 0, None

    async def aclose(self) -> None:
        pass


class StepClock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


async def test_an_utterance_posts_start_partials_pause_end_then_the_final_transcript() -> None:
    events: list[Event] = []
    cfg = VoiceConfig(asr_partial_interval_s=0.5)
    voice = build_input(cfg, events.append, agent_busy=lambda: False)
    x, utts = caller_recording([(0.5, ORDER_QUESTION, 1.3)], 4.5)
    try:
        await feed(voice, x, pace_s=0.02)  # 20 ms frames on virtual time; decodes take none
    finally:
        await voice.aclose()
    kinds = [type(e) for e in events]
    assert kinds[0] is UserSpeechStarted and kinds[-3:] == [
        UserSpeechPaused,
        UserSpeechEnded,
        TranscriptFinal,
    ]
    paused = events[-3]
    assert isinstance(paused, UserSpeechPaused) and paused.text == events[-1].text  # type: ignore[attr-defined]
    assert UserSpeechResumed not in kinds
    partials = [e.text for e in events if isinstance(e, TranscriptPartial)]
    assert partials, "a 3 s utterance decoded every 0.5 s yields partials"
    assert all(len(a) < len(b) for a, b in zip(partials, partials[1:], strict=False))
    final = events[-1]
    assert isinstance(final, TranscriptFinal) and "427" in final.text
    (turn,) = voice.turns
    assert abs(turn.speech_start_s - utts[0].start_s) < 0.15
    assert 0 <= turn.speech_end_s - utts[0].end_s < 0.25  # type: ignore[operator]
    assert turn.final_speculative  # the decode started at the pause was kept
    assert turn.pause_posted_at is not None and turn.pause_posted_at <= turn.final_at  # type: ignore[operator]


async def test_speech_that_goes_on_after_a_pause_posts_resumed_and_the_final_matches_the_last_pause() -> (
    None
):
    events: list[Event] = []
    voice = VoiceInput(
        vad=build_vad(VoiceConfig()), make_asr=CountingAsr, post=events.append, sample_rate=RATE
    )
    x, _ = caller_recording(
        [(0.3, "Where is my order?", 1.0), (1.6, "Number four two seven.", 1.0)], 4.5
    )
    try:
        await feed(voice, x)
    finally:
        await voice.aclose()
    kinds = [type(e) for e in events]
    assert kinds == [
        UserSpeechStarted,
        UserSpeechPaused,
        UserSpeechResumed,
        UserSpeechPaused,
        UserSpeechEnded,
        TranscriptFinal,
    ], "the gap between the phrases is a pause (< 500 ms of silence), not an end"
    first, last, final = events[1], events[3], events[-1]
    assert first.text != last.text and last.text == final.text  # type: ignore[attr-defined]


async def test_while_the_agent_talks_a_cough_only_pauses_its_voice_but_speech_barges_in() -> None:
    events: list[Event] = []
    playback = RecordingPlayback()
    busy = [True]
    voice = build_input(
        VoiceConfig(min_barge_in_ms=250),
        events.append,
        agent_busy=lambda: busy[0],
        playback=playback,
    )
    cough = burst("Stop.", 150)  # under the 250 ms guard
    silence = np.zeros(RATE, dtype=np.float32)
    try:
        await feed(voice, np.concatenate([silence, cough, silence]))
        assert events == []
        assert voice.turns == [] or all(t.dropped for t in voice.turns)
        assert playback.calls == ["pause", "resume"], "the cough paused the agent, then it went on"
        (cough_pause,) = voice.playback_pauses
        assert (
            1.0 < cough_pause.start_s < 1.1 and cough_pause.end_s is not None
        )  # paused within 100 ms
        # paused for the cough plus the quiet time that tells a cough from a comma pause
        assert cough_pause.end_s - cough_pause.start_s < 0.25 + RESUME_AFTER_SILENCE_S
        assert not cough_pause.barge_in
        x, _ = caller_recording([(0.2, "Wait, I have another question.", 1.0)], 3.0)
        i = 0
        while not events:  # until the barge-in is confirmed
            await voice.process(x[i : i + FRAME])
            i += FRAME
        assert isinstance(events[0], UserSpeechStarted)
        assert playback.paused, "paused until the agent has taken the barge-in"
        barge = voice.playback_pauses[-1]
        confirmed = [t for t in voice.turns if not t.dropped][0]
        assert barge.barge_in and barge.start_s <= confirmed.posted_start_s  # type: ignore[operator]
        # The first pause came at the onset, long before the guard; "Wait," may end before the
        # guard (the agent goes on during the comma) and the rest of the sentence pause it again.
        first = next(
            p for p in voice.playback_pauses if p.start_s > confirmed.speech_start_s - 0.05
        )
        assert first.start_s - confirmed.speech_start_s < 0.15
        busy[0] = False  # the agent handled UserSpeechStarted: the user holds the floor
        await feed(voice, x[i:])
        await let_the_turn_end(voice)
    finally:
        await voice.aclose()
    assert not playback.paused and playback.calls[-1] == "resume"
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
        await let_the_turn_end(voice)
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
