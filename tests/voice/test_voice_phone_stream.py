"""``voice-agent phone serve`` end to end over a real WebSocket: a Twilio Media Streams peer
(tests/voice/twilio_client.py, written from Twilio's documentation) streams a piper-
synthesized caller as 8 kHz μ-law; one worker with real VAD, Whisper and piper and the
oracle LLM answers; the answer is transcribed back from the audio the peer played."""

from __future__ import annotations

import asyncio
import functools
import json
from contextlib import AbstractAsyncContextManager
from typing import Any

import numpy as np
import phone_helpers
import pytest
from aiohttp import web
from phone_helpers import TIMEOUT_S, Calls, has_answered, until
from twilio_client import TwilioCall
from voice_helpers import (
    ORDER_QUESTION,
    RATE,
    Scenario,
    order_scenario,
    speech,
    start_oracle,
    transcribe,
    voice_config,
)
from web_helpers import serving

from ledger import entries as le
from ledger import load_jsonl
from voice_agent.call_control import HangUp, Transfer
from voice_agent.events import DtmfReceived
from voice_agent.transports.call import Call
from voice_agent.transports.media_stream import MediaStreamTransport
from voice_agent.transports.phone_server import WS_TRY_AGAIN_LATER, PhoneServer
from voice_agent.transports.twilio import TwilioRest

# real sockets, real decoding threads, a caller paced on the wall clock: the wall clock, not virtual time
pytestmark = pytest.mark.realtime

ANSWER_TIMEOUT_S = TIMEOUT_S  # the agent must have answered within this (s of real time)
# Its first sentence alone lasts 5 s, so the caller who speaks 2 s into the answer speaks
# over it whatever the speed of synthesizing the next ones. (It was 1.7 s long: beside CPU
# hogs, at load 13, the second sentence was not ready when the first ended, nothing was
# playing at the barge-in, and there was rightly no buffer to clear: 2 failures of 2.)
LONG_ANSWER = (
    "Your order four two seven has shipped from our warehouse in Denver on Monday morning "
    "with United Parcel Service. The tracking number is in your email. "
    "It should arrive on Friday before noon."
)


# three callers at once in one test: the worker takes them all
phone_rig = functools.partial(phone_helpers.phone_rig, max_calls=3)


async def wait_for_answer(calls: Calls, call_sid: str, margin_s: float = 0.3) -> None:
    """Until the agent of call ``call_sid`` has answered (``has_answered``), plus
    ``margin_s`` for the last frames to reach the caller."""

    def answered() -> bool:
        mine = [c for c, t in calls if t.started.call_id == call_sid]
        return bool(mine) and has_answered(mine[0])

    await until(answered, f"call {call_sid} to be answered", ANSWER_TIMEOUT_S)
    await asyncio.sleep(margin_s)


