"""``voice-agent livekit start|dev|connect``: the agent as a LiveKit Agents worker.

The worker is livekit-agents' ``AgentServer`` with one ``rtc_session``: the
server dispatches a room to it (a phone call arriving through a SIP dispatch
rule, a browser joining a room, an explicit dispatch to ``--agent-name``), the
worker joins and :class:`RoomCall` serves the caller with this project's
engine — its own FSM, ledger, VAD, ASR, TTS and LLM. ``AgentSession`` is not
used: turn-taking stays with the agent's transition table.

What one worker process holds: the LLM endpoint, resolved once at start (the
embedded llama.cpp server is started once and shared by every call; a remote
endpoint is just a URL), the speech models loaded once
(:class:`~voice_agent.worker.SharedSpeechModels`: Silero's session, Whisper,
the piper voice, with fair per-call lanes for the CPU-heavy decodes and
sentences), and up to ``max_calls`` (``worker.max_calls``) concurrent calls,
each in a thread of its own (``JobExecutorType.THREAD``, so the models are
shared in memory) with its own conversation, ledger and audio pipeline.
The worker reports its load as (calls running + waiting) / (``max_calls`` +
``worker.max_waiting``) and the server stops dispatching to it when slots
and queue are full. A room dispatched while every slot is taken joins the
queue (the caller hears
``worker.hold_message`` on the agent's track until a call ends here, or the
apology after ``worker.wait_timeout_s``, then the room is deleted); beyond the
queue it is rejected (``on_request``), so the server offers it to another
worker. Slots and queue are one :class:`~voice_agent.admission.Admission`
shared by the job threads. More capacity =
more workers (on more machines) registering with the same server.

``start`` registers for production; ``dev`` registers in development mode
(verbose logs, no load limit); ``connect --room NAME`` joins one room
directly, without dispatch (the room is created if it does not exist).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from ..admission import Admission, QueueFull
from ..config import Config
from ..process_end import ending_signals
from ..session import llm_endpoint
from ..tools import ToolRegistry
from ..waiting_room import WaitingRoom, admitted
from ..worker import SharedSpeechModels
from .livekit_room import RoomCall
from .livekit_settings import (
    ENV_URL,
    LiveKitSettings,
    LiveKitSettingsError,
    check_credentials,
    settings_from_env,
)
from .livekit_sip import RoomCallControl, mask_number

log = logging.getLogger(__name__)

AGENT_IDENTITY_PREFIX = "voice-agent-"
# The load the worker reports when full; livekit-agents wants < 1 in production and stops
# dispatching to a worker at or above its threshold (ratio).
LOAD_THRESHOLD = 0.99


@dataclass(frozen=True)
class WorkerOptions:
    """How the worker registers and how much it takes on (from the command line)."""

    max_calls: int | None = None  # None: the configuration's worker.max_calls
    agent_name: str = ""  # explicit dispatch name; "" = every new room of the project
    # The worker's health endpoint (livekit-agents serves it for orchestrators' probes):
    # "" = all interfaces; None = livekit-agents' port (8081 in production, any in dev).
    http_host: str = ""
    http_port: int | None = None
    max_retry: int = 16  # registration attempts before the worker gives up (livekit-agents')


class WorkerFailed(RuntimeError):
    """The worker stopped on its own (it could not register with the server)."""


def build_server(
    config: Config,
    settings: LiveKitSettings,
    options: WorkerOptions | None = None,
    *,
    tools: ToolRegistry | None = None,
    models: SharedSpeechModels | None = None,
) -> Any:
    """An ``AgentServer`` whose rtc_session runs :class:`RoomCall` (``config.llm`` resolved).

    With ``models`` every call uses the speech models loaded once (its own lanes
    on their fair executors); without, each call loads its own.
    """
    from livekit import agents

    options = options or WorkerOptions()
    calls = Admission(options.max_calls or config.worker.max_calls, config.worker.max_waiting)
    waiting_room = WaitingRoom(config.worker, _synthesizer(config, models))
    port: dict[str, Any] = {} if options.http_port is None else {"port": options.http_port}
    server = agents.AgentServer(
        ws_url=settings.url,
        api_key=settings.api_key.get_secret_value(),
        api_secret=settings.api_secret.get_secret_value(),
        job_executor_type=agents.JobExecutorType.THREAD,
        load_fnc=calls.load,
        load_threshold=LOAD_THRESHOLD,
        num_idle_processes=0,  # threads start in milliseconds; nothing to pre-spawn
        host=options.http_host,
        max_retry=options.max_retry,
        **port,
    )

    async def on_request(request: Any) -> None:
        if not calls.can_take():
            log.warning(
                "room %s offered while full (%d calls, %d waiting): rejected",
                request.room.name,
                calls.active,
                calls.waiting,
            )
            await request.reject()
            return
        await request.accept(identity=AGENT_IDENTITY_PREFIX + request.id[-8:], name="voice-agent")

    @server.rtc_session(agent_name=options.agent_name, on_request=on_request)
    async def serve_room(ctx: Any) -> None:
        if not calls.can_take():
            log.warning(
                "room %s: worker full (%d calls, %d waiting), leaving it",
                ctx.room.name,
                calls.max_calls,
                calls.waiting,
            )
            ctx.shutdown(reason="worker full")
            return
        await ctx.connect(auto_subscribe=agents.AutoSubscribe.AUDIO_ONLY)
        call = RoomCall(
            ctx.room,
            config,
            call_control=RoomCallControl(settings, ctx.room.name),
            tools=tools,
            models=models.for_call(ctx.room.name) if models is not None else None,
            admit=lambda transport: admitted(calls, waiting_room, transport),
        )
        try:
            result = await call.run()
        except QueueFull as exc:  # taken by another room since can_take(): leave it
            log.warning("room %s: %s; leaving it", ctx.room.name, exc)
            ctx.shutdown(reason="worker full")
            return
        log.info(
            "room %s: call with %s ended (%s); ledger %s",
            ctx.room.name,
            mask_number(result.caller_identity) or "nobody",
            result.end_reason,
            result.ledger_path,
        )
        ctx.shutdown(reason=result.end_reason)

    return server


def _synthesizer(config: Config, models: SharedSpeechModels | None) -> Any:
    """How the waiting room speaks: the shared voice, or a voice loaded when first needed."""
    if models is not None:
        return models.synthesize

    async def synthesize(text: str, rate: int) -> Any:
        import numpy as np

        from ..voice.build import build_tts

        tts = build_tts(config.voice, rate)
        try:
            parts = [chunk.samples async for chunk in tts.synthesize(text)]
        finally:
            await tts.aclose()
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    return synthesize


async def _run(
    mode: str,
    config: Config,
    settings: LiveKitSettings,
    *,
    room: str | None,
    options: WorkerOptions,
    stdout: TextIO,
    stop: asyncio.Event,
) -> None:
    from livekit import api

    async with llm_endpoint(config) as llm_config:
        prewarm = (
            config.llm.prewarm if config.llm.prewarm is not None else config.llm.base_url is None
        )
        resolved = config.model_copy(
            update={"llm": llm_config.model_copy(update={"prewarm": prewarm})}
        )
        models = await asyncio.to_thread(SharedSpeechModels, resolved.voice)
        server = build_server(resolved, settings, options, models=models)
        where = f"room {room!r}" if mode == "connect" else "dispatched rooms"
        max_calls = options.max_calls or config.worker.max_calls
        stdout.write(
            f"voice-agent livekit {mode}: {settings.url}, {where}, up to {max_calls} calls, "
            f"model {llm_config.model}. Ctrl-C to stop.\n"
        )
        stdout.flush()
        tasks: list[asyncio.Future[None]] = []
        if mode == "connect":
            assert room is not None

            async def join_room() -> None:
                async with api.LiveKitAPI(
                    settings.http_url,
                    settings.api_key.get_secret_value(),
                    settings.api_secret.get_secret_value(),
                ) as lk:
                    found = await lk.room.list_rooms(api.ListRoomsRequest(names=[room]))
                    info = (
                        found.rooms[0]
                        if found.rooms
                        else await lk.room.create_room(api.CreateRoomRequest(name=room))
                    )
                await server.simulate_job(
                    room=room,
                    fake_job=False,
                    room_info=info,
                    agent_identity=AGENT_IDENTITY_PREFIX + "connect",
                )

            server.once(
                "worker_started", lambda *_: tasks.append(asyncio.ensure_future(join_room()))
            )
        run = asyncio.ensure_future(
            server.run(devmode=mode != "start", unregistered=mode == "connect")
        )
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({run, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if run.done():
                try:
                    run.result()
                except Exception as exc:  # registration gave up: say so, no traceback
                    raise WorkerFailed(str(exc) or type(exc).__name__) from exc
            elif mode == "start":
                stdout.write("draining: waiting for the calls in progress to end\n")
                stdout.flush()
                with contextlib.suppress(asyncio.TimeoutError):
                    await server.drain()
        finally:
            stopped.cancel()
            for task in tasks:
                task.cancel()
            await server.aclose()
            if not run.done():
                run.cancel()
            await asyncio.gather(run, stopped, *tasks, return_exceptions=True)
            models.close()


def main(
    config: Config,
    command: str,
    *,
    room: str | None = None,
    options: WorkerOptions | None = None,
    skip_check: bool = False,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    """``voice-agent livekit start|dev|connect``: 0 after a clean stop, 2 on bad settings,
    1 when the worker could not register with the server."""
    env = os.environ if environ is None else environ
    options = options or WorkerOptions()
    try:
        settings = settings_from_env(env)
        if command == "connect" and not room:
            raise LiveKitSettingsError("--room", "connect needs the name of the room to join")
        if options.max_calls is not None and options.max_calls < 1:
            raise LiveKitSettingsError(
                "--max-calls", f"must be at least 1 (got {options.max_calls})"
            )
        if not skip_check:
            asyncio.run(check_credentials(settings))
    except LiveKitSettingsError as exc:
        stderr.write(f"voice-agent livekit {command}: {exc}\n")
        return 2
    try:
        import livekit.agents  # noqa: F401
    except ImportError as exc:
        stderr.write(
            f"voice-agent livekit: livekit-agents is not installed ({exc}); "
            "pip install 'voice-agent[livekit]'\n"
        )
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in ending_signals():  # SIGINT, SIGTERM, SIGHUP (unless nohup)
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await _run(command, config, settings, room=room, options=options, stdout=stdout, stop=stop)

    try:
        asyncio.run(run())
    except WorkerFailed as exc:
        stderr.write(
            f"voice-agent livekit {command}: {ENV_URL}: the worker could not register "
            f"with {settings.url}: {exc}\n"
        )
        return 1
    return 0
