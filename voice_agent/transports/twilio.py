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

import json
from typing import Any
from xml.sax.saxutils import escape

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

ENCODINGS = {"audio/x-mulaw": "mulaw", "audio/x-alaw": "alaw"}
REST_TIMEOUT_S = 10.0  # a transfer or hang-up request must answer within this (s)


def _load(text: str) -> dict[str, Any]:
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DialectError(f"not JSON: {exc}") from exc
    if not isinstance(msg, dict) or not isinstance(msg.get("event"), str):
        raise DialectError("a media-stream message is a JSON object with an 'event'")
    return msg


def _field(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            raise DialectError(f"missing {'.'.join(path)}")
        obj = obj[key]
    return obj


class TwilioDialect:
    """Twilio Media Streams' JSON (a :class:`~.media_stream.Dialect`)."""

    name = "twilio"

    def parse(self, text: str) -> StreamMessage | None:
        msg = _load(text)
        event = msg["event"]
        if event == "connected":
            return StreamConnected()
        if event == "start":
            start = _field(msg, "start")
            fmt = start.get("mediaFormat") or {}
            encoding = ENCODINGS.get(fmt.get("encoding", "audio/x-mulaw"))
            if encoding is None:
                raise DialectError(f"unsupported mediaFormat.encoding {fmt.get('encoding')!r}")
            custom = start.get("customParameters") or {}
            return StreamStarted(
                call_id=str(_field(start, "callSid")),
                stream_id=str(start.get("streamSid") or _field(msg, "streamSid")),
                encoding=encoding,
                sample_rate=int(fmt.get("sampleRate", 8000)),
                custom={str(k): str(v) for k, v in custom.items()},
                caller=str(custom.get("From", custom.get("from", ""))),
                called=str(custom.get("To", custom.get("to", ""))),
                account=str(start.get("accountSid", "")),
            )
        if event == "media":
            media = _field(msg, "media")
            if media.get("track", "inbound") not in ("inbound", "inbound_track"):
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
        return json.dumps(
            {"event": "media", "streamSid": stream_id, "media": {"payload": b64(payload)}}
        )

    def mark(self, stream_id: str, name: str) -> str:
        return json.dumps({"event": "mark", "streamSid": stream_id, "mark": {"name": name}})

    def clear(self, stream_id: str) -> str:
        return json.dumps({"event": "clear", "streamSid": stream_id})


class CallControlError(RuntimeError):
    """The provider refused or failed a call-control request (its message included)."""


class TwilioRest:
    """Transfer and hang-up of a live call through Twilio's REST API (a ``CallControlApi``).

    ``base_url`` defaults to ``https://api.twilio.com``; credentials are the
    account SID and auth token (HTTP basic auth). The token is never logged.
    """

    def __init__(
        self, account_sid: str, auth_token: str, base_url: str = "https://api.twilio.com"
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("Twilio call control needs phone.account_sid and phone.auth_token")
        self._sid = account_sid
        self._auth = aiohttp.BasicAuth(account_sid, auth_token)
        self._base = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _url(self, call_id: str) -> str:
        return f"{self._base}/2010-04-01/Accounts/{self._sid}/Calls/{call_id}.json"

    async def _update(self, call_id: str, form: dict[str, str]) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S)
            )
        try:
            async with self._session.post(self._url(call_id), data=form, auth=self._auth) as resp:
                body = await resp.text()
                if resp.status >= 400:
                    try:
                        detail = json.loads(body).get("message", body)
                    except (json.JSONDecodeError, AttributeError):
                        detail = body
                    raise CallControlError(f"Twilio answered {resp.status}: {detail}"[:300])
                try:
                    data = json.loads(body)
                except json.JSONDecodeError:
                    data = {}
                return data if isinstance(data, dict) else {}
        except aiohttp.ClientError as exc:
            raise CallControlError(f"Twilio unreachable: {type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise CallControlError(f"Twilio did not answer within {REST_TIMEOUT_S:g} s") from exc

    async def transfer(self, call_id: str, destination: str) -> None:
        """Redirect the call to ``<Dial>destination</Dial>`` (a number or a SIP URI)."""
        dest = escape(destination)
        dial = f"<Sip>{dest}</Sip>" if destination.startswith("sip:") else dest
        await self._update(call_id, {"Twiml": f"<Response><Dial>{dial}</Dial></Response>"})

    async def hang_up(self, call_id: str) -> None:
        await self._update(call_id, {"Status": "completed"})

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


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
