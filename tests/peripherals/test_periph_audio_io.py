"""Audio devices: listing, selection errors, input overflow policy, playout buffer."""

from __future__ import annotations

import asyncio
import builtins

import numpy as np
import pytest

from peripherals import audio_io, portaudio
from peripherals.audio_io import (
    AudioDeviceError,
    AudioInput,
    AudioOutput,
    FrameQueue,
    PlayoutBuffer,
    find_device,
    list_devices,
)


def test_list_devices_returns_devices_or_raises_a_clear_error() -> None:
    try:
        devices = list_devices()
    except AudioDeviceError as exc:
        assert "libportaudio2" in str(exc)
        return
    assert all(d.max_input_channels >= 0 and d.name for d in devices)


def test_unknown_device_name_is_an_audio_device_error() -> None:
    with pytest.raises(AudioDeviceError, match="no-such-device-xyz"):
        find_device("no-such-device-xyz", "output")
    with pytest.raises(AudioDeviceError):
        AudioInput("no-such-device-xyz")
    with pytest.raises(AudioDeviceError):
        AudioOutput(9999)


def test_missing_portaudio_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(__import__("sys").modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(portaudio, "_starting", None)  # PortAudio not started yet
    with pytest.raises(AudioDeviceError, match="apt-get install libportaudio2"):
        list_devices()


async def test_input_queue_drops_the_oldest_frames_and_counts_them() -> None:
    queue = FrameQueue(maxsize=3)
    for i in range(5):
        queue.put_nowait(np.full(4, i, dtype=np.float32))
    assert queue.dropped == 2 and len(queue) == 3
    assert [int((await queue.get())[0]) for _ in range(3)] == [2, 3, 4]
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.put_nowait(np.full(4, 9, dtype=np.float32))
    assert int((await waiter)[0]) == 9


def test_playout_buffer_counts_played_samples_and_clear_silences_at_once() -> None:
    buf = PlayoutBuffer(capacity=10)
    assert buf.write(np.ones(6, dtype=np.float32)) == 6
    assert buf.write(np.ones(6, dtype=np.float32)) == 4  # bounded
    out = np.empty(4, dtype=np.float32)
    assert buf.read_into(out) == 4 and np.all(out == 1) and buf.played == 4
    assert buf.clear() == 6 and buf.buffered == 0
    assert buf.read_into(out) == 0 and np.all(out == 0)
    assert buf.played == 4
    buf.write(np.full(2, 0.5, dtype=np.float32))
    assert buf.read_into(out) == 2 and out.tolist() == [0.5, 0.5, 0.0, 0.0]


def test_livekit_apm_probe_answers_without_raising() -> None:
    assert audio_io.livekit_apm_available() in (True, False)
