"""EnergyOnset on known signals: an onset above the background is seen within two 10 ms
steps, ends when the sound does or after its hold, and steady noise is background."""

from __future__ import annotations

import numpy as np

from peripherals.onset import HOLD_S, QUIET_S, EnergyOnset

RATE = 16000
STEP = 160  # 10 ms


def hiss(seconds: float, dbfs: float, seed: int = 1) -> np.ndarray:
    """White noise at ``dbfs`` RMS: an unvoiced "s" is ≈-30 dBFS, a quiet line ≈-60."""
    x = np.random.default_rng(seed).standard_normal(int(seconds * RATE))
    return (x * 10 ** (dbfs / 20)).astype(np.float32)


def active_steps(onset: EnergyOnset, x: np.ndarray) -> list[bool]:
    """Feed ``x`` in 10 ms steps; whether an onset is active after each."""
    out = []
    for i in range(0, len(x), STEP):
        onset.process(x[i : i + STEP])
        out.append(onset.active)
    return out


def test_a_sound_over_silence_is_an_onset_from_its_second_step_until_it_is_gone() -> None:
    onset = EnergyOnset(RATE)
    steps = active_steps(
        onset, np.concatenate([hiss(1.0, -65), hiss(0.15, -30, seed=2), hiss(0.5, -65, seed=3)])
    )
    start = steps.index(True)
    assert start == 101, "the second 10 ms step of the sound"
    end = start + steps[start:].index(False)
    assert 115 <= end <= 115 + int(QUIET_S * 100) + 1, "ends within QUIET_S of the sound"
    assert onset.onsets == 1 and not any(steps[end:])


def test_steady_noise_counts_once_for_at_most_the_hold_then_is_background() -> None:
    onset = EnergyOnset(RATE)
    steps = active_steps(onset, np.concatenate([hiss(0.5, -70), hiss(4.0, -35, seed=2)]))
    assert sum(steps) <= int(HOLD_S * 100) + 1 and onset.onsets == 1
    assert not any(steps[100:])


def test_noise_from_the_start_and_sound_below_the_absolute_floor_are_no_onsets() -> None:
    onset = EnergyOnset(RATE)
    assert not any(active_steps(onset, hiss(2.0, -40)))
    quiet = EnergyOnset(RATE)
    assert not any(
        active_steps(quiet, np.concatenate([np.zeros(RATE, np.float32), hiss(0.3, -56)]))
    )


def test_a_closure_shorter_than_the_quiet_time_keeps_one_onset() -> None:
    """The "Stop" case: hiss, 30 ms of closure, then the vowel is one onset, not two."""
    onset = EnergyOnset(RATE)
    x = np.concatenate(
        [
            np.zeros(RATE // 2, np.float32),
            hiss(0.08, -30),
            np.zeros(480, np.float32),
            hiss(0.1, -25),
        ]
    )
    steps = active_steps(onset, x)
    first = steps.index(True)
    assert all(steps[first : first + 18]) and onset.onsets == 1
