"""A telephony provider's media stream over a WebSocket, as a :class:`~.base.Transport`.

Providers (Twilio Media Streams, Telnyx, Vonage) stream a call's audio over a
WebSocket: the caller's frames in (base64 8 kHz G.711 in JSON for Twilio and
Telnyx, binary 16-bit linear PCM frames for Vonage), the agent's frames out,
plus marks (the provider tells when the audio before a mark has been played),
a *clear* (drop the audio it still buffers: a barge-in), keypad digits and the
end of the stream. What differs between providers is only the serialization,
so a provider is a small :class:`Dialect` — it parses inbound text (and
binary) frames into the neutral values below and formats the three outbound
messages — plus a REST client for call control (:class:`CallControlApi`).
:class:`MediaStreamTransport` and :class:`MediaStreamSink` are the same for
all of them.

Codecs (:func:`codec_for`): G.711 μ-law / A-law by :mod:`peripherals.g711`
(the standard ``audioop`` module; the ``audioop-lts`` package on Python
3.13+), and 16-bit little-endian linear PCM (``l16``) at the stream's rate.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from fsm import Clock, MonotonicClock, move_on_after
from peripherals import g711
from peripherals.audio import to_float32

from ..events import DtmfReceived
from ..voice.tasks import TaskTracker
from .base import CallControlUnsupported, TransportBase

log = logging.getLogger(__name__)

FRAME_MS = 20  # outbound frame: what providers send and expect (160 bytes of 8 kHz μ-law)
# How far ahead of the caller's ear the sink sends audio (ms). The provider buffers it.
# It absorbs network jitter and stalls of this process's event loop (several calls'
# VAD, codec and pacing share one loop; on a loaded 2-core machine stalls of 100-200 ms
# were seen, and with 100 ms of lead they became gaps inside words). It costs nothing at a
# barge-in: a pause or clear drops the provider's buffer at once with its `clear` message.
LEAD_MS = 300
# Sample rates a stream may declare (Hz): telephony is 8 kHz, wide-band 16 kHz; anything
# outside this is a malformed start, not a call.
MIN_RATE, MAX_RATE = 8000, 48000


class DialectError(ValueError):
    """An inbound message is not valid for the provider's protocol."""


# ---------------------------------------------------------------- neutral inbound messages
@dataclass(frozen=True)
class StreamConnected:
    """The WebSocket carries a media stream (the provider's greeting)."""


@dataclass(frozen=True)
class StreamStarted:
    """The stream's metadata: call and stream ids, the caller's parameters, the audio format."""

    call_id: str
    stream_id: str
    encoding: str  # "mulaw" | "alaw" | "l16"
    sample_rate: int
    custom: dict[str, str] = field(default_factory=dict)
    caller: str = ""
    called: str = ""
    account: str = ""

    def __post_init__(self) -> None:
        # built by a dialect from what the provider sent: a rate no codec or resampler can
        # use (0 made the call fail later, mid-answer) is a malformed message here
        if not MIN_RATE <= self.sample_rate <= MAX_RATE:
            raise DialectError(
                f"unusable sample rate {self.sample_rate} Hz ({MIN_RATE}-{MAX_RATE})"
            )
        if self.encoding not in ("mulaw", "alaw", "l16"):
            raise DialectError(f"unsupported audio encoding {self.encoding!r}")


def parse_message(dialect: Dialect, data: str | bytes) -> StreamMessage | None:
    """``dialect``'s parse of one inbound frame; whatever goes wrong in it is a
    :class:`DialectError` (a dialect reading a provider's JSON meets strings where it
    expects objects, ``"fast"`` for a number, JSON nested 100,000 deep: each raised its
    own exception, which ended the call)."""
    try:
        if isinstance(data, bytes):
            return dialect.parse_binary(data)
        return dialect.parse(data)
    except DialectError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed frame, whatever the dialect met
        raise DialectError(f"{type(exc).__name__}: {str(exc)[:200]}") from exc


@dataclass(frozen=True)
class MediaArrived:
    """Encoded audio of the caller (``payload``, raw bytes)."""

    payload: bytes


