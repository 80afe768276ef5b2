"""LiveKit settings, call control, SIP callers, DTMF and the published transcripts/state.

Call control goes through the real ``livekit-api`` client over HTTP to a
Twirp recorder on 127.0.0.1 (protobuf bodies decoded, the JWT's grants
checked). Transcript and state payloads are checked against an autospecced
``rtc.LocalParticipant``.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from livekit import api, rtc
from livekit_helpers import KEY, SECRET, LoopbackRoom, TwirpRecorder, remote_participant

from voice_agent.events import DtmfReceived
from voice_agent.transports.base import AgentStateChanged, TranscriptUpdated
from voice_agent.transports.livekit_publish import RoomPublisher
from voice_agent.transports.livekit_settings import (
    LiveKitSettings,
    LiveKitSettingsError,
    check_credentials,
    settings_from_env,
)
from voice_agent.transports.livekit_sip import (
    CallControlError,
    RoomCallControl,
    dtmf_event,
    mask_number,
    sip_caller,
)

SIP = rtc.ParticipantKind.PARTICIPANT_KIND_SIP


def settings(url: str, secret: str = SECRET) -> LiveKitSettings:
    return settings_from_env(
        {"LIVEKIT_URL": url, "LIVEKIT_API_KEY": KEY, "LIVEKIT_API_SECRET": secret}
    )


# ------------------------------------------------------------------ settings
@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "LIVEKIT_URL"),
        ({"LIVEKIT_URL": "my-project.livekit.cloud"}, "LIVEKIT_URL"),
        ({"LIVEKIT_URL": "wss://x.livekit.cloud:port"}, "LIVEKIT_URL"),
        ({"LIVEKIT_URL": "wss://x.livekit.cloud"}, "LIVEKIT_API_KEY"),
        ({"LIVEKIT_URL": "wss://x.livekit.cloud", "LIVEKIT_API_KEY": "k"}, "LIVEKIT_API_SECRET"),
        (
            {
                "LIVEKIT_URL": "wss://x.livekit.cloud",
                "LIVEKIT_API_KEY": "k",
                "LIVEKIT_API_SECRET": "s3cr3t ",
            },
            "LIVEKIT_API_SECRET",
        ),
    ],
)
def test_a_missing_or_malformed_variable_is_named(env: dict[str, str], variable: str) -> None:
    with pytest.raises(LiveKitSettingsError) as info:
        settings_from_env(env)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)
    assert "s3cr3t" not in str(info.value)


def test_settings_never_show_the_secret() -> None:
    s = settings("wss://x.livekit.cloud")
    assert SECRET not in repr(s) and SECRET not in str(s) and KEY not in repr(s)
    assert s.http_url == "https://x.livekit.cloud"


async def test_credentials_check_passes_against_a_server_that_accepts_them() -> None:
    async with TwirpRecorder() as server:
        await check_credentials(settings(server.url))
    [request] = server.requests
    assert request.path == "/twirp/livekit.RoomService/ListRooms"
    assert request.claims["iss"] == KEY  # signed with the key pair (the recorder verified it)


async def test_refused_credentials_name_the_key_and_secret_without_showing_them() -> None:
    async with TwirpRecorder(
        errors={"livekit.RoomService/ListRooms": (401, "unauthenticated")}
    ) as server:
        with pytest.raises(LiveKitSettingsError) as info:
            await check_credentials(settings(server.url))
    assert info.value.variable == "LIVEKIT_API_KEY/LIVEKIT_API_SECRET"
    assert SECRET not in str(info.value)


async def test_an_unreachable_server_names_the_url() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LiveKitSettingsError) as info:
        await check_credentials(settings(f"ws://127.0.0.1:{port}"), timeout_s=5.0)
    assert info.value.variable == "LIVEKIT_URL"
    assert "cannot reach" in str(info.value)


# ------------------------------------------------------------------ call control
async def test_transfer_is_a_transfer_sip_participant_request_with_sip_grants() -> None:
    async with TwirpRecorder() as server:
        await RoomCallControl(settings(server.url), "call-42").transfer(
            "sip_+15105550123", "+18005550199"
        )
    [request] = server.requests
    assert request.path == "/twirp/livekit.SIP/TransferSIPParticipant"
    assert request.body.room_name == "call-42"
    assert request.body.participant_identity == "sip_+15105550123"
    assert request.body.transfer_to == "tel:+18005550199"
    assert (
        request.claims["video"]["roomAdmin"] is True
        and request.claims["video"]["room"] == "call-42"
    )
    assert request.claims["sip"]["call"] is True


async def test_a_sip_uri_is_transferred_as_given() -> None:
    async with TwirpRecorder() as server:
        await RoomCallControl(settings(server.url), "r").transfer(
            "caller", "sip:desk@pbx.example.com"
        )
    assert server.requests[0].body.transfer_to == "sip:desk@pbx.example.com"


async def test_a_failed_transfer_raises_call_control_error_with_the_reason() -> None:
    failed = api.TransferSIPParticipantResponse(
        status=api.STS_TRANSFER_FAILED, reason=api.STR_RINGING_TIMEOUT
    )
    async with TwirpRecorder(responses={"livekit.SIP/TransferSIPParticipant": failed}) as server:
        with pytest.raises(CallControlError, match="STR_RINGING_TIMEOUT"):
            await RoomCallControl(settings(server.url), "r").transfer("caller", "+18005550199")
    async with TwirpRecorder(
        errors={"livekit.SIP/TransferSIPParticipant": (400, "invalid_argument")}
    ) as server:
        with pytest.raises(CallControlError, match="invalid_argument"):
            await RoomCallControl(settings(server.url), "r").transfer("caller", "+1")


async def test_hang_up_deletes_the_room_and_a_gone_room_is_not_an_error() -> None:
    async with TwirpRecorder() as server:
        await RoomCallControl(settings(server.url), "call-42").hang_up()
    [request] = server.requests
    assert request.path == "/twirp/livekit.RoomService/DeleteRoom"
    assert request.body.room == "call-42"
    assert request.claims["video"]["roomCreate"] is True
    async with TwirpRecorder(
        errors={"livekit.RoomService/DeleteRoom": (404, "not_found")}
    ) as server:
        await RoomCallControl(settings(server.url), "call-42").hang_up()
    async with TwirpRecorder(
        errors={"livekit.RoomService/DeleteRoom": (401, "unauthenticated")}
    ) as server:
        with pytest.raises(CallControlError, match="hang-up failed: unauthenticated"):
            await RoomCallControl(settings(server.url), "call-42").hang_up()


# ------------------------------------------------------------------ SIP participants and DTMF
def test_a_sip_participant_is_recognised_with_its_call_attributes() -> None:
    p = remote_participant(
        "sip_+15105550123",
        kind=SIP,
        attributes={
            "sip.phoneNumber": "+15105550123",
            "sip.trunkPhoneNumber": "+18005550100",
            "sip.trunkID": "ST_abc",
            "sip.callID": "SCL_xyz",
            "sip.callStatus": "active",
        },
    )
    caller = sip_caller(p)
    assert caller is not None
    assert (caller.phone_number, caller.trunk_phone_number, caller.trunk_id, caller.call_id) == (
        "+15105550123",
        "+18005550100",
        "ST_abc",
        "SCL_xyz",
    )
    assert caller.describe()["caller"] == "+*********23"  # the number is masked where recorded
    assert sip_caller(remote_participant("browser-user")) is None


def test_mask_number_keeps_only_the_last_two_digits() -> None:
    assert mask_number("+1 (510) 555-0123") == "+* (***) ***-**23"
    assert mask_number("") == ""


def test_dtmf_from_the_caller_becomes_dtmf_received() -> None:
    caller = remote_participant("sip_caller", kind=SIP)
    other = remote_participant("sip_other", kind=SIP)
    assert dtmf_event(
        rtc.SipDTMF(code=1, digit="1", participant=caller), "sip_caller"
    ) == DtmfReceived(digit="1")
    assert dtmf_event(
        rtc.SipDTMF(code=11, digit="#", participant=caller), "sip_caller"
    ) == DtmfReceived(digit="#")
    assert dtmf_event(rtc.SipDTMF(code=1, digit="1", participant=other), "sip_caller") is None
    assert dtmf_event(rtc.SipDTMF(code=99, digit="x", participant=caller), "sip_caller") is None


# ------------------------------------------------------------------ transcripts and state
def _user(turn: int, text: str, final: bool) -> TranscriptUpdated:
    return TranscriptUpdated(role="user", segment_id=f"user-{turn}", text=text, final=final, t=0.0)


def _agent(rid: str, text: str, final: bool, interrupted: bool = False) -> TranscriptUpdated:
    return TranscriptUpdated(
        role="agent", segment_id=rid, text=text, final=final, t=0.0, interrupted=interrupted
    )


async def test_transcripts_carry_livekit_segment_final_and_participant_attributes() -> None:
    room = LoopbackRoom(identity="agent-7")
    publisher = RoomPublisher(room.local_participant, caller_identity="sip_caller")
    publisher.caller_track_id = "TR_caller"
    publisher.agent_track_id = "TR_agent"
    for update in [
        _user(1, "where is my", False),
        _user(1, "where is my order", True),
        _agent("r1", "It shipped.", False),
        _agent("r1", "It shipped. It arrives Friday.", False),
        _agent("r1", "It shipped. It arrives", True, interrupted=True),  # what was heard
        _user(2, "thanks", True),
    ]:
        publisher.transcript_updated(update)
    await publisher.aclose()

    s = room.streams
    assert [x["topic"] for x in s] == ["lk.transcription"] * 6
    assert [x["text"] for x in s] == [
        "where is my",
        "where is my order",
        "It shipped.",
        "It shipped. It arrives Friday.",
        "It shipped. It arrives",
        "thanks",
    ]
    senders = [x["sender_identity"] for x in s]
    assert senders == ["sip_caller", "sip_caller", "agent-7", "agent-7", "agent-7", "sip_caller"]
    finals = [x["attributes"]["lk.transcription_final"] for x in s]
    assert finals == ["false", "true", "false", "false", "true", "true"]
    seg = [x["attributes"]["lk.segment_id"] for x in s]
    assert seg[0] == seg[1] and seg[2] == seg[3] == seg[4]  # one segment per utterance
    assert len({seg[0], seg[2], seg[5]}) == 3
    tracks = [x["attributes"]["lk.transcribed_track_id"] for x in s]
    assert tracks == ["TR_caller"] * 2 + ["TR_agent"] * 3 + ["TR_caller"]
    for call in room.local_participant.stream_text.await_args_list:
        assert set(call.kwargs) <= {"topic", "attributes", "sender_identity"}


async def test_a_segment_id_is_not_reused_after_its_final() -> None:
    room = LoopbackRoom()
    publisher = RoomPublisher(room.local_participant, caller_identity="c")
    publisher.transcript_updated(_user(1, "hello", True))
    publisher.transcript_updated(_user(1, "hello again", True))  # a new segment, same turn key
    await publisher.aclose()
    first, second = (x["attributes"]["lk.segment_id"] for x in room.streams)
    assert first != second


async def test_agent_state_follows_fsm_transitions_in_livekit_names() -> None:
    room = LoopbackRoom()
    publisher = RoomPublisher(room.local_participant)
    publisher.set_state("initializing")
    for previous, state in [
        ("listening", "user_speaking"),
        ("user_speaking", "thinking"),
        ("thinking", "speaking"),
        ("speaking", "listening"),
        ("listening", "user_speaking"),
        ("user_speaking", "listening"),
        ("listening", "ended"),
    ]:
        publisher.state_changed(AgentStateChanged(previous=previous, state=state, t=0.0))
    await publisher.aclose()
    # user_speaking is "listening" for the agent: no change is published for it
    assert room.states() == [
        "initializing",
        "listening",
        "thinking",
        "speaking",
        "listening",
        "idle",
    ]


async def test_a_publish_failure_is_counted_and_the_rest_still_goes_out() -> None:
    room = LoopbackRoom()
    calls = 0
    ok = room.local_participant.set_attributes.side_effect

    async def flaky(attributes: dict[str, str]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("room disconnected")
        await ok(attributes)

    room.local_participant.set_attributes.side_effect = flaky
    publisher = RoomPublisher(room.local_participant)
    publisher.set_state("listening")
    publisher.set_state("thinking")
    await asyncio.wait_for(publisher.aclose(), 5.0)
    assert publisher.failures == 1
    assert room.states() == ["thinking"]


async def test_a_stalled_room_does_not_hold_up_the_end_of_the_call() -> None:
    room = LoopbackRoom()

    async def hang(attributes: dict[str, str]) -> None:
        await asyncio.Event().wait()  # the server never answers

    room.local_participant.set_attributes.side_effect = hang
    publisher = RoomPublisher(room.local_participant)
    publisher.set_state("listening")
    await asyncio.sleep(0.01)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(publisher.aclose(timeout_s=0.2), 5.0)
    assert asyncio.get_running_loop().time() - started < 2.0
