"""Sample-rate conversion with soxr: a streaming ``Resampler`` and one-shot ``resample``."""

from __future__ import annotations

import numpy as np

from peripherals.audio import to_float32, to_int16

try:
    import soxr
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "peripherals.resample needs soxr: pip install 'soxr>=0.3,<2' "
        "(or pip install 'voice-agent[voice]')"
    ) from exc

# soxr's "HQ" preset: 20-bit precision, ~ -120 dB stop band; plenty for speech and
# cheaper than VHQ. Latency of the streaming resampler is a few ms at speech rates.
_QUALITY = "HQ"


class Resampler:
    """Streaming mono resampler from ``in_rate`` to ``out_rate`` (Hz).

    ``process(samples)`` takes any length of float32 or int16 audio and returns
    the resampled audio available so far, in the same dtype as the input. The
    filter keeps a few ms of history, so output lags input slightly;
    ``flush()`` returns the remainder at the end of a stream, after which the
    resampler starts a new stream. With equal rates samples pass through.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream: soxr.ResampleStream | None = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream | None:
        if self.in_rate == self.out_rate:
            return None
        return soxr.ResampleStream(
            self.in_rate, self.out_rate, 1, dtype="float32", quality=_QUALITY
        )

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next piece of the stream; returns what is ready (may be empty)."""
        if self._stream is None:
            return samples
        out = self._stream.resample_chunk(np.ascontiguousarray(to_float32(samples)))
        return to_int16(out) if samples.dtype == np.int16 else out

    def flush(self, dtype: type[np.floating] | type[np.integer] = np.float32) -> np.ndarray:
        """End the stream: return the buffered tail (in ``dtype``) and reset."""
        if self._stream is None:
            return np.zeros(0, dtype=dtype)
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream = self._new_stream()
        return to_int16(out) if dtype == np.int16 else out.astype(np.float32)


def resample(samples: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    """Resample a whole mono signal; returns the same dtype, length ≈ n·out/in."""
    if in_rate == out_rate:
        return samples
    if in_rate <= 0 or out_rate <= 0:
        raise ValueError(f"rates must be positive, got {in_rate} -> {out_rate}")
    out = soxr.resample(to_float32(samples), in_rate, out_rate, quality=_QUALITY)
    return to_int16(out) if samples.dtype == np.int16 else out.astype(np.float32)
