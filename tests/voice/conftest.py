"""Fixtures for the audio-pipeline tests: the oracle with the order scenario, and a
private PulseAudio daemon with virtual devices (session-wide, stopped at the end)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from voice_helpers import OracleRig, order_scenario, start_oracle


@pytest.fixture
async def order_oracle() -> AsyncIterator[OracleRig]:
    async for rig in start_oracle(order_scenario()):
        yield rig


# ---------------------------------------------------------------- PulseAudio virtual devices
PULSE_CONFIG = """\
load-module module-native-protocol-unix
load-module module-null-sink sink_name=mic_feed rate=16000 channels=1
load-module module-null-sink sink_name=agent_out rate=16000 channels=1
set-default-sink agent_out
set-default-source mic_feed.monitor
"""


@dataclass(frozen=True)
class Pulse:
    """A private PulseAudio daemon: ``env`` reaches it (for paplay/parecord/pactl)."""

    env: dict[str, str]
    runtime: str


@pytest.fixture(scope="session")
def pulse(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Start a private PulseAudio daemon with null sinks mic_feed and agent_out; stop it at the end.

    PortAudio (through ALSA's pulse plugin) sees it as the devices "pulse" and
    "default": the default source is mic_feed.monitor, the default sink agent_out.
    """
    import os
    import shutil
    import signal
    import subprocess
    import time

    if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
        pytest.skip(
            "pulseaudio / pulseaudio-utils are not installed (scripts/bootstrap installs them)"
        )
    root = tmp_path_factory.mktemp("pulse")
    home, runtime = root / "home", root / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    (root / "default.pa").write_text(PULSE_CONFIG)
    saved = {
        k: os.environ.get(k)
        for k in ("HOME", "XDG_RUNTIME_DIR", "PULSE_SERVER", "VOICE_AGENT_CACHE")
    }
    # Models assembled into ~/.cache stay where they are while HOME points elsewhere.
    cache = os.environ.get("VOICE_AGENT_CACHE") or str(Path.home() / ".cache" / "voice-agent")
    env = dict(
        os.environ,
        VOICE_AGENT_CACHE=cache,
        HOME=str(home),
        XDG_RUNTIME_DIR=str(runtime),
        PULSE_SERVER=f"unix:{runtime}/pulse/native",
    )
    subprocess.run(
        [
            "pulseaudio",
            "-n",
            "-F",
            str(root / "default.pa"),
            "--daemonize=yes",
            "--exit-idle-time=-1",
            "--use-pid-file=yes",
            "--log-level=error",
        ],
        env=env,
        check=True,
        timeout=30,
        capture_output=True,
    )
    pid_file = runtime / "pulse" / "pid"
    deadline = time.monotonic() + 10
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text().strip())
    os.environ.update({k: env[k] for k in saved})
    import sounddevice as sd

    sd._terminate()  # PortAudio lists devices at initialisation: rescan with the daemon up
    sd._initialize()
    try:
        yield Pulse(env=env, runtime=str(runtime))
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        sd._terminate()
        sd._initialize()
