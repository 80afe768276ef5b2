"""HalfDuplexGate: self-hearing suppression with barge-in (pure, virtual time)."""

from __future__ import annotations

import numpy as np

from peripherals.half_duplex import HalfDuplexGate


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t


def level(dbfs: float, n: int = 320) -> np.ndarray:
    """A frame of noise whose RMS is ``dbfs``."""
    x = np.random.default_rng(int(-dbfs * 10)).standard_normal(n)
    return (x / np.sqrt(np.mean(x * x)) * 10 ** (dbfs / 20)).astype(np.float32)


def test_frames_pass_when_nothing_plays() -> None:
    gate = HalfDuplexGate(clock=FakeClock())
    assert gate.admit(level(-40)) and gate.admit(level(-10))
    assert gate.reference_dbfs() is None


def test_echo_is_suppressed_while_playing_and_barge_in_passes() -> None:
    clock = FakeClock()
    gate = HalfDuplexGate(margin_db=6.0, tail_s=0.3, clock=clock)
    gate.note_played(level(-20))
    assert not gate.admit(level(-25))  # echo, quieter than the played audio
    assert not gate.admit(level(-16))  # louder, but within the margin
    assert gate.admit(level(-10))  # the user talks over the agent
    assert np.all(gate.gate(level(-25)) == 0)
    assert gate.suppressed == 3 and gate.admitted == 1


def test_suppression_lasts_for_the_tail_after_playback() -> None:
    clock = FakeClock()
    gate = HalfDuplexGate(tail_s=0.3, clock=clock)
    gate.note_played(level(-20))
    clock.t = 0.25
    assert not gate.admit(level(-25))
    clock.t = 0.35
    assert gate.admit(level(-25))
    assert not gate.playback_active()


def test_reference_is_the_loudest_recent_playback() -> None:
    clock = FakeClock()
    gate = HalfDuplexGate(window_s=0.5, tail_s=0.3, clock=clock)
    gate.note_played(level(-10))
    clock.t = 0.2
    gate.note_played(level(-40))
    assert abs(gate.reference_dbfs() - (-10)) < 0.5  # type: ignore[operator]
    clock.t = 0.6  # the loud piece is out of the window; the quiet one still plays
    gate.note_played(level(-40))
    assert abs(gate.reference_dbfs() - (-40)) < 0.5  # type: ignore[operator]
    assert gate.admit(level(-30))
