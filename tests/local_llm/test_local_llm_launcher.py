"""The launched server never outlives the process that launched it.

Real processes: a parent Python process starts the real server through
`LocalLlmServer`; the server is held in its start-up (another process holds
the model cache's assembly lock, as while it assembles the model) and the
parent is ended by SIGTERM, SIGINT or SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from process_helpers import alive, wait_until

from voice_agent.local_llm.errors import ModelNotInstalledError
from voice_agent.local_llm.models import DEFAULT_MODEL, MODELS, locate_parts

pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")

#: Generous bounds (seconds) for a busy 2-core machine; the server stops well
#: within its own 5 s grace period once its parent has gone.
_START_BOUND_S = 60.0
#: The checkout under test: the parent and the server run its code.
_ROOT = Path(__file__).resolve().parents[2]
_EXIT_BOUND_S = 60.0

_PARENT = textwrap.dedent(
    """
    import asyncio, signal, sys
    from voice_agent.local_llm.launcher import LocalLlmServer

    # Ctrl-C as in a terminal, whatever this process inherited (a shell's background job,
    # as CI may run the suite, starts with SIGINT ignored, and Python keeps that).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    async def main():
        server = LocalLlmServer(startup_timeout_s=600)
        starting = asyncio.ensure_future(server.start())
        while server.pid is None:
            await asyncio.sleep(0.01)
        print(server.pid, flush=True)
        await starting

    asyncio.run(main())
    """
)


def holds_open(pid: int, path: Path) -> bool:
    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False


@pytest.fixture
def held_model_lock(tmp_path: Path) -> Iterator[Path]:
    """A model cache whose assembly lock another process holds: the server waits in start-up."""
    spec = MODELS[DEFAULT_MODEL]
    try:
        locate_parts(spec)
    except ModelNotInstalledError as exc:
        pytest.skip(str(exc))
    models = tmp_path / "models"
    models.mkdir()
    lock = models / f"{spec.filename}.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield lock


@pytest.mark.parametrize(
    "how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name
)
def test_the_server_stops_when_its_parent_ends_during_start_up(
    held_model_lock: Path, tmp_path: Path, how: signal.Signals
) -> None:
    env = {
        **os.environ,
        "VOICE_AGENT_CACHE": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
    }
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    server = 0
    try:
        assert parent.stdout is not None
        server = int(parent.stdout.readline())
        # The server is in its start-up, waiting for the model (as while assembling it).
        assert wait_until(lambda: holds_open(server, held_model_lock), _START_BOUND_S)
        parent.send_signal(how)
        parent.wait(timeout=_EXIT_BOUND_S)
        assert wait_until(lambda: not alive(server), _EXIT_BOUND_S), (
            f"the server (pid {server}) outlived its parent ended by {how.name}"
        )
    finally:
        parent.kill()
        parent.wait()
        if server and alive(server):
            os.kill(server, signal.SIGKILL)  # before the lock is released: no model copy
            wait_until(lambda: not alive(server), _EXIT_BOUND_S)