@dataclass(frozen=True)
class DigitPressed:
    """The caller pressed a keypad key."""

    digit: str


@dataclass(frozen=True)
class MarkPlayed:
    """The audio sent before the mark ``name`` has been played (or was cleared)."""

    name: str


@dataclass(frozen=True)
class StreamStopped:
    """The stream ended: the caller hung up, or the call left the stream."""


StreamMessage = (
    StreamConnected | StreamStarted | MediaArrived | DigitPressed | MarkPlayed | StreamStopped
)


Outbound = str | bytes  # a text frame, or a binary one
Send = Callable[[Outbound], Awaitable[None]]


class Dialect(Protocol):
    """One provider's wire format: inbound frames parsed, outbound ones formatted."""

    name: str
    whole_frames: bool  # every outbound audio frame must be exactly FRAME_MS long (padded)
    hangup_on_close: bool  # the provider ends a call by closing the socket (no `stop`)

    def parse(self, text: str) -> StreamMessage | None:
        """A text frame as the neutral message, None for one the agent does not need;
        :class:`DialectError` for malformed JSON or missing fields."""

    def parse_binary(self, data: bytes) -> StreamMessage | None:
        """A binary frame (Vonage's audio); :class:`DialectError` where none are expected."""

    def media(self, stream_id: str, payload: bytes) -> Outbound:
        """An outbound audio frame (``payload`` already encoded)."""

    def mark(self, stream_id: str, name: str) -> str:
        """An outbound mark (comes back as :class:`MarkPlayed` once played)."""

    def clear(self, stream_id: str) -> str:
        """Drop the audio the provider still buffers."""


class CallControlApi(Protocol):
    """A provider's REST calls for an ongoing call."""

    async def transfer(self, call_id: str, destination: str) -> None: ...

    async def hang_up(self, call_id: str) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class DtmfApi(Protocol):
    """A provider whose REST API plays DTMF into a live call (Telnyx, Vonage)."""

    async def send_dtmf(self, call_id: str, digits: str) -> None: ...


# ---------------------------------------------------------------- codec
class Codec(Protocol):
    """Audio on the wire: ``decode`` bytes → float32, ``encode`` samples → bytes."""

    encoding: str

    def decode(self, payload: bytes) -> np.ndarray: ...

    def encode(self, samples: np.ndarray) -> bytes: ...


class G711:
    """G.711 at 8 kHz (:mod:`peripherals.g711`): ``decode`` bytes → float32, ``encode`` → bytes."""

    def __init__(self, encoding: str) -> None:
        if encoding not in ("mulaw", "alaw"):
            raise DialectError(f"unsupported audio encoding {encoding!r} (mulaw or alaw)")
        self.encoding = encoding
        self.law: g711.Law = "mulaw" if encoding == "mulaw" else "alaw"

    def decode(self, payload: bytes) -> np.ndarray:
        return g711.decode(payload, self.law)

    def encode(self, samples: np.ndarray) -> bytes:
        return g711.encode(to_float32(samples), self.law)


class Linear16:
    """16-bit signed little-endian linear PCM (Vonage's ``audio/l16``)."""

    encoding = "l16"

    def decode(self, payload: bytes) -> np.ndarray:
        if len(payload) % 2:
            raise DialectError(f"a 16-bit PCM frame has an even length (got {len(payload)})")
        return np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0

    def encode(self, samples: np.ndarray) -> bytes:
        x = np.clip(to_float32(samples), -1.0, 32767 / 32768)
        return (np.round(x * 32768.0)).astype("<i2").tobytes()


def codec_for(encoding: str) -> Codec:
    """The codec of a stream's ``encoding`` (``mulaw``, ``alaw``, ``l16``)."""
    if encoding == "l16":
        return Linear16()
    return G711(encoding)


# ---------------------------------------------------------------- keypad tones
_DTMF_FREQS = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip
DTMF_TONE_S = 0.1  # each key's tone (ITU-T Q.24 accepts >= 40 ms); gap of the same length
DTMF_PAUSE_S = 0.5  # "w" in a digit string


