"""The LiveKit worker's queue with real rtc audio: two rooms, one slot. The second caller
hears the hold message on the agent's track (real ``AudioSource`` → ``LocalAudioTrack`` →
``AudioStream``), is served when the first caller leaves, and its ledger says how it
waited; a caller queued too long hears the apology and the room is deleted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from livekit_helpers import (
    SipCallRig,
    TwirpRecorder,
)
from voice_helpers import ORDER_QUESTION, OracleRig, speech, transcribe, voice_config

from voice_agent.admission import Admission
from voice_agent.bench.livekit_loopback import until
from voice_agent.waiting_room import WaitingRoom, admitted
from voice_agent.worker import SharedSpeechModels

pytestmark = [pytest.mark.slow, pytest.mark.realtime]

TIMEOUT_S = 90.0  # generous: a loaded 2-core machine
HOLD = "Please hold the line, a person will answer soon."
APOLOGY = "Sorry, nobody is free today. Goodbye."


class QueuedRoom(SipCallRig):
    """A RoomCall admitted through a shared Admission, with a caller's mic and an ear."""

    def __init__(
        self,
        name: str,
        rig: OracleRig,
        tmp_path: Path,
        control_url: str,
        shared: SharedSpeechModels,
        admission: Admission,
        room: WaitingRoom,
    ) -> None:
        super().__init__(
            name,
            "voice-agent-" + name,
            voice_config(rig.server.base_url, str(tmp_path)),
            control_url,
            tools=rig.tools,
            caller=f"sip_+1510555{name[-4:]}",
            caller_track="TR_c",
            models=shared.for_call(name),
            admit=lambda t: admitted(admission, room, t),
        )


def worker_config(rig: OracleRig, **worker: Any) -> Any:
    cfg = voice_config(rig.server.base_url, "unused").worker
    return cfg.model_copy(update={"hold_message": HOLD, "queue_apology": APOLOGY, **worker})


async def test_a_queued_room_hears_the_hold_message_and_is_served_when_a_slot_frees(
    order_oracle: OracleRig, tmp_path: Path
) -> None:
    shared = await asyncio.to_thread(SharedSpeechModels, voice_config("http://x", "x").voice)
    admission = Admission(1, max_waiting=1)
    waiting = WaitingRoom(
        worker_config(order_oracle, hold_interval_s=1.0, wait_timeout_s=300), shared.synthesize
    )
    try:
        async with TwirpRecorder() as control:
            first = QueuedRoom(
                "room-0001", order_oracle, tmp_path, control.url, shared, admission, waiting
            )
            second = QueuedRoom(
                "room-0002", order_oracle, tmp_path, control.url, shared, admission, waiting
            )
            async with first, second:
                await until(lambda: "listening" in first.room.states(), 60, "the first call")
                await until(lambda: admission.waiting == 1, 30, "the second call queued")
                # the hold message, twice over, on the queued room's agent track
                await until(lambda: len(second.ear.loud()) > 100, TIMEOUT_S, "the hold message")
                await asyncio.sleep(3.0)
                held = transcribe(second.ear.audio()).lower()
                assert "hold" in held and "answer" in held, held
                assert "listening" not in second.room.states()  # not served yet
                first.room.leave(first.caller)  # the first call ends: its slot goes to the queue
                assert first.task is not None
                await asyncio.wait_for(first.task, TIMEOUT_S)
                await until(lambda: "listening" in second.room.states(), TIMEOUT_S, "served")
                question, _, _ = speech(ORDER_QUESTION)
                second.mic.say(question)
                await until(lambda: second.mic.idle, 30, "the caller to finish")
                asked = asyncio.get_running_loop().time()
                await until(
                    lambda: (
                        second.room.states()[-1] == "listening"
                        and "speaking" in second.room.states()
                    ),
                    TIMEOUT_S,
                    "the answer",
                )
                await asyncio.sleep(0.5)
                answer_frames = second.ear.audio(after=asked)
                second.room.leave(second.caller)
                assert second.task is not None
                result = await asyncio.wait_for(second.task, TIMEOUT_S)
    finally:
        shared.close()
    answer = transcribe(answer_frames).lower()
    assert "shipped" in answer or "friday" in answer, answer
    assert result.ledger_path is not None
    lines = [json.loads(x) for x in Path(result.ledger_path).read_text().splitlines()]
    assert lines[0]["meta"]["queue"]["hold_messages"] >= 2
    assert lines[-1]["type"] == "SessionEnded"
    assert admission.active == 0 and admission.waiting == 0


async def test_a_room_queued_too_long_hears_the_apology_and_the_room_is_deleted(
    order_oracle: OracleRig, tmp_path: Path
) -> None:
    shared = await asyncio.to_thread(SharedSpeechModels, voice_config("http://x", "x").voice)
    admission = Admission(1, max_waiting=1)
    waiting = WaitingRoom(
        worker_config(order_oracle, hold_interval_s=30.0, wait_timeout_s=4.0), shared.synthesize
    )
    try:
        async with TwirpRecorder() as control:
            first = QueuedRoom(
                "room-0001", order_oracle, tmp_path, control.url, shared, admission, waiting
            )
            second = QueuedRoom(
                "room-0002", order_oracle, tmp_path, control.url, shared, admission, waiting
            )
            async with first, second:
                await until(lambda: "listening" in first.room.states(), 60, "the first call")
                assert second.task is not None
                result = await asyncio.wait_for(second.task, TIMEOUT_S)
                await asyncio.sleep(0.5)
                heard = transcribe(second.ear.audio()).lower()
    finally:
        shared.close()
    assert result.end_reason == "queue timeout"
    assert "hold" in heard and "sorry" in heard, heard
    assert [r.path for r in control.requests] == ["/twirp/livekit.RoomService/DeleteRoom"]
    assert control.requests[0].body.room == "room-0002"
    assert result.ledger_path is not None
    lines = [json.loads(x) for x in Path(result.ledger_path).read_text().splitlines()]
    assert lines[-1] == {**lines[-1], "type": "SessionEnded", "reason": "queue timeout"}
    assert lines[0]["meta"]["queue"]["waited_s"] >= 4.0
