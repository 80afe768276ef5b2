"""How busy this machine's CPU is: what a fork's local LLM request would compete with.

On a small machine the ASR's decodes, the TTS and an LLM served on the same
cores share the CPU. A speculative fork whose LLM runs here takes the cores
the ASR decodes on (a 1.5B model at 2 threads takes the whole of a 2-core
box while it generates), so the speculation policy asks a :class:`CpuGauge`
before opening one (:mod:`voice_agent.speculation`).

- :class:`ProcStatGauge` reads the whole machine's busy share from Linux's
  ``/proc/stat`` over the last sampling window (the ASR's decodes, the
  TTS, a local LLM server's process, anything else running). Elsewhere it
  falls back to the 1-minute load average over the core count.
- :class:`FixedGauge` always says the same (tests; a bench that wants the
  policy's decision fixed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

# Shortest window a busy share is computed over, seconds: /proc/stat counts in 10 ms
# ticks, so a shorter window is mostly rounding. A reading asked for sooner returns the
# previous window's share.
MIN_WINDOW_S = 0.25


class CpuGauge(Protocol):
    """The machine's recent CPU use."""

    def busy(self) -> float:
        """Share of the machine's CPU time in use recently, 0.0 (idle) to 1.0 (every core)."""
        ...


class FixedGauge:
    """A gauge that always reads ``value`` (0..1)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def busy(self) -> float:
        return self.value


def _read_proc_stat(path: Path) -> tuple[int, int] | None:
    """(busy ticks, total ticks) of all cores, or None where /proc/stat is not readable."""
    try:
        with path.open() as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    total = sum(ticks[:8])  # guest time is already counted in user
    return total - idle, total


class ProcStatGauge:
    """The whole machine's busy share over the last window (Linux ``/proc/stat``).

    The first reading covers the time since the gauge was made. Without
    ``/proc/stat`` it reads the 1-minute load average divided by the core
    count (capped at 1.0).
    """

    def __init__(
        self,
        path: Path = Path("/proc/stat"),
        now: Callable[[], float] = time.monotonic,
        min_window_s: float = MIN_WINDOW_S,
    ) -> None:
        self._path = path
        self._now = now
        self._min_window_s = min_window_s
        self._last = _read_proc_stat(path)
        self._last_at = now()
        self._share = 0.0

    def busy(self) -> float:
        if self._last is None:
            return _load_share()
        now = self._now()
        if now - self._last_at < self._min_window_s:
            return self._share
        sample = _read_proc_stat(self._path)
        if sample is None:
            return _load_share()
        busy = sample[0] - self._last[0]
        total = sample[1] - self._last[1]
        if total > 0:
            self._share = min(1.0, max(0.0, busy / total))
        self._last, self._last_at = sample, now
        return self._share


def _load_share() -> float:
    try:
        load = os.getloadavg()[0]
    except OSError:
        return 0.0
    return min(1.0, load / max(1, os.cpu_count() or 1))
