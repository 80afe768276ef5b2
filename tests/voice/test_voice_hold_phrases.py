"""A slow answer through the file transport: the hold phrase is heard before the sentence
the model stalled in, and that sentence is heard whole after it (real VAD, Whisper, piper;
the LLM is a scripted slow endpoint over HTTP, ``FaultServer``: a fake standing in for a
model on a loaded machine)."""

from __future__ import annotations

import pytest
from voice_helpers import ORDER_QUESTION, RATE, caller_recording, transcribe, voice_config

from ledger import entries as le
from voice_agent.bench.fault_server import FaultServer, words
from voice_agent.config import AgentConfig
from voice_agent.transports import files
from voice_agent.voice.wavio import write_wav

pytestmark = pytest.mark.slow

SENTENCE = "The order is currently in the processing state."
HOLDS = AgentConfig().hold_phrases


async def test_a_model_stalling_mid_sentence_is_heard_hold_phrase_first_then_whole(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    audio, _ = caller_recording([(0.5, ORDER_QUESTION, 1.0)], 4.0)
    write_wav(tmp_path / "user.wav", audio, RATE)
    # "The order", then 3 s of nothing (one hold phrase is due 1.5 s in; the next would be
    # at 3.5 s), then the rest of the sentence
    first, *rest = words(SENTENCE)
    slow = [("headers",), ("role",), first, *rest[:1], ("sleep", 3.0), *rest[1:],
            ("finish", "stop"), ("usage",), ("done",)]  # fmt: skip
    async with FaultServer(slow) as server:
        config = voice_config(server.base_url, str(tmp_path / "sessions"))
        result = await files.run_files(config, tmp_path / "user.wav", tmp_path / "agent.wav")
    planned = [e.text for e in result.entries if isinstance(e, le.AgentTextPlanned)]
    assert planned[-1] == SENTENCE  # recorded whole, after the phrases
    assert planned[:-1] and all(p in HOLDS for p in planned[:-1]), planned
    played = [e for e in result.entries if isinstance(e, le.AgentTextPlayed)]
    assert [p.text for p in played] == [" ".join(planned)]
    assert not played[0].interrupted
    heard = transcribe(result.agent_audio)
    # the phrase, then the sentence from its first word: "one moment. the order is ..."
    assert "moment" in heard and "processing" in heard, heard
    assert heard.index("moment") < heard.index("order") < heard.index("processing"), heard
