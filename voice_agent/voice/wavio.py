"""Reading and writing mono WAV files (standard library ``wave``, PCM only)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from peripherals.audio import to_int16

_PCM_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


class WavError(ValueError):
    """A WAV file cannot be read (missing, not PCM, unsupported sample width)."""


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples (float32 in [-1, 1], channels averaged to mono) and the sample rate.

    Reads integer PCM of 8, 16, 24 or 32 bits; raises :class:`WavError` otherwise.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            raw = w.readframes(w.getnframes())
    except FileNotFoundError as exc:
        raise WavError(f"no such file: {path}") from exc
    except (wave.Error, EOFError) as exc:
        raise WavError(
            f"{path}: not a PCM WAV file ({exc}); convert it, e.g. 'sox in.ext -b 16 out.wav'"
        ) from exc
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        ints = (
            b[:, 0].astype(np.int32)
            | (b[:, 1].astype(np.int32) << 8)
            | (b[:, 2].astype(np.int8).astype(np.int32) << 16)
        )
        x = ints.astype(np.float32) / float(1 << 23)
    elif width in _PCM_DTYPES:
        ints = np.frombuffer(raw, dtype=_PCM_DTYPES[width])
        if width == 1:
            x = (ints.astype(np.float32) - 128.0) / 128.0
        else:
            x = ints.astype(np.float32) / float(1 << (8 * width - 1))
    else:
        raise WavError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:
        x = x[: len(x) // channels * channels].reshape(-1, channels).mean(axis=1)
    return x.astype(np.float32), rate


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Write mono 16-bit PCM (float input is clipped to [-1, 1])."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(to_int16(samples).tobytes())
