"""What the providers' dialects and REST clients share: JSON helpers and one HTTP request.

- :func:`load_event` / :func:`field`: parse a JSON text frame into an object with
  a string event name, and reach into it, both raising
  :class:`~.media_stream.DialectError` with the path that was missing.
- :class:`EventDialect`: the messages Twilio and Telnyx spell the same way
  (``connected``, ``media``, ``dtmf``, ``mark``, ``stop``, and the three they
  send); each dialect parses only its own ``start``.
- :class:`RestClient`: one lazily opened ``aiohttp`` session, a total timeout,
  and every failure (HTTP status ≥ 400, unreachable, timeout) as one
  :class:`CallControlError` naming the provider; credentials never appear in
  a message.
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

REST_TIMEOUT_S = 10.0  # a call-control request must answer within this (s)


class CallControlError(RuntimeError):
    """The provider refused or failed a call-control request (its message included)."""


def load_event(text: str, key: str = "event") -> dict[str, Any]:
    """The JSON object of a text frame; it must have a string ``key``."""
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DialectError(f"not JSON: {exc}") from exc
    if not isinstance(msg, dict) or not isinstance(msg.get(key), str):
        raise DialectError(f"a media-stream message is a JSON object with an '{key}'")
    return msg


def field(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]…``, or :class:`DialectError` naming the missing path."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            raise DialectError(f"missing {'.'.join(path)}")
        obj = obj[key]
    return obj


class EventDialect:
    """A dialect of JSON text frames with an ``event`` field, spelled as Twilio does
    (``connected``, ``media``, ``dtmf``, ``mark``, ``stop`` are parsed here); a
    subclass parses its own ``start`` and may add the stream id to what it sends."""

    name = ""
    inbound_tracks: tuple[str, ...] = ("inbound",)
    whole_frames = False  # audio frames may be shorter than 20 ms
    hangup_on_close = False  # the provider sends `stop` when the caller hangs up

    def start(self, msg: dict[str, Any]) -> StreamStarted:
        """The ``start`` message."""
        raise NotImplementedError

    def outbound(self, stream_id: str, event: str, **body: Any) -> str:
        """An outbound message (``event`` plus ``body``)."""
        return json.dumps({"event": event, **body})

    def parse(self, text: str) -> StreamMessage | None:
        msg = load_event(text)
        event = msg["event"]
        if event == "start":
            return self.start(msg)
        if event == "connected":
            return StreamConnected()
        if event == "media":
            media = field(msg, "media")
            if media.get("track", self.inbound_tracks[0]) not in self.inbound_tracks:
                return None
            return MediaArrived(unb64(str(field(media, "payload"))))
        if event == "dtmf":
            return DigitPressed(str(field(msg, "dtmf", "digit")))
        if event == "mark":
            return MarkPlayed(str(field(msg, "mark", "name")))
        if event == "stop":
            return StreamStopped()
        return None

    def parse_binary(self, data: bytes) -> StreamMessage | None:
        raise DialectError(f"{self.name} media streams send no binary frames")

    def media(self, stream_id: str, payload: bytes) -> str:
        return self.outbound(stream_id, "media", media={"payload": b64(payload)})

    def mark(self, stream_id: str, name: str) -> str:
        return self.outbound(stream_id, "mark", mark={"name": name})

    def clear(self, stream_id: str) -> str:
        return self.outbound(stream_id, "clear")


class RestClient:
    """A provider's REST API for one worker: ``request`` with the provider's auth."""

    provider = "provider"

    def __init__(self, base_url: str) -> None:
        self._base = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """``method`` ``{base}{path}``; the JSON answer (``{}`` if none), else
        :class:`CallControlError`."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S)
            )
        try:
            async with self._session.request(method, self._base + path, **kwargs) as resp:
                body = await resp.text()
                if resp.status >= 400:
                    raise CallControlError(
                        f"{self.provider} answered {resp.status}: {_detail(body)}"[:300]
                    )
        except aiohttp.ClientError as exc:
            raise CallControlError(
                f"{self.provider} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        except TimeoutError as exc:
            raise CallControlError(
                f"{self.provider} did not answer within {REST_TIMEOUT_S:g} s"
            ) from exc
        try:
            data = json.loads(body) if body.strip() else {}
        except json.JSONDecodeError:
            data = {}
        return data if isinstance(data, dict) else {}

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _detail(body: str) -> str:
    """The provider's error message out of its JSON error body, else the body."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return body
    if isinstance(data, dict):
        for key in ("message", "detail", "title"):
            if isinstance(data.get(key), str):
                return str(data[key])
        errors = data.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("detail") or errors[0].get("title") or body)
    return body
