"""When the caller's silence began: the one place that turns playout into a time.

The speech output knows how much of what it was handed the caller has still to hear
(:meth:`~voice_agent.output.SpeechOutput.unplayed_s`: the audio in the sink, an estimate
for text not yet synthesised). Every transport speaks through that seam (the console's
speaker, the file transport's stream clock, LiveKit, the phone's media stream: their
sinks count what was played), so :class:`CallerSilence` works for all of them alike.

It turns the count into a time on the clock: :meth:`since` is in the future while the
agent's speech still plays (when it will end), and once it has played, when it ended.
Hold phrases for a slow LLM are timed from it (:func:`voice_agent.llm_watch.watch_silence`),
so a long sentence heard for seconds is not taken for silence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fsm import Clock


class CallerSilence:
    """When the caller stopped (or will stop) hearing the agent, on ``clock``.

    ``unplayed_s()`` is how many seconds of the agent's speech the caller has still to
    hear. Tell it (:meth:`handed_over`) whenever speech was handed to the output, and
    :meth:`starts_now` when the output says everything has been played, or the caller's
    own turn just ended. Implements :class:`voice_agent.llm_watch.Hearing`.
    """

    def __init__(self, clock: Clock, unplayed_s: Callable[[], float]) -> None:
        self._clock = clock
        self._unplayed_s = unplayed_s
        self._ends = clock.now()
        self.answered_at = clock.now()

    def since(self) -> float:
        """When the caller's silence begins: now plus what is left to hear while speech
        plays; once it has played, when it ended (the last reading of it, at most now)."""
        now = self._clock.now()
        left = self._unplayed_s()
        if left > 0:
            self._ends = now + left
        elif self._ends > now:  # an estimate said later, but all of it has been heard
            self._ends = now
        return self._ends

    def handed_over(self, *, added: bool, hold: bool = False) -> None:
        """Speech was handed to the output (``added``: the caller has more to hear now; text
        kept for the rest of its sentence is not yet speech). Anything but a hold phrase
        for a slow model ends the caller's wait (``answered_at``)."""
        self.since()  # while it is there to be read (it may be over before the next look)
        if added and not hold:
            self.answered_at = self._clock.now()

    def starts_now(self) -> None:
        """The caller hears nothing of the agent from now on."""
        self._ends = self._clock.now()


@dataclass(frozen=True)
class SilenceFrom:
    """``silence`` with the caller's silence counted from ``start`` at the earliest: for a
    mode that does not hold the line while tools run (the sync baseline), a request's
    hold phrases count from the request, not from the silence the tools left before it."""

    silence: CallerSilence
    start: float

    def since(self) -> float:
        return max(self.start, self.silence.since())

    @property
    def answered_at(self) -> float:
        return self.silence.answered_at
