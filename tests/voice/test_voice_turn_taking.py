"""Turn-taking with real audio: the end-of-turn decision inside VoiceInput (real Silero VAD,
a scripted turn model and ASR, so the timing is exact), and backchannels versus barge-ins
through the file transport (real VAD, Whisper, piper, the oracle LLM)."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from voice_helpers import (
    RATE,
    RecordingPlayback,
    audible_spans,
    caller_recording,
    order_scenario,
    speech,
    start_oracle,
    voice_config,
)

from ledger import entries as le
from peripherals.asr import AsrFinal
from voice_agent.config import VoiceConfig
from voice_agent.events import (
    Event,
    TranscriptFinal,
    UserBackchanneled,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechResumed,
    UserSpeechStarted,
)
from voice_agent.transports import files
from voice_agent.voice.build import build_vad
from voice_agent.voice.endpointing import DEFAULT_BACKCHANNELS, EndpointingRules
from voice_agent.voice.input import VoiceInput

FRAME = 320  # 20 ms


class ScriptedDetector:
    """A turn model whose score is set by the test; records what it was asked to score."""

    sample_rate = RATE

    def __init__(self, probability: float) -> None:
        self.probability = probability
        self.calls: list[float] = []  # seconds of audio per call

    def probability_done(self, audio: np.ndarray) -> float:
        self.calls.append(len(audio) / RATE)
        return self.probability


class FixedTextAsr:
    """A StreamingAsr whose early and final transcript is ``text`` (instantly)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.early: str | None = None

    def __call__(self, on_partial: object) -> FixedTextAsr:
        return self

    def push(self, samples: np.ndarray, sample_rate: int) -> None:
        pass

    def speech_paused(self) -> None:
        self.early = self.text

    def speech_resumed(self) -> None:
        self.early = None

    async def paused_text(self) -> str | None:
        await asyncio.sleep(0)
        return self.early

    async def finalize(self) -> AsrFinal:
        return AsrFinal(self.text, 0.0, 0.0, speculative=self.early is not None)

    async def discard(self) -> None:
        self.early = None

    async def aclose(self) -> None:
        pass


async def feed_settled(voice: VoiceInput, x: np.ndarray) -> None:
    """Feed 20 ms frames; after each, let pending scoring/decoding finish (a stream clock
    that waits for the pipeline, like the file transport's fast mode)."""
    for i in range(0, len(x), FRAME):
        await voice.process(x[i : i + FRAME])
        for _ in range(2000):
            if voice.settled:
                break
            await asyncio.sleep(0.001)


def voice_input(events: list[Event], text: str, detector) -> VoiceInput:  # type: ignore[no-untyped-def]
    return VoiceInput(
        vad=build_vad(VoiceConfig()),  # 500 ms of silence ends a turn without a decision
        make_asr=FixedTextAsr(text),
        post=events.append,
        sample_rate=RATE,
        turn_rules=EndpointingRules(),
        turn_detector=detector,
    )


async def test_a_confident_done_ends_the_turn_after_the_candidate_silence_not_the_vads() -> None:
    events: list[Event] = []
    detector = ScriptedDetector(0.95)
    voice = voice_input(events, "Where is my order?", detector)
    x, (u,) = caller_recording([(0.3, "Where is my order?", 1.0)], 3.0)
    try:
        await feed_settled(voice, x)
    finally:
        await voice.aclose()
    (turn,) = voice.turns
    assert turn.turn is not None and turn.turn.decision is not None
    assert turn.turn.decision.reason == "evidence" and turn.turn.decision.cue == "question"
    waited = turn.ended_s - turn.speech_end_s  # type: ignore[operator]
    assert 0.18 < waited < 0.3, f"ended {waited:.3f} s into the pause (the VAD alone: 0.5 s)"
    assert len(detector.calls) == 1 and detector.calls[0] > 1.0  # the whole utterance so far
    kinds = [type(e) for e in events]
    assert kinds[-3:] == [UserSpeechPaused, UserSpeechEnded, TranscriptFinal]


