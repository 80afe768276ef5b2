"""``voice-agent console`` (and plain ``voice-agent``): talk through the microphone and speaker.

Microphone frames (sounddevice) go through the WebRTC echo canceller (fed with
what the speaker plays, so the agent does not hear itself and the caller can
talk over it), or the half-duplex gate with ``voice.echo: half_duplex`` (a
caller louder than the playback still barges in), into :class:`VoiceInput`; the agent speaks through
:class:`AudioSpeechOutput` into the speaker. The terminal shows the agent's
state, the live transcript (partials), what the agent says, and tool futures
(:class:`FutureMonitor`). Ctrl-C ends the session.

Devices come from ``--input-device`` / ``--output-device``, else
``voice.input_device`` / ``voice.output_device``, else the system defaults.
Without a usable device the command explains what to do and exits with 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from ledger import Ledger
from ledger import entries as le
from peripherals.audio_io import AudioDeviceError, AudioInput, AudioOutput, list_devices

from ..agent import Agent
from ..config import Config
from ..events import SessionEnded
from ..session import open_session
from ..tools import ToolRegistry
from ..voice.build import build_echo_control, build_input, build_tts
from ..voice.input import UtteranceTiming
from ..voice.output import AudioSpeechOutput
from .text import FutureMonitor

STATE_POLL_S = 0.05  # how often the display checks the agent's state (s)
OUTPUT_BLOCK_MS = 20  # speaker callback period: the granularity of a barge-in's silence (ms)

NO_DEVICE_HELP = """\
voice-agent: no usable audio device: {error}

Without a microphone and speaker you can still talk to the agent:
  voice-agent chat                                   the same agent over text
  voice-agent run --input call.wav --output answer.wav   answer a recorded call
or create virtual devices with PulseAudio null sinks (see docs/audio.md), then
  voice-agent console --input-device pulse --output-device pulse
List devices with: voice-agent console --list-devices"""


@dataclass
class ConsoleResult:
    """What a console session did (for tests and scripts)."""

    entries: list[le.Entry]
    ledger_path: Path | None
    utterances: list[UtteranceTiming]
    gate_suppressed: int  # mic frames the half-duplex gate silenced
    gate_admitted: int
    echo_cancelled: bool = False  # mic audio went through the WebRTC echo canceller


class _Display:
    """Prints state changes, the transcript and the agent's words as the ledger records them."""

    def __init__(self, ledger: Ledger, stream: TextIO) -> None:
        self._stream = stream
        self._partial = ""
        self._unsubscribe = ledger.subscribe(self._on_entry)

    def _on_entry(self, entry: le.Entry) -> None:
        if isinstance(entry, le.UserUtterance):
            if entry.final:
                self._print(f"you>   {entry.text}")
                self._partial = ""
            elif entry.text != self._partial:
                self._partial = entry.text
                self._print(f"  …    {entry.text}")
        elif isinstance(entry, le.AgentTextPlanned):
            self._print(f"agent> {entry.text}")
        elif isinstance(entry, le.AgentTextPlayed) and entry.interrupted:
            self._print(f"  ✂    interrupted; heard: {entry.text!r}")

    def state(self, state: str) -> None:
        self._print(f"[{state}]")

    def _print(self, line: str) -> None:
        self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._unsubscribe()


async def _show_states(agent: Agent, display: _Display) -> None:
    last = ""
    while True:
        if agent.state != last:
            last = agent.state
            display.state(last)
        await asyncio.sleep(STATE_POLL_S)


