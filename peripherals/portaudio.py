"""PortAudio's lifecycle for ``peripherals.audio_io``: its start and restart, the devices,
and opening and closing a stream, each bounded in time.

A hung audio server (alive but not answering) or a dead one whose ALSA plugin deadlocked
PortAudio's callback thread (hostile8, session 13) blocks PortAudio's calls for ever. So
``start_stream`` opens a stream on a daemon thread and gives up after ``OPEN_S``;
``close_stream`` stops and closes one on a daemon thread, waits ``CLOSE_S`` for it and then
abandons it with a warning; PortAudio's own start (the import of sounddevice) and restart
(``rescan_devices``) run on one and are waited for at most ``INIT_S``. The event loop and the
process's exit never wait on PortAudio. While a stream is abandoned PortAudio is left alone
(never restarted nor terminated); one that returns after all gives it back.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

from peripherals.audio import PeripheralError
from peripherals.daemon_threads import DaemonThreads

__all__ = [
    "CLOSE_S",
    "INIT_S",
    "OPEN_S",
    "AudioDeviceError",
    "DeviceInfo",
    "DeviceKind",
    "close_stream",
    "find_device",
    "list_devices",
    "rescan_devices",
    "start_portaudio",
    "start_stream",
]

log = logging.getLogger(__name__)

DeviceKind = Literal["input", "output"]

# How long ``aclose`` waits for PortAudio to stop and close a stream before abandoning it
# (s): a stuck one never does; a healthy one on PulseAudio's ALSA plugin took up to 2.0 s
# to stop (84 streams at load 8; the 2 s of session 13 abandoned healthy microphones).
CLOSE_S = 5.0
# How long ``start`` waits for PortAudio to open and start a stream (s): PulseAudio did in
# 5-33 ms (64 streams at load 8); a hung (not dead) audio server blocks it for ever.
OPEN_S = 5.0
# How long PortAudio may take to start or restart (s): it asks the audio server for its
# devices, 0.3-0.6 s on PulseAudio here (load 9); a hung server held it 120 s, after which
# it listed no devices at all (session 15).
INIT_S = 5.0

_NOT_ANSWERING = "the audio server is not answering (restart it; PulseAudio: 'pulseaudio -k')"

_PORTAUDIO_HINT = (
    "PortAudio is not available: install it with 'apt-get install libportaudio2' "
    "(Debian/Ubuntu) or 'brew install portaudio' (macOS), and sounddevice with "
    "pip install 'sounddevice>=0.4.6,<0.6'"
)


class AudioDeviceError(PeripheralError):
    """An audio device is missing, ambiguous or cannot be opened, or PortAudio is absent."""


# the jobs closing or opening a stream that PortAudio did not finish in time: kept alive,
# and PortAudio is left alone (never restarted nor terminated) until they all return
_abandoned: list[asyncio.Future[Any]] = []
# PortAudio's start (importing sounddevice) or its latest restart: running or done
_starting: _Start | None = None
_starting_lock = threading.Lock()


def _stop_and_close(stream: Any) -> None:
    stream.stop()  # stop before close: older PortAudio hangs closing a running stream
    stream.close()


async def close_stream(stream: Any, what: str) -> None:
    """Stop and close ``stream`` off the event loop, waiting at most ``CLOSE_S``; a stream
    that does not close in time is abandoned with a warning (see the module's docstring).
    Once one is, PortAudio is not terminated at exit (it would wait for that stream)."""

    closing = asyncio.get_running_loop().run_in_executor(
        DaemonThreads("portaudio-close"), _stop_and_close, stream
    )
    try:
        await asyncio.wait_for(asyncio.shield(closing), CLOSE_S)
    except TimeoutError:
        _abandon(closing)
        log.warning(
            "PortAudio did not close the %s within %.0f s (its audio server is probably "
            "gone); the stream is abandoned, and PortAudio cannot list the devices anew "
            "until it returns: restart voice-agent to use audio devices again",
            what,
            CLOSE_S,
        )


def _abandon(stuck: asyncio.Future[Any]) -> None:
    """Keep ``stuck`` (the job closing a stream, or opening one) alive and leave PortAudio
    alone while it runs: restarting or terminating it (sounddevice does at exit) would wait
    for it. A job that returns after all gives PortAudio back: an open on a hung
    PulseAudio returned 0.06 s after the server went on (SIGCONT), or failed by itself
    after libpulse's 30 s, and PortAudio then opened and restarted as before (session 15).
    A close stuck on a dead server's plugin never returns (hostile8)."""
    exit_handler = getattr(_sd(), "_exit_handler", None)  # sounddevice's Pa_Terminate
    if not _abandoned and exit_handler is not None:
        atexit.unregister(exit_handler)
    _abandoned.append(stuck)

    def returned(job: asyncio.Future[Any]) -> None:
        if job in _abandoned:
            _abandoned.remove(job)
            if not _abandoned and exit_handler is not None:
                atexit.register(exit_handler)

    stuck.add_done_callback(returned)


async def start_stream(
    kind: DeviceKind,
    device: DeviceInfo,
    rate: int,
    blocksize: int,
    callback: Any,
    finished: Callable[[], None],
) -> Any:
    """``_open_stream`` off the event loop, waiting at most ``OPEN_S`` for it; then
    ``AudioDeviceError`` (a hung audio server blocks PortAudio's open for ever, and the
    event loop and the console's Ctrl-C with it). A stream that opens after all is stopped
    and closed again on its thread: whoever asked for it was told it failed."""
    lock = threading.Lock()
    given_up = False
    opened: list[Any] = []

    def open_unless_given_up() -> Any:
        stream = _open_stream(kind, device, rate, blocksize, callback, finished)
        with lock:
            if not given_up:
                opened.append(stream)
                return stream
        _stop_and_close(stream)
        return None

    opening = asyncio.get_running_loop().run_in_executor(
        DaemonThreads("portaudio-open"), open_unless_given_up
    )
    try:
        return await asyncio.wait_for(asyncio.shield(opening), OPEN_S)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with lock:
            given_up = True
            late = opened[0] if opened else None
        if late is not None and isinstance(exc, TimeoutError):
            return late  # it opened as the wait ended
        if late is not None:  # cancelled as it opened: nobody will close it but this
            DaemonThreads("portaudio-close").submit(_stop_and_close, late)
        opening.add_done_callback(lambda job: job.cancelled() or job.exception())  # retrieved
        if isinstance(exc, asyncio.CancelledError):
            raise
        _abandon(opening)
        raise AudioDeviceError(
            f"cannot open {kind} device {device.index} {device.name!r}: PortAudio did not "
            f"return within {OPEN_S:.0f} s: {_NOT_ANSWERING}"
        ) from None


def rescan_devices() -> bool:
    """Make PortAudio list the devices anew (it lists them once, when it starts: an audio
    server started since is not seen). Returns False, changing nothing, while a stream is
    abandoned: restarting PortAudio would wait for that stream. Raises
    ``AudioDeviceError`` if the restart does not return within ``INIT_S``; it goes on on
    its thread, and PortAudio's next use waits for it (``_sd``)."""
    global _starting
    sd = _sd()
    if _abandoned:
        return False
    with _starting_lock:
        _starting = _Start(lambda: _restart(sd))
    _starting.result("list the audio devices anew")
    return True


def _restart(sd: ModuleType) -> ModuleType:
    sd._terminate()
    sd._initialize()
    return sd


def _sd() -> ModuleType:
    """sounddevice, once PortAudio has started; ``AudioDeviceError`` if PortAudio is missing
    or did not start (or restart) within ``INIT_S``. Importing sounddevice starts PortAudio,
    which asks the audio server for its devices: the first call imports it on a thread of
    its own. A start given up on goes on there, and the next call waits for it again."""
    return _portaudio_start().result("start")


async def start_portaudio() -> None:
    """Start PortAudio (see ``_sd``) without blocking the event loop, waiting at most
    ``INIT_S``: in a running loop, call it before building an ``AudioInput`` or
    ``AudioOutput`` (their device lookup needs PortAudio started)."""
    await _portaudio_start().wait("start")


def _portaudio_start() -> _Start:
    """PortAudio's start or latest restart, starting it if nothing did yet."""
    global _starting
    with _starting_lock:
        if _starting is None:
            _starting = _Start(_import_sounddevice)
        return _starting


class _Start:
    """PortAudio starting (``start``: the import of sounddevice) or restarting, on a daemon
    thread of its own, waited for at most ``INIT_S`` each time.

    While PortAudio starts, sounddevice points the process's standard error at /dev/null
    (ALSA and JACK print their probing there) and points it back only when the start
    returns. A start given up on points it back here: else the message saying why goes
    nowhere (the console exited 2 without a word: standard error was still /dev/null)."""

    def __init__(self, start: Callable[[], ModuleType]) -> None:
        self._lock = threading.Lock()
        try:
            self._stderr: int | None = os.dup(2)
        except OSError:  # the process has no standard error
            self._stderr = None
        self._job = DaemonThreads("portaudio-start").submit(start)
        self._job.add_done_callback(self._returned)

    def result(self, what: str) -> ModuleType:
        """sounddevice once the start returned; ``AudioDeviceError`` after ``INIT_S``."""
        try:
            return self._job.result(timeout=INIT_S)
        except FutureTimeout:
            raise self._given_up(what) from None

    async def wait(self, what: str) -> None:
        """``result`` without blocking the event loop."""
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._job)), INIT_S)
        except TimeoutError:
            raise self._given_up(what) from None

    def _given_up(self, what: str) -> AudioDeviceError:
        with self._lock:
            if self._stderr is not None:
                os.dup2(self._stderr, 2)
        return AudioDeviceError(f"PortAudio did not {what} within {INIT_S:.0f} s: {_NOT_ANSWERING}")

    def _returned(self, job: Future[ModuleType]) -> None:
        with self._lock:
            if self._stderr is not None:
                os.close(self._stderr)
                self._stderr = None