async def test_an_incomplete_score_holds_the_turn_through_a_pause_the_vad_would_end() -> None:
    parts = [(0.3, "I would like to change", 1.0), (2.15, "the address on my account.", 1.0)]
    x, (first, second) = caller_recording(parts, 5.0)
    gap = second.start_s - first.end_s
    assert 0.6 < gap < 1.1  # longer than the VAD's 500 ms, shorter than the incomplete wait

    plain: list[Event] = []
    voice = VoiceInput(
        vad=build_vad(VoiceConfig()),
        make_asr=FixedTextAsr("x"),
        post=plain.append,
        sample_rate=RATE,
    )
    await feed_settled(voice, x)
    await voice.aclose()
    assert sum(isinstance(e, UserSpeechEnded) for e in plain) == 2, "the VAD alone splits it"

    events: list[Event] = []
    voice = voice_input(events, "I would like to change", ScriptedDetector(0.05))
    await feed_settled(voice, x)
    await voice.aclose()
    assert sum(isinstance(e, UserSpeechEnded) for e in events) == 1
    assert UserSpeechResumed in [type(e) for e in events]
    (turn,) = voice.turns
    assert turn.speech_end_s == pytest.approx(second.end_s, abs=0.25)
    assert turn.turn is not None and turn.turn.decision is not None
    # The last pause was scored too; its decision governs the end.
    assert turn.turn.decision.probability == 0.05


class GatedDetector(ScriptedDetector):
    """A turn model that takes as long as the test says (a loaded machine)."""

    def __init__(self, probability: float) -> None:
        super().__init__(probability)
        self.release = threading.Event()

    def probability_done(self, audio: np.ndarray) -> float:
        assert self.release.wait(30), "the test never released the turn model"
        return super().probability_done(audio)