async def run_console(
    config: Config,
    *,
    input_device: str | int | None = None,
    output_device: str | int | None = None,
    tools: ToolRegistry | None = None,
    stdout: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    listening: asyncio.Event | None = None,
) -> ConsoleResult:
    """Run a voice session on local devices until ``stop`` is set (or forever).

    ``listening`` is set once the first microphone frame arrived (streams
    start late: wait for it before speaking into a virtual device). Raises
    :class:`AudioDeviceError` when a device is missing or cannot be opened.
    """
    cfg = config.voice
    rate = cfg.sample_rate
    aec, gate = build_echo_control(cfg)

    def note_played(samples: np.ndarray) -> None:
        if aec is not None:
            aec.note_played(samples)
        if gate is not None:
            gate.note_played(samples)

    mic = AudioInput(
        input_device if input_device is not None else cfg.input_device, sample_rate=rate
    )
    speaker = AudioOutput(
        output_device if output_device is not None else cfg.output_device,
        sample_rate=rate,
        block_ms=OUTPUT_BLOCK_MS,
        on_played=note_played,
    )
    tts = build_tts(cfg, rate)
    output = AudioSpeechOutput(tts, speaker)
    try:
        await speaker.start()
        await mic.start()
        async with open_session(config, output, tools=tools, transport="console") as session:
            agent = session.agent
            voice = build_input(
                cfg,
                agent.post,
                agent_busy=lambda: agent.state in ("thinking", "speaking"),
                gate=gate,
                playback=output,
            )
            display = _Display(session.ledger, stdout)
            monitor = FutureMonitor(session.ledger, stdout)
            stdout.write(
                f"voice-agent console — mic {mic.device.name!r}, speaker {speaker.device.name!r}, "
                f"mode {config.agent.mode}, model {session.llm_config.model}. Ctrl-C to leave.\n"
            )
            if session.ledger_path:
                stdout.write(f"ledger: {session.ledger_path}\n")
            stdout.flush()

            async def listen() -> None:
                first = True
                while True:
                    chunk = await mic.read()
                    if first and listening is not None:
                        listening.set()
                    first = False
                    samples = chunk.samples if aec is None else aec.process_mic(chunk.samples)
                    await voice.process(samples)

            async def watch_stop() -> None:
                if stop is None:
                    return
                await stop.wait()
                agent.post(SessionEnded(reason="stopped"))

            try:
                async with asyncio.TaskGroup() as tg:
                    helpers = [
                        tg.create_task(listen(), name="console-listen"),
                        tg.create_task(_show_states(agent, display), name="console-states"),
                        tg.create_task(watch_stop(), name="console-stop"),
                    ]
                    await agent.run()
                    for task in helpers:
                        task.cancel()
            finally:
                display.close()
                monitor.close()
                await voice.aclose()
                await output.aclose()
            entries = list(session.ledger.entries)
            return ConsoleResult(
                entries=entries,
                ledger_path=session.ledger_path,
                utterances=voice.turns,
                gate_suppressed=gate.suppressed if gate else 0,
                gate_admitted=gate.admitted if gate else 0,
                echo_cancelled=aec is not None,
            )
    finally:
        await output.aclose()
        await mic.aclose()
        await speaker.aclose()
        await tts.aclose()


def _list_devices(stdout: TextIO) -> int:
    devices = list_devices()
    if not devices:
        stdout.write("no audio devices (see docs/audio.md for virtual PulseAudio devices)\n")
    for d in devices:
        marks = ("in " if d.is_default_input else "") + ("out" if d.is_default_output else "")
        stdout.write(
            f"{d.index:>3}  {d.name:<40} {d.hostapi:<12} in {d.max_input_channels} / "
            f"out {d.max_output_channels}  {d.default_sample_rate:.0f} Hz  {marks}\n"
        )
    return 0


def main(config: Config, args: argparse.Namespace, stdout: TextIO = sys.stdout) -> int:
    """``voice-agent console``: 0 on a normal end, 2 without a usable audio device."""
    try:
        if getattr(args, "list_devices", False):
            return _list_devices(stdout)
        asyncio.run(
            run_console(
                config,
                input_device=getattr(args, "input_device", None),
                output_device=getattr(args, "output_device", None),
                stdout=stdout,
            )
        )
    except AudioDeviceError as exc:
        print(NO_DEVICE_HELP.format(error=exc), file=sys.stderr)
        return 2
    return 0
