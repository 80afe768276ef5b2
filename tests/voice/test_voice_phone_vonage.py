"""The Vonage dialect end to end over a real WebSocket: a Vonage peer written from Vonage's
documentation (tests/voice/vonage_client.py) streams a piper-synthesized caller as binary
16 kHz linear PCM after ``websocket:connected``; the same worker and transport as Twilio's
answer it; keypad digits arrive as DTMF events; closing the socket ends the call with the
ledger complete. And DTMF sending end to end: a tool's ``ctx.call.send_dtmf`` reaches the
provider — Vonage's REST DTMF call against a recorder on 127.0.0.1, Twilio as in-band tones
on the stream (its bidirectional stream has no DTMF message) decoded on the caller's side."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from keypad_helpers import DIGITS, decode_dtmf, keypad_scenario, keypad_tools
from phone_helpers import TIMEOUT_S, Calls, has_answered, phone_rig, until
from twilio_client import TwilioCall
from voice_helpers import (
    ORDER_QUESTION,
    RATE,
    order_scenario,
    speech,
    start_oracle,
    transcribe,
    voice_config,
)
from vonage_client import VonageCall
from web_helpers import serving

from ledger import entries as le
from ledger import load_jsonl
from voice_agent.bench.oracle import OracleServer
from voice_agent.transports.vonage import VonageRest

pytestmark = pytest.mark.realtime


def answered(calls: Calls) -> bool:
    return bool(calls) and has_answered(calls[0][0])


async def test_a_vonage_caller_is_answered_over_binary_pcm_and_closing_the_socket_ends_the_call(
    tmp_path: Path,
) -> None:
    question, _, _ = speech(ORDER_QUESTION)
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        async with phone_rig(config, rig.tools, provider="vonage") as (worker, server, calls):
            async with VonageCall(server.url, uuid="vonage-call-1") as caller:
                await caller.silence(0.4)
                await caller.speak(question, RATE)
                spoke_until = caller.speech_spans[-1][1]
                background = asyncio.ensure_future(caller.silence(TIMEOUT_S))
                await until(lambda: answered(calls), "the answer")
                await until(lambda: bool(caller.notified), "a notify echoed (the mark)")
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
                agent = calls[0][0].agent
                await caller.press("5")
                await until(
                    lambda: any(r.event == "DtmfReceived" for r in agent.trace), "the DTMF event"
                )
                await caller.hang_up()
                await until(lambda: bool(server.results), "the call to end")
            assert worker.stats.served == 1
    heard = transcribe(caller.heard(spoke_until), 16000).lower()
    assert "shipped" in heard, heard
    assert caller.frame_sizes and set(caller.frame_sizes) == {640}  # whole 20 ms L16 frames
    (result,) = server.results
    ledger = load_jsonl(result.ledger_path)  # type: ignore[arg-type]
    start, end = ledger[0], ledger[-1]
    assert isinstance(start, le.SessionStarted) and isinstance(end, le.SessionEnded)
    assert start.meta["provider"] == "vonage" and start.meta["audio"] == "l16/16000"
    assert start.meta["call_id"] == "vonage-call-1"
    assert end.reason == "caller hung up"  # Vonage ends a call by closing the socket
    assert any(isinstance(e, le.UserUtterance) and "427" in e.text for e in ledger)


# ---------------------------------------------------------------- DTMF sent by a tool


class DtmfRecorder:
    """Vonage's Voice API on 127.0.0.1: records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "auth": request.headers.get("Authorization"),
                "body": await request.json(),
            }
        )
        return web.json_response({"message": "DTMF sent", "uuid": request.match_info["uuid"]})

    def serving(self) -> AbstractAsyncContextManager[str]:
        app = web.Application()
        app.router.add_put("/v1/calls/{uuid}/dtmf", self.handle)
        return serving(app)


async def test_a_tools_dtmf_reaches_vonage_through_its_rest_api(tmp_path: Path) -> None:
    question, _, _ = speech(ORDER_QUESTION)
    api = DtmfRecorder()
    async with api.serving() as base_url, OracleServer(keypad_scenario()) as oracle:
        control = VonageRest("header.claims.signature", base_url)
        config = voice_config(oracle.base_url, str(tmp_path / "sessions"))
        async with phone_rig(config, keypad_tools(), provider="vonage", control=control) as (
            _,
            server,
            calls,
        ):
            async with VonageCall(server.url, uuid="vonage-call-7") as caller:
                await caller.silence(0.4)
                await caller.speak(question, RATE)
                background = asyncio.ensure_future(caller.silence(TIMEOUT_S))
                await until(lambda: bool(api.requests), "the DTMF request")
                await until(lambda: answered(calls), "the answer")
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
                await caller.hang_up()
                await until(lambda: bool(server.results), "the call to end")
    assert api.requests == [
        {
            "method": "PUT",
            "path": "/v1/calls/vonage-call-7/dtmf",
            "auth": "Bearer header.claims.signature",
            "body": {"digits": DIGITS},
        }
    ]
    (result,) = server.results
    notes = [e.text for e in result.entries if isinstance(e, le.Note)]
    assert any("SendDtmf" in n and DIGITS in n for n in notes), notes
    assert "header.claims.signature" not in json.dumps(notes)


async def test_a_tools_dtmf_reaches_a_twilio_caller_as_keypad_tones_on_the_stream(
    tmp_path: Path,
) -> None:
    question, _, _ = speech(ORDER_QUESTION)
    async with OracleServer(keypad_scenario()) as oracle:
        config = voice_config(oracle.base_url, str(tmp_path / "sessions"))
        async with phone_rig(config, keypad_tools(), provider="twilio") as (_, server, calls):
            async with TwilioCall(server.url, call_sid="CA9") as caller:
                await caller.silence(0.4)
                await caller.speak(question, RATE)
                spoke_until = caller.speech_spans[-1][1]
                background = asyncio.ensure_future(caller.silence(TIMEOUT_S))
                await until(lambda: answered(calls), "the answer")
                await until(
                    lambda: DIGITS in decode_dtmf(caller.heard(spoke_until), 8000),
                    "the tones played",
                )
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
                await caller.hang_up()
    assert decode_dtmf(caller.heard(spoke_until), 8000) == DIGITS
    (result,) = server.results
    assert any(isinstance(e, le.Note) and "SendDtmf" in e.text for e in result.entries)
