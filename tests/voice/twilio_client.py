"""A Twilio Media Streams peer for tests, written from Twilio's public documentation of
the protocol (not from this project's code): it plays Twilio's side of a bidirectional
``<Connect><Stream>``.

Twilio → server: ``connected``, ``start`` (accountSid, callSid, streamSid, tracks,
customParameters, mediaFormat audio/x-mulaw 8000 Hz mono), ``media`` every 20 ms
(160 bytes of base64 μ-law, with sequenceNumber, chunk and timestamp), ``dtmf``,
``mark`` (echoed when the audio sent before it has played), ``stop``.
Server → Twilio: ``media`` (played in order, as fast as it arrives but never faster
than real time), ``mark``, ``clear`` (drop the buffered audio; the pending marks are
returned at once).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np

from peripherals.resample import resample

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000
FRAME = 160  # 20 ms of 8 kHz μ-law


@dataclass
class Played:
    """A frame of the agent's audio as the caller's phone played it (seconds since connect)."""

    start: float
    samples: np.ndarray


@dataclass
class TwilioCall:
    """One simulated call: what was sent and what came back, on the caller's clock."""

    url: str
    call_sid: str = "CA00000000000000000000000000000001"
    stream_sid: str = "MZ00000000000000000000000000000001"
    account_sid: str = "AC00000000000000000000000000000001"
    parameters: dict[str, str] = field(default_factory=dict)
    played: list[Played] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    marks_echoed: list[tuple[float, str]] = field(default_factory=list)
    speech_spans: list[tuple[float, float]] = field(default_factory=list)  # caller's speech (s)
    events: list[tuple[float, str]] = field(default_factory=list)  # every message received
    closed_code: int | None = None

    def __post_init__(self) -> None:
        self._seq = 0
        self._chunk = 0
        self._ts_ms = 0
        self._t0 = 0.0
        self._queue: deque[tuple[float, np.ndarray | str]] = deque()  # (arrival, audio or mark)
        self._play_end = 0.0

    def now(self) -> float:
        return time.monotonic() - self._t0

    async def __aenter__(self) -> TwilioCall:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(self.url)
        self._t0 = time.monotonic()
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send(
            {
                "event": "start",
                "sequenceNumber": self._next_seq(),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "customParameters": self.parameters,
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
                },
                "streamSid": self.stream_sid,
            }
        )
        self._receiver = asyncio.ensure_future(self._receive())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._receiver.cancel()
        await asyncio.gather(self._receiver, return_exceptions=True)
        await self._ws.close()
        await self._session.close()

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def _send(self, msg: dict[str, Any]) -> None:
        await self._ws.send_str(json.dumps(msg))

    # ---- the caller's side
    async def speak(self, audio: np.ndarray, rate: int) -> None:
        """Stream ``audio`` (float32 at ``rate``) as the caller, paced in real time.
        Silence (20 ms frames below 1 % of full scale) is sent too, as a phone does."""
        x = resample(audio.astype(np.float32), rate, RATE)
        pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
        start = time.monotonic()
        voiced_from: float | None = None
        for k in range(0, len(pcm), FRAME):
            frame = pcm[k : k + FRAME]
            if len(frame) < FRAME:
                frame = np.concatenate([frame, np.zeros(FRAME - len(frame), dtype="<i2")])
            loud = np.max(np.abs(frame)) > 327
            t = self.now()
            if loud and voiced_from is None:
                voiced_from = t
            elif not loud and voiced_from is not None and not self._loud_ahead(pcm, k):
                self.speech_spans.append((voiced_from, t))
                voiced_from = None
            await self._send(
                {
                    "event": "media",
                    "sequenceNumber": self._next_seq(),
                    "media": {
                        "track": "inbound",
                        "chunk": str(self._chunk),
                        "timestamp": str(self._ts_ms),
                        "payload": base64.b64encode(audioop.lin2ulaw(frame.tobytes(), 2)).decode(),
                    },
                    "streamSid": self.stream_sid,
                }
            )
            self._chunk += 1
            self._ts_ms += 20
            delay = start + (k // FRAME + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if voiced_from is not None:
            self.speech_spans.append((voiced_from, self.now()))

    @staticmethod
    def _loud_ahead(pcm: np.ndarray, k: int, window: int = 25) -> bool:
        """Speech resumes within ``window`` frames (a pause inside the utterance)."""
        ahead = pcm[k : k + window * FRAME]
        return bool(len(ahead)) and bool(np.max(np.abs(ahead)) > 327)

    async def silence(self, seconds: float) -> None:
        await self.speak(np.zeros(int(seconds * RATE), dtype=np.float32), RATE)

    async def press(self, digit: str) -> None:
        await self._send(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": self._next_seq(),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def hang_up(self, timeout: float = 30.0) -> None:
        """Send ``stop`` and wait for the server to close the socket."""
        await self._send(
            {
                "event": "stop",
                "sequenceNumber": self._next_seq(),
                "streamSid": self.stream_sid,
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            }
        )
        await asyncio.wait_for(asyncio.shield(self._receiver), timeout)

    async def wait_closed(self, timeout: float) -> None:
        await asyncio.wait_for(asyncio.shield(self._receiver), timeout)

    # ---- Twilio's side: play what arrives, echo marks, honour clear
    async def _receive(self) -> None:
        try:
            while True:
                try:
                    msg = await self._ws.receive(timeout=0.02)
                except TimeoutError:
                    await self._flush_marks(self.now())
                    continue
                if msg.type in (
                    aiohttp.WSMsgType.CLOSE,
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                ):
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                t = self.now()
                event = data["event"]
                self.events.append((t, event))
                if event == "media":
                    assert data["streamSid"] == self.stream_sid
                    ulaw = base64.b64decode(data["media"]["payload"])
                    pcm = np.frombuffer(audioop.ulaw2lin(ulaw, 2), dtype="<i2")
                    start = max(t, self._play_end)
                    self._play_end = start + len(pcm) / RATE
                    self.played.append(Played(start, pcm.astype(np.float32) / 32768))
                elif event == "mark":
                    self._queue.append((self._play_end, data["mark"]["name"]))
                elif event == "clear":
                    self.clears.append(t)
                    self.played = [p for p in self.played if p.start < t]
                    if self.played and self._play_end > t:  # cut the frame playing now
                        last = self.played[-1]
                        keep = int((t - last.start) * RATE)
                        self.played[-1] = Played(last.start, last.samples[:keep])
                    self._play_end = t
                    while self._queue:
                        await self._echo(self._queue.popleft()[1])
                await self._flush_marks(t)
        finally:
            self.closed_code = self._ws.close_code

    async def _flush_marks(self, t: float) -> None:
        while self._queue and self._queue[0][0] <= t:
            await self._echo(self._queue.popleft()[1])

    async def _echo(self, name: str) -> None:
        self.marks_echoed.append((self.now(), name))
        if not self._ws.closed:
            await self._send(
                {
                    "event": "mark",
                    "sequenceNumber": self._next_seq(),
                    "streamSid": self.stream_sid,
                    "mark": {"name": name},
                }
            )

    # ---- what the caller heard
    def heard(self, since: float = 0.0) -> np.ndarray:
        """The agent's audio as played, on the call's timeline from ``since`` (8 kHz float32)."""
        frames = [p for p in self.played if p.start >= since]
        if not frames:
            return np.zeros(0, dtype=np.float32)
        end = max(p.start + len(p.samples) / RATE for p in frames)
        out = np.zeros(int((end - since) * RATE) + 1, dtype=np.float32)
        for p in frames:
            i = int((p.start - since) * RATE)
            out[i : i + len(p.samples)] = p.samples[: len(out) - i]
        return out

    def first_audio_after(self, t: float, threshold: float = 0.01) -> float | None:
        """When the first audible agent sample after ``t`` was played (s)."""
        for p in self.played:
            if p.start + len(p.samples) / RATE <= t:
                continue
            loud = np.nonzero(np.abs(p.samples) > threshold)[0]
            loud = loud[p.start + loud / RATE >= t]
            if len(loud):
                return p.start + loud[0] / RATE
        return None
