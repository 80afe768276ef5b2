"""Malformed media-stream frames from the provider's side (session-7 hostile review).

A provider, a proxy or a buggy client can send frames that are JSON but not the
shape the dialect reads: ``"media": "x"``, ``"sampleRate": "fast"``, a list for the
custom parameters, JSON nested 100,000 deep. Each raised its own exception
(AttributeError, ValueError, RecursionError, ...) out of the dialect, which ended the
socket's reader: one such frame hung up a live caller with a traceback in the log.
"""

from __future__ import annotations

import asyncio
import json

import phone_helpers
import pytest
from phone_helpers import TIMEOUT_S, has_answered, until
from twilio_client import TwilioCall
from voice_helpers import ORDER_QUESTION, RATE, order_scenario, speech, start_oracle, voice_config

from ledger import entries as le
from ledger import load_jsonl
from voice_agent.transports.media_stream import DialectError, parse_message
from voice_agent.transports.telnyx import TelnyxDialect
from voice_agent.transports.twilio import TwilioDialect
from voice_agent.transports.vonage import VonageDialect

START = {"callSid": "CA1", "call_control_id": "v3:1", "streamSid": "MZ1", "stream_id": "S1"}
JUNK = [
    {"event": "media", "media": "x"},
    {"event": "media", "media": None},
    {"event": "start", "start": "x"},
    {"event": "start", "start": {**START, "mediaFormat": "mulaw", "media_format": "PCMU"}},
    {"event": "start", "start": {**START, "mediaFormat": {"sampleRate": "fast"}}},
    {"event": "start", "start": {**START, "media_format": {"sample_rate": "fast"}}},
    {"event": "start", "start": {**START, "mediaFormat": {"sampleRate": 0}}},
    {"event": "start", "start": {**START, "media_format": {"sample_rate": 1e300}}},
    {"event": "start", "start": {**START, "customParameters": [1], "custom_parameters": [1]}},
    {"event": "start", "start": {**START, "mediaFormat": {"encoding": ["x"]}}},
    {"event": "websocket:dtmf", "dtmf": "x"},
    {"event": "websocket:connected", "content-type": "audio/l16;rate=0"},
]
DEEP = "[" * 100_000 + "]" * 100_000

# the call runs on real sockets and the wall clock
pytestmark = pytest.mark.realtime


@pytest.mark.parametrize("dialect", [TwilioDialect(), TelnyxDialect(), VonageDialect()])
@pytest.mark.parametrize("frame", [json.dumps(j) for j in JUNK] + [DEEP, b"\x01"])
def test_a_malformed_frame_is_a_dialect_error_whatever_it_holds(dialect, frame) -> None:  # type: ignore[no-untyped-def]
    try:
        parse_message(dialect, frame)
    except DialectError:
        pass  # refused: the server logs it and reads on


async def test_junk_frames_mid_call_do_not_hang_up_the_caller(tmp_path) -> None:  # type: ignore[no-untyped-def]
    question, _, _ = speech(ORDER_QUESTION)
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        async with phone_helpers.phone_rig(config, rig.tools) as (worker, server, calls):
            async with TwilioCall(server.url) as caller:
                await caller.silence(0.2)
                for junk in [*JUNK, DEEP]:
                    await caller._ws.send_str(junk if isinstance(junk, str) else json.dumps(junk))
                await caller.silence(0.2)
                await caller.speak(question, RATE)
                silence = asyncio.ensure_future(caller.silence(TIMEOUT_S))
                await until(lambda: bool(calls) and has_answered(calls[0][0]), "the answer")
                silence.cancel()
                await caller.hang_up()
            (result,) = server.results
    ledger = load_jsonl(result.ledger_path)  # type: ignore[arg-type]
    played = [e.text for e in ledger if isinstance(e, le.AgentTextPlayed)]
    assert played and "shipped" in played[-1]
    end = ledger[-1]
    assert isinstance(end, le.SessionEnded) and end.reason == "caller hung up"
