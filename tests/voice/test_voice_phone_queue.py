"""Calls beyond the worker's limit over a real media-stream WebSocket: a queued caller hears
the hold message (again and again) and is answered once a slot frees; one that waits too
long hears the apology and the call ends; beyond the queue a call is refused at once. Every
path leaves a ledger. Limit 1, real VAD, Whisper and piper, the oracle LLM."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from phone_helpers import TIMEOUT_S, Calls, ledgers, phone_rig, session_meta, until
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

from ledger import entries as le
from voice_agent.config import Config
from voice_agent.tools import ToolRegistry
from voice_agent.transports.phone_server import WS_TRY_AGAIN_LATER, PhoneServer
from voice_agent.worker import Worker

pytestmark = pytest.mark.realtime

HOLD = "Please hold the line, a person will answer soon."
APOLOGY = "Sorry, nobody is free today. Goodbye."


def queue_rig(
    config: Config, tools: ToolRegistry, **worker: Any
) -> AbstractAsyncContextManager[tuple[Worker, PhoneServer, Calls]]:
    """A worker that serves one call at a time, with this test's hold message and apology."""
    return phone_rig(config, tools, max_calls=1, hold_message=HOLD, queue_apology=APOLOGY, **worker)


async def test_a_queued_caller_hears_the_hold_message_until_a_slot_frees_and_is_then_answered(
    tmp_path: Path,
) -> None:
    question, _, _ = speech(ORDER_QUESTION)
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        async with queue_rig(
            config, rig.tools, max_waiting=1, hold_interval_s=1.0, wait_timeout_s=TIMEOUT_S * 2
        ) as (worker, server, calls):
            async with TwilioCall(server.url, call_sid="CA1", stream_sid="MZ1") as first:
                first_talks = asyncio.ensure_future(first.silence(TIMEOUT_S * 3))
                await until(lambda: worker.stats.active == 1, "the first call running")
                async with TwilioCall(server.url, call_sid="CA2", stream_sid="MZ2") as second:
                    second_waits = asyncio.ensure_future(second.silence(TIMEOUT_S * 3))
                    await until(lambda: worker.stats.waiting == 1, "the second call queued")
                    # the hold message is played, and again once its interval has passed
                    await until(lambda: len(second.marks_echoed) >= 2, "two hold messages heard")
                    assert worker.stats.active == 1 and len(calls) == 1
                    held_until = second.now()
                    first_talks.cancel()
                    await asyncio.gather(first_talks, return_exceptions=True)
                    await first.hang_up()  # the slot frees: the queued call is served
                    await until(lambda: len(calls) == 2, "the second call started")
                    second_waits.cancel()
                    await asyncio.gather(second_waits, return_exceptions=True)
                    await second.silence(0.4)
                    await second.speak(question, RATE)
                    spoke_until = second.speech_spans[-1][1]
                    answered = asyncio.ensure_future(second.silence(TIMEOUT_S))
                    await until(
                        lambda: (
                            any(
                                isinstance(e, le.AgentTextPlayed)
                                for e in calls[1][0].agent.ledger.entries
                            )
                            and calls[1][0].done()
                        ),
                        "the answer",
                    )
                    await asyncio.sleep(0.3)
                    answered.cancel()
                    await asyncio.gather(answered, return_exceptions=True)
                    await second.hang_up()
            assert worker.stats.served == 2 and worker.stats.queued == 1
            assert worker.stats.not_served == 0 and worker.stats.refused == 0
    held = transcribe(second.heard(0.0)[: int(held_until * 8000)], 8000).lower()
    assert "hold" in held and "answer" in held, held
    answer = transcribe(second.heard(spoke_until), 8000).lower()
    assert "shipped" in answer, answer
    assert "hold" not in answer, "the hold message stopped once the call was served"
    second_ledger = next(
        x for x in ledgers(tmp_path / "sessions") if session_meta(x).get("call_id") == "CA2"
    )
    queue = session_meta(second_ledger)["queue"]
    assert queue["hold_messages"] >= 2 and queue["waited_s"] > 0
    assert isinstance(second_ledger[-1], le.SessionEnded)


async def test_a_caller_queued_too_long_hears_the_apology_the_call_ends_and_a_third_is_refused(
    tmp_path: Path,
) -> None:
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        async with queue_rig(
            config, rig.tools, max_waiting=1, hold_interval_s=30.0, wait_timeout_s=4.0
        ) as (worker, server, _calls):
            async with TwilioCall(server.url, call_sid="CA1", stream_sid="MZ1") as first:
                first_talks = asyncio.ensure_future(first.silence(TIMEOUT_S * 3))
                await until(lambda: worker.stats.active == 1, "the first call running")
                async with TwilioCall(server.url, call_sid="CA2", stream_sid="MZ2") as second:
                    second_waits = asyncio.ensure_future(second.silence(TIMEOUT_S * 3))
                    await until(lambda: worker.stats.waiting == 1, "the second call queued")
                    # slots and queue full: the third is refused at once
                    async with TwilioCall(server.url, call_sid="CA3", stream_sid="MZ3") as third:
                        await third.wait_closed(TIMEOUT_S)
                    assert third.closed_code == WS_TRY_AGAIN_LATER
                    await second.wait_closed(TIMEOUT_S)  # apology, then the server ends it
                    second_waits.cancel()
                    await asyncio.gather(second_waits, return_exceptions=True)
                first_talks.cancel()
                await asyncio.gather(first_talks, return_exceptions=True)
                await first.hang_up()
            assert worker.stats.refused == 1 and worker.stats.not_served == 1
            assert worker.stats.served == 1
    heard = transcribe(second.heard(0.0), 8000).lower()
    assert "hold" in heard, heard
    assert "sorry" in heard and "goodbye" in heard, heard
    [unserved] = [
        x for x in ledgers(tmp_path / "sessions") if session_meta(x).get("call_id") == "CA2"
    ]
    assert isinstance(unserved[-1], le.SessionEnded) and unserved[-1].reason == "queue timeout"
    assert session_meta(unserved)["queue"]["hold_messages"] == 1
    assert session_meta(unserved)["queue"]["waited_s"] >= 4.0


async def test_a_caller_who_hangs_up_while_queued_leaves_the_line_and_a_ledger(
    tmp_path: Path,
) -> None:
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        async with queue_rig(
            config, rig.tools, max_waiting=1, hold_interval_s=1.0, wait_timeout_s=TIMEOUT_S * 2
        ) as (worker, server, calls):
            async with TwilioCall(server.url, call_sid="CA1", stream_sid="MZ1") as first:
                first_talks = asyncio.ensure_future(first.silence(TIMEOUT_S * 3))
                await until(lambda: worker.stats.active == 1, "the first call running")
                async with TwilioCall(server.url, call_sid="CA2", stream_sid="MZ2") as second:
                    await second.silence(0.3)
                    await until(lambda: worker.stats.waiting == 1, "the second call queued")
                    await until(lambda: bool(second.marks_echoed), "the hold message heard")
                    await second.hang_up()
                await until(lambda: worker.stats.not_served == 1, "the queue to let it go")
                assert worker.stats.waiting == 0 and worker.admission.waiting == 0
                # the line is free for the next caller once the first call ends
                first_talks.cancel()
                await asyncio.gather(first_talks, return_exceptions=True)
                await first.hang_up()
            assert worker.admission.active == 0 and len(calls) == 1
    [unserved] = [
        x for x in ledgers(tmp_path / "sessions") if session_meta(x).get("call_id") == "CA2"
    ]
    assert isinstance(unserved[-1], le.SessionEnded)
    assert unserved[-1].reason == "caller hung up while queued"
