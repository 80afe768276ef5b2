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

import base64
import json
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
from phone_peer import PhonePeer, Played

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000
FRAME = 160  # 20 ms of 8 kHz μ-law

__all__ = ["FRAME", "RATE", "Played", "TwilioCall"]


@dataclass
class TwilioCall(PhonePeer):
    """One simulated call: what was sent and what came back, on the caller's clock."""

    call_sid: str = "CA00000000000000000000000000000001"
    stream_sid: str = "MZ00000000000000000000000000000001"
    account_sid: str = "AC00000000000000000000000000000001"
    parameters: dict[str, str] = field(default_factory=dict)
    marks_echoed: list[tuple[float, str]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)  # every message received

    rate = RATE

    def __post_init__(self) -> None:
        super().__post_init__()
        self._seq = 0
        self._chunk = 0
        self._ts_ms = 0
        self._queue: deque[tuple[float, str]] = deque()  # (when its audio has played, mark)

    def _next_seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def _send(self, msg: dict[str, Any]) -> None:
        await self._ws.send_str(json.dumps(msg))

    async def _greet(self) -> None:
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

    # ---- the caller's side
    async def _send_frame(self, frame: np.ndarray) -> None:
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
        await self.wait_closed(timeout)

    # ---- Twilio's side: play what arrives, echo marks, honour clear
    async def _on_message(self, msg: aiohttp.WSMessage, t: float) -> None:
        if msg.type != aiohttp.WSMsgType.TEXT:
            return
        data = json.loads(msg.data)
        event = data["event"]
        self.events.append((t, event))
        if event == "media":
            assert data["streamSid"] == self.stream_sid
            ulaw = base64.b64decode(data["media"]["payload"])
            self._play(np.frombuffer(audioop.ulaw2lin(ulaw, 2), dtype="<i2"), t)
        elif event == "mark":
            self._queue.append((self.play_end, data["mark"]["name"]))
        elif event == "clear":
            self._clear(t)
            while self._queue:  # the pending marks come back at once
                await self._echo(self._queue.popleft()[1])

    async def _on_idle(self, t: float) -> None:
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
