"""G.711 μ-law / A-law through the standard codec, and telephony WAV files read as such."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from peripherals import g711
from voice_agent.voice.wavio import read_wav


def _tone(n: int = 8000, rate: int = 8000) -> np.ndarray:
    t = np.arange(n) / rate
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("law", ["mulaw", "alaw"])
def test_a_round_trip_keeps_length_and_stays_within_the_codecs_step(law: str) -> None:
    x = _tone()
    data = g711.encode(x, law)  # type: ignore[arg-type]
    assert len(data) == len(x)
    y = g711.decode(data, law)  # type: ignore[arg-type]
    assert y.dtype == np.float32 and len(y) == len(x)
    assert float(np.max(np.abs(y - x))) < 0.02  # 8-bit companding: ~1/64 of full scale at 0.5
    snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert snr > 30


def test_silence_is_the_codecs_zero_code() -> None:
    assert g711.encode(np.zeros(3, dtype=np.float32), "mulaw") == b"\xff\xff\xff"
    assert g711.encode(np.zeros(3, dtype=np.float32), "alaw") == b"\xd5\xd5\xd5"


def _g711_wav(path: Path, data: bytes, tag: int, rate: int = 8000) -> None:
    fmt = struct.pack("<HHIIHHH", tag, 1, rate, rate, 1, 8, 0)
    fact = struct.pack("<I", len(data))
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"fact" + struct.pack("<I", 4) + fact
        + b"data" + struct.pack("<I", len(data)) + data
    )  # fmt: skip
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


@pytest.mark.parametrize(("law", "tag"), [("mulaw", 7), ("alaw", 6)])
def test_a_call_saved_as_g711_wav_is_read_as_audio(tmp_path: Path, law: str, tag: int) -> None:
    x = _tone()
    _g711_wav(tmp_path / "call.wav", g711.encode(x, law), tag)  # type: ignore[arg-type]
    y, rate = read_wav(tmp_path / "call.wav")
    assert rate == 8000 and len(y) == len(x)
    assert float(np.max(np.abs(y - x))) < 0.02


@pytest.mark.skipif(__import__("shutil").which("sox") is None, reason="sox not installed")
@pytest.mark.parametrize("encoding", ["u-law", "a-law"])
def test_a_g711_wav_written_by_sox_is_read(tmp_path: Path, encoding: str) -> None:
    import subprocess

    from voice_agent.voice.wavio import write_wav

    x = _tone()
    write_wav(tmp_path / "pcm.wav", x, 8000)
    subprocess.run(
        ["sox", str(tmp_path / "pcm.wav"), "-e", encoding, "-b", "8", str(tmp_path / "g711.wav")],
        check=True,
    )
    y, rate = read_wav(tmp_path / "g711.wav")
    assert rate == 8000 and abs(len(y) - len(x)) <= 1
    assert float(np.max(np.abs(y[: len(x)] - x[: len(y)]))) < 0.03


async def test_a_simulated_line_puts_the_agents_voice_through_the_codec() -> None:
    from voice_agent.transports.base import TransportBase
    from voice_agent.voice.line import LineSink, simulates_line, through_line

    class Speaker:  # a stand-in sink (a fake): keeps what it is given
        sample_rate, played_samples, paused = 8000, 0, False
        got: list[np.ndarray] = []

        async def write(self, samples: np.ndarray) -> None:
            self.got.append(samples)

    x = _tone(800)
    sink = LineSink(Speaker(), "mulaw")  # type: ignore[arg-type]
    await sink.write(x)
    assert np.array_equal(Speaker.got[0], g711.round_trip(x, "mulaw"))
    assert np.array_equal(through_line(x, "alaw"), g711.round_trip(x, "alaw"))
    assert simulates_line("mulaw", TransportBase()) and not simulates_line("none", TransportBase())

    class PhoneWire(TransportBase):
        carries_line_codec = True

    assert not simulates_line("mulaw", PhoneWire())
