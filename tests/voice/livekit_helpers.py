"""Test doubles at the LiveKit SDK boundary.

- :class:`TwirpRecorder`: a LiveKit server API stand-in on 127.0.0.1 that
  records every Twirp request (path, decoded protobuf body, the JWT's claims)
  and answers with protobuf, or with a Twirp JSON error when told to.
- the room stand-in, the caller's microphone and the listener come from
  :mod:`voice_agent.bench.livekit_loopback` (shared with the benchmark).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from livekit import api

from voice_agent.bench.livekit_loopback import (
    LoopbackRoom,
    audio_publication,
    remote_participant,
)

__all__ = [
    "KEY",
    "SECRET",
    "LoopbackRoom",
    "TwirpRecorder",
    "audio_publication",
    "remote_participant",
]

SECRET = "test-secret-0123456789abcdef0123456789"
KEY = "APItestkey"


@dataclass
class Recorded:
    path: str
    body: Any
    claims: dict[str, Any]


@dataclass
class TwirpRecorder:
    """Records Twirp calls; ``errors[method] = (status, code)`` makes ``method`` fail."""

    requests: list[Recorded] = field(default_factory=list)
    errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    responses: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    _runner: web.AppRunner | None = None

    _TYPES = {
        "livekit.RoomService/DeleteRoom": (api.DeleteRoomRequest, api.DeleteRoomResponse),
        "livekit.RoomService/ListRooms": (api.ListRoomsRequest, api.ListRoomsResponse),
        "livekit.SIP/TransferSIPParticipant": (
            api.TransferSIPParticipantRequest,
            api.TransferSIPParticipantResponse,
        ),
    }

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        req_type, resp_type = self._TYPES[method]
        body = req_type.FromString(await request.read())
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})
        self.requests.append(Recorded(f"/twirp/{method}", body, claims))
        if method in self.errors:
            status, code = self.errors[method]
            return web.json_response({"code": code, "msg": f"{code} (test)"}, status=status)
        resp = self.responses.get(method, resp_type())
        return web.Response(body=resp.SerializeToString(), content_type="application/protobuf")

    async def __aenter__(self) -> TwirpRecorder:
        app = web.Application()
        app.router.add_post("/twirp/{method:.+}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
