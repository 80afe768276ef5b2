"""Audio devices whose PortAudio thread is stuck after the audio server died (hostile8,
session 13): the loss is reported though PortAudio never says so, and closing returns
though PortAudio's stop never does (``portaudio_fakes`` describes what the real one did).

On virtual time: ``STALL_S`` passes at once; the close's ``CLOSE_S`` follows real time
while the closing thread is blocked (``fsm.AutojumpClock``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from portaudio_fakes import StuckPortAudioStream

from peripherals import portaudio
from peripherals.audio_io import AudioDeviceError, AudioInput, AudioOutput


@pytest.fixture
def unregistered(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., Any]]:
    """What was taken off the interpreter's exit handlers (nothing really is)."""
    taken: list[Callable[..., Any]] = []
    monkeypatch.setattr(atexit, "unregister", taken.append)
    return taken


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> list[Callable[..., Any]]:
    """What was put back on the interpreter's exit handlers (nothing really is)."""
    given: list[Callable[..., Any]] = []
    monkeypatch.setattr(atexit, "register", given.append)
    return given


async def test_a_microphone_that_stops_calling_back_is_lost_after_its_frames(
    stuck_streams: list[StuckPortAudioStream],
) -> None:
    mic = AudioInput("fake", sample_rate=16000)
    await mic.start()
    stuck_streams[0].call_back(
        3
    )  # then the server dies and the thread sticks: no finished callback
    for _ in range(3):
        assert len((await mic.read()).samples) == mic.frame_size
    with pytest.raises(AudioDeviceError, match="microphone 'fake pulse' delivered no audio.*went"):
        await mic.read()
    with pytest.raises(AudioDeviceError):  # and so on: the reader never waits for ever
        await mic.read()


