"""A turn with real speech never ends in silence: real caller audio through the file
transport (real Silero VAD, faster-whisper, piper, the oracle LLM).

A number read in groups, whose final decode Whisper tiny's short window loops on, still gets
its transcript and an answer; speech whose final transcript the ASR cannot make out gets a
spoken request to say it again and a ledger note; a cough gets neither."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import speech_helpers
from voice_helpers import (
    RATE,
    audible_spans,
    burst,
    caller_recording,
    start_oracle,
    transcribe,
    voice_config,
)

from ledger import entries as le
from peripherals import g711
from peripherals.asr import AsrFinal, WhisperStreamingAsr
from peripherals.resample import resample
from voice_agent.bench.scenario import Scenario
from voice_agent.transports import files

ANSWER = "Thank you, I have found your account."
UNHEARD_NOTE = "the speech recognition heard no words"


def one_turn(user: str) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "unheard",
            "oracle": {"ttft_ms": 300, "tokens_per_s": 60},
            "turns": [{"user": user, "answer": [{"say": ANSWER, "expect": ["Thank"]}]}],
        }
    )


def digits_caller() -> tuple[np.ndarray, float]:
    """ "My account number is six one three three five." read in groups (espeak-ng
    en-us-nyc+f5, 185 wpm, 0.9 s pauses) on the 8 kHz μ-law phone path; and its end (s)."""
    parts = ("My account number is", "six one", "three three", "five.")
    pieces = [np.zeros(int(0.5 * RATE), dtype=np.float32)]
    for i, part in enumerate(parts):
        if i:
            pieces.append(np.zeros(int(0.9 * RATE), dtype=np.float32))
        y = speech_helpers.espeak(part, "en-us-nyc+f5", wpm=185, rate=RATE)
        first, end = speech_helpers.audible_span(y)
        y = y[first:end]
        pieces.append((0.5 * y / np.abs(y).max()).astype(np.float32))
    end_s = sum(len(p) for p in pieces) / RATE
    pieces.append(np.zeros(int(4.0 * RATE), dtype=np.float32))
    phone = g711.round_trip(resample(np.concatenate(pieces), RATE, 8000), "mulaw")
    return phone, end_s


def said(entries: list[Any]) -> list[str]:
    return [e.text for e in entries if isinstance(e, le.AgentTextPlanned)]


def unheard_notes(entries: list[Any]) -> list[Any]:
    return [e for e in entries if isinstance(e, le.Note) and UNHEARD_NOTE in e.text]


async def test_a_number_read_in_groups_on_the_phone_path_gets_its_transcript_and_an_answer(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    """Session 6's blind voices: this caller's final decode looped and was dropped, and the
    caller heard nothing after 3.5 s of speech. The VAD's silence is set above the caller's
    pauses, so the whole number is one turn (its final decode reads all of it)."""
    if speech_helpers.ESPEAK is None:
        pytest.skip("espeak-ng is not installed (scripts/bootstrap installs it)")
    audio, end_s = digits_caller()
    async for rig in start_oracle(one_turn("My account number is 6 1 3 3 5.")):
        config = voice_config(
            rig.server.base_url,
            str(tmp_path / "s"),
            sample_rate=8000,
            turn={"detection": "vad"},
            vad_min_silence_ms=1300,
            unfinished_extra_silence_ms=0,
        )
        result = await files.run_audio(config, audio, 8000, realtime=False, tools=rig.tools)
    finals = [e.text for e in result.entries if isinstance(e, le.UserUtterance) and e.final]
    assert len(finals) == 1 and "6" in finals[0], finals
    requests = [e for e in result.entries if isinstance(e, le.LlmRequestStarted)]
    assert [r.reason for r in requests] == ["user_turn"]  # the LLM answers the number
    assert said(result.entries) and config.agent.unheard_phrase not in said(result.entries)
    spans = audible_spans(result.agent_audio, 8000)
    assert spans and spans[-1][0] > end_s, "the agent answers after the caller finished"
    assert not unheard_notes(result.entries)


@pytest.fixture
def final_dropped(monkeypatch):  # type: ignore[no-untyped-def]
    """The ASR's rules drop every final decode whole (its partials and early decodes are
    Whisper's as they are): a fault injected where session 6's digits lost theirs."""

    real = WhisperStreamingAsr.finalize

    async def finalize(self: WhisperStreamingAsr) -> AsrFinal:
        final = await real(self)
        return AsrFinal("", final.audio_s, final.decode_s, final.speculative)

    monkeypatch.setattr(WhisperStreamingAsr, "finalize", finalize)


@pytest.fixture
def no_decode_kept(monkeypatch):  # type: ignore[no-untyped-def]
    """No decode is likely enough for the ASR's likelihood floor: partials, early and final
    decodes all come out empty (what speech Whisper cannot make out at all gets)."""
    from peripherals import asr

    monkeypatch.setattr(asr, "LOGPROB_HARD_FLOOR", 1.0)


@pytest.mark.parametrize("fault", ["final_dropped", "no_decode_kept"])
async def test_speech_the_asr_cannot_make_out_gets_a_spoken_request_to_say_it_again(
    tmp_path, request, fault: str
) -> None:  # type: ignore[no-untyped-def]
    request.getfixturevalue(fault)
    question = "I would like to change the delivery address for my order please."
    audio, (utt,) = caller_recording([(0.5, question, 1.0)], utt_total_s(question))
    async for rig in start_oracle(one_turn(question)):
        config = voice_config(rig.server.base_url, str(tmp_path / "s"))
        result = await files.run_audio(config, audio, RATE, realtime=False, tools=rig.tools)
    phrase = config.agent.unheard_phrase
    assert said(result.entries) == [phrase]
    assert len(unheard_notes(result.entries)) == 1
    assert not [e for e in result.entries if isinstance(e, le.UserUtterance) and e.final]
    spans = audible_spans(result.agent_audio)
    assert spans and spans[0][0] > utt.end_s
    assert "again" in transcribe(result.agent_audio)
    (turn,) = [u for u in result.utterances if not u.dropped]
    assert turn.unheard and turn.text == ""


def utt_total_s(text: str) -> float:
    from voice_helpers import speech

    x, _, _ = speech(text)
    return 0.5 + len(x) / RATE + 5.0


async def test_a_cough_while_the_agent_listens_gets_no_reply(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cough = burst("Ah.", 180)
    audio = np.zeros(int(3.0 * RATE), dtype=np.float32)
    audio[RATE : RATE + len(cough)] = cough
    async for rig in start_oracle(one_turn("Hello?")):
        config = voice_config(rig.server.base_url, str(tmp_path / "s"))
        result = await files.run_audio(config, audio, RATE, realtime=False, tools=rig.tools)
    assert config.agent.unheard_phrase not in said(result.entries)
    assert not unheard_notes(result.entries)
    assert result.utterances, "the VAD took the cough for speech"
    assert not any(u.unheard for u in result.utterances)
