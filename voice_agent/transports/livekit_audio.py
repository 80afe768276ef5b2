"""Audio between a LiveKit room and the engine, through the SDK's real ``rtc`` objects.

In: :func:`caller_audio` reads a remote (or any) audio track with
``rtc.AudioStream.from_track(sample_rate=16000, num_channels=1)`` — the SDK
resamples and mixes down — and yields float32 frames for :class:`VoiceInput`.

Out: :class:`RoomAudioSink` is the engine's :class:`~voice_agent.voice.sinks.Sink`
over an ``rtc.AudioSource`` published as a ``LocalAudioTrack``. A pump task
feeds the source in ``FRAME_MS`` frames and keeps at most ``SOURCE_QUEUE_MS`` of
audio inside it (the rest waits here), so ``clear()`` — barge-in — drops
everything with ``AudioSource.clear_queue()`` at once, and ``pause()`` can give
back what the source had not played yet. ``played_samples`` is what was
captured minus what the source still holds (``queued_duration``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

from peripherals.audio import to_float32

from ..voice.tasks import TaskTracker

log = logging.getLogger(__name__)

FRAME_MS = 20  # frames handed to the AudioSource (ms): WebRTC's 10 ms tick times two
# Audio inside the AudioSource's own buffer (ms). Small, so a clear or pause silences
# within this much even if the clear request were lost; large enough to ride out an
# event-loop hiccup without an underrun (the pump refills every FRAME_MS).
SOURCE_QUEUE_MS = 100
CALLER_RATE = 16000  # the caller's audio as the engine hears it (Hz): Silero + Whisper rate


async def caller_audio(
    track: Any, *, sample_rate: int = CALLER_RATE, frame_ms: int = FRAME_MS
) -> AsyncGenerator[np.ndarray, None]:
    """Mono float32 frames of ``track`` at ``sample_rate`` (``rtc.AudioStream``), until it ends."""
    from livekit import rtc

    stream = rtc.AudioStream.from_track(
        track=track, sample_rate=sample_rate, num_channels=1, frame_size_ms=frame_ms
    )
    try:
        async for event in stream:
            frame = event.frame
            samples = np.frombuffer(frame.data, dtype=np.int16)
            if frame.num_channels > 1:
                samples = samples.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
            yield samples.astype(np.float32) / 32768.0
    finally:
        await stream.aclose()


class RoomAudioSink:
    """The agent's voice into an ``rtc.AudioSource`` (the Sink protocol of ``voice/sinks.py``).

    ``write`` never blocks (synthesis paces it); the pump task is owned here and
    stopped by ``aclose``. ``clear()`` drops everything queued here and in the
    source at once; ``pause()`` silences at once and keeps the not-yet-played
    audio (given back from the source's queue) for ``resume()``.
    """

    def __init__(self, source: Any, *, frame_ms: int = FRAME_MS) -> None:
        self._source = source
        self._rate = int(source.sample_rate)
        self._frame = self._rate * frame_ms // 1000
        self._queue: deque[np.ndarray] = deque()
        self._queued = 0
        self._captured = 0  # samples handed to the source (dropped ones subtracted)
        self._recent: deque[np.ndarray] = deque()  # last frames captured (to give back on pause)
        self._recent_len = 0
        self._reported = 0  # played_samples only grows
        self._epoch = 0  # bumped by clear/pause: a capture in flight then is undone
        self._clears = 0  # bumped by clear: a frame in flight then is dropped, not kept
        self._paused = False
        self._closed = False
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._tasks = TaskTracker("room-audio")
        self._pump: asyncio.Task[None] | None = None

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def queued_samples(self) -> int:
        """Samples written and not yet played (here plus inside the source)."""
        return self._queued + self._in_source()

    def _in_source(self) -> int:
        return min(self._captured, int(round(self._source.queued_duration * self._rate)))

    @property
    def played_samples(self) -> int:
        self._reported = max(self._reported, self._captured - self._in_source())
        return self._reported

    async def write(self, samples: np.ndarray) -> None:
        """Queue audio (float32 or int16, at ``sample_rate``) behind what is already queued."""
        if self._closed:
            raise RuntimeError("RoomAudioSink is closed")
        x = np.asarray(to_float32(samples), dtype=np.float32)
        if not len(x):
            return
        self._queue.append(x)
        self._queued += len(x)
        self._drained.clear()
        if self._pump is None:
            self._pump = self._tasks.spawn(self._run(), "pump")
        self._wake.set()

    def clear(self) -> int:
        """Drop everything not yet played, here and in the source; returns samples dropped."""
        in_source = self._in_source()
        dropped = self._queued + in_source
        self._source.clear_queue()
        self._captured -= in_source
        self._reported = min(self._reported, self._captured)
        self._queue.clear()
        self._queued = 0
        self._forget_recent()
        self._epoch += 1
        self._clears += 1
        self._drained.set()
        return dropped

    def pause(self) -> None:
        """Silence at once; what the source had not played goes back to the head of the queue."""
        if self._paused:
            return
        self._paused = True
        self._give_back()

    def resume(self) -> None:
        """Play on from where ``pause`` stopped (idempotent)."""
        if not self._paused:
            return
        self._paused = False
        self._wake.set()

    async def wait_drained(self) -> None:
        """Wait until everything written has been played (or cleared)."""
        await self._drained.wait()
        while self._in_source() > 0 and not self._closed:
            await self._source.wait_for_playout()

    async def aclose(self) -> None:
        """Stop the pump and drop what is queued (idempotent). The source belongs to the caller."""
        if self._closed:
            return
        self._closed = True
        self.clear()
        await self._tasks.aclose()

    # ------------------------------------------------------------------ pump
    def _give_back(self) -> None:
        in_source = self._in_source()
        self._source.clear_queue()
        self._epoch += 1
        back: list[np.ndarray] = []
        need = in_source
        while need > 0 and self._recent:
            last = self._recent.pop()
            take = min(need, len(last))
            back.append(last[len(last) - take :])
            need -= take
        self._forget_recent()
        for piece in back:  # newest first: prepend in reverse to restore the order
            self._queue.appendleft(piece)
            self._queued += len(piece)
        self._captured -= in_source
        if self._queued:
            self._drained.clear()

    def _forget_recent(self) -> None:
        self._recent.clear()
        self._recent_len = 0

    def _next_frame(self) -> np.ndarray:
        out = np.zeros(self._frame, dtype=np.float32)
        filled = 0
        while filled < self._frame and self._queue:
            head = self._queue[0]
            take = min(self._frame - filled, len(head))
            out[filled : filled + take] = head[:take]
            if take == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[take:]
            filled += take
        self._queued -= filled
        return out[:filled]

    async def _run(self) -> None:
        from livekit import rtc

        limit = self._rate * SOURCE_QUEUE_MS // 1000
        while True:
            if self._paused or not self._queue:
                if not self._queue:
                    self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._in_source() >= limit:
                await asyncio.sleep(self._frame / self._rate / 2)
                continue
            x = self._next_frame()
            pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)
            frame = rtc.AudioFrame(pcm.tobytes(), self._rate, 1, len(pcm))
            epoch, clears = self._epoch, self._clears
            await self._source.capture_frame(frame)
            if epoch != self._epoch:  # cleared or paused while this frame was being captured
                self._source.clear_queue()
                if clears == self._clears:  # paused: the frame was not heard, keep it
                    self._queue.appendleft(x)
                    self._queued += len(x)
                continue
            self._captured += len(x)
            self._recent.append(x)
            self._recent_len += len(x)
            while self._recent_len - len(self._recent[0]) >= limit * 2:
                self._recent_len -= len(self._recent.popleft())
