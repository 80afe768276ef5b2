"""A LiveKit room without a server, for tests and benchmarks of :class:`RoomCall`.

No LiveKit server can run on the development machine, so this stands in for
the *room* only — everything audio is the SDK's real ``rtc`` objects:

- :class:`LoopbackRoom` has ``rtc.Room``'s surface (an ``rtc.EventEmitter``
  with ``name``, ``remote_participants``, ``local_participant``). The local
  participant is an autospecced ``rtc.LocalParticipant`` that records what
  the agent does with it: the tracks it publishes, its attributes
  (``lk.agent.state``), its text streams (``lk.transcription``). The test or
  benchmark emits the room events (``participant_connected``,
  ``track_subscribed``, ``sip_dtmf_received``, ``disconnected`` …).
- :class:`Mic` is a caller's microphone: an ``rtc.AudioSource`` +
  ``LocalAudioTrack`` fed in real time (silence when nothing is said).
- :class:`Ear` subscribes to a track like a remote participant
  (``rtc.AudioStream`` at 16 kHz) and keeps every frame with its arrival time,
  so latencies are measured from the audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any
from unittest.mock import create_autospec

import numpy as np
from livekit import rtc

from ..transports.livekit_audio import caller_audio

RATE = 16000
FRAME = RATE // 50  # 20 ms
LOUD = 0.02  # a 20 ms frame whose peak passes this is sound (full scale 1.0)


def remote_participant(
    identity: str,
    *,
    kind: int = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
    attributes: dict[str, str] | None = None,
) -> Any:
    """An autospecced ``rtc.RemoteParticipant`` with ``identity``, ``kind`` and ``attributes``."""
    p = create_autospec(rtc.RemoteParticipant, instance=True)
    p.identity = identity
    p.kind = kind
    p.attributes = dict(attributes or {})
    p.track_publications = {}
    return p


def audio_publication(sid: str) -> Any:
    """An autospecced ``rtc.RemoteTrackPublication`` with ``sid``."""
    pub = create_autospec(rtc.RemoteTrackPublication, instance=True)
    pub.sid = sid
    return pub


class LoopbackRoom(rtc.EventEmitter[str]):
    """``rtc.Room``'s surface without a server (see the module docstring)."""

    def __init__(self, name: str = "call-room", identity: str = "agent-1") -> None:
        super().__init__()
        self.name = name
        self.remote_participants: dict[str, Any] = {}
        self.local_participant = create_autospec(rtc.LocalParticipant, instance=True)
        self.local_participant.identity = identity
        self.published: list[Any] = []
        self.attributes: list[dict[str, str]] = []
        self.streams: list[dict[str, Any]] = []

        async def publish_track(track: Any, options: Any = None) -> Any:
            self.published.append(track)
            pub = create_autospec(rtc.LocalTrackPublication, instance=True)
            pub.sid = "TR_agent"
            return pub

        async def set_attributes(attributes: dict[str, str]) -> None:
            self.attributes.append(dict(attributes))

        async def stream_text(**kwargs: Any) -> Any:
            record: dict[str, Any] = {**kwargs, "text": ""}
            self.streams.append(record)
            writer = create_autospec(rtc.TextStreamWriter, instance=True)

            async def write(text: str) -> None:
                record["text"] += text

            writer.write.side_effect = write
            return writer

        self.local_participant.publish_track.side_effect = publish_track
        self.local_participant.set_attributes.side_effect = set_attributes
        self.local_participant.stream_text.side_effect = stream_text

    def join(self, participant: Any) -> None:
        """The participant joins (``participant_connected``)."""
        self.remote_participants[participant.identity] = participant
        self.emit("participant_connected", participant)

    def leave(self, participant: Any) -> None:
        """The participant leaves (``participant_disconnected``)."""
        self.remote_participants.pop(participant.identity, None)
        self.emit("participant_disconnected", participant)

    def states(self) -> list[str]:
        """Every ``lk.agent.state`` value set, in order."""
        return [a["lk.agent.state"] for a in self.attributes if "lk.agent.state" in a]


class Mic:
    """A caller's microphone: an ``AudioSource`` fed in real time, silence between utterances."""

    def __init__(self, rate: int = RATE) -> None:
        self.rate = rate
        self.frame = rate // 50
        self.source = rtc.AudioSource(rate, 1, queue_size_ms=100)
        self.track = rtc.LocalAudioTrack.create_audio_track("caller-mic", self.source)
        self._pending: list[np.ndarray] = []
        self._speaking = False
        self._task: asyncio.Task[None] | None = None

    def say(self, samples: np.ndarray) -> None:
        """Queue ``samples`` (float32 at ``rate``) to be spoken after what is queued."""
        self._pending.append(samples.astype(np.float32))

    @property
    def idle(self) -> bool:
        return not self._pending and not self._speaking

    async def _feed(self) -> None:
        buf = np.zeros(0, dtype=np.float32)
        while True:
            if len(buf) < self.frame and self._pending:
                buf = np.concatenate([buf, self._pending.pop(0)])
            self._speaking = len(buf) > 0
            chunk = np.zeros(self.frame, np.float32)
            n = min(self.frame, len(buf))
            chunk[:n] = buf[:n]
            buf = buf[n:]
            pcm = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)
            await self.source.capture_frame(rtc.AudioFrame(pcm.tobytes(), self.rate, 1, self.frame))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._feed(), name="mic")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.source.aclose()


class Ear:
    """Listens to a track as a subscriber (16 kHz): frames with their arrival times."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self, track: Any) -> None:
        async def run() -> None:
            async with contextlib.aclosing(caller_audio(track, sample_rate=RATE)) as frames:
                async for frame in frames:
                    self.frames.append(frame)
                    self.times.append(time.monotonic())

        self._task = asyncio.get_running_loop().create_task(run(), name="ear")

    def loud(self, after: float = 0.0, before: float = float("inf")) -> list[float]:
        """Arrival times of the frames with sound, between ``after`` and ``before``."""
        return [
            t
            for t, f in zip(self.times, self.frames, strict=True)
            if after < t < before and np.abs(f).max() > LOUD
        ]

    def audio(self, after: float = 0.0) -> np.ndarray:
        kept = [f for t, f in zip(self.times, self.frames, strict=True) if t > after]
        return np.concatenate(kept) if kept else np.zeros(0, np.float32)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait (polling every 20 ms) until ``cond()``; ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
