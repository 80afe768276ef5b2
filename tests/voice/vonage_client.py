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
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from phone_peer import PhonePeer, Played

__all__ = ["Played", "VonageCall"]


@dataclass
class VonageCall(PhonePeer):
    """One simulated call over Vonage's WebSocket, on the caller's clock (seconds)."""

    uuid: str = "aaaaaaaa-bbbb-cccc-dddd-000000000001"
    caller: str = "447700900000"
    called: str = "447700900001"
    rate: int = 16000
    frame_sizes: list[int] = field(default_factory=list)  # bytes of every binary frame received
    notified: list[tuple[float, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._notifies: deque[tuple[float, Any]] = deque()  # (when played, payload)

    async def _greet(self) -> None:
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

    # ---- the caller's side
    async def _send_frame(self, frame: np.ndarray) -> None:
        await self._ws.send_bytes(frame.tobytes())  # binary L16

    async def press(self, digit: str) -> None:
        await self._ws.send_str(
            json.dumps({"event": "websocket:dtmf", "digit": digit, "duration": 260})
        )

    async def hang_up(self, timeout: float = 30.0) -> None:
        """Vonage ends the call by closing the socket."""
        await asyncio.wait_for(self._ws.close(), timeout)
        self._receiver.cancel()
        await asyncio.gather(self._receiver, return_exceptions=True)

    # ---- Vonage's side: play binary frames, answer notify and clear
    async def _on_message(self, msg: aiohttp.WSMessage, t: float) -> None:
        if msg.type == aiohttp.WSMsgType.BINARY:
            self.frame_sizes.append(len(msg.data))
            self._play(np.frombuffer(msg.data, dtype="<i2"), t)
        elif msg.type == aiohttp.WSMsgType.TEXT:
            data = json.loads(msg.data)
            if data.get("action") == "notify":
                self._notifies.append((self.play_end, data.get("payload")))
            elif data.get("action") == "clear":
                self._clear(t)
                await self._ws.send_str(json.dumps({"event": "websocket:cleared"}))

    async def _on_idle(self, t: float) -> None:
        while self._notifies and self._notifies[0][0] <= t:
            _, payload = self._notifies.popleft()
            self.notified.append((self.now(), payload))
            if not self._ws.closed:
                await self._ws.send_str(
                    json.dumps({"event": "websocket:notify", "payload": payload})
                )
