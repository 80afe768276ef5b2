"""The console transport on real PortAudio streams: a private PulseAudio daemon with null
sinks stands in for the microphone (mic_feed) and the speaker (agent_out)."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import numpy as np
import pytest
from voice_helpers import (
    ORDER_ANSWER,
    ORDER_QUESTION,
    RATE,
    caller_recording,
    order_scenario,
    speech,
    start_oracle,
    transcribe,
    voice_config,
)

from ledger import entries as le
from voice_agent.transports.console import ConsoleResult, run_console
from voice_agent.voice.wavio import read_wav, write_wav

pytestmark = pytest.mark.audio

ANSWER_TIMEOUT_S = 30.0  # the agent must have answered within this (s)
# A safety net for the console to read its first microphone frame (s): it loads its models
# first, 18.8 s at load 13 and over 20 s (the bound before) at load 14-15 (session 14, the
# session-start code too).
LISTENING_S = 60.0


async def _converse(
    pulse, tmp_path: Path, *, loopback: bool, echo: str = "aec"
) -> tuple[ConsoleResult, str]:  # type: ignore[no-untyped-def]
    audio, _ = caller_recording([(0.3, ORDER_QUESTION, 1.0)], 3.5)
    write_wav(tmp_path / "user.wav", audio, RATE)
    module = None
    if loopback:  # the agent's voice leaks into the microphone, as from a speaker in the room
        module = await _pactl(
            pulse,
            "load-module",
            "module-loopback",
            "source=agent_out.monitor",
            "sink=mic_feed",
            "latency_msec=60",
        )
    recorder = await asyncio.create_subprocess_exec(
        "parecord",
        "--device=agent_out.monitor",
        f"--rate={RATE}",
        "--channels=1",
        "--file-format=wav",
        str(tmp_path / "agent.wav"),
        env=pulse.env,
    )
    stop, listening = asyncio.Event(), asyncio.Event()
    out = io.StringIO()
    try:
        async for rig in start_oracle(order_scenario()):
            config = voice_config(rig.server.base_url, str(tmp_path / "sessions"), echo=echo)
            session = asyncio.create_task(
                run_console(
                    config,
                    input_device="pulse",
                    output_device="pulse",
                    tools=rig.tools,
                    stdout=out,
                    stop=stop,
                    listening=listening,
                )
            )
            try:
                await asyncio.wait_for(listening.wait(), LISTENING_S)
                player = await asyncio.create_subprocess_exec(
                    "paplay", "--device=mic_feed", str(tmp_path / "user.wav"), env=pulse.env
                )
                await player.wait()
                async with asyncio.timeout(ANSWER_TIMEOUT_S):
                    while "AgentTextPlayed" not in _ledger_text(tmp_path / "sessions"):
                        await asyncio.sleep(0.1)
                await asyncio.sleep(2.0)  # room for a false barge-in or an echo turn to show up
                # The agent's voice reaches the recorder through PulseAudio's buffers, seconds
                # after the ledger says it was played on a starved machine; stopping the
                # session 2 s after that cut the answer off the recording ("on friday.").
                await _until_recorded_quiet(tmp_path / "agent.wav")
            finally:
                stop.set()
                result = await session
    finally:
        recorder.terminate()
        await asyncio.wait_for(recorder.wait(), 10)
        if module:
            await _pactl(pulse, "unload-module", module)
    heard, _ = read_wav(tmp_path / "agent.wav")
    return result, transcribe(heard)


# How long the recorded agent voice must stay quiet before the answer counts as recorded (s):
# longer than any pause between the agent's sentences.
RECORDED_QUIET_S = 1.5


async def _until_recorded_quiet(path: Path) -> None:
    """Wait until the recording holds sound and its last RECORDED_QUIET_S seconds are
    quiet (the agent's voice has arrived at the recorder), or ANSWER_TIMEOUT_S passed
    (the checks on what was recorded then say what is missing)."""
    frame = RATE // 50  # 20 ms
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while time.monotonic() < deadline:
        data = path.read_bytes() if path.exists() else b""
        start = data.find(b"data") + 8
        x = np.frombuffer(data[start : start + (len(data) - start) // 2 * 2], "<i2")
        n = len(x) // frame
        level = np.sqrt(np.mean((x[: n * frame].reshape(n, frame) / 32768.0) ** 2, axis=1))
        loud = np.nonzero(level > 0.01)[0] if n else np.zeros(0, int)
        if len(loud) and n - loud[-1] > RECORDED_QUIET_S * 50:
            return
        await asyncio.sleep(0.2)


async def _pactl(pulse, *args: str) -> str:  # type: ignore[no-untyped-def]
    proc = await asyncio.create_subprocess_exec(
        "pactl", *args, env=pulse.env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, f"pactl {args} failed"
    return out.decode().strip()


def _ledger_text(directory: Path) -> str:
    return "".join(p.read_text() for p in directory.glob("*.jsonl")) if directory.exists() else ""


def _check_answered_without_false_barge_in(result: ConsoleResult, heard: str) -> None:
    finals = [e.text for e in result.entries if isinstance(e, le.UserUtterance) and e.final]
    assert len(finals) == 1 and "427" in finals[0], finals
    calls = [e for e in result.entries if isinstance(e, le.ToolCallStarted)]
    assert [c.arguments for c in calls] == ['{"order_id": "427"}']
    played = [e for e in result.entries if isinstance(e, le.AgentTextPlayed)]
    assert played and not any(p.interrupted for p in played), played
    assert "shipped" in heard


async def test_console_answers_through_portaudio_devices(pulse, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result, heard = await _converse(pulse, tmp_path, loopback=False)
    _check_answered_without_false_barge_in(result, heard)


async def test_the_half_duplex_gate_keeps_the_agent_from_hearing_itself(pulse, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result, heard = await _converse(pulse, tmp_path, loopback=True, echo="half_duplex")
    _check_answered_without_false_barge_in(result, heard)
    assert result.gate_suppressed > 0, "the agent's voice reached the microphone and was gated"


async def test_echo_cancellation_keeps_the_agent_from_hearing_itself(pulse, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result, heard = await _converse(pulse, tmp_path, loopback=True, echo="aec")
    _check_answered_without_false_barge_in(result, heard)
    assert result.gate_suppressed == 0 and result.echo_cancelled, (
        "the canceller, not the gate, did it"
    )


# How long the test blocks the event loop while the agent speaks (s): longer than the
# 0.7 s from which a canceller fed late by the loop lets the echo through (offline: ERLE
# 42 dB fed in step, 22 dB after a 0.7 s stall, 16 dB after 0.8-1 s).
LOOP_STALL_S = 1.5
# Echo the canceller removes in this test (dB): with the echo control in the audio
# callbacks 23-49 dB (12 runs, load 5-13); on the event loop, as before, 13-16 dB.
MIN_ERLE_DB = 18.0
# Words only the agent says (ORDER_ANSWER). Fed late, the canceller let Whisper hear
# "you're order for two seven." in the cleaned microphone audio.
AGENT_WORDS = {"order", "seven", "shipped", "arrives", "friday"}


async def test_echo_is_cancelled_while_the_event_loop_is_stalled(pulse, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A busy machine stalls the agent's event loop; the canceller must still see the
    microphone in step with the speaker (it runs in the audio callbacks)."""
    from voice_agent.config import load_config
    from voice_agent.transports.console import console_audio

    config = load_config(None, environ={}, overrides={"voice": {"echo": "aec"}})
    module = await _pactl(
        pulse, "load-module", "module-loopback", "source=agent_out.monitor", "sink=mic_feed",
        "latency_msec=60",
    )  # fmt: skip
    audio = console_audio(config.voice, "pulse", "pulse")
    said, _, _ = speech(ORDER_ANSWER)
    heard: list[np.ndarray] = []
    try:
        await audio.speaker.start()
        await audio.mic.start()
        await asyncio.wait_for(audio.mic.read(), 20)  # the input stream runs
        writing = asyncio.create_task(audio.speaker.write(said))
        await asyncio.sleep(0.3)  # the agent is speaking...
        time.sleep(LOOP_STALL_S)  # noqa: ASYNC251 (the point: the loop is starved, nothing reads the mic)
        wanted = int((0.3 + len(said) / RATE + 1.0) * RATE)  # the speech and a second after
        while sum(len(h) for h in heard) < wanted:
            heard.append((await asyncio.wait_for(audio.mic.read(), 10)).samples)
        await writing
    finally:
        await audio.mic.aclose()
        await audio.speaker.aclose()
        await _pactl(pulse, "unload-module", module)
    cleaned = np.concatenate(heard)
    transcript = transcribe(cleaned)
    # what is left of the echo: far below the agent's voice (which reached the mic at
    # the level it was played: the loopback is digital)
    erle = _dbfs(said[np.abs(said) > 0.01]) - _dbfs(cleaned)
    print(f"ERLE {erle:.1f} dB, heard {transcript!r}")
    assert not AGENT_WORDS & set(transcript.lower().replace(".", " ").split()), transcript
    assert erle > MIN_ERLE_DB, f"echo reduced by only {erle:.1f} dB"


async def test_a_microphone_processor_that_raises_fails_the_reader_not_the_stream(pulse) -> None:  # type: ignore[no-untyped-def]
    from peripherals.audio_io import AudioDeviceError, AudioInput

    def broken(frame: np.ndarray) -> np.ndarray:
        raise ValueError("the canceller broke")

    mic = AudioInput("pulse", sample_rate=RATE, process=broken)
    await mic.start()
    try:
        with pytest.raises(AudioDeviceError, match="the canceller broke"):
            await asyncio.wait_for(mic.read(), 20)
    finally:
        await mic.aclose()


def _dbfs(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return 10 * float(np.log10(np.mean(x * x) + 1e-20))


def test_console_without_a_device_says_what_to_do_and_exits_2(capsys) -> None:  # type: ignore[no-untyped-def]
    import argparse

    from voice_agent.config import load_config
    from voice_agent.transports import console

    args = argparse.Namespace(
        input_device="no-such-mic-xyz", output_device=None, list_devices=False
    )
    assert console.main(load_config(None, environ={}), args) == 2
    err = capsys.readouterr().err
    assert "voice-agent chat" in err and "voice-agent run" in err and "docs/audio.md" in err


def test_the_no_device_message_suggests_commands_that_run_when_pasted_with_the_users_options(
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    """Each suggested command stands alone on its line (a description after it became
    arguments when the line was pasted) and keeps the options the console was started
    with: `console --config configs/customer_service_phone.yaml` suggested plain `chat`,
    the demo agent instead of the phone line."""
    import argparse
    import shlex

    from voice_agent.cli import build_parser
    from voice_agent.config import load_config
    from voice_agent.transports import console

    profile = "configs/customer_service_phone.yaml"
    args = argparse.Namespace(
        input_device="no-such-mic-xyz", output_device=None, list_devices=False,
        config=profile, mode=None, base_url=None, model=None,
        local_model="qwen2.5-coder-0.5b-instruct-q4_k_m", no_persist=True,
    )  # fmt: skip
    assert console.main(load_config(None, environ={}), args) == 2
    lines = capsys.readouterr().err.splitlines()
    commands = [shlex.split(line) for line in lines if line.startswith("  ")]
    assert [words[1] for words in commands] == ["chat", "run", "console", "console"]
    parser = build_parser()
    for words in commands:
        parsed = parser.parse_args(words[1:])  # the whole pasted line parses
        if not getattr(parsed, "list_devices", False):
            assert parsed.config == profile and parsed.no_persist, words
            assert parsed.local_model == "qwen2.5-coder-0.5b-instruct-q4_k_m", words


def test_the_console_command_without_a_device_ends_with_its_message_and_no_traceback(
    tmp_path: Path,
) -> None:
    """The real command in its own process: the exit-time clean-up prints nothing more
    (livekit's echo canceller, left to the interpreter's exit, printed a traceback)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "voice_agent.cli", "console", "--input-device", "no-such-mic-xyz"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root), "VOICE_AGENT__VOICE__ECHO": "aec"},
    )
    assert done.returncode == 2, done.stderr
    assert "no usable audio device" in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
