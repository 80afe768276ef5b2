"""Self-hearing suppression without echo cancellation (pure, no I/O)."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from peripherals.audio import Clock, MonotonicClock, rms_dbfs


class HalfDuplexGate:
    """Suppresses microphone frames that are probably the agent's own voice.

    Tell the gate what the speaker plays with ``note_played(samples)`` (as it
    is played). While playback is recent — within ``tail_s`` of the last
    played audio, which covers room echo and output latency — a mic frame is
    admitted only if its RMS level exceeds the loudest played level of the
    last ``window_s`` by ``margin_db`` (the user talking over the agent:
    barge-in). Outside playback every frame is admitted.

    The levels compared are digital (dBFS of the played samples vs. dBFS of
    the mic frame), so the margin assumes the echo reaches the mic no louder
    than it was played; raise ``margin_db`` for loud speakers close to the
    mic. ``gate(frame)`` returns the frame or zeros of the same length, so the
    VAD's stream time keeps running.

    ``note_played`` and ``gate`` may be called from two threads at once (the
    output and input callbacks, so that both happen when the audio does).
    """

    def __init__(
        self,
        *,
        margin_db: float = 6.0,  # barge-in must be this much louder than playback (dB)
        tail_s: float = 0.3,  # echo and output latency after the last played audio (seconds)
        window_s: float = 0.5,  # how far back the played reference level looks (seconds)
        clock: Clock | None = None,
    ) -> None:
        self.margin_db = margin_db
        self.tail_s = tail_s
        self.window_s = window_s
        self._clock = clock or MonotonicClock()
        self._played: deque[tuple[float, float]] = deque()  # (time, dBFS) of played audio
        self._last_played: float | None = None
        self._lock = threading.Lock()  # the two audio callback threads share _played
        self.suppressed = 0  # mic frames suppressed so far
        self.admitted = 0  # mic frames admitted so far

    def note_played(self, samples: np.ndarray) -> None:
        """Record audio that the speaker is playing now (silence counts too)."""
        level = rms_dbfs(samples)
        with self._lock:
            now = self._clock.now()
            self._played.append((now, level))
            self._last_played = now
            while self._played and self._played[0][0] < now - self.window_s:
                self._played.popleft()

    def playback_active(self) -> bool:
        """True while played audio is within ``tail_s`` of now."""
        return (
            self._last_played is not None and self._clock.now() - self._last_played <= self.tail_s
        )

    def reference_dbfs(self) -> float | None:
        """The loudest played level within ``window_s`` (None outside playback)."""
        if not self.playback_active():
            return None
        horizon = self._clock.now() - self.window_s
        with self._lock:
            levels = [level for t, level in self._played if t >= horizon]
        return max(levels) if levels else None

    def admit(self, frame: np.ndarray) -> bool:
        """Should this mic frame reach the VAD/ASR?"""
        reference = self.reference_dbfs()
        ok = reference is None or rms_dbfs(frame) >= reference + self.margin_db
        if ok:
            self.admitted += 1
        else:
            self.suppressed += 1
        return ok

    def gate(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` if admitted, else zeros of the same shape and dtype."""
        return frame if self.admit(frame) else np.zeros_like(frame)
