"""``voice-agent phone serve``: the media-stream WebSocket endpoint for phone calls.

One aiohttp server, one :class:`~voice_agent.worker.Worker` (models loaded
once), one call per WebSocket connection:

- ``GET {path}`` (default ``/media``): the provider's media stream. The
  server waits for the ``start`` message (call and stream ids, the caller's
  custom parameters, the audio format), builds a
  :class:`~.media_stream.MediaStreamTransport` and runs the call on the
  worker; every later message goes to the transport. ``stop`` (or the socket
  closing) ends the call; the ledger is complete either way. A full worker
  refuses the call: the socket is closed with code 1013 (try again later)
  and the provider moves on to its fallback (the TwiML below says so).
- ``POST|GET /twiml``: TwiML that connects a Twilio call to the stream
  (``<Connect><Stream url="{phone.public_url}">``), for the phone number's
  voice webhook; ``GET|POST /ncco``: the same for a Vonage number's answer
  webhook (an NCCO ``connect`` to a ``websocket`` endpoint).
- ``GET /healthz``: JSON with the worker's load.

TLS is left to a reverse proxy (Caddy, nginx) in front of this server: Twilio
connects to ``wss://``; see docs/media_streams.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections import deque
from collections.abc import Callable
from typing import TextIO

from aiohttp import WSMsgType, web

from fsm import MonotonicClock, fail_after

from ..config import Config, PhoneConfig
from ..process_end import ending_signals
from ..waiting_room import CallNotServed
from ..worker import CallRefused, Worker
from .call import Call, CallResult
from .media_stream import (
    CallControlApi,
    Dialect,
    DialectError,
    MediaStreamTransport,
    StreamStarted,
    parse_message,
)
from .telnyx import TelnyxDialect, TelnyxRest
from .twilio import TwilioDialect, TwilioRest, stream_twiml
from .vonage import VonageDialect, VonageRest, connect_ncco

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0  # the provider sends `start` right after connecting (s)
WS_TRY_AGAIN_LATER = 1013  # WebSocket close code: the worker is full
KEPT_RESULTS = 100  # finished calls kept for /healthz and tests
BUSY_MESSAGE = "All our agents are busy right now. Please call again in a few minutes."


DEFAULT_API = {
    "twilio": "https://api.twilio.com",
    "telnyx": "https://api.telnyx.com",
    "vonage": "https://api.nexmo.com",
}


def dialect_for(provider: str) -> Dialect:
    """The wire format of ``provider``."""
    dialects: dict[str, Callable[[], Dialect]] = {
        "twilio": TwilioDialect,
        "telnyx": TelnyxDialect,
        "vonage": VonageDialect,
    }
    if provider not in dialects:
        raise ValueError(f"unknown phone provider {provider!r} ({', '.join(dialects)})")
    return dialects[provider]()


def control_for(cfg: PhoneConfig) -> CallControlApi | None:
    """The provider's REST client, or None when no credentials are configured."""
    token = cfg.auth_token.get_secret_value() if cfg.auth_token is not None else ""
    base = cfg.api_base_url
    if base == DEFAULT_API["twilio"]:
        base = DEFAULT_API[cfg.provider]
    if cfg.provider == "twilio":
        if not cfg.account_sid or not token:
            return None
        return TwilioRest(cfg.account_sid, token, base)
    if not token:
        return None
    if cfg.provider == "vonage":
        return VonageRest(token, base)
    return TelnyxRest(token, base)


