"""Local audio devices with sounddevice (PortAudio): ``AudioInput``, ``AudioOutput``.

PortAudio calls back from its own thread; the pure, thread-safe buffers here
(``FrameQueue`` for input, ``PlayoutBuffer`` for output) are what the
callbacks touch, and the asyncio side waits on them through
``loop.call_soon_threadsafe``.

A device or audio server that goes away is not always reported: when a PulseAudio
daemon dies, the ALSA pulse plugin can deadlock PortAudio's callback thread, so the
stream neither calls back nor says it finished (hostile8, session 13). So a started
stream that calls back no block for ``STALL_S`` counts as lost. Opening, closing and
PortAudio's own start are bounded in time by ``peripherals.portaudio``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from peripherals.audio import AudioChunk, PeripheralError, to_float32
from peripherals.portaudio import (
    AudioDeviceError,
    DeviceInfo,
    DeviceKind,
    close_stream,
    find_device,
    list_devices,
    rescan_devices,
    start_portaudio,
    start_stream,
)

__all__ = [
    "MAX_GAP_S",
    "STALL_S",
    "AudioDeviceError",
    "AudioInput",
    "AudioOutput",
    "DeviceInfo",
    "DeviceKind",
    "FrameQueue",
    "PlayoutBuffer",
    "find_device",
    "list_devices",
    "livekit_apm_available",
    "rescan_devices",
    "start_portaudio",
]

log = logging.getLogger(__name__)

# A started stream calls back every block (20 ms here); one that has called back nothing
# for this long lost its device or audio server, reported or not (s). Generous: PortAudio's
# thread outlives a busy machine's stalls, and a call need not end on a hiccup.
STALL_S = 5.0
# The longest gap in a stream passed on as silence (s): a longer jump in the stream's time
# stamps is a clock glitch, not audio the speaker played or the microphone lost.
MAX_GAP_S = 2


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
        self._stream = await start_stream(
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
            await close_stream(self._stream, f"microphone {self.device.name!r}")

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
        self._stream = await start_stream(
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
            await close_stream(self._stream, f"speaker {self.device.name!r}")

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
