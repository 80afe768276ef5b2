"""What every telephony provider's side of a media-stream call does, for the test peers
(twilio_client.py, vonage_client.py): connect, stream the caller's audio paced in real
time, play what the server sends in order and never faster than real time, drop it on a
clear, and keep what the caller heard on the caller's clock. The protocol itself (the
messages, their encoding, marks or notifies) stays in each provider's peer, written from
that provider's documentation."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from peripherals.resample import resample

LOUD = 327  # a 20 ms frame with a sample above this (1 % of full scale) is speech
PAUSE_FRAMES = 25  # speech resuming within this many frames (0.5 s) is one utterance


@dataclass
class Played:
    """A frame of the agent's audio as the caller's phone played it (seconds since connect)."""

    start: float
    samples: np.ndarray


@dataclass
class PhonePeer:
    """One simulated call on the provider's side; subclasses speak the provider's protocol
    (``_greet``, ``_send_frame``, ``_on_message``, ``_on_idle``)."""

    url: str
    played: list[Played] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    speech_spans: list[tuple[float, float]] = field(default_factory=list)  # caller's speech (s)
    closed_code: int | None = None

    rate = 8000  # the stream's sample rate (Hz); a subclass may make it a field

    def __post_init__(self) -> None:
        self._t0 = 0.0
        self._play_end = 0.0
        self.frame = self.rate // 50  # samples per 20 ms

    def now(self) -> float:
        return time.monotonic() - self._t0

    async def __aenter__(self) -> Any:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url)
        self._t0 = time.monotonic()
        await self._greet()
        self._receiver = asyncio.ensure_future(self._receive())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._receiver.cancel()
        await asyncio.gather(self._receiver, return_exceptions=True)
        await self._ws.close()
        await self._session.close()

    # ---- the protocol: a subclass's part
    async def _greet(self) -> None:
        """The provider's first messages after connecting."""

    async def _send_frame(self, frame: np.ndarray) -> None:
        """Send 20 ms of the caller's audio (int16 at ``rate``)."""
        raise NotImplementedError

    async def _on_message(self, msg: aiohttp.WSMessage, t: float) -> None:
        """Handle one message from the server, received at ``t``."""
        raise NotImplementedError

    async def _on_idle(self, t: float) -> None:
        """Called at least every 20 ms (after each message, or when none came)."""

    # ---- the caller's side
    async def speak(self, audio: np.ndarray, rate: int) -> None:
        """Stream ``audio`` (float32 at ``rate``) as the caller, paced in real time.
        Silence (20 ms frames below 1 % of full scale) is sent too, as a phone does."""
        x = resample(audio.astype(np.float32), rate, self.rate)
        pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
        start = time.monotonic()
        voiced_from: float | None = None
        for k in range(0, len(pcm), self.frame):
            frame = pcm[k : k + self.frame]
            if len(frame) < self.frame:
                frame = np.concatenate([frame, np.zeros(self.frame - len(frame), dtype="<i2")])
            loud = np.max(np.abs(frame)) > LOUD
            t = self.now()
            if loud and voiced_from is None:
                voiced_from = t
            elif not loud and voiced_from is not None and not self._loud_ahead(pcm, k):
                self.speech_spans.append((voiced_from, t))
                voiced_from = None
            await self._send_frame(frame)
            delay = start + (k // self.frame + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if voiced_from is not None:
            self.speech_spans.append((voiced_from, self.now()))

    def _loud_ahead(self, pcm: np.ndarray, k: int) -> bool:
        """Speech resumes within `PAUSE_FRAMES` frames (a pause inside the utterance)."""
        ahead = pcm[k : k + PAUSE_FRAMES * self.frame]
        return bool(len(ahead)) and bool(np.max(np.abs(ahead)) > LOUD)

    async def silence(self, seconds: float) -> None:
        await self.speak(np.zeros(int(seconds * self.rate), dtype=np.float32), self.rate)

    async def wait_closed(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._receiver), timeout)

    # ---- the provider's side: receive, play in order, honour clear
    async def _receive(self) -> None:
        try:
            while True:
                try:
                    msg = await self._ws.receive(timeout=0.02)
                except TimeoutError:
                    await self._on_idle(self.now())
                    continue
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    break
                t = self.now()
                await self._on_message(msg, t)
                await self._on_idle(t)
        finally:
            self.closed_code = self._ws.close_code

    def _play(self, pcm: np.ndarray, t: float) -> None:
        """The phone plays ``pcm`` (int16) after what it is playing, from ``t`` at the earliest."""
        start = max(t, self._play_end)
        self._play_end = start + len(pcm) / self.rate
        self.played.append(Played(start, pcm.astype(np.float32) / 32768))

    @property
    def play_end(self) -> float:
        """When the audio received so far will have played (s)."""
        return self._play_end

    def _clear(self, t: float) -> None:
        """Drop the buffered audio at ``t``: what has not played yet is never heard."""
        self.clears.append(t)
        self.played = [p for p in self.played if p.start < t]
        if self.played and self._play_end > t:  # cut the frame playing now
            last = self.played[-1]
            keep = int((t - last.start) * self.rate)
            self.played[-1] = Played(last.start, last.samples[:keep])
        self._play_end = t

    # ---- what the caller heard
    def heard(self, since: float = 0.0) -> np.ndarray:
        """The agent's audio as played, on the call's timeline from ``since`` (float32 at ``rate``)."""
        frames = [p for p in self.played if p.start >= since]
        if not frames:
            return np.zeros(0, dtype=np.float32)
        end = max(p.start + len(p.samples) / self.rate for p in frames)
        out = np.zeros(int((end - since) * self.rate) + 1, dtype=np.float32)
        for p in frames:
            i = int((p.start - since) * self.rate)
            out[i : i + len(p.samples)] = p.samples[: len(out) - i]
        return out

    def first_audio_after(self, t: float, threshold: float = 0.01) -> float | None:
        """When the first audible agent sample after ``t`` was played (s)."""
        for p in self.played:
            if p.start + len(p.samples) / self.rate <= t:
                continue
            loud = np.nonzero(np.abs(p.samples) > threshold)[0]
            loud = loud[p.start + loud / self.rate >= t]
            if len(loud):
                return p.start + loud[0] / self.rate
        return None
