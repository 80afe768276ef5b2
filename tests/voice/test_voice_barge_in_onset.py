"""The agent's voice pauses at a barge-in's onset, also when it begins with an unvoiced
sound the VAD scores low ("Stop": 100+ ms of "s" before the vowel), with the real Silero
VAD and piper speech on stream time; a non-speech noise resumes it without a barge-in."""

from __future__ import annotations

import numpy as np
from voice_helpers import RATE, RecordingPlayback, speech

from peripherals.onset import HOLD_S
from voice_agent.config import VoiceConfig
from voice_agent.events import Event
from voice_agent.voice.build import build_input

FRAME = 320  # 20 ms


async def test_a_barge_in_that_starts_with_an_s_pauses_the_agent_within_two_input_frames() -> None:
    x, first, _ = speech("Stop, that is wrong.")
    onset = int(first * RATE)
    silence = np.zeros(RATE, dtype=np.float32)
    audio = np.concatenate([silence, x[onset:]])
    events: list[Event] = []
    playback = RecordingPlayback()
    voice = build_input(VoiceConfig(), events.append, agent_busy=lambda: True, playback=playback)
    try:
        for i in range(0, RATE + int(0.3 * RATE), FRAME):  # the onset and the word "Stop"
            await voice.process(audio[i : i + FRAME])
        calls = list(playback.calls)
    finally:
        await voice.aclose()
    (utt,) = voice.turns
    # Silero's first frame at >= 0.5 comes with the vowel, >= 100 ms into the word: the VAD
    # alone paused the agent 160 ms after the onset.
    assert utt.speech_start_s - 1.0 >= 0.1, "the VAD scores the 's' low (the case tested)"
    pause = voice.playback_pauses[0]
    assert 1.0 <= pause.start_s <= 1.0 + 0.045, f"paused {pause.start_s - 1.0:.3f} s after onset"
    assert calls == ["pause"], "one pause from the onset on, while the VAD takes over"


async def test_a_noise_burst_pauses_the_agent_only_briefly_and_never_barges_in() -> None:
    """A door slam: loud, broadband, 80 ms; Silero does not take it for speech."""
    rng = np.random.default_rng(5)
    slam = (rng.standard_normal(int(0.08 * RATE)) * 0.1).astype(np.float32)
    slam *= np.exp(-np.arange(len(slam)) / (0.03 * RATE)).astype(np.float32)
    audio = np.concatenate([np.zeros(RATE, np.float32), slam, np.zeros(RATE, np.float32)])
    events: list[Event] = []
    playback = RecordingPlayback()
    voice = build_input(VoiceConfig(), events.append, agent_busy=lambda: True, playback=playback)
    try:
        for i in range(0, len(audio), FRAME):
            await voice.process(audio[i : i + FRAME])
    finally:
        await voice.aclose()
    assert events == [] and playback.calls == ["pause", "resume"]
    (pause,) = voice.playback_pauses
    assert pause.end_s is not None and not pause.barge_in
    assert pause.end_s - pause.start_s <= HOLD_S + 0.02


async def test_with_the_vad_onset_only_a_noise_burst_leaves_the_agent_alone() -> None:
    """``voice.barge_in_onset: vad`` (a microphone with loud residual echo): the level's
    onset is not used, and the VAD does not take the slam for speech."""
    rng = np.random.default_rng(5)
    slam = (rng.standard_normal(int(0.08 * RATE)) * 0.1).astype(np.float32)
    slam *= np.exp(-np.arange(len(slam)) / (0.03 * RATE)).astype(np.float32)
    audio = np.concatenate([np.zeros(RATE, np.float32), slam, np.zeros(RATE, np.float32)])
    playback = RecordingPlayback()
    cfg = VoiceConfig(barge_in_onset="vad")
    voice = build_input(cfg, lambda e: None, agent_busy=lambda: True, playback=playback)
    try:
        for i in range(0, len(audio), FRAME):
            await voice.process(audio[i : i + FRAME])
    finally:
        await voice.aclose()
    assert playback.calls == []


async def test_a_barge_in_after_a_long_silence_keeps_the_agent_paused_until_it_is_taken() -> None:
    """A caller silent for 30 s (the agent took long to answer) talks over the answer.
    Before, the VAD's state had drifted over the silence and it took the speech 0.6 s
    late: the level's onset gave up after ``HOLD_S``, and the agent's voice went on for
    0.3 s after the provider's buffer was cleared (test_voice_phone_stream, session 15)."""
    x, first, _ = speech("Wait, I have another question.")
    onset = int(first * RATE)
    silence = np.zeros(30 * RATE, dtype=np.float32)
    audio = np.concatenate([silence, x[onset:]])
    playback = RecordingPlayback()
    voice = build_input(VoiceConfig(), lambda e: None, agent_busy=lambda: True, playback=playback)
    try:
        for i in range(0, len(silence) + int(0.8 * RATE), FRAME):  # "Wait, I have"
            await voice.process(audio[i : i + FRAME])
        calls = list(playback.calls)
    finally:
        await voice.aclose()
    assert calls == ["pause"], "paused from the onset on, never resumed meanwhile"