async def test_a_phone_caller_is_answered_and_stop_ends_the_call_with_the_ledger_complete(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    question, _, _ = speech(ORDER_QUESTION)
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        async with phone_rig(config, rig.tools) as (worker, server, calls):
            async with TwilioCall(
                server.url, parameters={"From": "+15550100", "tier": "gold"}
            ) as caller:
                await caller.silence(0.4)
                await caller.speak(question, RATE)
                spoke_until = caller.speech_spans[-1][1]
                silence = asyncio.ensure_future(caller.silence(ANSWER_TIMEOUT_S))
                await wait_for_answer(calls, caller.call_sid)
                async with asyncio.timeout(ANSWER_TIMEOUT_S):  # played on the caller's side too
                    while not caller.marks_echoed:
                        await asyncio.sleep(0.05)
                silence.cancel()
                await caller.hang_up()
            assert caller.closed_code is not None
            (result,) = server.results
            assert worker.stats.served == 1 and worker.stats.active == 0
    heard = transcribe(caller.heard(spoke_until), 8000)
    assert "shipped" in heard, heard
    first = caller.first_audio_after(spoke_until)
    assert first is not None and first - spoke_until < ANSWER_TIMEOUT_S
    assert caller.marks_echoed, "a mark follows each sentence and comes back when played"
    ledger = load_jsonl(result.ledger_path)  # type: ignore[arg-type]
    started = ledger[0]
    assert isinstance(started, le.SessionStarted)
    assert started.meta["transport"] == "phone" and started.meta["call_id"] == caller.call_sid
    assert started.meta["stream_id"] == caller.stream_sid
    custom = started.meta["custom_parameters"]
    assert custom["tier"] == "gold" and "0100" in custom["From"]  # numbers may be masked
    finals = [e.text for e in ledger if isinstance(e, le.UserUtterance) and e.final]
    assert len(finals) == 1 and "427" in finals[0]
    played = [e for e in ledger if isinstance(e, le.AgentTextPlayed)]
    assert played and "shipped" in played[-1].text and not played[-1].interrupted
    end = ledger[-1]
    assert isinstance(end, le.SessionEnded) and end.reason == "caller hung up"


async def test_speaking_over_the_agent_sends_clear_and_the_ledger_keeps_what_was_heard(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    question, _, _ = speech(ORDER_QUESTION)
    interruption, _, _ = speech("Wait, I have another question.")
    async for rig in start_oracle(order_scenario(answer=LONG_ANSWER)):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        # no hold phrase ("One moment.") before the answer: on a loaded machine the LLM and
        # the tool take over 1.5 s, and the first audio would be the hold phrase, not the
        # long answer this test speaks over
        config = config.model_copy(
            update={
                "agent": config.agent.model_copy(
                    update={"llm_hold_after_s": 60.0, "llm_deadline_s": 90.0, "max_hold_phrases": 0}
                )
            }
        )
        async with phone_rig(config, rig.tools) as (_, server, _calls):
            async with TwilioCall(server.url) as caller:
                await caller.silence(0.4)
                await caller.speak(question, RATE)
                spoke_until = caller.speech_spans[-1][1]
                background = asyncio.ensure_future(caller.silence(ANSWER_TIMEOUT_S))
                async with asyncio.timeout(ANSWER_TIMEOUT_S):
                    while (first := caller.first_audio_after(spoke_until)) is None:
                        await asyncio.sleep(0.05)
                    while caller.now() < first + 2.0:  # two seconds into the long answer
                        await asyncio.sleep(0.05)
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
                began = caller.now()  # the VAD may hear the first, faint frames before `onset`
                await caller.speak(interruption, RATE)
                onset = caller.speech_spans[-1][0]
                await caller.silence(3.0)
                await caller.hang_up()
            (result,) = server.results
    clears = [t for t in caller.clears if t >= began]
    assert clears, "a barge-in clears the provider's buffer"
    assert clears[0] - onset < 1.5, f"clear {clears[0] - onset:.2f} s after the caller's onset"
    after = caller.heard(clears[0] + 0.05)[: int(0.5 * 8000)]
    assert not np.abs(after).max(initial=0) > 0.01, "nothing plays right after the clear"
    long_answer = {
        e.response_id
        for e in result.entries
        if isinstance(e, le.AgentTextPlanned) and e.text.startswith("Your order")
    }
    cut = [
        e
        for e in result.entries
        if isinstance(e, le.AgentTextPlayed) and e.response_id in long_answer
    ]
    assert len(cut) == 1 and cut[0].interrupted
    heard = cut[0].text.split()
    assert 0 < len(heard) < len(LONG_ANSWER.split()) and LONG_ANSWER.split()[: len(heard)] == heard


async def test_keypad_digits_reach_the_agent_as_dtmf_events(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        async with phone_rig(config, rig.tools) as (_, server, calls):
            async with TwilioCall(server.url) as caller:
                await caller.silence(0.3)
                for digit in "42#":
                    await caller.press(digit)
                await caller.silence(0.5)
                ((call, transport),) = calls
                trace = [r.event for r in call.agent.trace]
                await caller.hang_up()
    assert transport.digits == ["4", "2", "#"]
    assert trace.count(DtmfReceived.__name__) == 3


async def test_several_calls_at_once_through_one_worker_are_each_answered_with_separate_ledgers(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    questions = {  # question: (words of the answer, one must be heard; a word of its transcript)
        "Where is my order number four two seven?": (("shipped", "friday"), "427"),
        "What are your opening hours?": (("monday", "friday"), "opening"),
        "Can I send a parcel to Canada?": (("canada", "week"), "parcel"),
    }
    voices = {q: speech(q)[0] for q in questions}  # synthesized before the calls start
    scenario = Scenario.model_validate(
        {
            "name": "three_callers",
            "oracle": {"ttft_ms": 300, "tokens_per_s": 60},
            "tools": order_scenario().model_dump(mode="json")["tools"],
            "turns": [
                order_scenario().model_dump(mode="json", exclude_none=True)["turns"][0],
                {
                    "user": "What are your opening hours?",
                    "answer": [
                        {
                            "say": "We are open from nine to five, Monday to Friday.",
                            "expect": ["nine"],
                        }
                    ],
                },
                {
                    "user": "Can I send a parcel to Canada?",
                    "answer": [
                        {"say": "Yes, a parcel to Canada takes about a week.", "expect": ["Canada"]}
                    ],
                },
            ],
        }
    )

    async def one_call(
        server: PhoneServer, calls: list[tuple[Call, MediaStreamTransport]], n: int, question: str
    ) -> tuple[TwilioCall, str]:
        audio = voices[question]
        async with TwilioCall(
            server.url, call_sid=f"CA{n:032d}", stream_sid=f"MZ{n:032d}"
        ) as caller:
            await caller.silence(0.3 + 0.4 * n)
            await caller.speak(audio, RATE)
            spoke_until = caller.speech_spans[-1][1]
            background = asyncio.ensure_future(caller.silence(2 * ANSWER_TIMEOUT_S))
            await wait_for_answer(calls, caller.call_sid)
            background.cancel()
            await asyncio.gather(background, return_exceptions=True)
            await caller.hang_up()
        return caller, transcribe(caller.heard(spoke_until), 8000)

    async for rig in start_oracle(scenario):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        async with phone_rig(config, rig.tools) as (worker, server, calls):
            done = await asyncio.gather(
                *(one_call(server, calls, n, q) for n, q in enumerate(questions))
            )
            results = list(server.results)
            assert worker.stats.served == 3
    for (_caller, heard), (question, (keywords, _)) in zip(done, questions.items(), strict=True):
        assert any(k in heard for k in keywords), (question, heard)
    by_call = {r.entries[0].meta["call_id"]: r for r in results}  # type: ignore[union-attr]
    assert len({r.session_id for r in results}) == 3
    for (caller, _), (_, said) in zip(done, questions.values(), strict=True):
        result = by_call[caller.call_sid]
        finals = [e.text for e in result.entries if isinstance(e, le.UserUtterance) and e.final]
        assert len(finals) == 1, finals  # only this caller's words in this ledger
        assert said in finals[0].lower(), finals
        assert isinstance(result.entries[-1], le.SessionEnded)
        assert result.ledger_path is not None and len(load_jsonl(result.ledger_path)) == len(
            result.entries
        )


class RecorderApi:
    """An HTTP server on 127.0.0.1 that records requests like Twilio's REST API would get them."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "auth": request.headers.get("Authorization"),
                "form": form,
            }
        )
        if self.status >= 400:
            return web.json_response(
                {"code": 20404, "message": "The requested resource was not found"},
                status=self.status,
            )
        return web.json_response({"sid": request.match_info["call"], "status": "in-progress"})

    def serving(self) -> AbstractAsyncContextManager[str]:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{call}.json", self.handle)
        return serving(app)


@pytest.mark.parametrize("status", [200, 404])
async def test_transfer_and_hang_up_go_through_the_providers_rest_api(
    tmp_path, status: int
) -> None:  # type: ignore[no-untyped-def]
    import base64

    api = RecorderApi(status)
    async with api.serving() as base_url:
        control = TwilioRest("AC123", "secret-token", base_url)
        async for rig in start_oracle(order_scenario()):
            config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
            async with phone_rig(config, rig.tools, control=control) as (_, server, calls):
                async with TwilioCall(server.url, call_sid="CA42") as caller:
                    await caller.silence(0.3)
                    ((call, _transport),) = calls
                    transferred = await call.perform(Transfer(destination="+15550199"))
                    hung_up = await call.perform(HangUp(reason="done"))
                    if status == 200:
                        await caller.wait_closed(10)  # the agent's hang-up ends the call
                    else:
                        await caller.hang_up()
                (result,) = server.results
    assert [r["path"] for r in api.requests] == ["/2010-04-01/Accounts/AC123/Calls/CA42.json"] * 2
    assert api.requests[0]["form"] == {"Twiml": "<Response><Dial>+15550199</Dial></Response>"}
    assert api.requests[1]["form"] == {"Status": "completed"}
    expected = "Basic " + base64.b64encode(b"AC123:secret-token").decode()
    assert all(r["auth"] == expected for r in api.requests)
    notes = [e for e in result.entries if isinstance(e, le.Note)]
    text = json.dumps([n.text for n in notes])
    assert "secret-token" not in text
    end = result.entries[-1]
    assert isinstance(end, le.SessionEnded)
    if status == 200:
        assert transferred and hung_up and end.reason == "hang-up"
    else:
        assert not transferred and not hung_up and end.reason == "caller hung up"
        assert any(n.level == "error" and "404" in n.text for n in notes), text


async def test_a_full_worker_refuses_the_next_call_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        async with phone_rig(config, rig.tools, max_calls=1) as (worker, server, _):
            async with TwilioCall(server.url, call_sid="CA1") as first:
                await first.silence(0.3)
                async with TwilioCall(server.url, call_sid="CA2") as second:
                    await second.wait_closed(10)
                assert second.closed_code == WS_TRY_AGAIN_LATER
                assert worker.stats.refused == 1 and worker.stats.active == 1
                await first.hang_up()
            assert worker.stats.served == 1
