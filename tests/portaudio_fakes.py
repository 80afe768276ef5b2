"""A fake of a PortAudio stream whose audio server died under it, for ``peripherals.audio_io``.

What the real one did (hostile8, session 13, gdb on the hung test): the PulseAudio daemon
was SIGKILLed; PortAudio's callback thread blocked in the ALSA pulse plugin
(``pa_mutex_lock`` under ``snd_pcm_poll_descriptors_revents``) while the plugin's
mainloop thread, holding that lock, waited in ``pa_memimport_free`` for a buffer the
callback thread held. So the stream stopped calling back without calling its finished
callback, and ``Pa_StopStream`` (``pthread_join`` of that thread) never returned.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from peripherals import audio_io, portaudio

FAKE_DEVICE = portaudio.DeviceInfo(
    index=7,
    name="fake pulse",
    hostapi="ALSA",
    max_input_channels=1,
    max_output_channels=1,
    default_sample_rate=48000.0,
    is_default_input=True,
    is_default_output=True,
)


class StuckPortAudioStream:
    """Calls back only when told (``call_back``); then, like the stuck thread, nothing:
    not its finished callback, and ``stop``/``close`` block until ``release``."""

    def __init__(
        self, kind: str, blocksize: int, callback: Any, finished: Any, rate: int = 48000
    ) -> None:
        self.kind = kind
        self.blocksize = blocksize
        self.rate = rate
        self.stream_time = 1.0  # the stream's time stamp of the next block (s)
        self.callback = callback
        self.finished = finished
        self.stop_called = threading.Event()
        self._released = threading.Event()

    def call_back(
        self,
        blocks: int,
        *,
        late_s: float = 0.0,
        flagged: bool | None = None,
        audio: np.ndarray | None = None,
    ) -> None:
        """``blocks`` callbacks, as PortAudio's thread makes them while the server is up;
        the first stamped ``late_s`` later than the last one's end (a speaker ran dry
        meanwhile, a microphone's samples were dropped) and, unless ``flagged`` is False,
        flagged as an underflow or overflow. A speaker's blocks carry a DAC time, a
        microphone's an ADC time; a microphone captures ``audio`` (``blocks`` blocks of
        it), else 0.1."""
        self.stream_time += late_s
        late = late_s > 0 if flagged is None else flagged
        for i in range(blocks):
            if audio is None:
                data = np.full((self.blocksize, 1), 0.1, dtype=np.float32)
            else:
                data = audio[i * self.blocksize : (i + 1) * self.blocksize, None].astype(np.float32)
            if self.kind == "input":
                status = SimpleNamespace(input_overflow=late, output_underflow=False)
                time = SimpleNamespace(outputBufferDacTime=0.0, inputBufferAdcTime=self.stream_time)
            else:
                status = SimpleNamespace(input_overflow=False, output_underflow=late)
                time = SimpleNamespace(outputBufferDacTime=self.stream_time, inputBufferAdcTime=0.0)
            self.callback(data, self.blocksize, time, status)
            self.stream_time += self.blocksize / self.rate
            late = False

    def stop(self) -> None:
        self.stop_called.set()
        self._released.wait()

    def close(self) -> None:
        self._released.wait()

    def release(self) -> None:
        """Let a blocked ``stop``/``close`` return (the test's cleanup; PortAudio never does)."""
        self._released.set()


def install_stuck_streams(monkeypatch: pytest.MonkeyPatch) -> list[StuckPortAudioStream]:
    """Make ``AudioInput``/``AudioOutput`` find ``FAKE_DEVICE`` and open stuck streams (the
    list they are appended to); streams abandoned meanwhile are forgotten afterwards."""
    streams: list[StuckPortAudioStream] = []

    def open_stream(
        kind: str, device: Any, rate: int, blocksize: int, callback: Any, finished: Any = None
    ) -> StuckPortAudioStream:
        stream = StuckPortAudioStream(kind, blocksize, callback, finished, rate)
        streams.append(stream)
        return stream

    monkeypatch.setattr(audio_io, "find_device", lambda spec, kind: FAKE_DEVICE)
    monkeypatch.setattr(portaudio, "_open_stream", open_stream)
    monkeypatch.setattr(portaudio, "_abandoned", [])
    return streams
