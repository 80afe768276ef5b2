"""Residual echo: what the echo canceller let through, measured and gated.

WebRTC's canceller (``peripherals.aec.WebRtcEchoCanceller``) removes 23-49 dB
of the agent's voice from the microphone when the two audio streams stay in
step. When they do not (a busy machine delays an audio callback, the echo
path's delay jumps), it passes the echo nearly whole until it has found the
new delay again, seconds later; the speech recogniser then hears the agent's
words as a caller's turn. livekit's module does not say how much echo it let
through, so :class:`ResidualEchoGate` measures it from the audio itself:

- the **echo delay**: every ``DELAY_EVERY_S``, while the agent plays, the lag
  at which the microphone (before cancellation) best matches the played audio
  over the last ``HISTORY_S`` (GCC-PHAT, which whitens both signals so the
  peak is sharp for speech);
- per 10 ms frame, the **echo correlation**: the normalised correlation of
  the canceller's output (the last ``WINDOW_S``) with the played audio at
  that delay (within ``LAG_SLACK_S``). The agent's voice coming back through
  the room correlates with what was played at the echo's delay; a caller's
  voice does not (measured: residual echo 0.46-0.83, a caller alone
  0.02-0.12, both at once in between).

A frame whose correlation reaches ``ECHO_CORRELATION`` is residual echo: it
is attenuated by ``ATTENUATION_DB`` before the VAD and the recogniser see
it. Words alone could not tell it apart (a caller reading back the agent's
digits says the agent's words); this tells it by the sound.

Status (session 6): a measured prototype, **not used by the console**. On a
250 ms jump of the echo delay it gated 56 of 99 judged frames and took the
echo after the jump from -6.0 dB to -10.2 dB (the canceller alone); a caller
talking over the agent lost 0.4-0.5 dB. Not enough to keep Whisper from
words in what is left, so it is not wired in (tests/peripherals/
test_periph_residual_echo.py prints the figures).
"""

from __future__ import annotations

import threading

import numpy as np

from peripherals.aec import EchoCanceller
from peripherals.audio import to_float32, to_int16

__all__ = ["ResidualEchoGate"]

# Seconds of played and captured audio the echo delay is estimated over (long enough
# for several words, so the agent's voice dominates the match).
HISTORY_S = 1.0
# Seconds between two estimates of the echo delay (a jump is followed within this).
DELAY_EVERY_S = 0.1
# The longest echo delay looked for (seconds): output buffering + room + input
# buffering; 60-200 ms through PulseAudio here, a jump of 150 ms under load.
MAX_DELAY_S = 0.5
# Seconds of canceller output one correlation is measured over (several pitch periods).
WINDOW_S = 0.04
# Slack around the estimated delay (seconds): the room's reflections and the estimate's
# own error.
LAG_SLACK_S = 0.004
# Normalised correlation from which a frame is residual echo (measured: residual echo
# 0.46-0.83, a caller alone 0.02-0.12, a caller over loud residual echo 0.3-0.56).
ECHO_CORRELATION = 0.45
# How much a residual-echo frame is attenuated (dB): below the VAD's threshold for the
# loudest echo the canceller passed whole (-20 dBFS here).
ATTENUATION_DB = 30.0
# Output quieter than this (dBFS) is not judged: nothing there to hear.
QUIET_DBFS = -55.0


def _energy(x: np.ndarray) -> float:
    return float(np.dot(x, x))


def _dbfs(x: np.ndarray) -> float:
    return 10.0 * float(np.log10(_energy(x) / max(len(x), 1) + 1e-20))


def gcc_phat_delay(near: np.ndarray, far: np.ndarray, max_lag: int) -> int:
    """The lag (samples, 0..max_lag) by which ``near`` best follows ``far`` (GCC-PHAT)."""
    n = 1 << int(np.ceil(np.log2(len(near) + len(far))))
    spectrum = np.fft.rfft(near, n) * np.conj(np.fft.rfft(far, n))
    spectrum /= np.abs(spectrum) + 1e-12
    correlation = np.fft.irfft(spectrum, n)
    return int(np.argmax(correlation[: max_lag + 1]))


def echo_correlation(out: np.ndarray, far: np.ndarray) -> float:
    """The largest normalised correlation of ``out`` with a window of ``far`` (as long as
    ``out``) at any offset; 0 when either is silent."""
    m = len(out)
    if len(far) < m:
        return 0.0
    out_norm = np.sqrt(_energy(out))
    if out_norm == 0.0:
        return 0.0
    dots = np.correlate(far, out, mode="valid")
    squares = np.concatenate([[0.0], np.cumsum(far * far)])
    norms = np.sqrt(np.maximum(squares[m:] - squares[:-m], 0.0)) * out_norm
    valid = norms > 1e-9
    if not valid.any():
        return 0.0
    return float(np.max(np.abs(dots[valid]) / norms[valid]))


