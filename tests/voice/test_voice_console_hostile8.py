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
(``audio_io.STALL_S``), and the stuck stream is abandoned after ``audio_io.CLOSE_S``.
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
from peripherals.audio_io import OPEN_S
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
