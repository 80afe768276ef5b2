"""Caller speech from espeak-ng (Debian's ``espeak-ng``: a formant voice, nothing like
the agent's piper voice) for tests in any folder; ``from speech_helpers import espeak``.
Tests that use it skip when ``ESPEAK`` is None."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave

import numpy as np

from peripherals.resample import resample

ESPEAK = shutil.which("espeak-ng")


def espeak(text: str, voice: str, *, wpm: int = 165, rate: int = 16000) -> np.ndarray:
    """``text`` said by espeak-ng's ``voice`` at ``wpm``, resampled to ``rate`` (float32,
    full scale 1.0, as espeak wrote it: silence around the words included)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", f.name, text],
            check=True,
            capture_output=True,
        )
        with wave.open(f.name) as w:
            native = w.getframerate()
            x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return resample(x.astype(np.float32) / 32768.0, native, rate)


def audible_span(y: np.ndarray, floor: float = 0.02) -> tuple[int, int]:
    """First and one-past-last sample above ``floor`` x the peak."""
    audible = np.nonzero(np.abs(y) > floor * np.max(np.abs(y)))[0]
    return int(audible[0]), int(audible[-1]) + 1