def _import_sounddevice() -> ModuleType:
    try:
        import sounddevice
    except OSError as exc:  # the PortAudio shared library is missing
        raise AudioDeviceError(f"{_PORTAUDIO_HINT} ({exc})") from exc
    except ImportError as exc:
        raise AudioDeviceError(_PORTAUDIO_HINT) from exc
    return sounddevice


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_sample_rate: float
    is_default_input: bool
    is_default_output: bool


def list_devices() -> list[DeviceInfo]:
    """All PortAudio devices (possibly none). Raises ``AudioDeviceError``
    when PortAudio itself is missing."""
    sd = _sd()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_in, default_out = sd.default.device
    except sd.PortAudioError as exc:
        raise AudioDeviceError(f"cannot query audio devices: {exc}") from exc
    return [
        DeviceInfo(
            index=int(d["index"]),
            name=str(d["name"]),
            hostapi=str(hostapis[d["hostapi"]]["name"]),
            max_input_channels=int(d["max_input_channels"]),
            max_output_channels=int(d["max_output_channels"]),
            default_sample_rate=float(d["default_samplerate"]),
            is_default_input=int(d["index"]) == default_in,
            is_default_output=int(d["index"]) == default_out,
        )
        for d in devices
    ]


def find_device(spec: int | str | None, kind: DeviceKind) -> DeviceInfo:
    """The device for ``spec``: an index, a case-insensitive name substring,
    or None for the default ``kind`` device. Raises ``AudioDeviceError``
    listing the usable devices when there is no such device (or no default)."""
    devices = list_devices()
    usable = [
        d
        for d in devices
        if (d.max_input_channels if kind == "input" else d.max_output_channels) > 0
    ]
    listing = ", ".join(f"{d.index}: {d.name!r}" for d in usable) or "none"
    if spec is None:
        for d in usable:
            if d.is_default_input if kind == "input" else d.is_default_output:
                return d
        raise AudioDeviceError(
            f"there is no default {kind} device (usable {kind} devices: {listing})"
        )
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        index = int(spec)
        for d in usable:
            if d.index == index:
                return d
        raise AudioDeviceError(
            f"no {kind} device with index {index} (usable {kind} devices: {listing})"
        )
    matches = [d for d in usable if spec.lower() in d.name.lower()]
    exact = [d for d in matches if d.name.lower() == spec.lower()]
    if exact:
        return exact[0]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise AudioDeviceError(
            f"no {kind} device named like {spec!r} (usable {kind} devices: {listing})"
        )
    names = ", ".join(repr(d.name) for d in matches)
    raise AudioDeviceError(
        f"{spec!r} matches several {kind} devices ({names}); give more of the name or an index"
    )


def _open_stream(
    kind: str,
    device: DeviceInfo,
    rate: int,
    blocksize: int,
    callback: Any,
    finished: Callable[[], None] | None = None,
) -> Any:
    """Open and start a mono float32 sounddevice stream; ``AudioDeviceError`` if it cannot.
    ``finished`` is called (in PortAudio's thread) when the stream stops, also by itself:
    its device or the audio server went away."""
    sd = _sd()
    cls = sd.InputStream if kind == "input" else sd.OutputStream
    try:
        stream = cls(
            samplerate=rate,
            blocksize=blocksize,
            device=device.index,
            channels=1,
            dtype="float32",
            callback=callback,
            finished_callback=finished,
        )
        stream.start()
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioDeviceError(
            f"cannot open {kind} device {device.index} {device.name!r} at {rate} Hz mono: {exc}"
        ) from exc
    return stream