def dtmf_tones(digits: str, rate: int) -> np.ndarray:
    """In-band keypad tones for ``digits`` (0-9 * # A-D, w = half-second pause), float32."""
    t = np.arange(int(DTMF_TONE_S * rate)) / rate
    gap = np.zeros(int(DTMF_TONE_S * rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    for d in digits:
        if d == "w":
            parts.append(np.zeros(int(DTMF_PAUSE_S * rate), dtype=np.float32))
            continue
        low, high = _DTMF_FREQS[d]
        tone = 0.35 * (np.sin(2 * math.pi * low * t) + np.sin(2 * math.pi * high * t))
        parts += [tone.astype(np.float32), gap]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


# ---------------------------------------------------------------- agent audio out
@dataclass
class _Sent:
    start: float  # clock time its first sample reaches the caller's ear
    samples: np.ndarray


class MediaStreamSink:
    """The agent's voice as outbound media frames, paced in real time (an ``AudioSink``).

    Written audio is sent in ``FRAME_MS`` frames at most ``LEAD_MS`` ahead of
    when the caller hears it, so the provider's buffer stays short. A mark
    follows each written chunk (a sentence). ``played_samples`` counts the
    samples whose time to be heard has passed. ``clear()`` drops everything
    not yet heard and sends the provider's *clear* at once; ``pause()``
    sends *clear* too but keeps the unheard audio (the frames in the
    provider's buffer come back to the front of the queue) and
    ``resume()`` sends it again from there.
    """

    def __init__(
        self,
        send: Send,
        dialect: Dialect,
        stream_id: str,
        codec: Codec,
        *,
        sample_rate: int = 8000,
        clock: Clock | None = None,
    ) -> None:
        self._send = send
        self._dialect = dialect
        self._stream_id = stream_id
        self._codec = codec
        self._rate = sample_rate
        self._frame = sample_rate * FRAME_MS // 1000
        self._clock = clock or MonotonicClock()
        self._pending: deque[np.ndarray | str] = deque()  # audio, or a mark name after a chunk
        self._pending_samples = 0
        self._sent: deque[_Sent] = deque()  # sent, not yet wholly heard
        self._played = 0
        self._paused = False
        self._closed = False
        self._control: list[str] = []  # clear messages to send before any more media
        self._wake = asyncio.Event()
        self._tasks = TaskTracker("media-sink")
        self._sender: asyncio.Task[None] | None = None
        self._marks = 0
        self.marks_sent: dict[str, float] = {}
        self.marks_played: dict[str, float] = {}
        self.clears_sent: list[float] = []  # clock times a clear went out

    # ---- AudioSink
    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def played_samples(self) -> int:
        self._settle(self._clock.now())
        return self._played

    @property
    def paused(self) -> bool:
        return self._paused

    async def write(self, samples: np.ndarray) -> None:
        if self._closed:
            raise RuntimeError("MediaStreamSink is closed")
        x = np.array(to_float32(samples), dtype=np.float32)
        if not len(x):
            return
        self._marks += 1
        self._pending.append(x)
        self._pending.append(f"a{self._marks}")
        self._pending_samples += len(x)
        self._ensure_sender()
        self._wake.set()

    def clear(self) -> int:
        """Drop everything unheard and tell the provider to drop its buffer; returns samples dropped."""
        now = self._clock.now()
        self._settle(now)
        dropped = self._pending_samples + sum(len(s.samples) for s in self._sent)
        if self._sent:
            self._played += self._heard_of_first(now)
            dropped -= self._heard_of_first(now)
        had_remote = bool(self._sent)
        self._pending.clear()
        self._pending_samples = 0
        self._sent.clear()
        if had_remote:
            self._request_clear(now)
        return dropped

    def pause(self) -> None:
        """Silence at once (the provider drops its buffer); unheard audio waits here."""
        if self._paused:
            return
        self._paused = True
        now = self._clock.now()
        self._settle(now)
        if not self._sent:
            return
        heard = self._heard_of_first(now)
        unheard = [s.samples for s in self._sent]
        unheard[0] = unheard[0][heard:]
        self._played += heard
        self._sent.clear()
        for chunk in reversed(unheard):
            if len(chunk):
                self._pending.appendleft(chunk)
                self._pending_samples += len(chunk)
        self._request_clear(now)

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._wake.set()

    async def wait_drained(self) -> None:
        while self._pending_samples or self._sent:
            self._settle(self._clock.now())
            await asyncio.sleep(FRAME_MS / 1000)

    async def aclose(self) -> None:
        self._closed = True
        self._pending.clear()
        self._pending_samples = 0
        await self._tasks.aclose()

    # ---- marks
    def mark_played(self, name: str) -> None:
        """The provider echoed mark ``name``."""
        self.marks_played.setdefault(name, self._clock.now())

    # ---- internals
    def _heard_of_first(self, now: float) -> int:
        first = self._sent[0]
        return min(len(first.samples), max(0, int((now - first.start) * self._rate)))

    def _settle(self, now: float) -> None:
        while self._sent:
            first = self._sent[0]
            if first.start + len(first.samples) / self._rate > now:
                return
            self._sent.popleft()
            self._played += len(first.samples)

    def _request_clear(self, now: float) -> None:
        self._control.append(self._dialect.clear(self._stream_id))
        self.clears_sent.append(now)
        self._ensure_sender()
        self._wake.set()

    def _ensure_sender(self) -> None:
        if self._sender is None and not self._closed:
            self._sender = self._tasks.spawn(self._send_loop(), "send")

    def _play_end(self, now: float) -> float:
        if not self._sent:
            return now
        last = self._sent[-1]
        return max(now, last.start + len(last.samples) / self._rate)

    def _take_marks(self) -> list[str]:
        """The marks at the head of the pending audio (those whose audio was all sent)."""
        marks: list[str] = []
        while self._pending and isinstance(head := self._pending[0], str):
            marks.append(head)
            self._pending.popleft()
        return marks

    def _take_frame(self) -> np.ndarray:
        """Up to one frame of the pending audio (it starts with audio), up to the next mark."""
        parts: list[np.ndarray] = []
        need = self._frame
        while self._pending and need > 0:
            head = self._pending[0]
            if isinstance(head, str):
                break  # the audio before the mark goes first
            take = head[:need]
            parts.append(take)
            need -= len(take)
            if len(take) == len(head):
                self._pending.popleft()
            else:
                self._pending[0] = head[len(take) :]
        audio = np.concatenate(parts)
        self._pending_samples -= len(audio)
        if self._dialect.whole_frames and len(audio) < self._frame:  # pad the last frame
            audio = np.concatenate([audio, np.zeros(self._frame - len(audio), np.float32)])
        return audio

    async def _send_loop(self) -> None:
        lead = LEAD_MS / 1000
        while True:
            while self._control:
                await self._send(self._control.pop(0))
            now = self._clock.now()
            self._settle(now)
            if self._paused or not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            if marks := self._take_marks():
                for name in marks:
                    self.marks_sent[name] = now
                    await self._send(self._dialect.mark(self._stream_id, name))
                continue  # a pause or clear may have come while they went out
            end = self._play_end(now)
            if end - now >= lead:
                # move_on_after, not asyncio.wait_for: on Python 3.11 wait_for swallows a
                # cancellation that lands as its timeout fires, and aclose() then waited
                # forever for this task (seen when a queued call hung up mid hold message)
                async with move_on_after(self._clock, end - now - lead + 0.001):
                    await self._wake.wait()
                self._wake.clear()
                continue
            # taken and counted as sent with no wait in between: a pause while it goes
            # out puts it back, a clear drops it (before, a pause while a mark went out
            # lost the frame taken before it, and left it counted as unheard)
            audio = self._take_frame()
            self._sent.append(_Sent(end, audio))
            await self._send(self._dialect.media(self._stream_id, self._codec.encode(audio)))


# ---------------------------------------------------------------- the transport
class MediaStreamTransport(TransportBase):
    """One call's media stream: caller audio from inbound media, the agent's voice out,
    keypad digits as ``DtmfReceived``, transfer and hang-up through the provider's REST API,
    DTMF through it too where it has a call (:class:`DtmfApi`), else in-band (tones in
    the agent's audio).

    The server feeds every inbound message to :meth:`receive`; :meth:`disconnected`
    ends the call when the socket closes without a ``stop``.
    """

    name = "phone"

    def __init__(
        self,
        send: Send,
        dialect: Dialect,
        started: StreamStarted,
        *,
        control: CallControlApi | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.dialect = dialect
        self.started = started
        self.codec = codec_for(started.encoding)
        self._rate = started.sample_rate
        self._control = control
        self.sink = MediaStreamSink(
            send, dialect, started.stream_id, self.codec, sample_rate=self._rate, clock=clock
        )
        self._inbound: asyncio.Queue[np.ndarray | None] = asyncio.Queue()
        self._early_digits: list[str] = []
        self._ended = False
        self._end_reason = "caller hung up"
        self.digits: list[str] = []

    @property
    def input_rate(self) -> int:
        return self._rate

    @property
    def output(self) -> MediaStreamSink:
        return self.sink

    def meta(self) -> dict[str, object]:
        """What the ledger's ``SessionStarted`` records about the call (no secrets)."""
        s = self.started
        return {
            "provider": self.dialect.name,
            "call_id": s.call_id,
            "stream_id": s.stream_id,
            "caller": s.caller,
            "called": s.called,
            "custom_parameters": dict(s.custom),
            "audio": f"{s.encoding}/{s.sample_rate}",
        }

    def attach(self, call: object) -> None:
        super().attach(call)  # type: ignore[arg-type]
        for digit in self._early_digits:
            self._post_digit(digit)
        self._early_digits.clear()

    def receive(self, message: StreamMessage) -> None:
        """Handle one inbound message (from the server's reader)."""
        if self._ended:
            return
        if isinstance(message, MediaArrived):
            self._inbound.put_nowait(self.codec.decode(message.payload))
        elif isinstance(message, DigitPressed):
            self.digits.append(message.digit)
            if self._call is None:
                self._early_digits.append(message.digit)
            else:
                self._post_digit(message.digit)
        elif isinstance(message, MarkPlayed):
            self.sink.mark_played(message.name)
        elif isinstance(message, StreamStopped):
            self._finish("caller hung up")

    def disconnected(self) -> None:
        """The socket closed without a ``stop`` (how Vonage ends a call)."""
        self._finish("caller hung up" if self.dialect.hangup_on_close else "disconnected")

    def _finish(self, reason: str) -> None:
        if not self._ended:
            self._ended = True
            self._end_reason = reason
            self._inbound.put_nowait(None)

    def _post_digit(self, digit: str) -> None:
        assert self._call is not None
        self._call.post(DtmfReceived(digit=digit))

    async def audio_in(self) -> AsyncIterator[np.ndarray]:
        while True:
            frame = await self._inbound.get()
            if frame is None:
                return
            yield frame

    async def transfer(self, destination: str) -> None:
        if self._control is None:
            raise CallControlUnsupported("no provider REST API configured (phone.account_sid)")
        await self._control.transfer(self.started.call_id, destination)

    async def hang_up(self) -> None:
        if self._control is None:
            raise CallControlUnsupported("no provider REST API configured (phone.account_sid)")
        await self._control.hang_up(self.started.call_id)

    async def send_dtmf(self, digits: str) -> None:
        """Play keypad tones on the call: through the provider's API where it has that call
        (real DTMF events), else in-band, after what the agent is saying."""
        if isinstance(self._control, DtmfApi):
            await self._control.send_dtmf(self.started.call_id, digits)
            return
        await self.sink.write(dtmf_tones(digits, self._rate))

    async def aclose(self) -> None:
        self._finish(self._end_reason)
        await self.sink.aclose()


def b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, TypeError) as exc:
        raise DialectError(f"media payload is not base64: {exc}") from exc