class ResidualEchoGate:
    """An ``EchoCanceller`` that wraps another one and attenuates the residual echo it
    lets through (see the module docstring).

    Same contract as the canceller it wraps (``note_played`` / ``process_mic`` from
    two audio threads, any chunk length; output in the input's dtype). Counts:
    ``judged_frames`` (output frames loud enough to judge while the agent played)
    and ``gated_frames`` (of those, attenuated as residual echo); ``last_delay_s``
    is the echo delay last estimated (None before any).
    """

    def __init__(self, canceller: EchoCanceller) -> None:
        self._inner = canceller
        rate = canceller.sample_rate
        self._frame = int(rate * 0.01)
        self._history = int(rate * HISTORY_S)
        self._max_lag = int(rate * MAX_DELAY_S)
        self._window = int(rate * WINDOW_S)
        self._slack = int(rate * LAG_SLACK_S)
        self._delay_every = max(1, int(DELAY_EVERY_S / 0.01))
        self._gain = 10 ** (-ATTENUATION_DB / 20)
        keep = self._history + self._max_lag + self._window + self._slack
        self._far = np.zeros(keep, dtype=np.float64)  # played, newest last
        self._near = np.zeros(self._history, dtype=np.float64)  # captured, before cancelling
        self._out = np.zeros(self._window, dtype=np.float64)  # cancelled, newest last
        self._pending_near = np.zeros(0, dtype=np.float64)
        self._frames_since_delay = self._delay_every
        self._delay: int | None = None
        self._lock = threading.Lock()
        self.judged_frames = 0
        self.gated_frames = 0

    @property
    def sample_rate(self) -> int:
        return self._inner.sample_rate

    @property
    def last_delay_s(self) -> float | None:
        return None if self._delay is None else self._delay / self.sample_rate

    def note_played(self, samples: np.ndarray) -> None:
        self._inner.note_played(samples)
        x = to_float32(samples).astype(np.float64)
        with self._lock:
            self._far = np.concatenate([self._far, x])[-len(self._far) :]

    def process_mic(self, samples: np.ndarray) -> np.ndarray:
        cleaned = self._inner.process_mic(samples)
        near = to_float32(samples).astype(np.float64)
        out = to_float32(cleaned).astype(np.float64)
        with self._lock:
            # the canceller's output lags its input by less than a frame: keep the input
            # in step with what came out
            self._pending_near = np.concatenate([self._pending_near, near])
            taken, self._pending_near = (
                self._pending_near[: len(out)],
                self._pending_near[len(out) :],
            )
            gains = np.ones(len(out))
            for start in range(0, len(out), self._frame):
                end = min(start + self._frame, len(out))
                self._near = np.concatenate([self._near, taken[start:end]])[-self._history :]
                self._out = np.concatenate([self._out, out[start:end]])[-self._window :]
                if self._is_residual_echo(end - start):
                    gains[start:end] = self._gain
        if np.all(gains == 1.0):
            return cleaned
        gated = to_float32(cleaned) * gains.astype(np.float32)
        return to_int16(gated) if cleaned.dtype == np.int16 else gated

    def _is_residual_echo(self, new: int) -> bool:
        """Judge the output's newest samples (``new`` of them), updating the delay."""
        # the played audio the microphone heard so far: the far history but for the
        # samples still in the output's future (none: both advance together)
        far = self._far
        self._frames_since_delay += 1
        if self._frames_since_delay >= self._delay_every:
            self._frames_since_delay = 0
            recent_far = far[-self._history :]
            if _dbfs(recent_far) > QUIET_DBFS and _dbfs(self._near) > QUIET_DBFS:
                self._delay = gcc_phat_delay(self._near, recent_far, self._max_lag)
        if self._delay is None or _dbfs(self._out) < QUIET_DBFS:
            return False
        # the played samples that, delayed by the echo path, arrive in the output window
        end = len(far) - self._delay + self._slack
        segment = far[max(0, end - self._window - 2 * self._slack) : end]
        if _dbfs(segment) < QUIET_DBFS:
            return False  # the agent was silent then: nothing to echo
        self.judged_frames += 1
        if echo_correlation(self._out, segment) >= ECHO_CORRELATION:
            self.gated_frames += 1
            return True
        return False

    def close(self) -> None:
        self._inner.close()
