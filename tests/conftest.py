"""Every async test runs on virtual time unless it needs the wall clock.

The event loop of an async test is an ``fsm.AutojumpClock`` loop: whenever
every task waits, time jumps to the next timer, so ``asyncio.sleep``,
``asyncio.timeout``, ``fsm.fail_after``, ``MonotonicClock`` and library
timeouts (httpx, aiohttp) are all virtual, and a test never sleeps through
its waits however busy the machine is. ``AutojumpClock.running()`` gives the
test its clock.

Model work in worker threads (ASR decodes) takes no virtual time, so a test
that feeds audio on the clock sees the same partials however busy the
machine is. Real time is kept for what virtual time cannot drive or must not
hide: real audio devices (``audio`` marker), processes outside the test and
real-time figures (``realtime`` marker: a model server subprocess, how
promptly TTS stops, how long the loop's ticks take), and the local-model
tests (their folder below).

Hypothesis runs without its per-example deadline (200 ms of wall time by default): that
is a timed assert, and on a busy machine an example that takes 10 ms can take longer
and fail the test (DeadlineExceeded, then Flaky). The number of examples bounds a
property test; its time is a benchmark's business.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from hypothesis import settings

from fsm import AutojumpClock

settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

_REALTIME_FOLDERS = {"local_llm"}
_TESTS = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "realtime: run on the wall clock (a process outside the test, real devices); "
        "every other async test runs on fsm.AutojumpClock virtual time",
    )


def _realtime(item: pytest.Item) -> bool:
    if item.get_closest_marker("realtime") or item.get_closest_marker("audio"):
        return True
    try:
        folder = Path(str(item.path)).resolve().relative_to(_TESTS).parts[0]
    except (ValueError, IndexError):
        return False
    return folder in _REALTIME_FOLDERS


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if _realtime(item):
        return {"wallclock": asyncio.new_event_loop}
    return {"autojump": lambda: AutojumpClock().new_event_loop()}
