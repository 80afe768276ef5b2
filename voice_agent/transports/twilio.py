"""Twilio Media Streams: the message dialect and the REST calls for transfer and hang-up.

Inbound (Twilio → us), JSON text frames with an ``event`` field:
``connected``; ``start`` (``start.callSid``, ``start.streamSid``,
``start.accountSid``, ``start.customParameters`` from the TwiML
``<Parameter>`` s, ``start.mediaFormat`` ``{encoding: "audio/x-mulaw",
sampleRate: 8000, channels: 1}``); ``media`` (``media.payload``: base64
μ-law, ``media.track``, ``chunk``, ``timestamp``); ``dtmf``
(``dtmf.digit``); ``mark`` (``mark.name``, echoed when the audio before it
has played, or was cleared); ``stop``. Outbound: ``media``
(``{"event": "media", "streamSid": …, "media": {"payload": …}}``),
``mark`` and ``clear`` (Twilio drops the audio it buffers and returns the
pending marks).

Call control goes through the Calls resource of the REST API: updating the
live call with new TwiML (``<Dial>`` the destination) transfers it (the
stream ends), ``Status=completed`` hangs it up. The base URL is
configurable so tests point it at a local recorder.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

import aiohttp

from .media_stream import DialectError, StreamStarted
from .provider_api import CallControlError, EventDialect, RestClient, field

__all__ = ["CallControlError", "TwilioDialect", "TwilioRest", "stream_twiml"]

ENCODINGS = {"audio/x-mulaw": "mulaw", "audio/x-alaw": "alaw"}


class TwilioDialect(EventDialect):
    """Twilio Media Streams' JSON (a :class:`~.media_stream.Dialect`): its ``start``, and
    ``streamSid`` on every outbound message."""

    name = "twilio"
    inbound_tracks = ("inbound", "inbound_track")

    def start(self, msg: dict[str, Any]) -> StreamStarted:
        start = field(msg, "start")
        fmt = start.get("mediaFormat") or {}
        encoding = ENCODINGS.get(fmt.get("encoding", "audio/x-mulaw"))
        if encoding is None:
            raise DialectError(f"unsupported mediaFormat.encoding {fmt.get('encoding')!r}")
        custom = start.get("customParameters") or {}
        return StreamStarted(
            call_id=str(field(start, "callSid")),
            stream_id=str(start.get("streamSid") or field(msg, "streamSid")),
            encoding=encoding,
            sample_rate=int(fmt.get("sampleRate", 8000)),
            custom={str(k): str(v) for k, v in custom.items()},
            caller=str(custom.get("From", custom.get("from", ""))),
            called=str(custom.get("To", custom.get("to", ""))),
            account=str(start.get("accountSid", "")),
        )

    def outbound(self, stream_id: str, event: str, **body: Any) -> str:
        return super().outbound(stream_id, event, streamSid=stream_id, **body)


class TwilioRest(RestClient):
    """Transfer and hang-up of a live call through Twilio's REST API (a ``CallControlApi``).

    ``base_url`` defaults to ``https://api.twilio.com``; credentials are the
    account SID and auth token (HTTP basic auth). The token is never logged.
    Twilio has no REST call that plays DTMF into a ``<Connect><Stream>`` call
    without ending the stream (updating the call's TwiML with ``<Play digits>``
    replaces the ``<Connect>``), so this client has no ``send_dtmf``: the
    transport plays the tones in-band on the stream.
    """

    provider = "Twilio"

    def __init__(
        self, account_sid: str, auth_token: str, base_url: str = "https://api.twilio.com"
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("Twilio call control needs phone.account_sid and phone.auth_token")
        super().__init__(base_url)
        self._sid = account_sid
        self._auth = {"Authorization": aiohttp.encode_basic_auth(account_sid, auth_token)}

    async def _update(self, call_id: str, form: dict[str, str]) -> dict[str, Any]:
        path = f"/2010-04-01/Accounts/{self._sid}/Calls/{call_id}.json"
        return await self.request("POST", path, data=form, headers=self._auth)

    async def transfer(self, call_id: str, destination: str) -> None:
        """Redirect the call to ``<Dial>destination</Dial>`` (a number or a SIP URI)."""
        dest = escape(destination)
        dial = f"<Sip>{dest}</Sip>" if destination.startswith("sip:") else dest
        await self._update(call_id, {"Twiml": f"<Response><Dial>{dial}</Dial></Response>"})

    async def hang_up(self, call_id: str) -> None:
        await self._update(call_id, {"Status": "completed"})


def stream_twiml(
    stream_url: str, parameters: dict[str, str] | None = None, busy_message: str = ""
) -> str:
    """TwiML that connects a call to the media-stream endpoint at ``stream_url`` (wss://…).

    ``busy_message`` is spoken when the stream ends without the agent
    (a full worker refuses the socket; Twilio moves to the next verb).
    """
    params = "".join(
        f'<Parameter name="{escape(k)}" value="{escape(v)}"/>'
        for k, v in (parameters or {}).items()
    )
    say = f"<Say>{escape(busy_message)}</Say>" if busy_message else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Response><Connect><Stream url="{escape(stream_url)}">{params}</Stream></Connect>{say}</Response>'
    )
