"""Echo cancellation on real speech: piper's voice played into a synthetic room.

The far end is synthesised speech (what the speaker plays); the microphone
hears it through a simple room impulse response (a direct-path delay plus a
few decaying reflections, -6 dB overall) and, in the double-talk case, a
different "user" utterance starting halfway through. Both streams are fed in
lock-step chunks, as a duplex audio stream would.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from peripherals.aec import (
    EchoCanceller,
    EchoCancellerUnavailableError,
    NullEchoCanceller,
    WebRtcEchoCanceller,
)
from peripherals.resample import resample
from peripherals.wer import word_error_rate, words

RATE = 16000
AGENT = "Your order has shipped and should arrive on Thursday. Is there anything else I can help you with today?"
USER = "Sorry, can you cancel the second order instead?"

# Observed here (16 kHz, echo at -6 dB, 30 ms direct path): ERLE 40-43 dB on the
# echo-only part after the first second, for 10 ms, 20 ms and odd chunks (47-54 dB
# with noise suppression); most of it is AEC3's residual-echo suppressor. The bound leaves a wide margin below that.
MIN_ERLE_DB = 30.0
CONVERGENCE_S = 1.0  # echo after the agent's first second of speech is measured (seconds)


def room_impulse_response(rate: int, delay_s: float = 0.03, gain_db: float = -6.0) -> np.ndarray:
    """Direct path after ``delay_s`` plus four decaying reflections, scaled by ``gain_db``."""
    h = np.zeros(int(0.2 * rate))
    start = int(delay_s * rate)
    for after_s, amplitude in [
        (0.0, 1.0),
        (0.007, 0.5),
        (0.019, 0.3),
        (0.041, 0.15),
        (0.083, 0.07),
    ]:
        h[start + int(after_s * rate)] += amplitude
    return h * 10 ** (gain_db / 20)


def dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return 10 * float(np.log10(np.mean(x * x) + 1e-20))


@dataclass(frozen=True)
class Scene:
    far: np.ndarray  # what the speaker plays
    echo: np.ndarray  # what the microphone hears of it
    user: np.ndarray  # the user's voice at the microphone (zeros in the echo-only scene)
    far_start_s: float
    far_end_s: float
    user_start_s: float | None

    @property
    def mic(self) -> np.ndarray:
        return self.echo + self.user


@pytest.fixture(scope="module")
def scenes(speech_factory):  # type: ignore[no-untyped-def]
    """``scenes(user, agent_stops_after_s)``: the echo-only scene (``user=False``)
    or the user talking from halfway through the agent's sentence; with
    ``agent_stops_after_s`` the agent falls silent that long after the user
    starts (a barge-in), else it talks to the end."""

    @cache
    def make(user: bool, agent_stops_after_s: float | None = None) -> Scene:
        agent = speech_factory(AGENT, RATE, before_s=0.5, after_s=0.5)
        far = agent.samples.copy()
        spoken = np.zeros(0, dtype=np.float32)
        user_start_s = None
        if user:
            said = speech_factory(USER, RATE, before_s=0.0, after_s=0.3, gain=0.4).samples
            spoken = resample(said, int(RATE * 0.9), RATE)  # another speaker: slower and lower
            user_start_s = (agent.start_s + agent.end_s) / 2
            if agent_stops_after_s is not None:
                far[int((user_start_s + agent_stops_after_s) * RATE) :] = 0.0
        start = int((user_start_s or 0.0) * RATE)
        n = max(len(far), start + len(spoken))
        far = np.pad(far, (0, n - len(far)))
        echo = np.convolve(far, room_impulse_response(RATE))[:n].astype(np.float32)
        # a faint noise floor (-70 dBFS), as any microphone has
        echo += (np.random.default_rng(1).standard_normal(n) * 10 ** (-70 / 20)).astype(np.float32)
        near_user = np.zeros(n, dtype=np.float32)
        near_user[start : start + len(spoken)] = spoken
        return Scene(far, echo, near_user, agent.start_s, agent.end_s, user_start_s)

    return make


def run_duplex(
    canceller: EchoCanceller, far: np.ndarray, mic: np.ndarray, chunk: int
) -> tuple[np.ndarray, float]:
    """Feed played and captured audio in lock-step chunks; (cleaned audio, CPU seconds)."""
    out: list[np.ndarray] = []
    cpu = 0.0
    for i in range(0, len(far), chunk):
        started = time.process_time()
        canceller.note_played(far[i : i + chunk])
        out.append(canceller.process_mic(mic[i : i + chunk]))
        cpu += time.process_time() - started
    return np.concatenate(out), cpu


@pytest.mark.parametrize(
    ("chunk", "noise_suppression"),
    [(160, False), (320, False), (137, False), (160, True)],
    ids=["10ms", "20ms", "odd-137", "10ms-ns"],
)
def test_echo_of_played_speech_is_cancelled(scenes, chunk: int, noise_suppression: bool) -> None:  # type: ignore[no-untyped-def]
    scene = scenes(False)
    aec = WebRtcEchoCanceller(RATE, noise_suppression=noise_suppression)
    out, cpu = run_duplex(aec, scene.far, scene.mic, chunk)
    assert out.dtype == np.float32
    assert len(scene.mic) - aec.frame_size < len(out) <= len(scene.mic)
    a = int((scene.far_start_s + CONVERGENCE_S) * RATE)
    b = int(scene.far_end_s * RATE)
    erle = dbfs(scene.mic[a:b]) - dbfs(out[a:b])
    frames = len(out) / aec.frame_size
    print(
        f"AEC chunk={chunk} ns={noise_suppression}: ERLE {erle:.1f} dB "
        f"(echo {dbfs(scene.mic[a:b]):.1f} -> {dbfs(out[a:b]):.1f} dBFS), "
        f"CPU {cpu / frames * 1e3:.3f} ms per 10 ms frame (both directions)"
    )
    assert erle >= MIN_ERLE_DB


@cache
def _whisper():  # type: ignore[no-untyped-def]
    from faster_whisper import WhisperModel

    from peripherals.models import resolve_asr_model

    return WhisperModel(
        resolve_asr_model().location, device="cpu", compute_type="int8", cpu_threads=2
    )


def transcribe(samples: np.ndarray) -> str:
    segments, _ = _whisper().transcribe(
        samples.astype(np.float32), language="en", beam_size=5, condition_on_previous_text=False
    )
    return " ".join(s.text.strip() for s in segments)


# Words only the agent says: none may reach the transcript of the cleaned mic.
AGENT_ONLY = {"shipped", "arrive", "thursday", "anything", "else", "help", "today"}


def test_user_talking_over_the_whole_sentence_keeps_his_level_and_the_echo_goes(scenes) -> None:  # type: ignore[no-untyped-def]
    scene = scenes(True)  # the agent talks on to the end: ~2.5 s of double talk
    out, _ = run_duplex(WebRtcEchoCanceller(RATE), scene.far, scene.mic, 320)
    assert scene.user_start_s is not None
    start = int(scene.user_start_s * RATE)
    alone = int((scene.far_end_s + 0.2) * RATE)  # the agent's echo has died away
    double_talk = dbfs(scene.user[start:alone]), dbfs(out[start:alone])
    solo = dbfs(scene.user[alone:]), dbfs(out[alone:])
    heard, raw = transcribe(out), transcribe(scene.mic)
    print(
        f"AEC double talk: user {double_talk[0]:.1f} dBFS -> out {double_talk[1]:.1f}; "
        f"user alone {solo[0]:.1f} -> {solo[1]:.1f}; WER {word_error_rate(USER, heard):.2f} "
        f"{heard!r}; without AEC {raw!r}"
    )
    # Observed over 16 syntheses: while the agent talks WebRTC's suppressor takes
    # 1.7-3.8 dB off the user; alone he keeps his level to 0.2 dB. No agent word
    # was heard, but Whisper tiny.en lost some of the user's: WER 0-1.25 (median
    # ~0.3) — full double talk at equal levels is hard, so WER is printed, not asserted.
    assert double_talk[0] - double_talk[1] <= 6.0
    assert abs(solo[1] - solo[0]) <= 1.5
    assert AGENT_ONLY & set(words(raw))  # the raw mic does carry the agent's words
    assert not AGENT_ONLY & set(words(heard))


def test_user_barging_in_is_transcribed_and_the_agent_is_not(scenes) -> None:  # type: ignore[no-untyped-def]
    scene = scenes(True, 0.5)  # the agent stops 0.5 s after the user starts, as on barge-in
    out, _ = run_duplex(WebRtcEchoCanceller(RATE), scene.far, scene.mic, 320)
    heard, raw = transcribe(out), transcribe(scene.mic)
    wer, raw_wer = word_error_rate(USER, heard), word_error_rate(USER, raw)
    print(f"AEC barge-in: WER {wer:.2f} {heard!r}; without AEC WER {raw_wer:.2f} {raw!r}")
    # Observed over 15 syntheses: WER 0.00 in 14, 0.25 once (the user's first word,
    # said over the agent, heard as two others); the raw mic 1.12-1.25.
    assert wer <= 0.3
    assert raw_wer >= 0.8


def test_null_canceller_is_the_identity_for_any_chunk() -> None:
    aec = NullEchoCanceller(RATE)
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.int16):
        x = (rng.standard_normal(1000) * 1000).astype(dtype)
        aec.note_played(x)
        for piece in (x[:1], x[1:138], x[138:]):
            assert aec.process_mic(piece) is piece


def test_odd_chunks_come_back_in_order_and_at_most_one_frame_late() -> None:
    aec = WebRtcEchoCanceller(RATE)
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(RATE) * 3000).astype(np.int16)
    given = returned = 0
    for size in [1, 7, 159, 160, 161, 333, 0, 480, 13]:
        aec.note_played(np.zeros(size, dtype=np.int16))
        out = aec.process_mic(x[given : given + size])
        assert out.dtype == np.int16
        given += size
        returned += len(out)
        assert returned % aec.frame_size == 0
        assert 0 <= given - returned < aec.frame_size
    # 20 ms chunks: as many samples out as in, with no lag
    aec = WebRtcEchoCanceller(RATE)
    for i in range(0, 3200, 320):
        aec.note_played(np.zeros(320, dtype=np.float32))
        assert len(aec.process_mic(x[i : i + 320].astype(np.float32) / 32768)) == 320


def test_far_and_near_ends_may_be_fed_from_two_threads() -> None:
    aec = WebRtcEchoCanceller(RATE)
    x = (np.random.default_rng(4).standard_normal(RATE) * 0.1).astype(np.float32)
    returned: list[int] = []

    def play() -> None:
        for i in range(0, RATE, 320):
            aec.note_played(x[i : i + 320])

    def capture() -> None:
        for i in range(0, RATE, 200):
            returned.append(len(aec.process_mic(x[i : i + 200])))

    threads = [threading.Thread(target=play), threading.Thread(target=capture)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(returned) == RATE  # one second is exactly 100 frames


def test_unsupported_rate_and_missing_package_fail_clearly(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="sample rates"):
        WebRtcEchoCanceller(22050)
    monkeypatch.setitem(sys.modules, "livekit", None)  # import livekit now raises ImportError
    with pytest.raises(EchoCancellerUnavailableError, match="pip install 'livekit"):
        WebRtcEchoCanceller(RATE)
