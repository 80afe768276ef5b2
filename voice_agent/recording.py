"""Opt-in call recording: the caller and the agent as the two channels of one WAV.

``ledger.record_audio: true`` writes ``<session>.wav`` next to the session's
JSONL: left channel the caller (as the transport delivered them), right
channel what the caller actually heard of the agent, on the caller's
timeline. The agent channel follows the output sink's play position
(``played_samples``): audio cleared by a barge-in before it was played is
not in the recording, and a paused agent is silent there too.

A recording holds the caller's voice as spoken: numbers said aloud are in it
in the clear (the ledger masks them; audio cannot be masked after the fact).
Keep it opt-in, and store it like the payment data it may contain.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np

from peripherals.audio import AudioSink, to_float32
from peripherals.resample import resample

from .voice.sinks import SinkWrapper
from .voice.wavio import write_wav_channels

__all__ = ["CallRecorder", "RecordingSink"]


class RecordingSink(SinkWrapper):
    """An :class:`AudioSink` that passes everything on and remembers what is still unplayed."""

    def __init__(self, inner: AudioSink) -> None:
        super().__init__(inner)
        self._queued: collections.deque[np.ndarray] = collections.deque()
        self._queued_n = 0

    async def write(self, samples: np.ndarray) -> None:
        x = to_float32(samples)
        self._queued.append(x)
        self._queued_n += len(x)
        await self._inner.write(samples)

    def clear(self) -> int:
        dropped = self._inner.clear()
        self._drop_tail(dropped)
        return dropped

    # ---- for the recorder
    def take_played(self, n: int) -> np.ndarray:
        """The next ``n`` played samples (fewer if less was written)."""
        out: list[np.ndarray] = []
        while n > 0 and self._queued:
            head = self._queued[0]
            if len(head) <= n:
                out.append(self._queued.popleft())
                n -= len(head)
                self._queued_n -= len(head)
            else:
                out.append(head[:n])
                self._queued[0] = head[n:]
                self._queued_n -= n
                n = 0
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def _drop_tail(self, n: int) -> None:
        while n > 0 and self._queued:
            tail = self._queued[-1]
            if len(tail) <= n:
                self._queued.pop()
                n -= len(tail)
                self._queued_n -= len(tail)
            else:
                self._queued[-1] = tail[: len(tail) - n]
                self._queued_n -= n
                n = 0


class CallRecorder:
    """Builds the two-channel recording as the caller's frames arrive."""

    def __init__(self, sink: RecordingSink, rate: int) -> None:
        self._sink = sink
        self.rate = rate
        self._caller: list[np.ndarray] = []
        self._agent = np.zeros(0, dtype=np.float32)
        self._caller_n = 0
        self._played = sink.played_samples

    def caller_frame(self, frame: np.ndarray) -> None:
        """One frame of the caller (at :attr:`rate`); the agent audio played meanwhile is
        placed at the same point of the timeline."""
        x = to_float32(frame)
        self._caller.append(x.copy())
        played = self._sink.played_samples
        heard = self._sink.take_played(played - self._played)
        self._played = played
        if len(heard):
            heard = resample(heard, self._sink.sample_rate, self.rate)
            start = max(self._caller_n, len(self._agent))
            end = start + len(heard)
            if end > len(self._agent):
                self._agent = np.concatenate(
                    [self._agent, np.zeros(end - len(self._agent), dtype=np.float32)]
                )
            self._agent[start:end] += heard
        self._caller_n += len(x)

    def save(self, path: Path) -> Path:
        """Write the recording (16-bit, two channels: caller, agent)."""
        caller = np.concatenate(self._caller) if self._caller else np.zeros(0, np.float32)
        n = max(len(caller), len(self._agent))
        left = np.pad(caller, (0, n - len(caller)))
        right = np.pad(self._agent, (0, n - len(self._agent)))
        write_wav_channels(path, [left, right], self.rate)
        return path