async def test_closing_a_stuck_microphone_returns_abandons_it_and_keeps_portaudio_at_exit(
    stuck_streams: list[StuckPortAudioStream],
    unregistered: list[Callable[..., Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    mic = AudioInput("fake", sample_rate=16000)
    await mic.start()
    stuck_streams[0].call_back(1)
    with caplog.at_level(logging.WARNING, logger="peripherals.portaudio"):
        await mic.aclose()  # before: Pa_StopStream in the event loop, blocked for ever
    assert stuck_streams[0].stop_called.is_set()
    assert "did not close the microphone 'fake pulse'" in caplog.text
    assert "abandoned" in caplog.text
    # Pa_Terminate would wait for the stuck stream: the process could never exit
    import sounddevice

    assert unregistered == [sounddevice._exit_handler]
    assert portaudio.rescan_devices() is False
    await mic.aclose()  # idempotent


async def test_a_stuck_close_that_returns_after_all_gives_portaudio_back(
    stuck_streams: list[StuckPortAudioStream],
    unregistered: list[Callable[..., Any]],
    registered: list[Callable[..., Any]],
) -> None:
    speaker = AudioOutput("fake", sample_rate=24000)
    await speaker.start()
    await speaker.aclose()  # abandoned after CLOSE_S
    assert portaudio.rescan_devices() is False
    stuck_streams[0].release()  # its audio server answers again: the stop returns
    await _until_given_back()
    import sounddevice

    assert unregistered == registered == [sounddevice._exit_handler]  # Pa_Terminate at exit


async def _until_given_back() -> None:
    """Until no job is abandoned any more (the loop runs the abandoned job's callback)."""
    async with asyncio.timeout(10):  # a safety net: the job returns at once here
        while portaudio._abandoned:
            await asyncio.sleep(0.01)


async def test_a_healthy_stream_closes_without_being_abandoned(
    stuck_streams: list[StuckPortAudioStream],
    unregistered: list[Callable[..., Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    speaker = AudioOutput("fake", sample_rate=24000)
    await speaker.start()
    stuck_streams[0].release()  # its stop returns at once, as a live stream's does
    await speaker.aclose()
    assert stuck_streams[0].stop_called.is_set()
    assert unregistered == [] and "abandoned" not in caplog.text


async def test_a_speaker_that_stops_calling_back_ends_writes_and_waits_and_says_so(
    stuck_streams: list[StuckPortAudioStream],
) -> None:
    speaker = AudioOutput("fake", sample_rate=24000, buffer_s=0.1)
    await speaker.start()
    lost = asyncio.ensure_future(speaker.wait_lost())
    stuck_streams[0].call_back(2)  # 40 ms played, then the thread sticks
    with pytest.raises(AudioDeviceError, match="speaker 'fake pulse' took no audio.*went away"):
        await speaker.write(np.zeros(24000, dtype=np.float32))  # 1 s: waits for room
    assert "took no audio" in str(await lost)  # whoever waits for the loss hears of it
    with pytest.raises(AudioDeviceError, match="went away"):
        await speaker.wait_drained()
    with pytest.raises(AudioDeviceError, match="went away"):
        await speaker.write(np.zeros(10, dtype=np.float32))


async def test_a_speaker_reported_finished_by_portaudio_is_lost(
    stuck_streams: list[StuckPortAudioStream],
) -> None:
    speaker = AudioOutput("fake", sample_rate=24000)
    await speaker.start()
    stuck_streams[0].finished()  # PortAudio's thread: the stream stopped by itself
    error = await speaker.wait_lost()
    assert "speaker 'fake pulse' stopped playing" in str(error)


@pytest.fixture
def hung_server(
    stuck_streams: list[StuckPortAudioStream], monkeypatch: pytest.MonkeyPatch
) -> Iterator[threading.Event]:
    """Opening a stream blocks, as on an audio server that hangs without dying, until
    the event is set (by the test, or at the latest HUNG_S later, a safety net for the
    code before the fix, which waited for it in the event loop)."""
    answers = threading.Event()
    open_stuck = portaudio._open_stream

    def open_stream(*args: Any) -> StuckPortAudioStream:
        answers.wait()
        return open_stuck(*args)

    monkeypatch.setattr(portaudio, "_open_stream", open_stream)
    monkeypatch.setattr(portaudio, "OPEN_S", 0.5)  # real seconds (a blocked thread): kept short
    with _answered_at_the_latest_after_hung_s(answers):
        yield answers


HUNG_S = 10.0


@contextlib.contextmanager
def _answered_at_the_latest_after_hung_s(answers: threading.Event) -> Iterator[None]:
    """Set `answers` when the block ends, or HUNG_S from now at the latest: a safety net for
    the code before the fixes, which waited for it in the event loop."""
    safety_net = threading.Timer(HUNG_S, answers.set)
    safety_net.start()
    try:
        yield
    finally:
        answers.set()
        safety_net.cancel()


class _LoopTicks:
    """Counts the event loop's 50 ms sleeps while in use (``count``): none means something
    blocked the loop."""

    def __init__(self) -> None:
        self.count = 0
        self._ticker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _LoopTicks:
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._ticker is not None
        self._ticker.cancel()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self.count += 1


@pytest.mark.realtime  # the open blocks a real thread on a real event: wall-clock seconds
async def test_opening_a_stream_on_a_hung_audio_server_fails_within_open_s_and_frees_the_loop(
    hung_server: threading.Event,
    stuck_streams: list[StuckPortAudioStream],
    unregistered: list[Callable[..., Any]],
    registered: list[Callable[..., Any]],
) -> None:
    mic = AudioInput("fake", sample_rate=16000)
    async with _LoopTicks() as ticks:
        with pytest.raises(AudioDeviceError, match=r"input device 7 'fake pulse'.*did not return"):
            await mic.start()  # before: Pa_OpenStream in the event loop, until the server answers
    assert ticks.count > 0, "the event loop was blocked while PortAudio opened the stream"
    assert not hung_server.is_set()
    # PortAudio is busy with the open for as long as the server hangs: not restarted, not
    # terminated at exit (it would wait for the open)
    import sounddevice

    assert unregistered == [sounddevice._exit_handler]
    assert portaudio.rescan_devices() is False
    hung_server.set()  # the server answers after all: the stream nobody wants is closed
    assert await asyncio.to_thread(_closed_after_all, stuck_streams)
    await mic.aclose()
    stuck_streams[0].release()  # and its close returns: nothing is stuck in PortAudio any
    await _until_given_back()  # more, so it may restart, and be terminated at exit
    assert registered == [sounddevice._exit_handler]


@pytest.mark.realtime
async def test_a_start_cancelled_while_the_server_hangs_closes_the_stream_that_opens_later(
    hung_server: threading.Event,
    stuck_streams: list[StuckPortAudioStream],
    unregistered: list[Callable[..., Any]],
) -> None:
    speaker = AudioOutput("fake", sample_rate=24000)
    starting = asyncio.ensure_future(speaker.start())
    await asyncio.sleep(0.1)  # the open is under way (OPEN_S is 0.5 s here)
    starting.cancel()  # Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await starting
    hung_server.set()  # the server answers: nobody wants the stream any more
    assert await asyncio.to_thread(_closed_after_all, stuck_streams)
    assert unregistered == []  # nothing stuck: PortAudio is still terminated at exit


def _closed_after_all(streams: list[StuckPortAudioStream]) -> bool:
    """Did the one stream opened after the waiter gave up get stopped (waits up to 5 s,
    a safety net: the open's thread stops it at once)?"""
    deadline = time.monotonic() + 5
    while not streams and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(streams) == 1 and streams[0].stop_called.wait(5)


@pytest.fixture
def hung_start(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """PortAudio's start (the import of sounddevice, which asks the audio server for its
    devices) blocks, as on an audio server that hangs without dying, until the event is
    set (by the test, or HUNG_S later: a safety net for the code before the fix)."""
    answers = threading.Event()
    import sounddevice  # already imported: the start below only waits, then returns it

    def import_on_a_hung_server() -> Any:
        answers.wait()
        return sounddevice

    monkeypatch.setattr(portaudio, "_starting", None)  # PortAudio not started yet
    monkeypatch.setattr(portaudio, "_import_sounddevice", import_on_a_hung_server)
    monkeypatch.setattr(portaudio, "INIT_S", 0.5)  # real seconds (a blocked thread): kept short
    with _answered_at_the_latest_after_hung_s(answers):
        yield answers


@pytest.mark.realtime  # the start blocks a real thread on a real event: wall-clock seconds
async def test_portaudio_starting_on_a_hung_audio_server_fails_within_init_s_and_frees_the_loop(
    hung_start: threading.Event,
) -> None:
    async with _LoopTicks() as ticks:
        with pytest.raises(
            AudioDeviceError, match=r"PortAudio did not start within .*not answering"
        ):
            await portaudio.start_portaudio()  # before: the import in the event loop, 120 s
    assert ticks.count > 0, "the event loop was blocked while PortAudio started"
    with pytest.raises(AudioDeviceError, match="did not start"):  # and so does a plain call
        portaudio.list_devices()
    assert not hung_start.is_set()
    hung_start.set()  # the server answers: the same start finishes, and is used
    assert isinstance(portaudio.list_devices(), list)
    await portaudio.start_portaudio()
