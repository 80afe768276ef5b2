"""A whole call through :class:`RoomCall` with real rtc audio, real speech models and the oracle LLM.

No LiveKit server runs here, so the room is a :class:`LoopbackRoom` (``rtc``
events, an autospecced local participant); everything audio is real: the
caller speaks piper speech into an ``rtc.AudioSource`` whose
``LocalAudioTrack`` the agent reads with ``rtc.AudioStream`` at 16 kHz, and
the test listens to the track the agent published with another
``rtc.AudioStream``, then transcribes it. Real time, generous bounds.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from livekit import rtc
from livekit_helpers import (
    SipCallRig,
    TwirpRecorder,
)
from voice_helpers import ORDER_QUESTION, OracleRig, speech, transcribe, voice_config

from ledger import entries as le
from voice_agent.bench.livekit_loopback import Ear, until
from voice_agent.call_control import CallController, Transfer
from voice_agent.worker import SharedSpeechModels

# real WebRTC audio threads and speech models: the wall clock, not virtual time
pytestmark = [pytest.mark.slow, pytest.mark.realtime]

SIP_ATTRS = {
    "sip.phoneNumber": "+15105550123",
    "sip.trunkPhoneNumber": "+18005550100",
    "sip.trunkID": "ST_test",
    "sip.callID": "SCL_test",
    "sip.callStatus": "active",
}


class CallRig(SipCallRig):
    """A RoomCall in a LoopbackRoom with a SIP caller, the caller's mic and two ears."""

    def __init__(
        self, rig: OracleRig, tmp_path: Path, control_url: str, models: Any = None
    ) -> None:
        super().__init__(
            "call-42",
            "voice-agent-1",
            voice_config(rig.server.base_url, str(tmp_path)),
            control_url,
            tools=rig.tools,
            caller="sip_+15105550123",
            attributes=SIP_ATTRS,
            models=models,
        )
        self.agent_ear = self.ear  # what a subscriber to the agent's track hears
        self.caller_ear = Ear()  # what the agent receives from the caller

    def _before_join(self) -> None:
        self.caller_ear.start(self.mic.track)

    async def __aenter__(self) -> CallRig:
        await super().__aenter__()
        await until(lambda: "listening" in self.room.states(), 60, "the engine to listen")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await super().__aexit__(*exc)
        await self.caller_ear.aclose()

    async def ask(self, samples: np.ndarray) -> tuple[float, float]:
        """Say ``samples``; returns (onset, end) of the caller's speech as the agent received it."""
        t0 = time.monotonic()
        self.mic.say(samples)
        await until(lambda: self.mic.idle, 30, "the caller to finish")
        await asyncio.sleep(0.3)
        heard = self.caller_ear.loud(after=t0)
        return heard[0], heard[-1]


async def test_a_phone_call_is_answered_in_the_room_with_transcripts_state_and_dtmf(
    order_oracle: OracleRig, tmp_path: Path
) -> None:
    async with TwirpRecorder() as control, CallRig(order_oracle, tmp_path, control.url) as c:
        question, _, _ = speech(ORDER_QUESTION)
        _, end = await c.ask(question)
        await until(lambda: bool(c.agent_ear.loud(after=end)), 30, "the agent's answer")
        first = c.agent_ear.loud(after=end)[0]
        await until(
            lambda: c.room.states()[-1] == "listening" and "speaking" in c.room.states(),
            30,
            "the answer to end",
        )
        await asyncio.sleep(0.3)
        answer = transcribe(c.agent_ear.audio(after=end))
        assert "shipped" in answer or "friday" in answer, answer
        assert 0.0 < first - end < 10.0  # voice to voice, from the audio (the bench measures it)

        # the keypad reaches the FSM as DtmfReceived
        agent = c.call.agent
        assert agent is not None
        c.room.emit("sip_dtmf_received", rtc.SipDTMF(code=5, digit="5", participant=c.caller))
        await until(
            lambda: any(r.event == "DtmfReceived" for r in agent.trace), 5, "the DTMF event"
        )

        c.room.leave(c.caller)
        assert c.task is not None
        result = await asyncio.wait_for(c.task, 30)

    assert result.end_reason == "caller left"
    assert result.sip is not None and result.sip.trunk_phone_number == "+18005550100"
    # the ledger is complete on disk: the call, the question, the answer, the end
    assert result.ledger_path is not None
    lines = [json.loads(x) for x in Path(result.ledger_path).read_text().splitlines()]
    types = [x["type"] for x in lines]
    assert types[0] == "SessionStarted" and types[-1] == "SessionEnded"
    assert lines[0]["meta"]["transport"] == "livekit"
    assert "+15105550123" not in Path(result.ledger_path).read_text()  # the number is masked
    assert any(
        x["type"] == "UserUtterance" and x["final"] and "order" in x["text"].lower() for x in lines
    )
    # transcripts in LiveKit's conventions: the caller's words from the caller, the agent's from it
    streams = c.room.streams
    user_final = [
        s
        for s in streams
        if s["sender_identity"] == "sip_+15105550123"
        and s["attributes"]["lk.transcription_final"] == "true"
    ]
    agent_final = [
        s
        for s in streams
        if s["sender_identity"] == "voice-agent-1"
        and s["attributes"]["lk.transcription_final"] == "true"
    ]
    assert user_final and "order" in user_final[0]["text"].lower()
    assert user_final[0]["attributes"]["lk.transcribed_track_id"] == "TR_caller"
    assert agent_final and agent_final[0]["attributes"]["lk.transcribed_track_id"] == "TR_agent"
    assert all(s["topic"] == "lk.transcription" for s in streams)
    states = c.room.states()
    assert states[0] == "initializing"
    assert states.index("listening") < states.index("thinking") < states.index("speaking")
    assert states[-1] == "idle"
    assert control.requests == []  # no call control was asked for


