"""The phone line end to end at 8 kHz: synthesized callers through a μ-law round trip, real
VAD / Whisper / piper, the profile's real SQLite tools, the file transport.

The LLM is a scripted fake (named as such; ``tests/voice_agent/scripted_model.py`` over
real HTTP): it passes the caller's words for the order number to the tools verbatim, so
the numbers are normalised by the product (``voice_agent.phone.numbers``), not by the fake.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import speech_helpers
from voice_helpers import RATE, speech, transcribe

from ledger import entries as le
from peripherals import g711
from peripherals.resample import resample
from voice_agent.bench.scripted_model import phone_policy, scripted_model
from voice_agent.config import load_config
from voice_agent.phone.store import Store
from voice_agent.transports import files

pytestmark = pytest.mark.slow
PHONE_RATE = 8000
# A seeded order that is still cancellable, its digits all different (tiny.en on 8 kHz audio
# sometimes merges a repeated digit: "four four seven one" heard as "4 7 1").
PROFILE = Path(__file__).resolve().parents[2] / "configs" / "customer_service_phone.yaml"


def phone_line(audio16k: np.ndarray) -> np.ndarray:
    """The caller as a phone line carries them: 8 kHz, μ-law encoded and decoded."""
    return g711.round_trip(resample(audio16k, RATE, PHONE_RATE), "mulaw")


def recording(parts: list[tuple[float, str, float]], total_s: float) -> np.ndarray:
    out = np.zeros(int(total_s * RATE), dtype=np.float32)
    for at_s, text, scale in parts:
        x, _, _ = speech(text, scale)
        i = int(at_s * RATE)
        out[i : i + len(x)] += x[: len(out) - i]
    return phone_line(out)


async def answer_call(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    x: np.ndarray,
    *,
    keys=(),
    record: bool = False,
    **call: Any,
) -> tuple[files.AudioRunResult, Store, bool]:
    monkeypatch.setenv("VOICE_AGENT_PHONE_DB", str(tmp_path / "shop.sqlite"))
    async with scripted_model(phone_policy) as model:
        config = load_config(
            PROFILE,
            environ={},
            overrides={
                "llm": {"base_url": model.base_url, "model": "scripted", "max_retries": 0},
                "agent": {"mode": "async", "greeting": None, "call": call},
                "voice": {"tts_variability": 0.0},  # the answer is transcribed: same audio each run
                "ledger": {
                    "directory": str(tmp_path / "sessions"),
                    "persist": True,
                    "record_audio": record,
                },
            },
        )
        assert config.voice.sample_rate == PHONE_RATE
        result = await files.run_audio(config, x, PHONE_RATE, keys=keys, realtime=False)
    return result, Store(tmp_path / "shop.sqlite"), bool(model.requests)


def heard(result: files.AudioRunResult) -> str:
    return " ".join(e.text for e in result.entries if isinstance(e, le.AgentTextPlayed))


@pytest.mark.parametrize("scale", [1.0, 1.3], ids=["normal", "slow"])
async def test_an_order_number_read_digit_by_digit_gets_its_status(tmp_path, monkeypatch, scale):  # type: ignore[no-untyped-def]
    x = recording([(0.5, "Hi. My order number is four, four, one, seven.", scale)], 9.0)
    result, store, _ = await answer_call(tmp_path, monkeypatch, x)
    calls = [e for e in result.entries if isinstance(e, le.ToolCallStarted)]
    assert [c.name for c in calls] == ["lookup_order"]
    assert "shipped" in heard(result)
    # The caller hears the answer about the order (tiny.en on 8 kHz speech is shaky on single
    # words and digit runs: "4 4 1 7 is shipped" came back as "41417 to ship").
    said = transcribe(result.agent_audio, PHONE_RATE)
    assert "order" in said and "17" in re.sub(r"\D", "", said), said
    assert store.audit() == []


async def test_a_cancel_is_read_back_and_applied_once_after_yes(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    x = recording(
        [(0.5, "Please cancel order eight six one nine.", 1.0), (12.5, "Yes, please.", 1.0)], 19.0
    )
    result, store, _ = await answer_call(tmp_path, monkeypatch, x)
    assert (
        "Just to confirm: cancel order 8 6 1 9, headphones, frying pan. Shall I go ahead?"
        in heard(result)
    )
    audit = store.audit()
    assert [(a["action"], json.loads(a["arguments"])["order_number"]) for a in audit] == [
        ("cancel_order", "8619")
    ]
    assert store.order("8619")["status"] == "cancelled"  # type: ignore[index]


async def test_a_no_writes_nothing(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    x = recording([(0.5, "Please cancel order eight six one nine.", 1.0), (12.5, "No.", 1.0)], 18.0)
    result, store, _ = await answer_call(tmp_path, monkeypatch, x)
    assert "Shall I go ahead?" in heard(result)
    assert store.audit() == [] and store.order("8619")["status"] == "processing"  # type: ignore[index]


async def test_a_yes_over_the_read_back_still_confirms_it_once(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    # The caller says yes while the agent is still reading the cancellation back.
    x = recording([(0.5, "Please cancel order eight six one nine.", 1.0), (5.3, "Yes.", 1.0)], 14.0)
    result, store, _ = await answer_call(tmp_path, monkeypatch, x)
    played = [e for e in result.entries if isinstance(e, le.AgentTextPlayed)]
    assert any(p.interrupted for p in played), "the yes came while the read-back played"
    assert [a["action"] for a in store.audit()] == ["cancel_order"]


async def test_a_keyed_order_number_and_a_request_for_a_human(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    x = recording([(8.0, "I would like to talk to a person.", 1.0)], 14.0)
    result, _, _ = await answer_call(
        tmp_path, monkeypatch, x, keys=[(0.5 + i * 0.25, k) for i, k in enumerate("4417#")]
    )
    notes = [e.text for e in result.entries if isinstance(e, le.Note)]
    assert "keypad entry: 4417" in notes
    assert "shipped" in heard(result)
    assert any("Transfer(destination='support-humans'" in n for n in notes)
    planned = [e.text for e in result.entries if isinstance(e, le.AgentTextPlanned)]
    assert "I'm transferring you now. Please hold." in planned
    assert [e.reason for e in result.entries if isinstance(e, le.SessionEnded)] == ["transferred"]


def espeak(text: str, voice: str = "en-gb+f3", wpm: int = 150) -> np.ndarray:
    """espeak-ng speech (a formant voice, nothing like the agent's) at 16 kHz."""
    return speech_helpers.espeak(text, voice, wpm=wpm, rate=RATE) * 0.8


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (Debian) not installed")
async def test_another_voice_reading_the_number_in_groups(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    y = espeak("My order number is forty four, seventeen.")
    out = np.zeros(9 * RATE, dtype=np.float32)
    out[RATE // 2 : RATE // 2 + len(y)] = y
    result, _, _ = await answer_call(tmp_path, monkeypatch, phone_line(out))
    assert "shipped" in heard(result), heard(result)


async def test_an_opted_in_call_is_recorded_as_caller_and_agent_channels(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    import wave

    x = recording([(0.5, "My order number is four four one seven.", 1.0)], 9.0)
    result, _, _ = await answer_call(tmp_path, monkeypatch, x, record=True)
    assert result.ledger_path is not None
    path = result.ledger_path.with_suffix(".wav")
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, PHONE_RATE)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    caller, agent = frames[:, 0] / 32768, frames[:, 1] / 32768
    n = min(len(caller), len(x))
    assert np.max(np.abs(caller[:n] - x[:n])) < 2e-3  # the caller channel is the caller
    talk = np.nonzero(np.abs(agent) > 0.01)[0]
    assert len(talk) > PHONE_RATE // 2, "the agent channel holds the answer"
    caller_talk = np.nonzero(np.abs(x) > 0.01)[0]
    assert talk[0] > caller_talk[-1] - PHONE_RATE // 4, "the answer follows the question"
