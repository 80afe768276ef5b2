"""``EnergyOnset``: the first sound above the background, before the VAD can tell it is speech.

The Silero VAD scores an unvoiced onset low: the hiss of the "s" in "Stop" (80-130 ms
before the vowel, in piper's and espeak-ng's voices) stays at 0.2-0.4, under the 0.5
start threshold, so a listener that reacts to the VAD's first speech frame (the agent's
voice pausing at a barge-in) reacts only once the vowel comes: ≈150 ms after the onset
instead of ≈60 ms. The level of the audio shows that onset at once.

This tracks the level in 10 ms steps against the background (a floor that follows quiet
at once and loud sound slowly) and is :attr:`~EnergyOnset.active` from the second step
that is ``RISE_DB`` above the floor (and above ``MIN_LEVEL_DB``) until the sound has been
gone for ``QUIET_S`` or ``HOLD_S`` has passed since the rise, whichever is first. It says
"something started", never "speech": a listener uses it only to react early, for a
bounded time, while the VAD decides (a door slam costs at most ``HOLD_S``). A new onset
needs the level to drop back near the floor first, so steady noise fires at most once.
"""

from __future__ import annotations

import numpy as np

from .audio import to_float32

STEP_S = 0.01  # level measured per 10 ms (seconds): finer than the VAD's 32 ms frames
RISE_DB = 18.0  # an onset is this far above the background (dB): speech vs. room noise
MIN_LEVEL_DB = -50.0  # ... and at least this loud (dBFS): a soft "h" is ≈-45, line hiss < -55
RELEASE_DB = 6.0  # the sound lasts while within this of the onset level (dB): hysteresis
ONSET_STEPS = 2  # steps above the threshold before it counts (20 ms): a click is shorter
QUIET_S = 0.06  # sound gone this long ends the onset (seconds): the closure of a "t" is shorter
HOLD_S = 0.25  # the onset alone counts this long at most (seconds): the longest unvoiced
# onset (≈150 ms) plus the VAD's frame and lag; after that the VAD alone decides
FLOOR_MIN_DB = -80.0  # the background never reads below this (dBFS): digital silence
FLOOR_RISE_DB_PER_S = 6.0  # the floor follows louder sound this slowly (dB/s): a steady
# noise is background after a few seconds, a word is not


class EnergyOnset:
    """Sound onsets by level, for mono audio at ``sample_rate`` fed in chunks of any length."""

    def __init__(self, sample_rate: int) -> None:
        self._step = max(1, int(round(STEP_S * sample_rate)))
        self._buffer = np.zeros(0, dtype=np.float32)
        self._floor: float | None = None
        self._above = 0  # consecutive steps above the onset threshold
        self._armed = True  # the level was near the floor since the last onset
        self._steps = 0  # steps measured so far
        self._onset_step: int | None = None  # the step the current onset began at
        self._loud_step = 0  # the last step the current onset's sound was heard
        self._hold_steps = int(round(HOLD_S / STEP_S))
        self._quiet_steps = int(round(QUIET_S / STEP_S))
        self.onsets = 0  # onsets seen so far

    @property
    def active(self) -> bool:
        """An onset began within ``HOLD_S`` and its sound has not been gone for ``QUIET_S``."""
        return self._onset_step is not None

    def process(self, samples: np.ndarray) -> None:
        """Feed the next chunk (float32 in [-1, 1] or int16)."""
        self._buffer = np.concatenate([self._buffer, to_float32(samples)])
        n = len(self._buffer) // self._step
        for i in range(n):
            s = self._buffer[i * self._step : (i + 1) * self._step]
            self._measure(10.0 * float(np.log10(float(np.mean(s * s)) + 1e-12)))
        self._buffer = self._buffer[n * self._step :]

    def _measure(self, level: float) -> None:
        floor = max(FLOOR_MIN_DB, level if self._floor is None else self._floor)
        threshold = max(floor + RISE_DB, MIN_LEVEL_DB)
        self._above = self._above + 1 if level >= threshold else 0
        step = self._steps
        if self._onset_step is None:
            if self._armed and self._above >= ONSET_STEPS:
                self._onset_step, self._loud_step = step - ONSET_STEPS + 1, step
                self._armed = False
                self.onsets += 1
        else:
            if level >= threshold - RELEASE_DB:
                self._loud_step = step
            if (
                step - self._onset_step >= self._hold_steps
                or step - self._loud_step >= self._quiet_steps
            ):
                self._onset_step = None
        if self._onset_step is None and level < threshold - RELEASE_DB:
            self._armed = True
        rise = FLOOR_RISE_DB_PER_S * STEP_S
        self._floor = max(FLOOR_MIN_DB, min(level, floor + rise) if level > floor else level)
        self._steps += 1
