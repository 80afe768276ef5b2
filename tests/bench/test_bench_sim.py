"""Simulated user and speaker, on virtual time."""

from __future__ import annotations

import asyncio

import pytest
from bench_helpers import scenario_from

from fsm import ManualClock
from voice_agent.bench.scenario import PeripheralTiming
from voice_agent.bench.sim import SimulatedSpeechOutput, SimulatedUser
from voice_agent.events import (
    Event,
    PlayoutFinished,
    PlayoutStarted,
    SessionEnded,
    TranscriptFinal,
    TranscriptPartial,
    UserSpeechEnded,
    UserSpeechStarted,
)

TIMING = PeripheralTiming(tts_first_audio_ms=100, speaking_rate_wpm=120)  # 2 words per second


async def run_for(clock: ManualClock, seconds: float, step: float = 0.01) -> None:
    for _ in range(round(seconds / step)):
        for _ in range(10):
            await asyncio.sleep(0)
        await clock.advance(step)


class Speaker:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.output = SimulatedSpeechOutput(TIMING, self.clock)
        self.events: list[tuple[float, Event]] = []
        self.output.bind(lambda e: self.events.append((self.clock.now(), e)))

    async def played(self, seconds: float) -> list[str]:
        """Play what was pushed for ``seconds``, then close: the sentences played."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.output.run())
            await run_for(self.clock, seconds)
            await self.output.aclose()
        return [p.text for p in self.output.sentences]


async def test_sentences_play_in_time_and_playout_events_follow() -> None:
    s = Speaker()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(s.output.run())
        s.output.push("r1", "Hello there. How are")
        s.output.push("r1", " you today?")
        s.output.end("r1")
        await run_for(s.clock, 4.0)
        await s.output.aclose()
    played = [(p.text, round(p.start, 2), round(p.end, 2)) for p in s.output.sentences]
    assert played == [("Hello there.", 0.1, 1.1), ("How are you today?", 1.1, 3.1)]
    assert [type(e) for _, e in s.events] == [PlayoutStarted, PlayoutFinished]
    assert s.events[0][0] == pytest.approx(0.1, abs=0.02)
    finished = s.events[1][1]
    assert isinstance(finished, PlayoutFinished)
    assert finished.heard == "Hello there. How are you today?" and not finished.interrupted


async def test_interrupt_returns_words_heard_so_far_and_drops_the_rest() -> None:
    s = Speaker()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(s.output.run())
        s.output.push("r1", "one two three four. Never heard at all.")
        await run_for(s.clock, 1.1)  # sentence started at 0.1; half of its 2 s elapsed
        heard = s.output.interrupt()
        s.output.push("r1", " Late text.")
        s.output.end("r1")
        await run_for(s.clock, 3.0)
        await s.output.aclose()
    assert heard == {"r1": "one two"}
    assert [p.heard for p in s.output.sentences] == ["one two"]
    assert s.output.sentences[0].interrupted
    assert [type(e) for _, e in s.events] == [PlayoutStarted]


async def test_responses_play_in_order_and_a_new_one_waits_for_audio() -> None:
    s = Speaker()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(s.output.run())
        s.output.push("r1", "First answer here. ")
        s.output.push("r2", "Second.")
        s.output.end("r2")
        await run_for(s.clock, 2.0)
        s.output.end("r1")
        await run_for(s.clock, 2.0)
        s.output.end("empty")
        await s.output.aclose()
    assert [(p.response_id, round(p.start, 2)) for p in s.output.sentences] == [
        ("r1", 0.1),
        ("r2", 2.0),
    ]
    assert [(type(e).__name__, getattr(e, "response_id", "")) for _, e in s.events] == [
        ("PlayoutStarted", "r1"),
        ("PlayoutFinished", "r1"),
        ("PlayoutStarted", "r2"),
        ("PlayoutFinished", "r2"),
    ]


def user_scenario(barge_in_ms: float | None = None):  # type: ignore[no-untyped-def]
    second = {"user": "And the other one?", "speaking_ms": 1000}
    if barge_in_ms is not None:
        second["barge_in_after_ms"] = barge_in_ms
    return scenario_from(
        {
            "name": "u",
            "peripherals": {"asr_final_delay_ms": 250, "asr_partial_interval_ms": 200},
            "turns": [{"user": "one two three four five", "speaking_ms": 1000}, second],
        }
    )


async def test_user_speaks_with_partials_then_final_after_asr_delay() -> None:
    clock = ManualClock()
    events: list[tuple[float, Event]] = []
    idle = {"value": False}
    user = SimulatedUser(
        user_scenario(), lambda e: events.append((clock.now(), e)), clock, lambda: idle["value"]
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(user.run())
        await run_for(clock, 2.0)
        assert not any(
            isinstance(e, UserSpeechStarted) and t > 0 for t, e in events
        )  # waits for the agent
        idle["value"] = True
        await run_for(clock, 3.0)
        assert task.done()
    first = [(round(t, 2), type(e).__name__, getattr(e, "text", "")) for t, e in events[:7]]
    assert first == [
        (0.0, "UserSpeechStarted", ""),
        (0.2, "TranscriptPartial", "one"),
        (0.4, "TranscriptPartial", "one two"),
        (0.6, "TranscriptPartial", "one two three"),
        (0.8, "TranscriptPartial", "one two three four"),
        (1.0, "UserSpeechEnded", ""),
        (1.25, "TranscriptFinal", "one two three four five"),
    ]
    assert isinstance(events[-1][1], SessionEnded)
    second_start = [t for t, e in events if isinstance(e, UserSpeechStarted)][1]
    assert second_start >= 2.0 + 0.3  # idle from t=2.0, settled for IDLE_SETTLE_S
    assert [r.end_of_speech for r in user.turns][0] == pytest.approx(1.0)


async def test_barge_in_turn_does_not_wait_for_the_agent() -> None:
    clock = ManualClock()
    events: list[tuple[float, Event]] = []
    idle = {"value": False}
    user = SimulatedUser(
        user_scenario(barge_in_ms=700),
        lambda e: events.append((clock.now(), e)),
        clock,
        lambda: idle["value"],
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(user.run())
        await run_for(clock, 3.0)
        idle["value"] = True
        await run_for(clock, 1.0)
        assert task.done()
    starts = [round(t, 2) for t, e in events if isinstance(e, UserSpeechStarted)]
    assert starts == [0.0, 1.7]
    assert user.turns[1].barge_in and user.turns[1].end_of_speech == pytest.approx(2.7)
    assert [type(e) for _, e in events].count(TranscriptFinal) == 2
    assert any(isinstance(e, TranscriptPartial) for _, e in events)
    assert any(isinstance(e, UserSpeechEnded) for _, e in events)


async def test_withdraw_takes_back_the_sentence_begun_so_a_phrase_plays_before_it() -> None:
    from voice_agent.output import Withdrawn

    s = Speaker()
    s.output.push("r1", "It shipped. The order")
    assert s.output.withdraw("r1") == Withdrawn("The order")
    s.output.push("r1", "One moment. ")
    s.output.push("r1", "The order is here.")
    assert s.output.withdraw("r1") == Withdrawn()  # "here." ends a sentence: said
    s.output.end("r1")
    assert await s.played(6.0) == [
        "It shipped.",
        "One moment.",
        "The order is here.",
    ]


async def test_sentences_are_cut_by_the_products_rules_not_at_every_period() -> None:
    """'9 a.m. tomorrow' and 'Dr. Lee' end no sentence, as in the product's output (the sim
    cut at every period followed by a blank); '3.5' streamed as '3', '.', '5' is one number;
    a pause still says a sentence that ends in 'a.m.'."""
    s = Speaker()
    for delta in ["Your call back is at 9", " a.m.", " tomorrow.", " The fee is 3", "."]:
        s.output.push("r1", delta)
    s.output.push("r1", "5 percent. Dr. Lee calls at 10 a.m.")
    assert s.output.withdraw("r1").text == ""  # the pause ends the 'a.m.' sentence
    s.output.end("r1")
    assert await s.played(12.0) == [
        "Your call back is at 9 a.m. tomorrow.",
        "The fee is 3.5 percent.",
        "Dr. Lee calls at 10 a.m.",
    ]
