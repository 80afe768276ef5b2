"""Audio value types, the audio in/out protocols, sample-format conversions, errors.

Audio travels as mono numpy arrays with an explicit sample rate. ``float32``
samples are in [-1, 1]; ``int16`` samples are full-scale PCM.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

INT16_SCALE = 32768.0  # int16 full scale: float = int16 / 32768

# Floor for dBFS of an all-zero signal, so logs and comparisons stay finite (dB).
SILENCE_DBFS = -120.0


class PeripheralError(Exception):
    """Base of the errors raised by ``peripherals``."""


class ModelNotInstalledError(PeripheralError):
    """A model (or the package that ships it) is not installed; the message
    names the pip command that installs it."""


class Clock(Protocol):
    """Monotonic time in seconds (``fsm.Clock`` satisfies this structurally)."""

    def now(self) -> float: ...


class MonotonicClock:
    """Real time: the running event loop's clock (``time.monotonic()`` on an ordinary
    loop, outside a loop or in another thread), like ``fsm.MonotonicClock``, so a test
    on a virtual-time loop moves this clock too."""

    def now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()


@dataclass(frozen=True)
class AudioChunk:
    """A piece of mono audio.

    ``samples`` is 1-D ``float32`` in [-1, 1] or ``int16``; ``sample_rate`` in Hz.
    """

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"AudioChunk needs mono 1-D samples, got shape {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


class AudioSource(Protocol):
    """Microphone-like input: mono frames at ``sample_rate``, in order.

    ``read`` waits for the next frame. ``aclose`` is idempotent.
    """

    @property
    def sample_rate(self) -> int: ...

    async def read(self) -> AudioChunk: ...

    async def aclose(self) -> None: ...


class AudioSink(Protocol):
    """Speaker-like output of mono audio at ``sample_rate``.

    ``write`` queues audio behind what is queued (it may wait for room).
    ``played_samples`` counts samples handed to the listener and only grows
    (never the samples dropped by ``clear``), so a writer that notes it at
    each ``clear`` can map what it wrote to what was heard. ``clear()``
    drops everything queued at once (a barge-in) and returns how many
    samples it dropped; it does not resume. ``pause()`` silences at once
    *without* consuming: queued audio and the play position are kept, and
    ``resume()`` continues exactly there. ``wait_drained`` returns once
    everything written has been played. ``clear``, ``pause``, ``resume`` and
    ``aclose`` are idempotent.
    """

    @property
    def sample_rate(self) -> int: ...

    @property
    def played_samples(self) -> int: ...

    @property
    def paused(self) -> bool: ...

    async def write(self, samples: np.ndarray) -> None: ...

    def clear(self) -> int: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    async def wait_drained(self) -> None: ...

    async def aclose(self) -> None: ...


def to_float32(samples: np.ndarray) -> np.ndarray:
    """Return ``samples`` as float32 in [-1, 1] (int16 is scaled by 1/32768).

    float32 input is returned as is (no copy); other float types are cast.
    """
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / INT16_SCALE
    if samples.dtype == np.float32:
        return samples
    if np.issubdtype(samples.dtype, np.floating):
        return samples.astype(np.float32)
    raise TypeError(f"unsupported sample dtype {samples.dtype}; use int16 or float32")


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Return ``samples`` as int16 PCM; floats are clipped to [-1, 1] first."""
    if samples.dtype == np.int16:
        return samples
    if not np.issubdtype(samples.dtype, np.floating):
        raise TypeError(f"unsupported sample dtype {samples.dtype}; use int16 or float32")
    scaled = np.clip(samples, -1.0, 1.0) * INT16_SCALE
    return np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (0 dBFS = full-scale square)."""
    if len(samples) == 0:
        return SILENCE_DBFS
    x = to_float32(samples).astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x)))
    if rms <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * float(np.log10(rms)))
