"""Where synthesized agent audio goes: the ``Sink`` protocol and ``TimelineSink``.

A sink plays mono float32 audio at ``sample_rate`` and counts what it has
played. :class:`peripherals.audio_io.AudioOutput` (a sounddevice speaker) is
one; :class:`TimelineSink` is the other: it has no device, it "plays" when its
owner advances the stream clock, and it renders everything it played onto a
timeline (sample positions of the input stream), so the agent's answer can be
written next to the caller's recording.
"""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np

from peripherals.audio import AudioSink, to_float32

Sink = AudioSink
"""Where :class:`AudioSpeechOutput` writes: :class:`peripherals.audio.AudioSink`."""


class TimelineSink:
    """A sink on a stream clock: audio plays when the owner calls ``advance``.

    ``write`` never blocks (the queue is unbounded: the writer is paced by
    synthesis, not by a device). ``advance(n)`` moves the play head ``n``
    samples: up to ``n`` queued samples are placed on the timeline at the head
    and count as played; a gap in the queue is silence, and so is the whole
    move while ``paused`` (nothing is consumed). ``render(length)``
    returns the timeline (float32), at least ``length`` samples long.
    """

    def __init__(self, sample_rate: int) -> None:
        self._rate = sample_rate
        self._queue: deque[np.ndarray] = deque()
        self._queued = 0
        self._played = 0
        self.position = 0  # play head on the timeline (samples)
        self._placed: list[tuple[int, np.ndarray]] = []  # (timeline position, samples)
        self._drained = asyncio.Event()
        self._drained.set()
        self._paused = False
        self._closed = False

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def played_samples(self) -> int:
        return self._played

    @property
    def queued_samples(self) -> int:
        """Samples written and not yet played."""
        return self._queued

    async def write(self, samples: np.ndarray) -> None:
        """Queue audio (float32 or int16) behind what is already queued."""
        if self._closed:
            raise RuntimeError("TimelineSink is closed")
        x = np.array(to_float32(samples), dtype=np.float32)
        if len(x):
            self._queue.append(x)
            self._queued += len(x)
            self._drained.clear()

    def clear(self) -> int:
        """Drop everything queued; returns how many samples were dropped."""
        dropped = self._queued
        self._queue.clear()
        self._queued = 0
        self._drained.set()
        return dropped

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Stop playing from the next ``advance`` on; queued audio waits (idempotent)."""
        self._paused = True

    def resume(self) -> None:
        """Play queued audio again from where it paused (idempotent)."""
        self._paused = False

    def advance(self, n: int) -> int:
        """Move the play head by ``n`` samples, playing queued audio; returns samples played."""
        played = 0
        while played < n and self._queue and not self._paused:
            head = self._queue[0]
            take = min(n - played, len(head))
            self._placed.append((self.position + played, head[:take]))
            if take == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[take:]
            played += take
        self._queued -= played
        self._played += played
        self.position += n
        if not self._queue:
            self._drained.set()
        return played

    def advance_to(self, position: int) -> int:
        """Move the play head to ``position`` (no-op if it is already there or past it)."""
        return self.advance(position - self.position) if position > self.position else 0

    async def wait_drained(self) -> None:
        """Wait until everything written has been played."""
        await self._drained.wait()

    def render(self, min_length: int = 0) -> np.ndarray:
        """The timeline as float32: silence where nothing played, at least ``min_length`` long."""
        end = max([pos + len(x) for pos, x in self._placed] + [min_length, self.position])
        out = np.zeros(end, dtype=np.float32)
        for pos, x in self._placed:
            out[pos : pos + len(x)] = x
        return out

    async def aclose(self) -> None:
        """Drop queued audio; the rendered timeline stays available (idempotent)."""
        self._closed = True
        self.clear()


class SinkWrapper:
    """An :class:`AudioSink` in front of another: passes everything on unchanged.

    Subclass it to change what one method does (a codec on ``write``, a tap that
    records): the rest of the sink's contract is the wrapped sink's. Attributes
    a transport's own sink has beyond the protocol are reachable too.
    """

    def __init__(self, inner: AudioSink) -> None:
        self._inner = inner

    @property
    def sample_rate(self) -> int:
        return self._inner.sample_rate

    @property
    def played_samples(self) -> int:
        return self._inner.played_samples

    @property
    def paused(self) -> bool:
        return self._inner.paused

    async def write(self, samples: np.ndarray) -> None:
        await self._inner.write(samples)

    def clear(self) -> int:
        return self._inner.clear()

    def pause(self) -> None:
        self._inner.pause()

    def resume(self) -> None:
        self._inner.resume()

    async def wait_drained(self) -> None:
        await self._inner.wait_drained()

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)
