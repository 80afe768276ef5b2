"""G.711 μ-law and A-law: the telephone network's 8-bit audio codecs.

The codec is the standard library's ``audioop`` (ITU-T G.711 tables; on
Python 3.13+, where ``audioop`` was removed, the ``audioop-lts`` package
provides the same module), not a hand-written table. Samples are float32 in
[-1, 1] on our side and one byte per sample on the line's.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np

with warnings.catch_warnings():  # deprecated (not removed) on 3.11-3.12; audioop-lts on 3.13+
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["Law", "decode", "encode", "round_trip"]

Law = Literal["mulaw", "alaw"]


def _to_pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def encode(x: np.ndarray, law: Law = "mulaw") -> bytes:
    """Float samples to G.711 bytes (one per sample)."""
    pcm = _to_pcm16(np.asarray(x, dtype=np.float32))
    return audioop.lin2ulaw(pcm, 2) if law == "mulaw" else audioop.lin2alaw(pcm, 2)


def decode(data: bytes, law: Law = "mulaw") -> np.ndarray:
    """G.711 bytes to float32 samples in [-1, 1]."""
    pcm = audioop.ulaw2lin(data, 2) if law == "mulaw" else audioop.alaw2lin(data, 2)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def round_trip(x: np.ndarray, law: Law = "mulaw") -> np.ndarray:
    """What ``x`` sounds like after a trip through the codec (same rate, same length)."""
    return decode(encode(x, law), law)
