"""The tests' private PulseAudio daemon (``voice_helpers.private_pulse``) ends with the
process that started it, however that process ends: a daemon of a test run killed
with SIGKILL was still running 90 minutes later (session 13; it was started with
``--daemonize=yes --exit-idle-time=-1``, so nothing ever stopped it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.audio

HERE = Path(__file__).parent
# A process holding a private daemon the way a test does, until it is killed.
HOLDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {helpers!r})
from voice_helpers import private_pulse
with private_pulse(Path({root!r})) as pulse:
    print(pulse.pid, flush=True)
    time.sleep(600)
"""
GONE_S = 10.0  # a safety net, never the measure of the test (the signal takes milliseconds)


def _running(pid: int) -> bool:
    """Is ``pid`` a live process (not gone, not a zombie nobody reaped)?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_the_private_daemon_ends_when_the_test_process_is_killed(tmp_path: Path) -> None:
    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed (scripts/bootstrap installs it)")
    script = HOLDER.format(helpers=str(HERE), root=str(tmp_path / "pulse"))
    holder = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=HERE.parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    line = holder.stdout.readline()
    if not line.strip().isdigit():
        holder.kill()
        _, err = holder.communicate()
        pytest.fail(f"the holder did not start its daemon: {line}{err}")
    daemon = int(line)
    assert _running(daemon)
    try:
        holder.send_signal(signal.SIGKILL)  # no cleanup of its own runs
        holder.wait()
        killed = time.monotonic()
        while _running(daemon) and time.monotonic() - killed < GONE_S:
            time.sleep(0.02)
        print(f"daemon gone {time.monotonic() - killed:.2f} s after its test process")
        assert not _running(daemon), "the daemon outlived the test process that started it"
    finally:
        if _running(daemon):  # before the fix: do not leave it behind as it did
            os.kill(daemon, signal.SIGKILL)
        holder.communicate()
