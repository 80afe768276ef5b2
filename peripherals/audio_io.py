"""Local audio devices with sounddevice (PortAudio): ``AudioInput``, ``AudioOutput``.

PortAudio calls back from its own thread; the pure, thread-safe buffers here
(``FrameQueue`` for input, ``PlayoutBuffer`` for output) are what the
callbacks touch, and the asyncio side waits on them through
``loop.call_soon_threadsafe``.

A device or audio server that goes away is not always reported: when a PulseAudio
daemon dies, the ALSA pulse plugin can deadlock PortAudio's callback thread (it waits
for the plugin's mainloop lock while the mainloop waits for a buffer that thread
holds), so the stream neither calls back nor says it finished, and stopping or closing
it blocks for ever (hostile8, session 13). So a started stream that calls back no
block for ``STALL_S`` counts as lost, and ``aclose`` stops and closes a stream on a
daemon thread of its own, waits ``CLOSE_S`` for it and then abandons it with a
warning; ``start`` likewise opens a stream on a daemon thread and gives up after
``OPEN_S`` (an audio server that hangs without dying), and PortAudio's own start (the
import of sounddevice) and restart (``rescan_devices``) run on one and are waited for at
most ``INIT_S``: the event loop and the process's exit never wait on PortAudio.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np

from peripherals.audio import AudioChunk, PeripheralError, to_float32
from peripherals.daemon_threads import DaemonThreads

log = logging.getLogger(__name__)

DeviceKind = Literal["input", "output"]

# A started stream calls back every block (20 ms here); one that has called back nothing
# for this long lost its device or audio server, reported or not (s). Generous: PortAudio's
# thread outlives a busy machine's stalls, and a call need not end on a hiccup.
STALL_S = 5.0
# The longest gap in a stream passed on as silence (s): a longer jump in the stream's time
# stamps is a clock glitch, not audio the speaker played or the microphone lost.
MAX_GAP_S = 2
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


async def _close_stream(stream: Any, what: str) -> None:
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


async def _start_stream(
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


async def _wait_unless_stalled(
    ready: asyncio.Event, blocks: Callable[[], int], lost: Callable[[], AudioDeviceError]
) -> None:
    """Wait for ``ready``; raise ``lost()`` if the stream called back no block (``blocks``
    counts them) for ``STALL_S`` meanwhile."""
    while not ready.is_set():
        seen = blocks()
        try:
            async with asyncio.timeout(STALL_S):
                await ready.wait()
        except TimeoutError:
            if blocks() == seen:
                raise lost() from None


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


class _StreamGaps:
    """The samples a stream's time stamps say went by between two callbacks beyond the
    block handed over: an output underrun (the device ran dry and played silence) or an
    input overflow (the device captured samples nobody took, and they were dropped).

    A starved machine calls PortAudio's callbacks late; every such gap that is not passed
    on shifts an echo canceller's alignment for good, its far end against its near end
    (0.3-1.4 s after a 1.5 s stall at load 13, echo13)."""

    def __init__(self, rate: int, block_size: int) -> None:
        self._rate = rate
        self._block_size = block_size
        self._next: float | None = None  # the time stamp the next block should carry (s)

    def gap(self, stamp: float, frames: int) -> int:
        """Samples missing before the block of ``frames`` stamped ``stamp`` (s): 0 for the
        first block, a stamp of 0 (a host without them) or a block on time or late by
        less than a block (the stamps' jitter, about 15 ms); at most ``MAX_GAP_S``."""
        expected, self._next = self._next, stamp + frames / self._rate
        if expected is None or stamp <= 0:
            return 0
        late = round((stamp - expected) * self._rate)
        return min(late, MAX_GAP_S * self._rate) if late > self._block_size else 0


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


# -- input ------------------------------------------------------------------


class FrameQueue:
    """Bounded FIFO of audio frames for one consumer; on overflow the OLDEST
    frame is dropped and counted (``dropped``): fresh audio matters more than
    stale audio for a conversation. ``put_nowait`` and ``get`` run in the
    event loop's thread."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._frames: deque[np.ndarray] = deque()
        self._ready = asyncio.Event()
        self._error: Exception | None = None
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def put_nowait(self, frame: np.ndarray) -> None:
        if len(self._frames) >= self.maxsize:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)
        self._ready.set()

    def get_nowait(self) -> np.ndarray | None:
        """The oldest frame, or None when empty."""
        if not self._frames:
            return None
        frame = self._frames.popleft()
        if not self._frames:
            self._ready.clear()
        return frame

    def fail(self, error: Exception) -> None:
        """No frame will come any more: ``get`` raises ``error`` once the queue is empty."""
        self._error = error
        self._ready.set()

    async def get(self) -> np.ndarray:
        """Wait for and return the oldest frame (raises what ``fail`` was given, once empty)."""
        while True:
            frame = self.get_nowait()
            if frame is not None:
                return frame
            if self._error is not None:
                raise self._error
            await self._ready.wait()


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


class AudioInput:
    """Microphone input in fixed frames of ``frame_ms`` at ``sample_rate``, float32.

    Frames go into a ``FrameQueue`` of ``queue_s`` seconds; if the consumer
    falls behind, the oldest frames are dropped (``dropped`` counts them).
    ``overflows`` counts PortAudio's own input overflows. Use ``async with``,
    or ``start()`` then ``aclose()``.

    ``process(frame) -> frame``, when given, runs on each frame in PortAudio's
    callback thread, before the frame is queued: an echo canceller or a
    half-duplex gate must see the microphone when it is captured, in step with
    the speaker's callback, not when a busy event loop gets to the frame (a
    loop stalled for 0.7 s let the WebRTC canceller's echo through). It must be
    short and thread-safe; if it raises, ``read`` raises ``AudioDeviceError``.
    When the device dropped samples before a block (PortAudio flags an input overflow
    on a starved machine, and the stream's time stamps jump ahead of the samples),
    ``process`` first gets that stretch as silence, so that an echo canceller's near end
    stays in step with its far end (the speaker went on playing meanwhile); what it
    returns for that silence is not queued: nobody captured it.
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        sample_rate: int = 16000,
        frame_ms: int = 20,  # 20 ms: WebRTC/telephony framing; VAD re-frames as it needs
        queue_s: float = 2.0,  # consumer may stall this long before audio is dropped (seconds)
        process: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.device = find_device(device, "input")
        self._rate = sample_rate
        self._process = process
        self._failure: Exception | None = None  # what ``process`` raised, for ``read``
        self.frame_size = sample_rate * frame_ms // 1000
        self._queue = FrameQueue(max(1, int(queue_s * 1000 / frame_ms)))
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.overflows = 0
        self._blocks = 0  # callbacks so far: a stream that stops calling back is lost
        self._closed = False
        self._gaps = _StreamGaps(sample_rate, self.frame_size)  # the device's overflows

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    async def start(self) -> None:
        """Open and start the stream (raises ``AudioDeviceError`` if it cannot, also when
        PortAudio does not return within ``OPEN_S``)."""
        self._loop = asyncio.get_running_loop()
        self._stream = await _start_stream(
            "input", self.device, self._rate, self.frame_size, self._callback, self._finished
        )

    def _finished(self) -> None:
        """PortAudio stopped the stream: by ``aclose``, or because the device or the audio
        server went away (hostile8: the reader waited for ever, the call in silence)."""
        loop = self._loop
        if self._closed or loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._queue.fail, self._lost_error("stopped delivering audio"))

    def _lost_error(self, what: str) -> AudioDeviceError:
        return AudioDeviceError(
            f"the microphone {self.device.name!r} {what}: the device or the audio server went away"
        )

    def _callback(self, indata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        self._blocks += 1
        if status.input_overflow:
            self.overflows += 1
        gap = self._gaps.gap(float(time.inputBufferAdcTime), frames)
        # Only a block PortAudio flags holds a loss: on PulseAudio's ALSA plugin the stamps
        # jump by up to 28 ms in a stream's first second with nothing lost.
        lost = gap if status.input_overflow else 0
        frame = indata[:, 0].copy()
        if self._process is not None and self._failure is None:
            try:
                if lost:
                    self._process(np.zeros(lost, dtype=frame.dtype))
                frame = self._process(frame)
            except Exception as exc:  # for the reader: this thread must go on (it is PortAudio's)
                self._failure = exc
        loop = self._loop
        if len(frame) and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._queue.put_nowait, frame)

    async def read(self) -> AudioChunk:
        """The next frame (waits for it); raises ``AudioDeviceError`` if ``process`` failed or
        the device went away (after the frames it delivered before), also when PortAudio
        does not say so: no frame for ``STALL_S``."""
        while True:
            blocks = self._blocks
            try:
                async with asyncio.timeout(STALL_S):
                    frame = await self._queue.get()
                break
            except TimeoutError:
                if self._blocks == blocks:  # else the loop was late, not the device
                    self._queue.fail(self._lost_error(f"delivered no audio for {STALL_S:.0f} s"))
        if self._failure is not None:
            raise AudioDeviceError(
                f"processing the microphone audio failed: {self._failure!r}"
            ) from self._failure
        return AudioChunk(frame, self._rate)

    async def frames(self) -> AsyncIterator[AudioChunk]:
        """Frames until closed."""
        while not self._closed:
            yield await self.read()

    async def aclose(self) -> None:
        """Stop and close the stream (idempotent); abandons it after ``CLOSE_S``."""
        if self._closed:
            return
        self._closed = True
        if self._stream is not None:
            await _close_stream(self._stream, f"microphone {self.device.name!r}")

    async def __aenter__(self) -> AudioInput:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# -- output -----------------------------------------------------------------


class PlayoutBuffer:
    """Thread-safe bounded sample FIFO between ``write`` (producer) and
    ``read_into`` (the audio callback). Counts the samples actually played.
    While ``paused``, ``read_into`` outputs silence and consumes nothing."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._chunks: deque[np.ndarray] = deque()
        self._offset = 0  # samples of _chunks[0] already played
        self._buffered = 0
        self._lock = threading.Lock()
        self.played = 0  # samples handed to the device since creation
        self.paused = False  # set by the event loop, read by the callback: a bool store is atomic

    @property
    def buffered(self) -> int:
        with self._lock:
            return self._buffered

    def space(self) -> int:
        with self._lock:
            return self.capacity - self._buffered

    def write(self, samples: np.ndarray) -> int:
        """Queue as many of ``samples`` as fit; returns how many were taken."""
        with self._lock:
            n = min(len(samples), self.capacity - self._buffered)
            if n > 0:
                self._chunks.append(np.array(samples[:n], dtype=np.float32))
                self._buffered += n
            return n

    def read_into(self, out: np.ndarray) -> int:
        """Fill ``out`` with queued samples, then zeros; returns the real samples."""
        with self._lock:
            filled = 0
            while filled < len(out) and self._chunks and not self.paused:
                head = self._chunks[0]
                take = min(len(out) - filled, len(head) - self._offset)
                out[filled : filled + take] = head[self._offset : self._offset + take]
                filled += take
                self._offset += take
                if self._offset == len(head):
                    self._chunks.popleft()
                    self._offset = 0
            out[filled:] = 0.0
            self._buffered -= filled
            self.played += filled
            return filled

    def clear(self) -> int:
        """Drop everything queued; returns how many samples were dropped."""
        with self._lock:
            dropped = self._buffered
            self._chunks.clear()
            self._offset = 0
            self._buffered = 0
            return dropped


class AudioOutput:
    """Speaker output from a bounded buffer of ``buffer_s`` seconds.

    ``write`` waits while the buffer is full (back-pressure). ``clear()``
    drops everything queued: the next callback outputs silence.
    ``played_samples`` counts samples handed to the device (add
    ``latency_s`` for what has left the speaker). ``on_drained`` is called in
    the event loop each time the buffer runs dry after audio was played;
    ``wait_drained()`` waits for that. ``pause()`` makes the next callback
    output silence without consuming (within one block); ``resume()`` plays on
    from the same sample. ``on_played(block)``, when given, is
    called in PortAudio's callback thread with a copy of every block handed to
    the device (silence included), e.g. an echo canceller's or a
    ``HalfDuplexGate``'s ``note_played``: it sees the speaker when it plays,
    even while the event loop is busy. It must be short and thread-safe; what
    it raises is logged (once) and playback goes on. When the device ran dry
    between two callbacks (a starved machine: its stream time stamps jump ahead
    of the samples handed over), ``on_played`` first gets the silence the
    device played in that gap, so what it sees stays in step with the speaker
    (an echo canceller fed only the blocks lost alignment by every underrun:
    0.3-1.4 s after a 1.5 s stall at load 13).
    """

    def __init__(
        self,
        device: int | str | None = None,
        *,
        sample_rate: int = 24000,
        block_ms: int = 20,  # callback period; also the granularity of clear() (ms)
        buffer_s: float = 1.0,  # write() waits beyond this much queued audio (seconds)
        on_drained: Callable[[], None] | None = None,
        on_played: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        self.device = find_device(device, "output")
        self._on_played = on_played
        self._rate = sample_rate
        self.block_size = sample_rate * block_ms // 1000
        self._buffer = PlayoutBuffer(int(buffer_s * sample_rate))
        self._on_drained = on_drained
        self._stream: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._space = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.underflows = 0
        self._closed = False
        self._blocks = 0  # callbacks so far: a stream that stops calling back is lost
        self._lost: AudioDeviceError | None = None  # the stream stopped by itself, or stalled
        self._gone = asyncio.Event()  # set with ``_lost``
        self._on_played_failed = False
        self._gaps = _StreamGaps(sample_rate, self.block_size)  # the device's underruns

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def played_samples(self) -> int:
        return self._buffer.played

    @property
    def buffered_samples(self) -> int:
        return self._buffer.buffered

    @property
    def latency_s(self) -> float:
        """PortAudio's reported output latency (seconds; 0 before start)."""
        return float(self._stream.latency) if self._stream is not None else 0.0

    async def start(self) -> None:
        """Open and start the stream (raises ``AudioDeviceError`` if it cannot, also when
        PortAudio does not return within ``OPEN_S``)."""
        self._loop = asyncio.get_running_loop()
        self._stream = await _start_stream(
            "output", self.device, self._rate, self.block_size, self._callback, self._finished
        )

    def _finished(self) -> None:
        """PortAudio stopped the stream: by ``aclose``, or because the device or the audio
        server went away; then ``write`` and ``wait_drained`` raise instead of waiting for
        ever (hostile8)."""
        loop = self._loop
        if self._closed or loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._lose, "stopped playing")

    def _lose(self, what: str) -> AudioDeviceError:
        """Note (in the event loop) that the speaker is gone: every wait on it ends."""
        if self._lost is None:
            self._lost = AudioDeviceError(
                f"the speaker {self.device.name!r} {what}: the device or the audio server went away"
            )
            self._space.set()
            self._drained.set()
            self._gone.set()
        return self._lost

    def _stalled(self) -> AudioDeviceError:
        return self._lose(f"took no audio for {STALL_S:.0f} s")

    def _callback(self, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        self._blocks += 1
        if status.output_underflow:
            self.underflows += 1
        before = self._buffer.buffered
        self._buffer.read_into(outdata[:, 0])
        if self._on_played is not None:
            try:
                gap = self._gaps.gap(float(time.outputBufferDacTime), frames)
                if gap:
                    self._on_played(np.zeros(gap, dtype=outdata.dtype))
                self._on_played(outdata[:, 0].copy())
            except Exception:  # playback must go on (this is PortAudio's thread); said once
                if not self._on_played_failed:
                    self._on_played_failed = True
                    log.exception("on_played failed; the speaker keeps playing without it")
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._space.set)
        if before > 0 and self._buffer.buffered == 0:
            loop.call_soon_threadsafe(self._signal_drained)

    def _signal_drained(self) -> None:
        if self._buffer.buffered == 0:
            self._drained.set()
            if self._on_drained is not None:
                self._on_drained()

    async def write(self, samples: np.ndarray) -> None:
        """Queue float32 or int16 samples, waiting for room as needed (``AudioDeviceError``
        once the device went away)."""
        if self._closed:
            raise PeripheralError("AudioOutput is closed")
        x = to_float32(samples)
        while len(x):
            if self._lost is not None:
                raise self._lost
            self._space.clear()
            taken = self._buffer.write(x)
            if taken:
                self._drained.clear()
            x = x[taken:]
            if len(x):
                await _wait_unless_stalled(self._space, lambda: self._blocks, self._stalled)

    def clear(self) -> int:
        """Stop at once: drop all queued audio; returns the samples dropped."""
        dropped = self._buffer.clear()
        self._space.set()
        self._drained.set()
        return dropped

    @property
    def paused(self) -> bool:
        return self._buffer.paused

    def pause(self) -> None:
        """Silence from the next callback on, keeping queued audio and its position (idempotent)."""
        self._buffer.paused = True

    def resume(self) -> None:
        """Play queued audio again from where it paused (idempotent)."""
        self._buffer.paused = False

    async def wait_drained(self) -> None:
        """Wait until everything written has been handed to the device (``AudioDeviceError``
        if the device went away meanwhile, or took no audio for ``STALL_S``)."""
        await _wait_unless_stalled(self._drained, lambda: self._blocks, self._stalled)
        if self._lost is not None:
            raise self._lost

    async def wait_lost(self) -> AudioDeviceError:
        """Wait until the speaker is known to be gone (it stopped by itself, or a wait on it
        stalled); returns why."""
        await self._gone.wait()
        assert self._lost is not None
        return self._lost

    async def aclose(self) -> None:
        """Stop and close the stream, dropping queued audio (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.clear()
        if self._stream is not None:
            await _close_stream(self._stream, f"speaker {self.device.name!r}")

    async def __aenter__(self) -> AudioOutput:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def livekit_apm_available() -> bool:
    """Is livekit's WebRTC AudioProcessingModule (echo cancellation) importable?"""
    try:
        from livekit.rtc import AudioProcessingModule  # noqa: F401
    except (ImportError, OSError):  # package absent, or its FFI library cannot load
        return False
    return True
