"""Against a real LiveKit server (Cloud or self-hosted): skipped unless the variables are set.

    LIVEKIT_URL=wss://… LIVEKIT_API_KEY=… LIVEKIT_API_SECRET=… \\
        .venv/bin/python -m pytest -q tests/voice/test_voice_livekit_live.py

The worker (``build_server``: AgentServer + rtc_session) registers under a
unique agent name; the test dispatches it to a fresh room, joins that room as
a caller with the SDK, speaks piper's question on a microphone track, and
checks what a LiveKit front-end would see: the agent's audio answers the
question (transcribed), ``lk.transcription`` streams arrive for both sides,
``lk.agent.state`` moves through listening/thinking/speaking. Then the room
is deleted (the hang-up path) and the worker stops. The LLM is the local
oracle; nothing but the LiveKit server is remote.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from livekit import api, rtc
from voice_helpers import ORDER_QUESTION, OracleRig, speech, transcribe, voice_config

from voice_agent.transports.livekit_settings import check_credentials, settings_from_env
from voice_agent.transports.livekit_sip import RoomCallControl
from voice_agent.transports.livekit_worker import WorkerOptions, build_server

VARIABLES = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.realtime,
    pytest.mark.skipif(
        not all(os.environ.get(v) for v in VARIABLES),
        reason="needs a LiveKit server: set LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET "
        "(LiveKit Cloud or `livekit-server --dev`)",
    ),
]
RATE = 16000


async def test_a_dispatched_worker_answers_a_caller_in_a_real_room(
    order_oracle: OracleRig, tmp_path: Path
) -> None:
    settings = settings_from_env(os.environ)
    await check_credentials(settings)
    name = f"voice-agent-test-{uuid.uuid4().hex[:8]}"
    config = voice_config(order_oracle.server.base_url, str(tmp_path))
    options = WorkerOptions(max_calls=1, agent_name=name, http_host="127.0.0.1", http_port=0)
    server = build_server(config, settings, options, tools=order_oracle.tools)
    worker = asyncio.get_running_loop().create_task(server.run(devmode=True))
    key, secret = settings.api_key.get_secret_value(), settings.api_secret.get_secret_value()
    lk = api.LiveKitAPI(settings.http_url, key, secret)
    room = rtc.Room()
    tasks: list[asyncio.Future[None]] = []
    try:
        await asyncio.sleep(3.0)  # registration
        await lk.room.create_room(api.CreateRoomRequest(name=name))
        await lk.agent_dispatch.create_dispatch(
            api.CreateAgentDispatchRequest(agent_name=name, room=name)
        )
        token = (
            api.AccessToken(key, secret)
            .with_identity("caller")
            .with_grants(api.VideoGrants(room_join=True, room=name))
            .to_jwt()
        )
        transcripts: list[tuple[str, dict[str, str], str]] = []
        states: list[str] = []
        heard: list[np.ndarray] = []

        def on_text(reader: rtc.TextStreamReader, identity: str) -> None:
            async def read() -> None:
                text = await reader.read_all()
                transcripts.append((identity, dict(reader.info.attributes or {}), text))

            tasks.append(asyncio.ensure_future(read()))

        def on_attributes(changed: dict[str, str], participant: rtc.Participant) -> None:
            if "lk.agent.state" in changed:
                states.append(changed["lk.agent.state"])

        def on_track(track: rtc.Track, *_: object) -> None:
            async def listen() -> None:
                async for ev in rtc.AudioStream.from_track(track=track, sample_rate=RATE):
                    heard.append(np.frombuffer(ev.frame.data, np.int16).astype(np.float32) / 32768)

            if track.kind == rtc.TrackKind.KIND_AUDIO:
                tasks.append(asyncio.ensure_future(listen()))

        room.register_text_stream_handler("lk.transcription", on_text)
        room.on("participant_attributes_changed", on_attributes)
        room.on("track_subscribed", on_track)
        await room.connect(settings.url, token)
        source = rtc.AudioSource(RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        await room.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        deadline = time.monotonic() + 60
        while "listening" not in states and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert "listening" in states, states
        question = speech(ORDER_QUESTION)[0]
        audio = np.concatenate([question, np.zeros(RATE * 8, np.float32)])
        for i in range(0, len(audio), 320):
            pcm = (audio[i : i + 320] * 32767).astype(np.int16)
            await source.capture_frame(rtc.AudioFrame(pcm.tobytes(), RATE, 1, len(pcm)))
        await asyncio.sleep(2.0)
        answer = transcribe(np.concatenate(heard)) if heard else ""
        assert "shipped" in answer or "friday" in answer, answer
        finals = [t for t in transcripts if t[1].get("lk.transcription_final") == "true"]
        assert any(ident == "caller" for ident, _, _ in finals), transcripts
        assert any(ident != "caller" for ident, _, _ in finals), transcripts
        assert {"thinking", "speaking"} <= set(states), states
        await RoomCallControl(settings, name).hang_up()  # DeleteRoom on the real server
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await room.disconnect()
        await server.aclose()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await lk.aclose()
