"""AudioSpeechOutput: playout events follow what the sink really played; interrupt reports
exactly what was heard; responses play in order; synthesis overlaps playback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from peripherals.audio import AudioChunk
from voice_agent.events import Event, PlayoutFinished, PlayoutStarted
from voice_agent.voice.output import AudioSpeechOutput
from voice_agent.voice.sinks import TimelineSink

RATE = 16000
PER_WORD = 1000  # samples of fake speech per word


class WordTts:
    """A fake TTS: PER_WORD samples of a constant tone level per word; records what it was asked."""

    output_rate = RATE

    def __init__(self, delay_s: float = 0.0) -> None:
        self.asked: list[str] = []
        self.delay_s = delay_s

    async def synthesize(
        self, text: str, sample_rate: int | None = None
    ) -> AsyncIterator[AudioChunk]:
        self.asked.append(text)
        await asyncio.sleep(self.delay_s)
        yield AudioChunk(np.full(PER_WORD * len(text.split()), 0.5, dtype=np.float32), RATE)

    async def aclose(self) -> None:
        pass


async def settle(output: AudioSpeechOutput) -> None:
    for _ in range(200):
        await asyncio.sleep(0)
        if not output.synthesis_pending:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("synthesis never finished")


@pytest.fixture
async def rig() -> AsyncIterator[tuple[AudioSpeechOutput, TimelineSink, list[Event], WordTts]]:
    sink = TimelineSink(RATE)
    tts = WordTts()
    output = AudioSpeechOutput(tts, sink)
    events: list[Event] = []
    output.bind(events.append)
    yield output, sink, events, tts
    await output.aclose()


async def test_playout_started_only_when_the_first_sample_is_played(rig) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, _ = rig
    output.push("r1", "Hello there. How are you?")
    await settle(output)
    output.poll()
    assert events == []  # queued, not played
    sink.advance(1)
    output.poll()
    assert events == [PlayoutStarted(response_id="r1")]


async def test_playout_finished_after_the_last_sample_with_the_full_text(rig) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, _ = rig
    output.push("r1", "Hello there. How ")
    output.push("r1", "are you?")
    output.end("r1")
    await settle(output)
    total = 5 * PER_WORD
    sink.advance(total - 1)
    output.poll()
    assert events == [PlayoutStarted(response_id="r1")]
    sink.advance(1)
    output.poll()
    assert events[-1] == PlayoutFinished(
        response_id="r1", heard="Hello there. How are you?", interrupted=False
    )


async def test_a_sentence_is_synthesized_before_the_response_text_is_complete(rig) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, tts = rig
    output.push("r1", "The first sentence is done. The second is still")
    await settle(output)
    assert tts.asked == ["The first sentence is done."]
    assert sink.queued_samples == 5 * PER_WORD


async def test_responses_play_in_the_order_first_pushed(rig) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, _ = rig
    output.push("r1", "One two three.")
    output.push("r2", "Four five.")
    output.end("r2")
    output.push("r1", " Six.")
    output.end("r1")
    await settle(output)
    sink.advance(100 * PER_WORD)
    output.poll()
    assert [(type(e).__name__, e.response_id) for e in events] == [  # type: ignore[attr-defined]
        ("PlayoutStarted", "r1"),
        ("PlayoutFinished", "r1"),
        ("PlayoutStarted", "r2"),
        ("PlayoutFinished", "r2"),
    ]
    assert events[1].heard == "One two three. Six."  # type: ignore[attr-defined]
    timeline = sink.render()
    assert np.count_nonzero(timeline) == 6 * PER_WORD  # 3 + 1 + 2 words, nothing lost


async def test_interrupt_returns_full_sentences_plus_the_played_share_of_the_current_one(
    rig,
) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, _ = rig
    output.push("r1", "Your order has shipped. It left the warehouse on Monday morning.")
    output.end("r1")
    output.push("r2", "Anything else?")
    output.end("r2")
    await settle(output)
    # first sentence: 4 words; second: 8 words. Play all of the first and 3.5 words of the second.
    sink.advance(4 * PER_WORD + 3 * PER_WORD + PER_WORD // 2)
    output.poll()
    heard = output.interrupt()
    assert heard == {"r1": "Your order has shipped. It left the"}
    assert sink.queued_samples == 0
    sink.advance(10 * PER_WORD)  # nothing more plays after an interrupt
    assert sink.played_samples == 7 * PER_WORD + PER_WORD // 2
    output.poll()
    assert [type(e).__name__ for e in events] == ["PlayoutStarted"]


async def test_interrupt_before_anything_played_reports_nothing_and_output_keeps_working(
    rig,
) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, _ = rig
    output.push("r1", "Never heard at all.")
    await settle(output)
    assert output.interrupt() == {}
    output.push("r2", "Heard this.")
    output.end("r2")
    await settle(output)
    sink.advance(10 * PER_WORD)
    output.poll()
    assert events == [
        PlayoutStarted(response_id="r2"),
        PlayoutFinished(response_id="r2", heard="Heard this.", interrupted=False),
    ]
    assert np.count_nonzero(sink.render()) == 2 * PER_WORD


async def test_interrupt_cancels_synthesis_in_progress() -> None:
    sink = TimelineSink(RATE)
    tts = WordTts(delay_s=0.2)
    output = AudioSpeechOutput(tts, sink)
    output.bind(lambda e: None)
    try:
        output.push("r1", "A slow sentence. And another one.")
        output.end("r1")
        await asyncio.sleep(0.05)
        assert output.synthesis_pending
        output.interrupt()
        assert not output.synthesis_pending
        await asyncio.sleep(0.3)
        assert sink.queued_samples == 0 and tts.asked == ["A slow sentence."]
    finally:
        await output.aclose()
        await output.aclose()  # idempotent


async def test_real_piper_voice_plays_through_the_timeline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from voice_helpers import transcribe

    from peripherals.tts import PiperTts

    tts = PiperTts(output_rate=RATE)
    sink = TimelineSink(RATE)
    output = AudioSpeechOutput(tts, sink)
    events: list[Event] = []
    output.bind(events.append)
    try:
        output.push("r1", "Your order has shipped. It arrives on Friday.")
        output.end("r1")
        await settle(output)
        while sink.queued_samples:
            sink.advance(320)
            output.poll()
        assert events[-1] == PlayoutFinished(
            response_id="r1", heard="Your order has shipped. It arrives on Friday."
        )
        heard = transcribe(np.concatenate([sink.render(), np.zeros(RATE // 2, dtype=np.float32)]))
        assert "order" in heard and "friday" in heard
    finally:
        await output.aclose()
        await tts.aclose()


async def test_a_paused_output_keeps_its_audio_and_resumes_on_the_same_sample(rig) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, _ = rig
    output.push("r1", "One two three four.")
    output.end("r1")
    await settle(output)
    sink.advance(PER_WORD + 100)
    output.pause()
    assert output.paused
    sink.advance(5 * PER_WORD)  # time passes, nothing is consumed
    output.poll()
    assert sink.played_samples == PER_WORD + 100 and sink.queued_samples == 3 * PER_WORD - 100
    output.resume()
    sink.advance(10 * PER_WORD)
    output.poll()
    timeline = sink.render()
    assert np.count_nonzero(timeline) == 4 * PER_WORD  # nothing lost, nothing repeated
    gap = timeline[PER_WORD + 100 : 6 * PER_WORD + 100]
    assert not gap.any() and timeline[6 * PER_WORD + 100] != 0  # silent while paused, then on
    assert events[-1] == PlayoutFinished(
        response_id="r1", heard="One two three four.", interrupted=False
    )


async def test_interrupting_a_paused_output_reports_what_was_heard_before_the_pause(rig) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, _ = rig
    output.push("r1", "Your order has shipped today.")
    output.end("r1")
    await settle(output)
    sink.advance(2 * PER_WORD + 10)
    output.pause()
    sink.advance(3 * PER_WORD)  # the barge-in is confirmed 3 words later: nothing more was heard
    assert output.interrupt() == {"r1": "Your order"}
    assert not output.paused  # the next response plays normally
    output.push("r2", "Yes?")
    output.end("r2")
    await settle(output)
    sink.advance(2 * PER_WORD)
    output.poll()
    assert events[-1] == PlayoutFinished(response_id="r2", heard="Yes?", interrupted=False)


async def test_the_first_chunk_of_each_response_ends_at_an_early_clause(rig) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, tts = rig
    output.push("r1", "Sure, let me check that for you, it takes a second, or maybe two. Then, ")
    await settle(output)
    output.push("r2", "Okay, I looked at the order history, and")  # waits behind r1
    output.end("r1")
    output.end("r2")
    await settle(output)
    assert tts.asked == [
        "Sure,",  # the first clause of a response goes to the synthesizer at once
        "let me check that for you, it takes a second, or maybe two.",
        "Then,",
        "Okay,",
        "I looked at the order history, and",
    ]


async def test_a_prepared_first_chunk_plays_without_being_synthesised_again(rig) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, tts = rig
    output.prepare("Sure")  # no complete chunk yet: nothing to get ready
    await asyncio.sleep(0.01)
    assert tts.asked == []
    output.prepare("Sure, I can")  # a held answer grew: its first chunk is synthesised now
    output.prepare("Sure, I can help")  # idempotent
    for _ in range(50):
        await asyncio.sleep(0.001)
    assert tts.asked == ["Sure,"]
    output.push("r1", "Sure, I can help.")  # the answer is released: same first chunk
    output.end("r1")
    await settle(output)
    assert tts.asked == ["Sure,", "I can help."]
    sink.advance(10 * PER_WORD)
    output.poll()
    assert events[-1] == PlayoutFinished(
        response_id="r1", heard="Sure, I can help.", interrupted=False
    )
    assert sink.played_samples == 4 * PER_WORD


async def test_a_prepared_chunk_nobody_says_is_dropped_and_other_text_is_synthesised(rig) -> None:  # type: ignore[no-untyped-def]
    output, sink, _, tts = rig
    for held in ("Okay, one", "Well, two", "Right, three"):  # the oldest gives way
        output.prepare(held)
    await asyncio.sleep(0.01)
    assert tts.asked == ["Well,", "Right,"]
    output.push("r1", "Okay, that is done.")  # "Okay," was dropped: synthesised for r1
    output.end("r1")
    await settle(output)
    assert tts.asked == ["Well,", "Right,", "Okay,", "that is done."]
    output.interrupt()  # drops what is still prepared
    output.push("r2", "Right, bye.")
    output.end("r2")
    await settle(output)
    assert tts.asked.count("Right,") == 2


async def test_an_output_told_not_to_prepare_synthesises_only_what_is_pushed() -> None:
    tts = WordTts()
    output = AudioSpeechOutput(tts, TimelineSink(RATE), prepare_ahead=False)
    try:
        output.prepare("Sure, I can")
        await asyncio.sleep(0.01)
        assert tts.asked == []
    finally:
        await output.aclose()


class LeadInTts(WordTts):
    """WordTts whose every chunk starts with 50 ms of digital silence (as piper's do)."""

    async def synthesize(
        self, text: str, sample_rate: int | None = None
    ) -> AsyncIterator[AudioChunk]:
        self.asked.append(text)
        tone = np.full(PER_WORD * len(text.split()), 0.5, dtype=np.float32)
        yield AudioChunk(np.concatenate([np.zeros(RATE // 20, np.float32), tone]), RATE)


async def test_an_answer_starts_with_its_first_sound_and_later_chunks_keep_their_lead_in() -> None:
    sink = TimelineSink(RATE)
    output = AudioSpeechOutput(LeadInTts(), sink)
    try:
        output.push("r1", "Okay, I can help. Anything else?")
        output.end("r1")
        await settle(output)
        sink.advance(RATE)
        timeline = sink.render()
    finally:
        await output.aclose()
    sound = np.flatnonzero(timeline)
    assert sound[0] <= RATE // 100  # 10 ms of the lead-in kept, not 50
    first_chunk_end = sound[0] + PER_WORD  # "Okay," is one word of tone
    gap = np.flatnonzero(timeline[first_chunk_end:])[0]
    assert gap >= RATE // 20  # the next chunk's 50 ms lead-in (its pause) is kept


async def test_an_answer_opening_as_an_earlier_one_plays_the_kept_audio_without_synthesis(
    rig,
) -> None:  # type: ignore[no-untyped-def]
    output, sink, events, tts = rig
    output.push("r1", "Sure, I can help.")
    output.end("r1")
    await settle(output)
    output.push("r2", "Sure, that is done.")  # opens as r1 did
    output.end("r2")
    await settle(output)
    assert tts.asked == ["Sure,", "I can help.", "that is done."]
    sink.advance(20 * PER_WORD)
    output.poll()
    assert events[-1] == PlayoutFinished(
        response_id="r2", heard="Sure, that is done.", interrupted=False
    )
    assert sink.played_samples == 8 * PER_WORD  # the kept "Sure," played in full
    output.push("r3", "Okay, then, sure, fine.")  # "Sure," only later in an answer: synthesised
    output.end("r3")
    await settle(output)
    assert tts.asked[3:] == ["Okay,", "then, sure, fine."]


async def test_an_output_without_a_phrase_cache_synthesises_every_first_chunk() -> None:
    tts = WordTts()
    output = AudioSpeechOutput(tts, TimelineSink(RATE), phrase_cache=0)
    try:
        for rid in ("r1", "r2"):
            output.push(rid, "Sure, fine.")
            output.end(rid)
            await settle(output)
        assert tts.asked == ["Sure,", "fine.", "Sure,", "fine."]
    finally:
        await output.aclose()


async def test_a_kept_opening_needs_no_preparing(rig) -> None:  # type: ignore[no-untyped-def]
    output, _, _, tts = rig
    output.push("r1", "Okay, done.")
    output.end("r1")
    await settle(output)
    output.prepare("Okay, one more")  # a held answer that opens as r1 did
    await asyncio.sleep(0.01)
    assert tts.asked == ["Okay,", "done."]


async def settle_real(output: AudioSpeechOutput) -> None:
    """``settle`` for a real synthesizer on a busy machine (a generous bound, not a timing)."""
    for _ in range(3000):
        await asyncio.sleep(0.01)
        if not output.synthesis_pending:
            return
    raise AssertionError("synthesis never finished")


class CountingPiper:
    """A real ``PiperTts`` that records the text of every synthesis."""

    def __init__(self) -> None:
        from peripherals.tts import PiperTts

        self.piper = PiperTts(output_rate=RATE)
        self.asked: list[str] = []
        self.output_rate = RATE

    def synthesize(self, text: str, sample_rate: int | None = None) -> AsyncIterator[AudioChunk]:
        self.asked.append(text)
        return self.piper.synthesize(text, sample_rate)

    async def aclose(self) -> None:
        await self.piper.aclose()


async def test_real_piper_opening_heard_again_is_the_same_audio_synthesised_once() -> None:
    from voice_helpers import transcribe

    tts = CountingPiper()
    sink = TimelineSink(RATE)
    output = AudioSpeechOutput(tts, sink)
    starts = []
    try:
        for rid, text in (("r1", "Okay, it has shipped."), ("r2", "Okay, it is on its way.")):
            starts.append(sink.played_samples)
            output.push(rid, text)
            output.end(rid)
            await settle_real(output)
            while sink.queued_samples:
                sink.advance(320)
                output.poll()
        timeline = sink.render()
        kept = output.phrases.get("Okay,", RATE)
    finally:
        await output.aclose()
        await tts.aclose()
    assert tts.asked == ["Okay,", "it has shipped.", "it is on its way."]
    assert kept is not None and len(kept) > RATE // 10
    r1, r2 = timeline[starts[0] : starts[1]], timeline[starts[1] :]
    r2 = r2[np.flatnonzero(r2)[0] :]  # the sink's silence until r2 was written
    assert np.array_equal(r1[: len(kept)], r2[: len(kept)])  # the same "Okay," both times
    heard = transcribe(np.concatenate([r2, np.zeros(RATE // 2, dtype=np.float32)]))
    assert "okay" in heard and "way" in heard


async def test_withdraw_takes_back_the_unsynthesised_sentence_so_a_phrase_goes_between(
    rig,
) -> None:  # type: ignore[no-untyped-def]
    from voice_agent.output import Withdrawn

    output, sink, events, tts = rig
    output.push("r1", "It shipped on Monday. The order")
    assert output.withdraw("r1") == Withdrawn("The order", inside_sentence=False)
    output.push("r1", " One moment. ")
    output.push("r1", "The order" + " is here.")
    output.end("r1")
    await settle(output)
    assert tts.asked == ["It shipped on Monday.", "One moment.", "The order is here."]
    assert output.withdraw("r1") == Withdrawn()  # ended: nothing to take back
    assert output.withdraw("nobody") == Withdrawn()


async def test_withdraw_says_when_a_clause_of_the_sentence_is_already_out(rig) -> None:  # type: ignore[no-untyped-def]
    from voice_agent.output import Withdrawn

    output, sink, events, tts = rig
    output.push("r1", "Sure, the order")
    assert output.withdraw("r1") == Withdrawn("the order", inside_sentence=True)
    output.push("r1", "the order is here.")
    output.end("r1")
    await settle(output)
    assert tts.asked == ["Sure,", "the order is here."]


async def test_unplayed_s_counts_each_queued_chunk_once(rig) -> None:  # type: ignore[no-untyped-def]
    # Two chunks in the sink (3 + 2 words), none played: 5 words of audio are left, not the
    # first chunk plus the second one's end position (8 words: the caller's silence was
    # put seconds too late, and a hold phrase with it; hold10)
    output, sink, _, _ = rig
    output.push("r1", "One two three. Four five. ")
    await settle(output)
    assert output.unplayed_s("r1") == pytest.approx(5 * PER_WORD / RATE)
    sink.advance(4 * PER_WORD)  # into the second chunk
    assert output.unplayed_s("r1") == pytest.approx(PER_WORD / RATE)
    sink.advance(PER_WORD)
    assert output.unplayed_s("r1") == 0.0
