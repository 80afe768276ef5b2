"""`parent_watch`: a child never outlives its parent, even when its stdin pipe leaked.

Real processes: a parent starts a child that calls `exit_with_parent()` and
then sleeps; the parent forks a helper that keeps the child's stdin pipe open
(a ``fork`` without ``exec``), so the pipe never reaches end-of-file; the
parent is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from process_helpers import alive, wait_until

#: Generous bound (seconds) for a busy 2-core machine; the watch notices in 0.2 s.
_EXIT_BOUND_S = 60.0
_ROOT = Path(__file__).resolve().parents[2]

_CHILD = "from voice_agent.parent_watch import exit_with_parent; exit_with_parent(); import time; print('watching', flush=True); time.sleep(600)"

_PARENT = textwrap.dedent(
    f"""
    import os, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", {_CHILD!r}], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "watching\\n"
    leak = os.fork()  # inherits the write end of the child's stdin
    if leak == 0:
        time.sleep(600)
        os._exit(0)
    print(child.pid, leak, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_child_whose_pipe_leaked_still_stops_when_its_parent_dies(how: signal.Signals) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
    }
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, env=env, text=True
    )
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        pids = [int(word) for word in parent.stdout.readline().split()]
        child, leak = pids
        parent.send_signal(how)
        parent.wait(timeout=_EXIT_BOUND_S)
        assert wait_until(lambda: not alive(child), _EXIT_BOUND_S)
        assert alive(leak), "the helper holding the pipe is still there: the pipe never closed"
    finally:
        parent.kill()
        parent.wait()
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
