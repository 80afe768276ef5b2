"""The console's audio device vanishing mid-call (hostile8): real PortAudio streams on a
private PulseAudio daemon (its own, so that killing it touches no other test), the real
console transport, VAD, ASR and TTS, the oracle LLM.

Before: when the audio server went away, PortAudio stopped the streams by themselves,
the microphone's reader waited for ever and the call went on in silence until Ctrl-C
(still running 30 s later). Now the call ends at once, says why, and the ledger records
"audio device lost".

Beside a CPU hog (sessions 12 and 13, load 10-14) PortAudio's microphone
thread instead stuck in the ALSA pulse plugin: no finished callback, no more frames, and
closing the stream blocked the event loop for ever (``portaudio_fakes`` has the stacks).
Now the loss is seen by the speaker's finished callback or the microphone's silence
(``audio_io.STALL_S``), and the stuck stream is abandoned after ``portaudio.CLOSE_S``.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from voice_helpers import order_scenario, private_pulse, start_oracle, voice_config

from ledger import entries as le
from peripherals.portaudio import INIT_S, OPEN_S
from voice_agent.transports.console import run_console

pytestmark = pytest.mark.audio

WAIT_S = 60.0  # a safety net for a broken implementation, never the measure of a test


@pytest.fixture
def own_pulse(tmp_path: Path) -> Iterator[int]:
    """A private PulseAudio daemon for this test only (it is killed mid-call); its pid."""
    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed (scripts/bootstrap installs it)")
    with private_pulse(tmp_path / "pulse") as daemon:
        yield daemon.pid


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
            # bounded: a console that answers neither its devices' loss nor `stop` fails
            # here instead of holding the whole suite (it did, beside a CPU hog, session 12)
            result = await asyncio.wait_for(session, WAIT_S)
    ended = [e for e in result.entries if isinstance(e, le.SessionEnded)]
    assert len(ended) == 1 and ended[0].reason.startswith("audio device lost")
    assert "went away" in ended[0].reason
    said = [r for r in caplog.records if "went away" in r.getMessage()]
    assert said and all(r.exc_info is None for r in said)  # one plain line, no traceback


def test_an_audio_server_that_hangs_gets_the_console_to_say_so_within_seconds(
    own_pulse: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PulseAudio daemon that hangs without dying (stopped here with SIGSTOP): before,
    PortAudio's open waited 30 s in the event loop (libpulse's own timeout) per device,
    then failed as "Illegal combination of I/O devices"."""
    import argparse

    from voice_agent.config import load_config
    from voice_agent.transports import console

    args = argparse.Namespace(input_device="pulse", output_device="pulse", list_devices=False)
    os.kill(own_pulse, signal.SIGSTOP)
    try:
        status = console.main(load_config(None, environ={}), args)
    finally:
        os.kill(own_pulse, signal.SIGCONT)
    err = capsys.readouterr().err
    assert status == 2
    assert f"'pulse': PortAudio did not return within {OPEN_S:.0f} s" in err, err
    assert "the audio server is not answering" in err and "Traceback" not in err


def test_a_console_started_while_the_audio_server_hangs_says_so_within_seconds(
    own_pulse: int, tmp_path: Path
) -> None:
    """The real command in its own process, where importing sounddevice starts PortAudio:
    before, that start waited 128 s for the stopped server in the event loop, found no
    device, and the console said "there is no default input device". ``--list-devices``
    starts PortAudio the same way."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    os.kill(own_pulse, signal.SIGSTOP)
    try:
        for extra in ([], ["--list-devices"]):
            done = subprocess.run(
                [sys.executable, "-m", "voice_agent.cli", "console", *extra],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=WAIT_S,  # a safety net: the code before the fix took 120 s
                cwd=tmp_path,
                env={**os.environ, "PYTHONPATH": str(root)},
            )
            assert done.returncode == 2, done.stderr
            said = (
                f"PortAudio did not start within {INIT_S:.0f} s: the audio server is not answering"
            )
            assert said in done.stderr, done.stderr
            assert "Traceback" not in done.stderr
    finally:
        os.kill(own_pulse, signal.SIGCONT)


# PortAudio in a process of its own (this one's may hold a stream an earlier test had to
# abandon, and then it is never restarted): the audio server is stopped (SIGSTOP) by the
# test and goes on (SIGCONT) when the script says "stopped".
HUNG_SERVER_SCRIPT = """
import asyncio, os, signal, sys
from peripherals import audio_io
from peripherals.audio_io import AudioDeviceError, AudioInput

def attempt(call):
    try:
        return repr(call())
    except AudioDeviceError as exc:
        return str(exc)

async def open_mic():
    async with AudioInput("pulse", sample_rate=16000) as mic:
        return len((await mic.read()).samples) == mic.frame_size

async def main(server):
    audio_io.list_devices()
    os.kill(server, signal.SIGSTOP)
    try:
        if sys.argv[1] == "rescan":
            print("rescan:", attempt(audio_io.rescan_devices))
            print("list:", attempt(audio_io.list_devices))
        else:
            try:
                await AudioInput("pulse", sample_rate=16000).start()
            except AudioDeviceError as exc:
                print("open:", exc)
            print("rescan:", attempt(audio_io.rescan_devices))
    finally:
        os.kill(server, signal.SIGCONT)
    if sys.argv[1] == "rescan":
        print("after:", [d.name for d in audio_io.list_devices()])
        return
    async with asyncio.timeout(60):  # a safety net: the open returned 0.06 s after SIGCONT
        while not audio_io.rescan_devices():
            await asyncio.sleep(0.05)
    print("after:", await open_mic())

asyncio.run(main(int(sys.argv[2])))
"""


def _with_a_hung_server(scenario: str, server: int, cwd: Path) -> list[str]:
    """Run ``HUNG_SERVER_SCRIPT``'s ``scenario``; the lines it printed."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", HUNG_SERVER_SCRIPT, scenario, str(server)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,  # a safety net: the code before the fix took 120 s per restart
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_rescanning_while_the_audio_server_hangs_fails_within_seconds_and_recovers(
    own_pulse: int, tmp_path: Path
) -> None:
    """Before: PortAudio's restart waited 120 s in the caller (the event loop, if that is
    where it was called), then listed no devices."""
    rescan, listing, after = _with_a_hung_server("rescan", own_pulse, tmp_path)
    assert rescan == (
        f"rescan: PortAudio did not list the audio devices anew within {INIT_S:.0f} s: "
        "the audio server is not answering (restart it; PulseAudio: 'pulseaudio -k')"
    )
    assert listing.startswith("list: PortAudio did not start within")  # still restarting
    # the restart under way finishes once the server answers, with its devices
    assert after == "after: ['pulse', 'default']"


def test_an_open_given_up_on_a_hung_server_gives_portaudio_back_when_it_answers(
    own_pulse: int, tmp_path: Path
) -> None:
    """A hung open is abandoned (PortAudio neither restarted nor terminated at exit while
    it runs); once the server answers, the open returns and PortAudio is usable again:
    the devices can be listed anew and a new microphone delivers audio. Before, PortAudio
    stayed abandoned for the rest of the process (the script waited out its safety net)."""
    opened, rescan, after = _with_a_hung_server("open", own_pulse, tmp_path)
    assert f"did not return within {OPEN_S:.0f} s" in opened
    assert rescan == "rescan: False"
    assert after == "after: True"
