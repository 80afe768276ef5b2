"""Residual echo measured on real speech: piper's voice through a synthetic room.

The scene of ``test_periph_aec`` (the agent's sentence, a room impulse
response, a faint noise floor), with the echo path's delay jumping by
``JUMP_S`` 1.2 s into the sentence, as when a busy machine delays an audio
callback: WebRTC's canceller then passes the echo nearly whole for seconds,
and Whisper hears words in it. ``peripherals.residual_echo`` measures the
echo delay and each frame's correlation with what was played. Deterministic
(piper without noise, a seeded noise floor, WebRTC's canceller); ``-s``
prints the figures.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_periph_aec import AGENT, USER, dbfs, room_impulse_response

from peripherals.aec import WebRtcEchoCanceller
from peripherals.resample import resample
from peripherals.residual_echo import (
    ECHO_CORRELATION,
    ResidualEchoGate,
    echo_correlation,
    gcc_phat_delay,
)

RATE = 16000
JUMP_S = 0.25  # the echo path's delay grows by this much mid-sentence (seconds)
DIRECT_S = 0.03  # room_impulse_response's direct path (seconds)


def scene(speech_factory, jump_s: float, user_gain: float = 0.0):  # type: ignore[no-untyped-def]
    """(played, microphone, the user's part of it, when the jump happens) as samples."""
    agent = speech_factory(AGENT, RATE, before_s=0.5, after_s=0.8)
    far = agent.samples.copy()
    n = len(far)
    echo = np.convolve(far, room_impulse_response(RATE))[:n]
    jump_at = int((agent.start_s + 1.2) * RATE)
    if jump_s:
        later = np.concatenate([np.zeros(int(jump_s * RATE)), echo])[:n]
        echo[jump_at:] = later[jump_at:]
    echo += np.random.default_rng(1).standard_normal(n) * 10 ** (-70 / 20)
    user = np.zeros(n, dtype=np.float32)
    if user_gain:
        said = speech_factory(USER, RATE, before_s=0.0, after_s=0.3, gain=user_gain).samples
        said = resample(said, int(RATE * 0.9), RATE)  # another speaker: slower and lower
        start = jump_at + int(0.2 * RATE)
        k = min(len(said), n - start)
        user[start : start + k] = said[:k]
    return far.astype(np.float32), (echo + user).astype(np.float32), user, jump_at


def duplex(canceller, far: np.ndarray, mic: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = []
    for i in range(0, len(far), 320):
        canceller.note_played(far[i : i + 320])
        out.append(canceller.process_mic(mic[i : i + 320]))
    return np.concatenate(out)


def test_the_echo_delay_is_found_in_real_speech(speech_factory) -> None:  # type: ignore[no-untyped-def]
    far, mic, _, jump_at = scene(speech_factory, JUMP_S)
    second = int(RATE * 1.0)
    before = gcc_phat_delay(
        mic[jump_at - second : jump_at], far[jump_at - second : jump_at], RATE // 2
    )
    end = jump_at + 2 * second
    after = gcc_phat_delay(mic[end - second : end], far[end - second : end], RATE // 2)
    assert abs(before / RATE - DIRECT_S) <= 0.002
    assert abs(after / RATE - (DIRECT_S + JUMP_S)) <= 0.002


def test_echo_correlates_with_what_was_played_and_a_callers_voice_does_not(speech_factory) -> None:  # type: ignore[no-untyped-def]
    far, mic, user, _ = scene(speech_factory, 0.0, user_gain=0.4)
    echo = mic - user
    window, lag, slack = int(0.04 * RATE), int(DIRECT_S * RATE), int(0.004 * RATE)
    echo_scores, user_scores = [], []
    for i in range(lag + window + slack, len(far) - window, window):
        segment = far[i - lag - slack : i - lag + window + slack].astype(np.float64)
        if dbfs(segment) < -55:
            continue
        if dbfs(echo[i : i + window]) > -45:
            echo_scores.append(echo_correlation(echo[i : i + window].astype(np.float64), segment))
        if dbfs(user[i : i + window]) > -45:
            user_scores.append(echo_correlation(user[i : i + window].astype(np.float64), segment))
    print(
        f"echo correlation: the agent's echo median {np.median(echo_scores):.2f} "
        f"({len(echo_scores)} windows), a caller's voice median {np.median(user_scores):.2f} "
        f"max {max(user_scores):.2f} ({len(user_scores)} windows)"
    )
    assert np.median(echo_scores) >= ECHO_CORRELATION
    assert np.median(user_scores) < ECHO_CORRELATION / 2


def test_the_gate_takes_out_echo_the_canceller_let_through_after_a_delay_jump(
    speech_factory,
) -> None:  # type: ignore[no-untyped-def]
    far, mic, _, jump_at = scene(speech_factory, JUMP_S)
    plain = duplex(WebRtcEchoCanceller(RATE), far, mic)
    gate = ResidualEchoGate(WebRtcEchoCanceller(RATE))
    gated = duplex(gate, far, mic)
    after = slice(jump_at, len(far))
    let_through = dbfs(mic[after]) - dbfs(plain[after])
    left = dbfs(mic[after]) - dbfs(gated[after])
    print(
        f"after a {JUMP_S * 1e3:.0f} ms delay jump: the canceller removes {let_through:.1f} dB, "
        f"with the gate {left:.1f} dB ({gate.gated_frames}/{gate.judged_frames} frames gated, "
        f"delay {gate.last_delay_s})"
    )
    assert let_through < 15.0  # the fault is real: the canceller lets much of it through
    # measured: 6.0 dB -> 10.2 dB (56 of 99 frames gated): the gate takes out part of it
    # only (the delay estimate follows the jump half a second late), which is why the
    # console does not use it yet (docs/reliability.md)
    assert left >= let_through + 3.0


@pytest.mark.parametrize("user_gain", [0.4, 0.25])
def test_a_caller_talking_over_the_agent_keeps_his_level_through_the_gate(
    speech_factory,  # type: ignore[no-untyped-def]
    user_gain: float,
) -> None:
    far, mic, user, _ = scene(speech_factory, 0.0, user_gain=user_gain)
    plain = duplex(WebRtcEchoCanceller(RATE), far, mic)
    gated = duplex(ResidualEchoGate(WebRtcEchoCanceller(RATE)), far, mic)
    n = min(len(plain), len(gated))
    plain, gated, user = plain[:n], gated[:n], user[:n]
    talking = np.abs(user) > 0.01
    lost = dbfs(plain[talking]) - dbfs(gated[talking])
    print(f"caller at gain {user_gain}: the gate takes {lost:.1f} dB off his voice")
    assert lost <= 3.0