class GatedTextAsr(FixedTextAsr):
    """A StreamingAsr whose early transcript takes as long as the test says."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.release = asyncio.Event()

    async def paused_text(self) -> str | None:
        await self.release.wait()
        return self.early


async def test_a_pause_whose_decision_is_late_is_not_ended_by_the_vads_silence() -> None:
    parts = [(0.3, "I would like to change", 1.0), (2.15, "the address on my account.", 1.0)]
    x, (first, second) = caller_recording(parts, 5.0)
    assert 0.6 < second.start_s - first.end_s < 1.1  # longer than the VAD's 500 ms
    events: list[Event] = []
    detector, asr = GatedDetector(0.95), GatedTextAsr("I would like to change the address.")
    voice = VoiceInput(
        vad=build_vad(VoiceConfig()),
        make_asr=asr,
        post=events.append,
        sample_rate=RATE,
        turn_rules=EndpointingRules(),
        turn_detector=detector,
    )
    try:
        # Score and transcript are still being computed all through the pause.
        cut = int((second.start_s + 0.3) * RATE)
        for i in range(0, cut, FRAME):
            await voice.process(x[i : i + FRAME])
            await asyncio.sleep(0)
        assert not any(isinstance(e, UserSpeechEnded) for e in events), "cut off in the pause"
        detector.release.set()
        asr.release.set()
        await feed_settled(voice, x[cut - cut % FRAME :])
    finally:
        detector.release.set()
        await voice.aclose()
    assert sum(isinstance(e, UserSpeechEnded) for e in events) == 1
    (turn,) = voice.turns
    assert turn.speech_end_s == pytest.approx(second.end_s, abs=0.25)
    assert turn.turn is not None and turn.turn.decision is not None


async def test_a_number_being_read_holds_the_turn_even_when_the_model_says_done() -> None:
    parts = [(0.3, "My order number is four two seven.", 1.0), (3.1, "Nine one five.", 1.0)]
    x, (first, second) = caller_recording(parts, 6.0)
    assert 0.6 < second.start_s - first.end_s < 1.15
    events: list[Event] = []
    voice = voice_input(events, "My order number is 427.", ScriptedDetector(0.95))
    await feed_settled(voice, x)
    await voice.aclose()
    assert sum(isinstance(e, UserSpeechEnded) for e in events) == 1, "not cut after 427"
    assert voice.turns[0].turn.decision.reason == "number"  # type: ignore[union-attr]


async def test_without_a_model_the_transcript_and_the_silence_decide() -> None:
    events: list[Event] = []
    voice = voice_input(events, "Where is my order?", None)
    x, _ = caller_recording([(0.3, "Where is my order?", 1.0)], 3.0)
    await feed_settled(voice, x)
    await voice.aclose()
    (turn,) = voice.turns
    assert turn.turn.decision.probability is None  # type: ignore[union-attr]
    # a whole question: the transcript alone gives the done wait (0.2 s), not the VAD's 0.5 s
    assert turn.ended_s - turn.speech_end_s == pytest.approx(0.2, abs=0.07)  # type: ignore[operator]


# ---------------------------------------------------------------- backchannels, file transport
GREETING = (
    "Thanks for calling. Your order four two seven has shipped. It left our warehouse in "
    "Denver on Monday morning, and the carrier is United Parcel Service. The tracking "
    "number is in your email. It should arrive on Friday before noon."
)


@pytest.mark.slow
@pytest.mark.parametrize("word", ["Yeah.", "Okay.", "Right."])
async def test_a_backchannel_over_the_agent_is_recorded_and_the_agent_goes_on_but_words_stop_it(
    tmp_path, word: str
) -> None:
    back_at, stop_at = 2.5, 8.0  # the agent greets from 0 s on for ~12 s
    audio, (back, stop) = caller_recording(
        [(back_at, word, 1.0), (stop_at, "Wait, I have another question.", 1.0)], 12.0
    )
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        config = config.model_copy(
            update={"agent": config.agent.model_copy(update={"greeting": GREETING})}
        )
        result = await files.run_audio(config, audio, RATE, realtime=False, tools=rig.tools)
    notes = [e.text for e in result.entries if isinstance(e, le.Note)]
    assert any("backchannel" in n for n in notes), notes
    assert [u.backchannel for u in result.utterances][:1] == [True]
    first, *_, last = result.playback_pauses
    assert not first.barge_in and first.end_s is not None, "paused at its onset, then resumed"
    assert first.end_s - back.start_s < 1.2
    spans = audible_spans(result.agent_audio, gap_s=0.5)
    assert any(s < first.end_s + 0.1 and e > back.end_s + 2.0 for s, e in spans), (
        "the agent spoke on after the backchannel"
    )
    # The real interruption stops the agent at once: quiet from 150 ms after its onset on.
    assert last.barge_in
    agent = result.agent_audio
    during = agent[int((stop.start_s + 0.15) * RATE) : int(stop.end_s * RATE)]
    assert np.abs(during).max() < 0.01
    played = [e for e in result.entries if isinstance(e, le.AgentTextPlayed)]
    assert played[0].interrupted and "Monday" in played[0].text  # heard past the backchannel


@pytest.mark.slow
async def test_a_run_reports_each_turns_timings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from voice_agent.voice.turn_report import format_timings, turn_timings

    audio, (q,) = caller_recording([(0.5, "Where is my order number four two seven?", 1.0)], 5.0)
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        result = await files.run_audio(config, audio, RATE, realtime=False, tools=rig.tools)
    (row,) = turn_timings(result.utterances, result.entries, result.agent_audio, RATE, None)
    assert "427" in row.text
    # the model scored the pause; a whole question that ends in a number is finished, so the
    # turn ends without the digit-reading wait (number_silence_ms: 1.2 s)
    assert row.reason in ("model_done", "question", "evidence") and row.probability is not None
    assert row.turn_ended is not None and row.turn_ended < 800
    assert row.first_audio is not None and row.first_audio > row.turn_ended
    assert row.final is None and row.llm_request is None  # clock stages need real time
    table = format_timings([row])
    assert "first_audio" in table and f"{row.reason} p=" in table


def over_the_agent(events: list[Event], text: str, playback: RecordingPlayback) -> VoiceInput:
    return VoiceInput(
        vad=build_vad(VoiceConfig()),
        make_asr=FixedTextAsr(text),
        post=events.append,
        sample_rate=RATE,
        agent_busy=lambda: True,
        playback=playback,
        backchannels=DEFAULT_BACKCHANNELS,
        backchannel_max_s=0.9,
    )


# "Guard it.": how Whisper tiny wrote "Got it." over the agent on a held-out voice
@pytest.mark.parametrize("said", ["Mhm.", "Yeah, right.", "Guard it."])
async def test_held_speech_that_says_a_backchannel_is_recorded_and_the_agent_resumes(said) -> None:  # type: ignore[no-untyped-def]
    events: list[Event] = []
    playback = RecordingPlayback()
    voice = over_the_agent(events, said, playback)
    x, _ = caller_recording([(0.3, said, 1.0)], 2.5)
    await feed_settled(voice, x)
    await voice.aclose()
    # one per VAD segment ("Yeah," and "right." may be two): never a start, never a turn
    assert events and all(e == UserBackchanneled(text=said) for e in events)
    assert voice.turns and all(t.backchannel and t.dropped for t in voice.turns)
    assert playback.calls[:2] == ["pause", "resume"] and playback.calls[-1] == "resume"
    assert all(not p.barge_in for p in voice.playback_pauses)


async def test_held_speech_that_says_other_words_interrupts_before_the_long_speech_rule() -> None:
    events: list[Event] = []
    playback = RecordingPlayback()
    voice = over_the_agent(events, "Stop.", playback)
    x, (u,) = caller_recording([(0.3, "Stop.", 1.0)], 2.5)
    assert u.end_s - u.start_s < 0.9  # shorter than backchannel_max_s: its words decide
    await feed_settled(voice, x)
    await voice.aclose()
    assert [type(e) for e in events][:1] == [UserSpeechStarted]
    assert TranscriptFinal(text="Stop.") in events
    (turn,) = voice.turns
    assert not turn.dropped and not turn.backchannel
    assert turn.posted_start_s is not None and turn.posted_start_s < u.end_s + 0.5
    assert voice.playback_pauses[-1].barge_in


async def test_long_speech_over_the_agent_interrupts_whatever_it_says() -> None:
    events: list[Event] = []
    # The transcript would pass for backchannels; 0.9 s of speech without a pause does not.
    voice = over_the_agent(events, "Yeah yeah yeah", RecordingPlayback())
    x, _ = caller_recording([(0.3, "I already know all of that information thank you", 1.0)], 4.0)
    await feed_settled(voice, x)
    await voice.aclose()
    assert [type(e) for e in events][:1] == [UserSpeechStarted]
    first = voice.turns[0]
    assert first.posted_start_s is not None
    assert 0.85 < first.posted_start_s - first.speech_start_s < 1.0


class GrowingTextAsr(FixedTextAsr):
    """Early transcripts that grow with the audio heard: ``texts[i]`` at the i-th pause."""

    def __init__(self, texts: list[str]) -> None:
        super().__init__(texts[-1])
        self.texts = texts
        self.pauses = 0

    def speech_paused(self) -> None:
        self.early = self.texts[min(self.pauses, len(self.texts) - 1)]
        self.pauses += 1


async def test_speech_that_goes_on_after_a_backchannel_is_judged_again_and_interrupts() -> None:
    events: list[Event] = []
    playback = RecordingPlayback()
    voice = VoiceInput(
        vad=build_vad(VoiceConfig()),
        make_asr=GrowingTextAsr(["Okay.", "Okay, I want to cancel."]),
        post=events.append,
        sample_rate=RATE,
        agent_busy=lambda: True,
        playback=playback,
        backchannels=DEFAULT_BACKCHANNELS,
    )
    x, _ = caller_recording([(0.3, "Okay, I want to cancel.", 1.0)], 3.0)
    await feed_settled(voice, x)
    await voice.aclose()
    kinds = [type(e) for e in events]
    assert kinds[0] is UserBackchanneled, "'Okay,' alone sounded like feedback"
    assert UserSpeechStarted in kinds, "what followed interrupted the agent"
    assert TranscriptFinal(text="Okay, I want to cancel.") in events
    assert voice.playback_pauses[-1].barge_in


@pytest.mark.parametrize(
    ("early_text", "turns"),
    [
        # a statement that sounds finished at its comma pause waits the statement wait
        ("We moved to flat 12 last month.", 1),
        # the same pause after a whole question ends the turn on the short wait
        ("Did you send it to flat 12 last month?", 2),
    ],
)
async def test_a_comma_pause_in_a_statement_does_not_end_the_turn_but_one_after_a_question_does(
    early_text: str, turns: int
) -> None:
    first_text, second_text = "We moved to flat twelve last month,", "so the parcels go astray."
    _, _, first_last = speech(first_text)
    _, second_first, _ = speech(second_text)
    # a comma pause of 0.3 s: longer than the done wait (0.2 s), shorter than a statement's
    at = 0.3 + first_last + 0.3 - second_first
    x, (first, second) = caller_recording([(0.3, first_text, 1.0), (at, second_text, 1.0)], 5.0)
    assert 0.25 < second.start_s - first.end_s < 0.35
    events: list[Event] = []
    voice = voice_input(events, early_text, ScriptedDetector(0.97))
    try:
        await feed_settled(voice, x)
    finally:
        await voice.aclose()
    assert sum(isinstance(e, UserSpeechEnded) for e in events) == turns
    assert voice.turns[0].turn.decision.probability == 0.97  # type: ignore[union-attr]
