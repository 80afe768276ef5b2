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

from voice_agent.transports.livekit_audio import RoomAudioSink, caller_audio

# real WebRTC audio threads play in real time: the wall clock, not virtual time
pytestmark = pytest.mark.realtime

AGENT_RATE = 24000
LISTEN_RATE = 16000
LOUD = 0.05  # a 20 ms frame whose peak passes this is sound, below it silence (full scale 1.0)


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
    loud = listener.loud_times(after=t0)
    assert 0.8 <= len(loud) * 0.02 <= 1.2  # one second of tone arrives, in real time
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
    await asyncio.sleep(0.6)
    late = [t - cleared_at for t in listener.loud_times(after=cleared_at)]
    # at most a frame or two already on its way (WebRTC's 10 ms tick, the 20 ms stream frame)
    assert not late or max(late) < 0.1, late
    assert (
        played_before - AGENT_RATE // 10 <= sink.played_samples <= played_before + AGENT_RATE // 5
    )
    # the sink plays again after a clear
    again = time.monotonic()
    await sink.write(tone(0.3, AGENT_RATE))
    await asyncio.wait_for(sink.wait_drained(), 5.0)
    await asyncio.sleep(0.1)
    assert len(listener.loud_times(after=again)) * 0.02 >= 0.2


async def test_pause_silences_and_resume_plays_the_rest(loopback) -> None:  # type: ignore[no-untyped-def]
    sink, listener = loopback
    x = tone(1.0, AGENT_RATE)
    start = time.monotonic()
    await sink.write(x)
    await asyncio.sleep(0.4)
    sink.pause()
    paused_at = time.monotonic()
    await asyncio.sleep(0.6)
    during = [t for t in listener.loud_times(after=paused_at + 0.1) if t < paused_at + 0.6]
    assert during == []  # silent while paused
    resumed_at = time.monotonic()
    sink.resume()
    await asyncio.wait_for(sink.wait_drained(), 5.0)
    await asyncio.sleep(0.1)
    assert sink.played_samples == len(x)  # nothing dropped by the pause
    total = len(listener.loud_times(after=start)) * 0.02
    assert 0.85 <= total <= 1.2, total  # the whole second was heard, in two parts
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
