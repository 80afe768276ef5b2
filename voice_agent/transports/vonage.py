"""Vonage Voice API WebSockets: the third dialect, and the first with binary audio frames.

Written from Vonage's public documentation (the Voice API WebSockets guide and the NCCO
reference); not tested against Vonage itself (no account here). The call's answer
webhook returns an NCCO whose ``connect`` action has a ``websocket`` endpoint
(:func:`connect_ncco`, served at ``/ncco`` by ``phone serve``); Vonage then opens a
WebSocket to us:

- first a JSON text frame ``{"event": "websocket:connected", "content-type":
  "audio/l16;rate=16000", …}`` followed by the ``headers`` of the NCCO's endpoint
  (we put the call's ``uuid``, ``from`` and ``to`` there);
- then binary frames: 20 ms of 16-bit signed little-endian linear PCM, mono, at 8
  or 16 kHz (320 or 640 bytes), both ways. What we send must be whole 20 ms frames
  (the sink pads the last one);
- text frames we send: ``{"action": "clear"}`` drops the audio Vonage still
  buffers (it answers ``websocket:cleared``); ``{"action": "notify", "payload":
  {…}}`` comes back as ``{"event": "websocket:notify", "payload": {…}}`` once the
  audio sent before it has been played (our marks);
- keypad digits arrive as ``{"event": "websocket:dtmf", "digit": "5", "duration": …}``;
- the call ends by Vonage closing the socket (there is no ``stop``).

Call control: ``PUT {base}/v1/calls/{uuid}`` with ``{"action": "hangup"}`` or
``{"action": "transfer", "destination": {"type": "ncco", "ncco": [connect …]}}``,
and ``PUT {base}/v1/calls/{uuid}/dtmf`` with ``{"digits": …}``, authenticated with a
JWT of the Vonage application as a bearer token (``phone.auth_token``; minting it
from the application's private key is left to the deployment).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .media_stream import (
    DialectError,
    DigitPressed,
    MarkPlayed,
    MediaArrived,
    StreamMessage,
    StreamStarted,
)
from .provider_api import RestClient, load_event

RATES = (8000, 16000)  # what Vonage streams (Hz)
_CONTENT_TYPE = re.compile(r"^\s*audio/l16\s*;\s*rate\s*=\s*(\d+)\s*$", re.IGNORECASE)


class VonageDialect:
    """Vonage's WebSocket frames (a :class:`~.media_stream.Dialect`)."""

    name = "vonage"
    whole_frames = True
    hangup_on_close = True

    def parse(self, text: str) -> StreamMessage | None:
        msg = load_event(text)
        event = msg["event"]
        if event == "websocket:connected":
            return self._connected(msg)
        if event == "websocket:dtmf":
            digit = msg.get("digit", (msg.get("dtmf") or {}).get("digit"))
            if not isinstance(digit, str | int) or str(digit) == "":
                raise DialectError("websocket:dtmf without a digit")
            return DigitPressed(str(digit))
        if event == "websocket:notify":
            payload = msg.get("payload")
            if isinstance(payload, dict) and isinstance(payload.get("mark"), str):
                return MarkPlayed(payload["mark"])
            return None
        return None  # websocket:cleared, errors: nothing for the agent

    def parse_binary(self, data: bytes) -> StreamMessage | None:
        if len(data) % 2:
            raise DialectError(f"a 16-bit PCM frame has an even length (got {len(data)})")
        return MediaArrived(data)

    def media(self, stream_id: str, payload: bytes) -> bytes:
        return payload

    def mark(self, stream_id: str, name: str) -> str:
        return json.dumps({"action": "notify", "payload": {"mark": name}})

    def clear(self, stream_id: str) -> str:
        return json.dumps({"action": "clear"})

    @staticmethod
    def _connected(msg: dict[str, Any]) -> StreamStarted:
        content_type = str(msg.get("content-type", ""))
        m = _CONTENT_TYPE.match(content_type)
        if m is None or int(m.group(1)) not in RATES:
            raise DialectError(
                f"unsupported content-type {content_type!r} (audio/l16;rate=8000 or 16000)"
            )
        headers = {
            str(k): v if isinstance(v, str) else json.dumps(v)
            for k, v in msg.items()
            if k not in ("event", "content-type")
        }
        call_id = headers.get("call_uuid") or headers.get("uuid") or ""
        return StreamStarted(
            call_id=call_id,
            stream_id=call_id,
            encoding="l16",
            sample_rate=int(m.group(1)),
            custom=headers,
            caller=headers.get("from", ""),
            called=headers.get("to", ""),
        )


def connect_ncco(
    ws_url: str,
    *,
    uuid: str = "",
    caller: str = "",
    called: str = "",
    rate: int = 16000,
    busy_message: str = "",
) -> list[dict[str, Any]]:
    """The answer webhook's NCCO: connect the call to ``ws_url`` (wss://…) with the call's
    ids as headers; ``busy_message`` is spoken if the socket closes without the agent
    (a full worker refuses it; Vonage moves on to the next action)."""
    if rate not in RATES:
        raise ValueError(f"Vonage streams at {RATES} Hz, not {rate}")
    ncco: list[dict[str, Any]] = [
        {
            "action": "connect",
            "endpoint": [
                {
                    "type": "websocket",
                    "uri": ws_url,
                    "content-type": f"audio/l16;rate={rate}",
                    "headers": {"call_uuid": uuid, "from": caller, "to": called},
                }
            ],
        }
    ]
    if busy_message:
        ncco.append({"action": "talk", "text": busy_message})
    return ncco


class VonageRest(RestClient):
    """Transfer, hang-up and DTMF through the Vonage Voice API (a ``CallControlApi``)."""

    provider = "Vonage"

    def __init__(self, jwt: str, base_url: str = "https://api.nexmo.com") -> None:
        if not jwt:
            raise ValueError("Vonage call control needs phone.auth_token (an application JWT)")
        super().__init__(base_url)
        self._headers = {"Authorization": f"Bearer {jwt}"}

    async def _put(self, path: str, body: dict[str, Any]) -> None:
        await self.request("PUT", path, json=body, headers=self._headers)

    async def transfer(self, call_id: str, destination: str) -> None:
        """Move the call to an NCCO that connects it to ``destination`` (number or SIP URI)."""
        endpoint: dict[str, str] = (
            {"type": "sip", "uri": destination}
            if destination.startswith("sip:")
            else {"type": "phone", "number": destination.lstrip("+")}
        )
        ncco = [{"action": "connect", "endpoint": [endpoint]}]
        await self._put(
            f"/v1/calls/{call_id}",
            {"action": "transfer", "destination": {"type": "ncco", "ncco": ncco}},
        )

    async def hang_up(self, call_id: str) -> None:
        await self._put(f"/v1/calls/{call_id}", {"action": "hangup"})

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        """Play ``digits`` into the call (Vonage's DTMF endpoint)."""
        await self._put(f"/v1/calls/{call_id}/dtmf", {"digits": digits})
