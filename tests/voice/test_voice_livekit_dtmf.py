"""DTMF sent by a tool reaches LiveKit: the caller asks (real rtc audio in), the oracle calls a
tool whose ``ctx.call.send_dtmf`` becomes the FSM's call action, ``Call.perform`` and
``RoomCall.send_dtmf``: one ``publish_dtmf`` per key on the room's local participant (the
SDK's call; autospecced, since no LiveKit server runs here), ``w`` a pause."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from keypad_helpers import DIGITS, keypad_scenario, keypad_tools
from livekit_helpers import TwirpRecorder
from test_voice_livekit_room import CallRig
from voice_helpers import ORDER_QUESTION, OracleRig, speech

from ledger import entries as le
from voice_agent.bench.livekit_loopback import until
from voice_agent.bench.oracle import OracleServer

pytestmark = [pytest.mark.slow, pytest.mark.realtime]


async def test_a_tools_dtmf_is_published_to_the_room_key_by_key(tmp_path: Path) -> None:
    async with OracleServer(keypad_scenario()) as oracle:
        rig = OracleRig(oracle, keypad_scenario(), keypad_tools(), [])
        async with TwirpRecorder() as control, CallRig(rig, tmp_path, control.url) as c:
            question, _, _ = speech(ORDER_QUESTION)
            await c.ask(question)
            publish = c.room.local_participant.publish_dtmf
            await until(lambda: publish.await_count >= len(DIGITS), 90, "the keys published")
            agent = c.call.agent
            assert agent is not None
            await until(
                lambda: any(isinstance(e, le.AgentTextPlayed) for e in agent.ledger.entries),
                90,
                "the answer",
            )
            sent = [call.kwargs for call in publish.await_args_list]
            c.room.leave(c.caller)
            assert c.task is not None
            result = await asyncio.wait_for(c.task, 30)
    assert sent == [
        {"code": 1, "digit": "1"},
        {"code": 2, "digit": "2"},
        {"code": 3, "digit": "3"},
        {"code": 4, "digit": "4"},
        {"code": 11, "digit": "#"},
    ]
    assert any(isinstance(e, le.Note) and "SendDtmf" in e.text for e in result.entries)
    assert control.requests == []  # DTMF is a room call, not a server API request
