"""Faults found by the session-8 hostile review on the voice path: real caller audio
through the file transport (real Silero VAD, faster-whisper, piper, the oracle LLM).

Issue 9's gap: after a dropped final, the ASR's second (stock) decode of unclear audio can
return only Whisper's stock phrase ("Thank you.", "Thanks for watching!"), and the agent
answered that as if the caller had said it. It now asks the caller to repeat; a caller
who really says "Thank you." (a first decode) is still heard and answered.
"""

from __future__ import annotations

from typing import Any

import pytest
from voice_helpers import RATE, caller_recording, start_oracle, voice_config

from ledger import entries as le
from peripherals.asr import AsrFinal, WhisperStreamingAsr
from voice_agent.bench.scenario import Scenario
from voice_agent.transports import files

ANSWER = "You are welcome, goodbye."
UNHEARD_NOTE = "the speech recognition heard no words"


def one_turn(user: str) -> Scenario:
    return Scenario.model_validate(
        {
            "name": "stock_phrase",
            "oracle": {"ttft_ms": 300, "tokens_per_s": 60},
            "turns": [{"user": user, "answer": [{"say": ANSWER, "expect": ["welcome"]}]}],
        }
    )


def said(entries: list[Any]) -> list[str]:
    return [e.text for e in entries if isinstance(e, le.AgentTextPlanned)]


def finals(entries: list[Any]) -> list[str]:
    return [e.text for e in entries if isinstance(e, le.UserUtterance) and e.final]


@pytest.mark.parametrize("phrase", ["Thank you.", " Thanks for watching!"])
async def test_a_second_decode_that_hears_only_a_stock_phrase_asks_the_caller_to_repeat(
    tmp_path, monkeypatch, phrase: str
) -> None:  # type: ignore[no-untyped-def]
    """The fault injected where session 7's 8 kHz invoice question met it: the final
    decode is dropped and the second decode returns the stock phrase (retried=True).
    Before: the agent answered "Thank you." (an LLM request for the caller's 'words')."""
    real = WhisperStreamingAsr.finalize

    async def finalize(self: WhisperStreamingAsr) -> AsrFinal:
        final = await real(self)
        return AsrFinal(phrase, final.audio_s, final.decode_s, final.speculative, retried=True)

    monkeypatch.setattr(WhisperStreamingAsr, "finalize", finalize)
    question = "How much is still owed on invoice seven two seven zero?"
    audio, _ = caller_recording([(0.5, question, 1.0)], 9.0)
    async for rig in start_oracle(one_turn(question)):
        config = voice_config(rig.server.base_url, str(tmp_path / "s"))
        result = await files.run_audio(config, audio, RATE, realtime=False, tools=rig.tools)
    assert said(result.entries) == [config.agent.unheard_phrase]
    assert not finals(result.entries)
    assert [e.reason for e in result.entries if isinstance(e, le.LlmRequestStarted)] == ["canned"]
    assert [e for e in result.entries if isinstance(e, le.Note) and UNHEARD_NOTE in e.text]
    (turn,) = [u for u in result.utterances if not u.dropped]
    assert turn.unheard and turn.text == ""


async def test_a_caller_who_says_thank_you_is_heard_and_answered(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The guard: "Thank you." from the final decode itself (no second decode) is words."""
    audio, _ = caller_recording([(0.5, "Thank you very much.", 1.0)], 7.0)
    async for rig in start_oracle(one_turn("Thank you very much.")):
        config = voice_config(rig.server.base_url, str(tmp_path / "s"))
        result = await files.run_audio(config, audio, RATE, realtime=False, tools=rig.tools)
    heard = finals(result.entries)
    assert len(heard) == 1 and "thank" in heard[0].lower(), heard
    assert config.agent.unheard_phrase not in said(result.entries)
    assert [e.reason for e in result.entries if isinstance(e, le.LlmRequestStarted)] == [
        "user_turn"
    ]
