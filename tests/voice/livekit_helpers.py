"""Test doubles at the LiveKit SDK boundary.

- :class:`TwirpRecorder`: a LiveKit server API stand-in on 127.0.0.1 that
  records every Twirp request (path, decoded protobuf body, the JWT's claims)
  and answers with protobuf, or with a Twirp JSON error when told to.
- the room stand-in, the caller's microphone and the listener come from
  :mod:`voice_agent.bench.livekit_loopback` (shared with the benchmark).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from livekit import api, rtc
from web_helpers import serving

from voice_agent.bench.livekit_loopback import (
    Ear,
    LoopbackRoom,
    Mic,
    audio_publication,
    remote_participant,
    until,
)
from voice_agent.config import Config
from voice_agent.tools import ToolRegistry
from voice_agent.transports.livekit_room import RoomCall
from voice_agent.transports.livekit_settings import settings_from_env
from voice_agent.transports.livekit_sip import RoomCallControl

__all__ = [
    "KEY",
    "SECRET",
    "LoopbackRoom",
    "SipCallRig",
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
    _served: AbstractAsyncContextManager[str] | None = None

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
        self._served = serving(app)
        self.url = await self._served.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._served is not None:
            await self._served.__aexit__(None, None, None)


class SipCallRig:
    """A :class:`RoomCall` in a :class:`LoopbackRoom` (its call control against
    ``control_url``), a SIP caller with a mic, and an ear on the agent's track.
    ``async with`` runs the call, waits for the agent's track, then the caller joins and
    its track is subscribed; leaving cancels the call if it still runs."""

    def __init__(
        self,
        name: str,
        identity: str,
        config: Config,
        control_url: str,
        *,
        tools: ToolRegistry | None,
        caller: str,
        attributes: dict[str, str] | None = None,
        caller_track: str = "TR_caller",
        models: Any = None,
        admit: Callable[[RoomCall], Any] | None = None,
    ) -> None:
        self.room = LoopbackRoom(name=name, identity=identity)
        settings = settings_from_env(
            {"LIVEKIT_URL": control_url, "LIVEKIT_API_KEY": KEY, "LIVEKIT_API_SECRET": SECRET}
        )
        self.call = RoomCall(
            self.room,
            config,
            call_control=RoomCallControl(settings, name),
            tools=tools,
            models=models,
            admit=admit,
        )
        self.caller = remote_participant(
            caller, kind=rtc.ParticipantKind.PARTICIPANT_KIND_SIP, attributes=attributes
        )
        self._caller_track = caller_track
        self.mic = Mic()
        self.ear = Ear()  # what a subscriber to the agent's track hears
        self.task: asyncio.Task[Any] | None = None

    def _before_join(self) -> None:
        """Called once the caller's mic runs, before the caller joins."""

    async def __aenter__(self) -> Any:
        self.task = asyncio.get_running_loop().create_task(self.call.run())
        await until(lambda: bool(self.room.published), 30, "the agent's track")
        self.ear.start(self.room.published[0])
        self.mic.start()
        self._before_join()
        self.room.join(self.caller)
        self.room.emit(
            "track_subscribed", self.mic.track, audio_publication(self._caller_track), self.caller
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.ear.aclose()
        await self.mic.aclose()
