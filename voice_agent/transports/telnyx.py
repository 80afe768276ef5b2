"""Telnyx media streaming: the second dialect, to show that a provider is a serializer.

Written from Telnyx's public media-streaming documentation, not tested against
Telnyx itself. Inbound: ``connected``; ``start`` (``start.call_control_id``,
``stream_id``, ``start.media_format`` ``{encoding: "PCMU"|"PCMA",
sample_rate: 8000}``, ``start.from`` / ``start.to``, ``start.custom_parameters``
when given); ``media`` (``media.payload`` base64); ``dtmf`` (``dtmf.digit``);
``mark`` (``mark.name``); ``stop``. Outbound (bidirectional RTP mode):
``{"event": "media", "media": {"payload": …}}``, ``mark``, ``clear``.
Call control: ``POST {base}/v2/calls/{call_control_id}/actions/transfer``
(``{"to": …}``), ``…/actions/hangup`` and ``…/actions/send_dtmf``
(``{"digits": …}``) with the API key as a bearer token.
"""

from __future__ import annotations

from typing import Any

from .media_stream import DialectError, StreamStarted
from .provider_api import EventDialect, RestClient, field

ENCODINGS = {"PCMU": "mulaw", "PCMA": "alaw"}


class TelnyxDialect(EventDialect):
    """Telnyx media streaming's JSON (a :class:`~.media_stream.Dialect`): only its
    ``start`` differs from Twilio's spelling (outbound messages carry no stream id)."""

    name = "telnyx"

    def start(self, msg: dict[str, Any]) -> StreamStarted:
        start = field(msg, "start")
        fmt = start.get("media_format") or {}
        encoding = ENCODINGS.get(str(fmt.get("encoding", "PCMU")).upper())
        if encoding is None:
            raise DialectError(f"unsupported media_format.encoding {fmt.get('encoding')!r}")
        custom = start.get("custom_parameters") or {}
        return StreamStarted(
            call_id=str(field(start, "call_control_id")),
            stream_id=str(msg.get("stream_id") or start.get("stream_id") or ""),
            encoding=encoding,
            sample_rate=int(fmt.get("sample_rate", 8000)),
            custom={str(k): str(v) for k, v in custom.items()},
            caller=str(start.get("from", "")),
            called=str(start.get("to", "")),
        )


class TelnyxRest(RestClient):
    """Transfer, hang-up and DTMF through Telnyx Call Control (a ``CallControlApi``)."""

    provider = "Telnyx"

    def __init__(self, api_key: str, base_url: str = "https://api.telnyx.com") -> None:
        if not api_key:
            raise ValueError("Telnyx call control needs phone.auth_token (the API key)")
        super().__init__(base_url)
        self._headers = {"Authorization": f"Bearer {api_key}"}

    async def _action(self, call_id: str, action: str, body: dict[str, Any]) -> None:
        path = f"/v2/calls/{call_id}/actions/{action}"
        await self.request("POST", path, json=body, headers=self._headers)

    async def transfer(self, call_id: str, destination: str) -> None:
        await self._action(call_id, "transfer", {"to": destination})

    async def hang_up(self, call_id: str) -> None:
        await self._action(call_id, "hangup", {})

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        """Play ``digits`` on the call (``w``: half a second's pause, as Telnyx spells it)."""
        await self._action(call_id, "send_dtmf", {"digits": digits})
