"""A Vonage Voice API WebSocket peer for tests, written from Vonage's public documentation
(the Voice API WebSockets guide), not from this project's code: it plays Vonage's side of an
NCCO ``connect`` to a ``websocket`` endpoint.

Vonage → server: first a text frame ``{"event": "websocket:connected", "content-type":
"audio/l16;rate=16000", <the endpoint's headers>}``, then binary frames of 20 ms of 16-bit
little-endian linear PCM (640 bytes at 16 kHz, 320 at 8 kHz), paced in real time;
``{"event": "websocket:dtmf", "digit": …, "duration": …}`` for a key; the call ends when
Vonage closes the socket.
Server → Vonage: binary frames of the same format (played in order, never faster than real
time); ``{"action": "notify", "payload": {…}}`` (answered with ``{"event":
"websocket:notify", "payload": {…}}`` once the audio before it has played);
``{"action": "clear"}`` (buffered audio dropped, answered with ``websocket:cleared``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from peripherals.resample import resample


@dataclass
class Played:
    start: float
    samples: np.ndarray


@dataclass
class VonageCall:
    """One simulated call over Vonage's WebSocket, on the caller's clock (seconds)."""

    url: str
    uuid: str = "aaaaaaaa-bbbb-cccc-dddd-000000000001"
    caller: str = "447700900000"
    called: str = "447700900001"
    rate: int = 16000
    played: list[Played] = field(default_factory=list)
    frame_sizes: list[int] = field(default_factory=list)  # bytes of every binary frame received
    notified: list[tuple[float, Any]] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    speech_spans: list[tuple[float, float]] = field(default_factory=list)
    closed_code: int | None = None

    def __post_init__(self) -> None:
        self._t0 = 0.0
        self._play_end = 0.0
        self._notifies: deque[tuple[float, Any]] = deque()
        self.frame = self.rate // 50  # samples per 20 ms

    def now(self) -> float:
        return time.monotonic() - self._t0

    async def __aenter__(self) -> VonageCall:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url)
        self._t0 = time.monotonic()
        await self._ws.send_str(
            json.dumps(
                {
                    "event": "websocket:connected",
                    "content-type": f"audio/l16;rate={self.rate}",
                    "call_uuid": self.uuid,
                    "from": self.caller,
                    "to": self.called,
                }
            )
        )
        self._receiver = asyncio.ensure_future(self._receive())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._receiver.cancel()
        await asyncio.gather(self._receiver, return_exceptions=True)
        await self._ws.close()
        await self._session.close()

    # ---- the caller's side
    async def speak(self, audio: np.ndarray, rate: int) -> None:
        """Stream ``audio`` (float32 at ``rate``) as binary L16 frames in real time."""
        x = resample(audio.astype(np.float32), rate, self.rate)
        pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
        start = time.monotonic()
        voiced_from: float | None = None
        last_loud: float | None = None
        for k in range(0, len(pcm), self.frame):
            frame = pcm[k : k + self.frame]
            if len(frame) < self.frame:
                frame = np.concatenate([frame, np.zeros(self.frame - len(frame), dtype="<i2")])
            t = self.now()
            if np.max(np.abs(frame)) > 327:
                voiced_from = t if voiced_from is None else voiced_from
                last_loud = t + 0.02
            await self._ws.send_bytes(frame.tobytes())
            delay = start + (k // self.frame + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if voiced_from is not None and last_loud is not None:
            self.speech_spans.append((voiced_from, last_loud))

    async def silence(self, seconds: float) -> None:
        await self.speak(np.zeros(int(seconds * self.rate), dtype=np.float32), self.rate)

    async def press(self, digit: str) -> None:
        await self._ws.send_str(
            json.dumps({"event": "websocket:dtmf", "digit": digit, "duration": 260})
        )

    async def hang_up(self, timeout: float = 30.0) -> None:
        """Vonage ends the call by closing the socket."""
        await asyncio.wait_for(self._ws.close(), timeout)
        self._receiver.cancel()
        await asyncio.gather(self._receiver, return_exceptions=True)

    async def wait_closed(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._receiver), timeout)

    # ---- Vonage's side: play binary frames, answer notify and clear
    async def _receive(self) -> None:
        try:
            while True:
                try:
                    msg = await self._ws.receive(timeout=0.02)
                except TimeoutError:
                    await self._flush_notifies(self.now())
                    continue
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    break
                t = self.now()
                if msg.type == aiohttp.WSMsgType.BINARY:
                    self.frame_sizes.append(len(msg.data))
                    pcm = np.frombuffer(msg.data, dtype="<i2")
                    start = max(t, self._play_end)
                    self._play_end = start + len(pcm) / self.rate
                    self.played.append(Played(start, pcm.astype(np.float32) / 32768))
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)
                    if data.get("action") == "notify":
                        self._notifies.append((self._play_end, data.get("payload")))
                    elif data.get("action") == "clear":
                        self.clears.append(t)
                        self.played = [p for p in self.played if p.start < t]
                        if self.played and self._play_end > t:
                            last = self.played[-1]
                            keep = int((t - last.start) * self.rate)
                            self.played[-1] = Played(last.start, last.samples[:keep])
                        self._play_end = t
                        await self._ws.send_str(json.dumps({"event": "websocket:cleared"}))
                await self._flush_notifies(t)
        finally:
            self.closed_code = self._ws.close_code

    async def _flush_notifies(self, t: float) -> None:
        while self._notifies and self._notifies[0][0] <= t:
            _, payload = self._notifies.popleft()
            self.notified.append((self.now(), payload))
            if not self._ws.closed:
                await self._ws.send_str(
                    json.dumps({"event": "websocket:notify", "payload": payload})
                )

    # ---- what the caller heard
    def heard(self, since: float = 0.0) -> np.ndarray:
        frames = [p for p in self.played if p.start >= since]
        if not frames:
            return np.zeros(0, dtype=np.float32)
        end = max(p.start + len(p.samples) / self.rate for p in frames)
        out = np.zeros(int((end - since) * self.rate) + 1, dtype=np.float32)
        for p in frames:
            i = int((p.start - since) * self.rate)
            out[i : i + len(p.samples)] = p.samples[: len(out) - i]
        return out