async def test_barge_in_clears_the_agent_voice_and_a_room_disconnect_keeps_the_ledger(
    tmp_path: Path,
) -> None:
    from voice_helpers import start_oracle

    from voice_agent.bench.scenario import Scenario

    long_answer = (
        "Let me explain how that works in detail. First we check your account and the order "
        "history. Then we look at the options that fit your situation best, and after that we "
        "confirm everything by email."
    )
    scenario = Scenario.model_validate(
        {
            "name": "livekit_barge_in",
            "oracle": {"ttft_ms": 200, "tokens_per_s": 60},
            "turns": [
                {
                    "user": "How does the return process work?",
                    "answer": [{"say": long_answer, "expect": ["explain"]}],
                }
            ],
        }
    )
    # this call runs on the worker's shared models (loaded once, a fair lane per call)
    shared = await asyncio.to_thread(SharedSpeechModels, voice_config("http://x", "x").voice)
    async for rig in start_oracle(scenario):
        async with (
            TwirpRecorder() as control,
            CallRig(rig, tmp_path, control.url, models=shared.for_call("barge")) as c,
        ):
            _, end = await c.ask(speech("How does the return process work?")[0])
            await until(lambda: bool(c.agent_ear.loud(after=end)), 30, "the agent's answer")
            agent = c.call.agent
            assert agent is not None
            await asyncio.sleep(1.5)
            onset, _ = await c.ask(speech("Wait, wait, stop please.")[0])
            await asyncio.sleep(1.0)
            # The interrupted answer's audio only: the agent's reply to "wait, stop" (with the
            # turn model it can start within the second) is a new response, not a late stop.
            replies = [
                e.t
                for e in agent.ledger.entries
                if isinstance(e, le.LlmRequestStarted) and e.t > onset
            ]
            cutoff = min(replies, default=float("inf"))
            late = [t for t in c.agent_ear.loud(after=onset) if t < cutoff]
            stop_s = (late[-1] - onset) if late else 0.0
            assert stop_s < 1.5, stop_s  # VAD onset + min_barge_in_ms + the queue cleared at once
            await until(
                lambda: any(
                    isinstance(e, le.AgentTextPlayed) and e.interrupted
                    for e in agent.ledger.entries
                ),
                10,
                "the interrupted answer in the ledger",
            )
            # the room drops for good: the call ends and the ledger is closed with everything in it
            c.room.emit("disconnected", rtc.DisconnectReason.SIGNAL_CLOSE)
            assert c.task is not None
            result = await asyncio.wait_for(c.task, 30)
    shared.close()
    assert result.end_reason == "room disconnected"
    lines = [json.loads(x) for x in Path(result.ledger_path).read_text().splitlines()]
    assert lines[-1]["type"] == "SessionEnded" and lines[-1]["reason"] == "room disconnected"
    played = [x for x in lines if x["type"] == "AgentTextPlayed"]
    assert played and played[0]["interrupted"] is True
    assert len(played[0]["text"]) < len(long_answer)  # only what the caller heard


async def test_call_control_transfers_hangs_up_and_sends_dtmf_through_the_server_api(
    order_oracle: OracleRig, tmp_path: Path
) -> None:
    async with TwirpRecorder() as control:
        async with CallRig(order_oracle, tmp_path / "a", control.url) as c:
            controller: CallController = c.call  # the LiveKit transport's CallController
            await controller.send_dtmf("1w#")
            sent = [call.kwargs for call in c.room.local_participant.publish_dtmf.await_args_list]
            assert sent == [{"code": 1, "digit": "1"}, {"code": 11, "digit": "#"}]
            assert c.call.call is not None  # the engine's way: Call.perform, recorded in the ledger
            assert await c.call.call.perform(Transfer(destination="+18005550199"))
            assert c.task is not None
            result = await asyncio.wait_for(c.task, 30)
        assert result.end_reason == "transferred"
        assert any(
            isinstance(e, le.Note) and "call control: Transfer" in e.text for e in result.entries
        )
        [transfer] = control.requests
        assert transfer.path == "/twirp/livekit.SIP/TransferSIPParticipant"
        assert transfer.body.participant_identity == "sip_+15105550123"
        assert transfer.body.room_name == "call-42"

        async with CallRig(order_oracle, tmp_path / "b", control.url) as c:
            await c.call.hang_up()
            assert c.task is not None
            result = await asyncio.wait_for(c.task, 30)
        assert result.end_reason == "hung up"
        assert control.requests[-1].path == "/twirp/livekit.RoomService/DeleteRoom"
        assert control.requests[-1].body.room == "call-42"

        # the phone leg's own hang-up (sip.callStatus) ends the call too
        async with CallRig(order_oracle, tmp_path / "c", control.url) as c:
            c.caller.attributes = {**SIP_ATTRS, "sip.callStatus": "hangup"}
            c.room.emit("participant_attributes_changed", {"sip.callStatus": "hangup"}, c.caller)
            assert c.task is not None
            result = await asyncio.wait_for(c.task, 30)
        assert result.end_reason == "caller hung up"
        assert len(control.requests) == 2
