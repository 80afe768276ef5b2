"""The transport seam: what a way into the engine implements.

A *transport* carries one call between a caller and the engine: a sound
device (``console``), a WAV file (``run``), a phone provider's media stream
(``phone serve``), a LiveKit room. The engine never knows which one it talks
to; :func:`voice_agent.transports.call.run_call` wires any
:class:`Transport` to the same pipeline (VAD + streaming ASR in, the agent's
FSM and ledger, sentence TTS out) and drives it.

What a transport provides:

- **audio in**: :meth:`Transport.audio_in` yields the caller's mono audio at
  :attr:`Transport.input_rate` (the source's own rate: 8 kHz for a phone,
  16 kHz for LiveKit or the console), float32 or int16 frames of any length,
  and returns when the call is over from the caller's side (hang-up, end of
  file, disconnect); :attr:`Transport.end_reason` then says why. It may be
  iterated again after an earlier iteration was closed (a queued call's
  audio is drained by the worker's waiting room, then the call reads on).
- **agent audio out**: :attr:`Transport.output`, a
  :class:`peripherals.audio.AudioSink` at the rate the transport wants
  (``output.sample_rate``). Its ``clear()`` must silence the caller *at
  once* (a barge-in; a media stream sends its ``clear`` message), and its
  ``played_samples`` must count what the caller was actually played, since
  the ledger keeps exactly the heard words of an interrupted answer.
- **notifications out**: :meth:`Transport.state_changed` receives every
  change of the agent's floor (``listening``, ``user_speaking``,
  ``thinking``, ``speaking``, ``ended``) as the FSM makes it (the FSM's
  transition notifications, never polling), and
  :meth:`Transport.transcript_updated` the caller's partial and final
  transcripts and the agent's planned and heard text.
- **call-control actions in**: a transport is a
  :class:`voice_agent.call_control.CallController`: ``transfer(destination)``,
  ``hang_up()``, ``send_dtmf(digits)`` with whatever its provider offers, or
  :class:`CallControlUnsupported` (the defaults of :class:`TransportBase`).
- **events in**: a transport that receives keypad digits posts
  ``DtmfReceived`` through the :class:`CallHandle` it was given in
  :meth:`Transport.attach`, which also lets a transport that moves its own
  stream clock (the file transport) see whether the engine has settled.

:class:`TransportBase` gives the optional parts no-op defaults. A transport
owns its devices or sockets and releases them in ``aclose`` (idempotent).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from fsm import Event
from peripherals.audio import AudioSink


@dataclass(frozen=True, kw_only=True)
class AgentStateChanged:
    """The agent's floor changed from ``previous`` to ``state`` at clock time ``t``."""

    previous: str
    state: str
    t: float


@dataclass(frozen=True, kw_only=True)
class TranscriptUpdated:
    """A transcript segment was created or updated.

    ``role`` ``"user"``: the caller's words (``final`` once recognised in full).
    ``role`` ``"agent"``: the agent's text; ``final=False`` when it was planned
    (sent to speech), ``final=True`` with what the caller actually heard once
    it finished or was cut off (``interrupted``). ``segment_id`` is stable
    across the updates of one segment.
    """

    role: Literal["user", "agent"]
    segment_id: str
    text: str
    final: bool
    t: float
    interrupted: bool = False


class CallControlUnsupported(Exception):
    """The transport has no way to carry out this call-control action."""


@runtime_checkable
class CallHandle(Protocol):
    """What a transport may ask of the running call (given in :meth:`Transport.attach`)."""

    def post(self, event: Event) -> None:
        """Hand an event to the agent (``DtmfReceived``)."""

    def settled(self) -> bool:
        """No event queued, no generation, tool call or synthesis working towards output."""

    def done(self) -> bool:
        """The agent is idle: nothing queued, playing, running, and the caller is silent."""

    def poll_output(self) -> None:
        """Let the speech output post the playout events its sink's progress allows now."""


class Transport(Protocol):
    """One call's way in and out (see the module documentation)."""

    name: str
    realtime: bool  # False: the stream clock waits for the engine (no preemptive pause events)

    @property
    def input_rate(self) -> int: ...

    @property
    def output(self) -> AudioSink: ...

    @property
    def end_reason(self) -> str: ...

    def audio_in(self) -> AsyncIterator[np.ndarray]: ...

    def attach(self, call: CallHandle) -> None: ...

    def state_changed(self, change: AgentStateChanged) -> None: ...

    def transcript_updated(self, update: TranscriptUpdated) -> None: ...

    async def transfer(self, destination: str) -> None: ...

    async def hang_up(self) -> None: ...

    async def send_dtmf(self, digits: str) -> None: ...

    async def aclose(self) -> None: ...


class TransportBase:
    """Defaults for the optional parts of :class:`Transport` (subclass and override)."""

    name = "transport"
    realtime = True
    # True for a transport whose audio already crossed a phone network (G.711 on the wire),
    # or where a simulated line makes no sense: voice.line_codec is not applied to it.
    carries_line_codec = False
    _end_reason = "caller hung up"
    _call: CallHandle | None = None

    @property
    def end_reason(self) -> str:
        return self._end_reason

    def attach(self, call: CallHandle) -> None:
        self._call = call

    def state_changed(self, change: AgentStateChanged) -> None:
        """Ignored by default."""

    def transcript_updated(self, update: TranscriptUpdated) -> None:
        """Ignored by default."""

    async def transfer(self, destination: str) -> None:
        raise CallControlUnsupported(f"the {self.name} transport cannot transfer a call")

    async def hang_up(self) -> None:
        raise CallControlUnsupported(f"the {self.name} transport cannot hang up")

    async def send_dtmf(self, digits: str) -> None:
        raise CallControlUnsupported(f"the {self.name} transport cannot send DTMF")

    async def aclose(self) -> None:
        """Nothing to release by default."""
