"""A simulated phone line: the caller's audio and the agent's voice through G.711.

``voice.line_codec: mulaw`` (or ``alaw``) makes a local transport (the console,
a recording) sound like a phone call: every caller frame and every sample of
the agent's voice takes a trip through the codec, at the transport's rate
(``voice.sample_rate: 8000`` for the telephone band). Transports that carry a
real phone line (a media stream, LiveKit SIP) already have the codec on the
wire; :func:`simulates_line` says whether to add it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from peripherals import g711
from peripherals.audio import AudioSink, to_float32

from .sinks import SinkWrapper


def simulates_line(law: str, transport: Any) -> bool:
    """Add the codec for ``transport``: asked for, and the transport is not a phone line."""
    return law != "none" and not getattr(transport, "carries_line_codec", False)


def through_line(frame: np.ndarray, law: str) -> np.ndarray:
    """One caller frame as the line would deliver it."""
    return g711.round_trip(to_float32(frame), law)  # type: ignore[arg-type]


class LineSink(SinkWrapper):
    """An :class:`AudioSink` whose audio goes through the codec before it is played."""

    def __init__(self, inner: AudioSink, law: str) -> None:
        super().__init__(inner)
        self._law = law

    async def write(self, samples: np.ndarray) -> None:
        await self._inner.write(through_line(samples, self._law))