class PhoneServer:
    """The media-stream endpoint on ``config.phone`` (host, port, path), serving through ``worker``."""

    def __init__(
        self,
        worker: Worker,
        config: PhoneConfig,
        *,
        control: CallControlApi | None = None,
        on_call: Callable[[Call, MediaStreamTransport], None] | None = None,
    ) -> None:
        self._worker = worker
        self._cfg = config
        self._dialect = dialect_for(config.provider)
        self._control = control if control is not None else control_for(config)
        self._on_call = on_call
        self._runner: web.AppRunner | None = None
        self.results: deque[CallResult] = deque(maxlen=KEPT_RESULTS)
        self.port = config.port

    @property
    def url(self) -> str:
        """The local ws:// URL of the media-stream endpoint."""
        return f"ws://{self._cfg.host}:{self.port}{self._cfg.path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(self._cfg.path, self._media)
        app.router.add_route("*", "/twiml", self._twiml)
        app.router.add_route("*", "/ncco", self._ncco)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._cfg.host, self._cfg.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        """Stop accepting, end the calls in progress (their ledgers close), release the API client."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._control is not None:
            await self._control.aclose()

    async def __aenter__(self) -> PhoneServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- routes
    async def _twiml(self, request: web.Request) -> web.Response:
        url = self._cfg.public_url or f"wss://{request.host}{self._cfg.path}"
        return web.Response(
            text=stream_twiml(url, busy_message=BUSY_MESSAGE), content_type="application/xml"
        )

    async def _ncco(self, request: web.Request) -> web.Response:
        """Vonage's answer webhook (GET query or POST JSON with uuid, from, to)."""
        params: dict[str, object] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            with contextlib.suppress(ValueError):
                body = await request.json()
                if isinstance(body, dict):
                    params.update(body)
        url = self._cfg.public_url or f"wss://{request.host}{self._cfg.path}"
        ncco = connect_ncco(
            url,
            uuid=str(params.get("uuid", "")),
            caller=str(params.get("from", "")),
            called=str(params.get("to", "")),
            busy_message=BUSY_MESSAGE,
        )
        return web.json_response(ncco)

    async def _health(self, request: web.Request) -> web.Response:
        s = self._worker.stats
        body = {
            "active": s.active,
            "waiting": s.waiting,
            "max_calls": self._worker.max_calls,
            "served": s.served,
            "refused": s.refused,
            "queued": s.queued,
            "not_served": s.not_served,
            "failed": s.failed,
        }
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def _media(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)

        async def send(frame: str | bytes) -> None:
            if ws.closed:
                return
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)

        try:
            started = await self._await_start(ws)
        except TimeoutError:
            log.warning(
                "media stream from %s: no 'start' within %g s", request.remote, START_TIMEOUT_S
            )
            await ws.close()
            return ws
        if started is None:
            return ws
        transport = MediaStreamTransport(send, self._dialect, started, control=self._control)
        reader = asyncio.ensure_future(self._read(ws, transport))
        try:
            on_call = None
            if self._on_call is not None:
                hook = self._on_call

                def on_call(call: Call) -> None:
                    hook(call, transport)

            result = await self._worker.run_call(transport, meta=transport.meta(), on_call=on_call)
            self.results.append(result)
        except CallRefused as exc:
            log.warning("call %s refused: %s", started.call_id, exc)
            await ws.close(code=WS_TRY_AGAIN_LATER, message=b"worker full")
        except CallNotServed as exc:  # the caller heard the apology (or hung up while queued)
            if exc.reason == "queue timeout":
                await self._hang_up_unserved(transport)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await transport.aclose()
            await ws.close()
        return ws

    async def _hang_up_unserved(self, transport: MediaStreamTransport) -> None:
        """End a call the queue gave up on through the provider's API (else the socket
        closes and the provider moves on: Twilio plays the TwiML's busy message)."""
        try:
            await transport.hang_up()
        except Exception as exc:  # no API, or it failed: closing the socket still ends it
            log.info("call %s: hang-up after the queue apology: %s", transport.started.call_id, exc)

    async def _await_start(self, ws: web.WebSocketResponse) -> StreamStarted | None:
        async with fail_after(MonotonicClock(), START_TIMEOUT_S):
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue  # no audio before the stream's metadata
                try:
                    parsed = parse_message(self._dialect, msg.data)
                except DialectError as exc:
                    log.warning("media stream: ignored a malformed message before start: %s", exc)
                    continue
                if isinstance(parsed, StreamStarted):
                    return parsed
        return None  # closed before start

    async def _read(self, ws: web.WebSocketResponse, transport: MediaStreamTransport) -> None:
        bad = 0
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    parsed = parse_message(self._dialect, msg.data)
                    if parsed is not None:
                        transport.receive(parsed)
                except DialectError as exc:
                    bad += 1
                    if bad <= 3:  # say it, but a flood of junk must not flood the log
                        log.warning(
                            "call %s: ignored a malformed message: %s",
                            transport.started.call_id,
                            exc,
                        )
                    continue
        finally:
            transport.disconnected()


async def serve(
    config: Config,
    *,
    stdout: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    ready: Callable[[PhoneServer], None] | None = None,
) -> None:
    """Run ``voice-agent phone serve`` until ``stop`` is set (or SIGINT/SIGTERM)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in ending_signals():  # SIGINT, SIGTERM, SIGHUP (unless nohup)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with Worker(config) as worker, PhoneServer(worker, config.phone) as server:
        cfg = config.phone
        stdout.write(
            f"voice-agent phone serve — {cfg.provider} media streams on {server.url} "
            f"(up to {config.worker.max_calls} calls, {config.worker.max_waiting} waiting); "
            f"TwiML at http://{cfg.host}:{server.port}/twiml; model {worker.config.llm.model}.\n"
            "Put a TLS reverse proxy in front (wss://): see docs/media_streams.md.\n"
        )
        if server._control is None:
            stdout.write(
                "call control off: set phone.auth_token (and phone.account_sid for Twilio: "
                "TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN) to transfer and hang up.\n"
            )
        stdout.flush()
        if ready is not None:
            ready(server)
        await stop.wait()


def main(config: Config, args: argparse.Namespace, stdout: TextIO = sys.stdout) -> int:
    """``voice-agent phone serve``: 0 on a normal stop, 2 when the port cannot be bound."""
    phone = config.phone.model_copy(
        update={
            k: v
            for k, v in {"host": args.host, "port": args.port, "path": args.path}.items()
            if v is not None
        }
    )
    worker = config.worker
    if getattr(args, "max_calls", None) is not None:
        worker = worker.model_copy(update={"max_calls": args.max_calls})
    config = config.model_copy(update={"phone": phone, "worker": worker})
    try:
        asyncio.run(serve(config, stdout=stdout))
    except OSError as exc:
        print(f"voice-agent: cannot listen on {phone.host}:{phone.port}: {exc}", file=sys.stderr)
        return 2
    return 0
