"""The console's audio device vanishing mid-call (hostile8): real PortAudio streams on a
private PulseAudio daemon (its own, so that killing it touches no other test), the real
console transport, VAD, ASR and TTS, the oracle LLM.

Before: when the audio server went away, PortAudio stopped the streams by themselves,
the microphone's reader waited for ever and the call went on in silence until Ctrl-C
(still running 30 s later). Now the call ends at once, says why, and the ledger records
"audio device lost".
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from voice_helpers import order_scenario, start_oracle, voice_config

from ledger import entries as le
from voice_agent.transports.console import run_console

pytestmark = pytest.mark.audio

CONFIG = """\
load-module module-native-protocol-unix
load-module module-null-sink sink_name=mic_feed rate=16000 channels=1
load-module module-null-sink sink_name=agent_out rate=16000 channels=1
set-default-sink agent_out
set-default-source mic_feed.monitor
"""

WAIT_S = 60.0  # a safety net for a broken implementation, never the measure of a test


@pytest.fixture
def own_pulse(tmp_path: Path) -> Iterator[int]:
    """A private PulseAudio daemon for this test only (it is killed mid-call); its pid."""
    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed (scripts/bootstrap installs it)")
    home, runtime = tmp_path / "home", tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    (tmp_path / "default.pa").write_text(CONFIG)
    names = ("HOME", "XDG_RUNTIME_DIR", "PULSE_SERVER", "VOICE_AGENT_CACHE")
    saved = {name: os.environ.get(name) for name in names}
    cache = os.environ.get("VOICE_AGENT_CACHE") or str(Path.home() / ".cache" / "voice-agent")
    env = dict(
        os.environ,
        VOICE_AGENT_CACHE=cache,
        HOME=str(home),
        XDG_RUNTIME_DIR=str(runtime),
        PULSE_SERVER=f"unix:{runtime}/pulse/native",
    )
    subprocess.run(
        ["pulseaudio", "-n", "-F", str(tmp_path / "default.pa"), "--daemonize=yes",
         "--exit-idle-time=-1", "--use-pid-file=yes", "--log-level=error"],
        env=env, check=True, timeout=30, capture_output=True,
    )  # fmt: skip
    pid_file = runtime / "pulse" / "pid"
    deadline = time.monotonic() + WAIT_S
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text().strip())
    os.environ.update({name: env[name] for name in names})
    import sounddevice as sd

    sd._terminate()  # PortAudio lists devices at initialisation: rescan with this daemon
    sd._initialize()
    try:
        yield pid
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        sd._terminate()
        sd._initialize()


async def test_the_audio_server_going_away_mid_call_ends_the_call_and_says_why(
    own_pulse: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stop, listening = asyncio.Event(), asyncio.Event()
    out = io.StringIO()
    async for rig in start_oracle(order_scenario()):
        config = voice_config(rig.server.base_url, str(tmp_path / "sessions"))
        session = asyncio.create_task(
            run_console(
                config, input_device="pulse", output_device="pulse", tools=rig.tools,
                stdout=out, stop=stop, listening=listening,
            )
        )  # fmt: skip
        try:
            await asyncio.wait_for(listening.wait(), WAIT_S)
            os.kill(own_pulse, signal.SIGKILL)  # the audio server (and every device) is gone
            done, _ = await asyncio.wait({session}, timeout=WAIT_S)
            assert done, "the call went on in silence after its devices went away"
        finally:
            stop.set()
            result = await session
    ended = [e for e in result.entries if isinstance(e, le.SessionEnded)]
    assert len(ended) == 1 and ended[0].reason.startswith("audio device lost")
    assert "went away" in ended[0].reason
    said = [r for r in caplog.records if "went away" in r.getMessage()]
    assert said and all(r.exc_info is None for r in said)  # one plain line, no traceback
