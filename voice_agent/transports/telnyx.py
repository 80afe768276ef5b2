"""Telnyx media streaming: the second dialect, to show that a provider is a serializer.

Written from Telnyx's public media-streaming documentation, not tested against
Telnyx itself. Inbound: ``connected``; ``start`` (``start.call_control_id``,
``stream_id``, ``start.media_format`` ``{encoding: "PCMU"|"PCMA",
sample_rate: 8000}``, ``start.from`` / ``start.to``, ``start.custom_parameters``
when given); ``media`` (``media.payload`` base64); ``dtmf`` (``dtmf.digit``);
``mark`` (``mark.name``); ``stop``. Outbound (bidirectional RTP mode):
``{"event": "media", "media": {"payload": …}}``, ``mark``, ``clear``.
Call control: ``POST {base}/v2/calls/{call_control_id}/actions/transfer``
(``{"to": …}``) and ``…/actions/hangup`` with the API key as a bearer token.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from .media_stream import (
    DialectError,
    DigitPressed,
    MarkPlayed,
    MediaArrived,
    StreamConnected,
    StreamMessage,
    StreamStarted,
    StreamStopped,
    b64,
    unb64,
)
from .twilio import REST_TIMEOUT_S, CallControlError, _field, _load

ENCODINGS = {"PCMU": "mulaw", "PCMA": "alaw"}


class TelnyxDialect:
    """Telnyx media streaming's JSON (a :class:`~.media_stream.Dialect`)."""

    name = "telnyx"

    def parse(self, text: str) -> StreamMessage | None:
        msg = _load(text)
        event = msg["event"]
        if event == "connected":
            return StreamConnected()
        if event == "start":
            start = _field(msg, "start")
            fmt = start.get("media_format") or {}
            encoding = ENCODINGS.get(str(fmt.get("encoding", "PCMU")).upper())
            if encoding is None:
                raise DialectError(f"unsupported media_format.encoding {fmt.get('encoding')!r}")
            custom = start.get("custom_parameters") or {}
            return StreamStarted(
                call_id=str(_field(start, "call_control_id")),
                stream_id=str(msg.get("stream_id") or start.get("stream_id") or ""),
                encoding=encoding,
                sample_rate=int(fmt.get("sample_rate", 8000)),
                custom={str(k): str(v) for k, v in custom.items()},
                caller=str(start.get("from", "")),
                called=str(start.get("to", "")),
            )
        if event == "media":
            media = _field(msg, "media")
            if media.get("track", "inbound") != "inbound":
                return None
            return MediaArrived(unb64(str(_field(media, "payload"))))
        if event == "dtmf":
            return DigitPressed(str(_field(msg, "dtmf", "digit")))
        if event == "mark":
            return MarkPlayed(str(_field(msg, "mark", "name")))
        if event == "stop":
            return StreamStopped()
        return None

    def media(self, stream_id: str, payload: bytes) -> str:
        return json.dumps({"event": "media", "media": {"payload": b64(payload)}})

    def mark(self, stream_id: str, name: str) -> str:
        return json.dumps({"event": "mark", "mark": {"name": name}})

    def clear(self, stream_id: str) -> str:
        return json.dumps({"event": "clear"})


class TelnyxRest:
    """Transfer and hang-up through Telnyx Call Control (a ``CallControlApi``)."""

    def __init__(self, api_key: str, base_url: str = "https://api.telnyx.com") -> None:
        if not api_key:
            raise ValueError("Telnyx call control needs phone.auth_token (the API key)")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._base = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def _action(self, call_id: str, action: str, body: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S)
            )
        url = f"{self._base}/v2/calls/{call_id}/actions/{action}"
        try:
            async with self._session.post(url, json=body, headers=self._headers) as resp:
                if resp.status >= 400:
                    raise CallControlError(
                        f"Telnyx answered {resp.status}: {(await resp.text())[:200]}"
                    )
        except aiohttp.ClientError as exc:
            raise CallControlError(f"Telnyx unreachable: {type(exc).__name__}: {exc}") from exc

    async def transfer(self, call_id: str, destination: str) -> None:
        await self._action(call_id, "transfer", {"to": destination})

    async def hang_up(self, call_id: str) -> None:
        await self._action(call_id, "hangup", {})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
