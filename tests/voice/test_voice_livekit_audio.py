"""LiveKit audio through the SDK's real ``rtc`` objects, without a room.

``RoomAudioSink`` writes into an ``rtc.AudioSource`` published as a
``LocalAudioTrack``; the test listens to that track with
``rtc.AudioStream.from_track(sample_rate=16000)``, exactly as a subscriber
would, and checks what arrives: the rates, the content, and that a clear or a
pause silences it at once. The WebRTC source plays in real time, so these
tests run in real time and assert with generous bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from livekit import rtc

from voice_agent.bench.livekit_loopback import until
from voice_agent.transports.livekit_audio import RoomAudioSink, caller_audio

# real WebRTC audio threads play in real time: the wall clock, not virtual time
pytestmark = pytest.mark.realtime

AGENT_RATE = 24000
LISTEN_RATE = 16000
LOUD = 0.05  # a 20 ms frame whose peak passes this is sound, below it silence (full scale 1.0)
FRAME_S = 0.02  # the listener's frames (s)
# Audio still on its way when the sink is cleared or paused, at most (s): the frame being
# captured and WebRTC's 10 ms tick. Counted, not timed: on a busy machine it arrives late,
# but it is no more of it (before clear_queue the rest of the answer played on).
IN_FLIGHT_S = 0.1
ARRIVAL_S = 10.0  # a safety net for audio to arrive, never the measure of a test


def tone(seconds: float, rate: int, hz: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@dataclass
class Listener:
    """Subscribes to a track like a remote participant: every frame with its arrival time."""

    frames: list[np.ndarray] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    rates: set[tuple[int, int]] = field(default_factory=set)

    async def run(self, track: object) -> None:
        async with contextlib.aclosing(caller_audio(track, sample_rate=LISTEN_RATE)) as frames:
            async for frame in frames:
                self.frames.append(frame)
                self.times.append(time.monotonic())

    def loud_times(self, after: float = 0.0) -> list[float]:
        return [
            t
            for t, f in zip(self.times, self.frames, strict=True)
            if t > after and np.abs(f).max() > LOUD
        ]

    def audio(self) -> np.ndarray:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.float32)


def heard_s(listener: Listener, after: float) -> float:
    """Seconds of sound the listener got after `after` (counted in frames, not timed)."""
    return len(listener.loud_times(after=after)) * FRAME_S


@pytest.fixture
async def loopback():  # type: ignore[no-untyped-def]
    source = rtc.AudioSource(AGENT_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("agent-voice", source)
    sink = RoomAudioSink(source)
    listener = Listener()
    task = asyncio.get_running_loop().create_task(listener.run(track))
    await asyncio.sleep(0.05)
    try:
        yield sink, listener
    finally:
        await sink.aclose()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await source.aclose()


async def test_loopback_carries_the_agent_voice_at_16k_mono(loopback) -> None:  # type: ignore[no-untyped-def]
    sink, listener = loopback
    x = tone(1.0, AGENT_RATE, hz=440.0)
    t0 = time.monotonic()
    await sink.write(x)
    await asyncio.wait_for(sink.wait_drained(), 5.0)
    await asyncio.sleep(0.2)
    assert sink.played_samples == len(x)
    # every frame the subscriber gets is 20 ms of 16 kHz mono
    assert {len(f) for f in listener.frames} == {LISTEN_RATE // 50}
    await until(lambda: heard_s(listener, t0) >= 0.8, ARRIVAL_S, "the tone")
    await asyncio.sleep(0.2)  # any frame more (a copy would show as more than 1.2 s)
    assert 0.8 <= heard_s(listener, t0) <= 1.2  # one second of tone arrives
    heard = listener.audio()
    spectrum = np.abs(np.fft.rfft(heard))
    peak_hz = np.argmax(spectrum) * LISTEN_RATE / len(heard)
    assert abs(peak_hz - 440.0) < 5.0  # the same tone, resampled 24 → 16 kHz, not a pitch shift


async def test_clear_silences_the_track_at_once_and_counts_only_what_played(loopback) -> None:  # type: ignore[no-untyped-def]
    sink, listener = loopback
    x = tone(3.0, AGENT_RATE)
    await sink.write(x)
    await asyncio.sleep(0.5)
    played_before = sink.played_samples
    cleared_at = time.monotonic()
    dropped = sink.clear()
    assert dropped > 2 * AGENT_RATE  # two and more seconds were still waiting
    await asyncio.sleep(0.6)  # the 2.5 s left would keep playing through this
    assert heard_s(listener, cleared_at) <= IN_FLIGHT_S
    assert (
        played_before - AGENT_RATE // 10 <= sink.played_samples <= played_before + AGENT_RATE // 5
    )
    # the sink plays again after a clear
    again = time.monotonic()
    await sink.write(tone(0.3, AGENT_RATE))
    await asyncio.wait_for(sink.wait_drained(), 5.0)
    await until(lambda: heard_s(listener, again) >= 0.2, ARRIVAL_S, "the tone after the clear")


async def test_pause_silences_and_resume_plays_the_rest(loopback) -> None:  # type: ignore[no-untyped-def]
    sink, listener = loopback
    x = tone(1.0, AGENT_RATE)
    start = time.monotonic()
    await sink.write(x)
    await asyncio.sleep(0.4)
    sink.pause()
    paused_at = time.monotonic()
    await asyncio.sleep(0.6)  # the 0.6 s left would play through this
    assert heard_s(listener, paused_at) <= IN_FLIGHT_S  # silent while paused
    resumed_at = time.monotonic()
    sink.resume()
    await asyncio.wait_for(sink.wait_drained(), 5.0)
    assert sink.played_samples == len(x)  # nothing dropped by the pause
    await until(lambda: heard_s(listener, start) >= 0.85, ARRIVAL_S, "the rest of the tone")
    await asyncio.sleep(0.2)  # any frame more (a copy would show as more than 1.2 s)
    total = heard_s(listener, start)
    assert total <= 1.2, total  # the whole second was heard, in two parts
    assert listener.loud_times(after=resumed_at)  # the rest came after the resume


async def test_caller_audio_resamples_a_48k_track_to_16k_float_frames() -> None:
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("caller-mic", source)
    frames: list[np.ndarray] = []

    async def read() -> None:
        async with contextlib.aclosing(caller_audio(track)) as stream:
            async for frame in stream:
                frames.append(frame)

    task = asyncio.get_running_loop().create_task(read())
    x = (tone(0.5, 48000, hz=300.0) * 32767).astype(np.int16)
    for i in range(0, len(x), 480):
        await source.capture_frame(rtc.AudioFrame(x[i : i + 480].tobytes(), 48000, 1, 480))
    await source.wait_for_playout()
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await source.aclose()
    assert frames and all(f.dtype == np.float32 and len(f) == 320 for f in frames)
    heard = np.concatenate(frames)
    assert 0.4 < np.abs(heard).max() <= 0.55  # full-scale float, the tone's 0.5 amplitude kept
