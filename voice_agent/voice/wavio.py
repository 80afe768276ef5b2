"""Reading and writing mono WAV files.

Reading parses the RIFF chunks itself (the standard library's ``wave`` before
Python 3.12 refuses ``WAVE_FORMAT_EXTENSIBLE``, which sox writes for 24-bit
and multichannel files): integer PCM of 8, 16, 24 or 32 bits, 32/64-bit
float, and G.711 μ-law / A-law (how telephony systems save calls; decoded by
:mod:`peripherals.g711`), plain or extensible. A file cut short (a ``data`` chunk longer than
what is there, a last frame cut at an odd byte) is read up to its last whole
frame. Anything unusable raises :class:`WavError` with a message for a person:
a missing file, a directory, not RIFF/WAVE, a compressed format, a sample rate
or channel count of 0.
"""

from __future__ import annotations

import os
import stat
import struct
import wave
from pathlib import Path

import numpy as np

from peripherals import g711
from peripherals.audio import to_int16

_PCM_DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}
_FORMAT_PCM = 1
_FORMAT_FLOAT = 3
_FORMAT_ALAW = 6  # G.711, as telephony systems save calls
_FORMAT_MULAW = 7
_FORMAT_EXTENSIBLE = 0xFFFE
# Sample rates we accept (Hz): telephony's 8 kHz up to studio 192 kHz.
MIN_RATE, MAX_RATE = 1000, 384000
_CONVERT_HINT = "convert it, e.g. 'sox in.ext -b 16 out.wav'"


class WavError(ValueError):
    """A WAV file cannot be read or written; the message says why and what to do."""


def _fail(path: Path, problem: str) -> WavError:
    return WavError(f"{path}: {problem}")


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples (float32 in [-1, 1], channels averaged to mono) and the sample rate."""
    path = Path(path)
    if path.is_dir():
        raise _fail(path, "is a directory, not a WAV file")
    try:
        with open(path, "rb") as file:
            if stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                data = file.read()
            else:
                # A device or a pipe: the header first, then at most the size it declares
                # (until the end when a streaming writer left it unknown). Reading
                # /dev/zero whole took all memory (hostile8).
                data = file.read(12)
                if len(data) == 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
                    declared = struct.unpack("<I", data[4:8])[0]
                    unknown = declared < 4 or declared == 0xFFFFFFFF
                    data += file.read(-1 if unknown else declared - 4)
    except FileNotFoundError:
        raise WavError(f"no such file: {path}") from None
    except OSError as exc:
        raise _fail(path, f"cannot read it ({exc.strerror or exc})") from None
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _fail(path, f"not a PCM WAV file (no RIFF/WAVE header); {_CONVERT_HINT}")
    fmt: bytes | None = None
    pcm: bytes | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]  # shorter than size if the file was cut
        if chunk_id == b"fmt ":
            fmt = body
        elif chunk_id == b"data":
            pcm = body
            break
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt is None or len(fmt) < 16:
        raise _fail(path, f"no format chunk; {_CONVERT_HINT}")
    if pcm is None:
        raise _fail(path, "no audio data chunk")
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _FORMAT_EXTENSIBLE:
        if len(fmt) < 26:
            raise _fail(path, "extensible format chunk is too short")
        tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the tag
    if channels == 0:
        raise _fail(path, "the header says 0 channels")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise _fail(path, f"unusable sample rate {rate} Hz (expected {MIN_RATE}-{MAX_RATE})")
    width = (bits + 7) // 8
    if width == 0:
        raise _fail(path, "the header says 0 bits per sample")
    frame = width * channels
    usable = len(pcm) - len(pcm) % frame  # a file cut mid-frame: drop the partial frame
    raw = pcm[:usable]
    if tag in (_FORMAT_MULAW, _FORMAT_ALAW) and width == 1:
        x = g711.decode(raw, "mulaw" if tag == _FORMAT_MULAW else "alaw")
    elif tag == _FORMAT_FLOAT and width in (4, 8):
        x = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
    elif tag != _FORMAT_PCM:
        raise _fail(path, f"compressed or unknown audio format {tag:#06x}; {_CONVERT_HINT}")
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        ints = (
            b[:, 0].astype(np.int32)
            | (b[:, 1].astype(np.int32) << 8)
            | (b[:, 2].astype(np.int8).astype(np.int32) << 16)
        )
        x = ints.astype(np.float32) / float(1 << 23)
    elif width in _PCM_DTYPES:
        ints = np.frombuffer(raw, dtype=np.dtype(_PCM_DTYPES[width]).newbyteorder("<"))
        if width == 1:
            x = (ints.astype(np.float32) - 128.0) / 128.0
        else:
            x = ints.astype(np.float32) / float(1 << (8 * width - 1))
    else:
        raise _fail(path, f"unsupported sample width {bits} bits; {_CONVERT_HINT}")
    if channels > 1:
        x = x.reshape(-1, channels).mean(axis=1)
    return np.clip(x, -1.0, 1.0).astype(np.float32), rate


def check_writable(path: str | Path) -> Path:
    """Make sure a WAV can be written at ``path`` *before* any work is done; return it.

    Creates missing parent directories. Raises :class:`WavError` naming the
    problem (a directory, no permission, a read-only or missing location).
    """
    path = Path(path)
    if path.is_dir():
        raise _fail(path, "is a directory; give a file name for the output WAV")
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise _fail(path, f"cannot write the output there ({exc.strerror or exc})") from None
    if not existed:
        os.unlink(path)
    return path


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> None:
    """Write mono 16-bit PCM (float input is clipped to [-1, 1])."""
    write_wav_channels(path, [samples], rate)


def write_wav_channels(path: str | Path, channels: list[np.ndarray], rate: int) -> None:
    """Write 16-bit PCM with one channel per array (equal lengths; float clipped to [-1, 1])."""
    path = Path(path)
    frames = np.stack([to_int16(c) for c in channels], axis=1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(len(channels))
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(frames.tobytes())
    except OSError as exc:
        raise _fail(path, f"cannot write the output WAV ({exc.strerror or exc})") from None
