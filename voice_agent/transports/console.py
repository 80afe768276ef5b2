"""``voice-agent console`` (and plain ``voice-agent``): talk through the microphone and speaker.

Microphone frames (sounddevice) go through the WebRTC echo canceller (fed with
what the speaker plays, so the agent does not hear itself and the caller can
talk over it), or the half-duplex gate with ``voice.echo: half_duplex`` (a
caller louder than the playback still barges in), into :class:`VoiceInput`; the agent speaks through
:class:`AudioSpeechOutput` into the speaker. The terminal shows the agent's
state, the live transcript (partials), what the agent says, and tool futures
(:class:`FutureMonitor`). Ctrl-C ends the session.

The echo control runs in the audio callbacks (``console_audio``): the canceller
sees each microphone frame when it is captured, in step with what the speaker
plays, however busy the event loop is (a loop stalled for 0.7 s used to let
the agent hear its own voice and take it for a barge-in).

Devices come from ``--input-device`` / ``--output-device``, else
``voice.input_device`` / ``voice.output_device``, else the system defaults.
Without a usable device the command explains what to do and exits with 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from ledger import entries as le
from peripherals.aec import EchoCanceller
from peripherals.audio_io import (
    AudioDeviceError,
    AudioInput,
    AudioOutput,
    list_devices,
    start_portaudio,
)
from peripherals.half_duplex import HalfDuplexGate

from ..config import Config, VoiceConfig
from ..tools import ToolRegistry
from ..voice.build import build_echo_control
from ..voice.input import UtteranceTiming
from .base import AgentStateChanged, TranscriptUpdated, TransportBase
from .call import Call, run_call
from .text import FutureMonitor

OUTPUT_BLOCK_MS = 20  # speaker callback period: the granularity of a barge-in's silence (ms)

NO_DEVICE_HELP = """\
voice-agent: no usable audio device: {error}

Without a microphone and speaker you can still talk to the same agent, over text:
  {cmd} chat{opts}
or with a recorded call (WAV in, WAV out):
  {cmd} run{opts} --input call.wav --output answer.wav
or create virtual devices with PulseAudio null sinks (see docs/audio.md), then:
  {cmd} console{opts} --input-device pulse --output-device pulse
List the devices with:
  {cmd} console --list-devices"""


@dataclass
class ConsoleResult:
    """What a console session did (for tests and scripts)."""

    entries: list[le.Entry]
    ledger_path: Path | None
    utterances: list[UtteranceTiming]
    gate_suppressed: int  # mic frames the half-duplex gate silenced
    gate_admitted: int
    echo_cancelled: bool = False  # mic audio went through the WebRTC echo canceller


@dataclass(frozen=True)
class ConsoleAudio:
    """The console's microphone and speaker, with the echo control in their callbacks."""

    mic: AudioInput
    speaker: AudioOutput
    aec: EchoCanceller | None
    gate: HalfDuplexGate | None


def console_audio(
    cfg: VoiceConfig,
    input_device: str | int | None = None,
    output_device: str | int | None = None,
) -> ConsoleAudio:
    """Open (not start) the devices ``cfg.echo`` asks for: the speaker's callback tells
    the canceller (or gate) what it plays, the microphone's callback cleans each frame
    as it is captured. Raises ``AudioDeviceError`` when a device is missing."""
    aec, gate = build_echo_control(cfg)

    def note_played(samples: np.ndarray) -> None:
        if aec is not None:
            aec.note_played(samples)
        if gate is not None:
            gate.note_played(samples)

    def clean(frame: np.ndarray) -> np.ndarray:
        if aec is not None:
            return aec.process_mic(frame)
        return gate.gate(frame) if gate is not None else frame

    control = aec is not None or gate is not None
    try:
        mic = AudioInput(
            input_device if input_device is not None else cfg.input_device,
            sample_rate=cfg.sample_rate,
            process=clean if control else None,
        )
        speaker = AudioOutput(
            output_device if output_device is not None else cfg.output_device,
            sample_rate=cfg.sample_rate,
            block_ms=OUTPUT_BLOCK_MS,
            on_played=note_played if control else None,
        )
    except BaseException:
        if aec is not None:
            aec.close()
        raise
    return ConsoleAudio(mic, speaker, aec, gate)


class ConsoleTransport(TransportBase):
    """Microphone in (cleaned by ``console_audio``'s echo control), speaker out, the
    agent's state and the transcript on the terminal."""

    name = "console"

    def __init__(
        self,
        mic: AudioInput,
        speaker: AudioOutput,
        *,
        stdout: TextIO,
        stop: asyncio.Event | None = None,
        listening: asyncio.Event | None = None,
    ) -> None:
        self._mic = mic
        self._speaker = speaker
        self._stdout = stdout
        self._stop = stop
        self._listening = listening
        self._shown: dict[str, str] = {}  # segment id -> text already printed
        self._end_reason = "stopped"

    @property
    def input_rate(self) -> int:
        return self._mic.sample_rate

    @property
    def output(self) -> AudioOutput:
        return self._speaker

    async def audio_in(self) -> AsyncIterator[np.ndarray]:
        """Microphone frames (echo-cancelled or gated as captured) until ``stop`` is set;
        raises ``AudioDeviceError`` once the microphone or the speaker is gone."""
        first = True
        stop_wait = asyncio.ensure_future((self._stop or asyncio.Event()).wait())
        speaker_lost = asyncio.ensure_future(self._speaker.wait_lost())
        try:
            while True:
                read = asyncio.ensure_future(self._mic.read())
                await asyncio.wait(
                    {read, stop_wait, speaker_lost}, return_when=asyncio.FIRST_COMPLETED
                )
                if not read.done():
                    read.cancel()
                    await asyncio.wait([read])
                    if speaker_lost.done():
                        raise speaker_lost.result()
                    return
                chunk = read.result()
                if first and self._listening is not None:
                    self._listening.set()
                first = False
                yield chunk.samples
        finally:
            stop_wait.cancel()
            speaker_lost.cancel()

    def state_changed(self, change: AgentStateChanged) -> None:
        self._print(f"[{change.state}]")

    def transcript_updated(self, update: TranscriptUpdated) -> None:
        if update.role == "user":
            if update.final:
                self._print(f"you>   {update.text}")
                self._shown.pop(update.segment_id, None)
            elif update.text and update.text != self._shown.get(update.segment_id):
                self._shown[update.segment_id] = update.text
                self._print(f"  …    {update.text}")
        elif not update.final:  # print each planned piece as it goes to speech
            before = self._shown.get(update.segment_id, "")
            self._shown[update.segment_id] = update.text
            piece = update.text[len(before) :].strip()
            if piece:
                self._print(f"agent> {piece}")
        else:
            self._shown.pop(update.segment_id, None)
            if update.interrupted:
                self._print(f"  ✂    interrupted; heard: {update.text!r}")

    def _print(self, line: str) -> None:
        self._stdout.write(line + "\n")
        self._stdout.flush()


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
    await start_portaudio()  # off the event loop: a hung audio server holds it for minutes
    audio = console_audio(config.voice, input_device, output_device)
    mic, speaker, aec, gate = audio.mic, audio.speaker, audio.aec, audio.gate
    transport = ConsoleTransport(mic, speaker, stdout=stdout, stop=stop, listening=listening)
    monitors: list[FutureMonitor] = []

    def greet(call: Call) -> None:
        ledger = call.agent.ledger
        monitors.append(FutureMonitor(ledger, stdout))
        meta = ledger.entries[0].meta if isinstance(ledger.entries[0], le.SessionStarted) else {}
        stdout.write(
            f"voice-agent console — mic {mic.device.name!r}, speaker {speaker.device.name!r}, "
            f"mode {config.agent.mode}, model {meta.get('model')}. Ctrl-C to leave.\n"
        )
        stdout.flush()

    try:
        await speaker.start()
        await mic.start()
        result = await run_call(config, transport, tools=tools, on_call=greet)
    finally:
        for monitor in monitors:
            monitor.close()
        await mic.aclose()
        await speaker.aclose()
        if aec is not None:
            aec.close()
    if result.ledger_path:
        stdout.write(f"ledger: {result.ledger_path}\n")
    return ConsoleResult(
        entries=result.entries,
        ledger_path=result.ledger_path,
        utterances=result.utterances,
        gate_suppressed=gate.suppressed if gate else 0,
        gate_admitted=gate.admitted if gate else 0,
        echo_cancelled=aec is not None,
    )


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
        from ..invocation import command, repeated_options

        help_text = NO_DEVICE_HELP.format(error=exc, cmd=command(), opts=repeated_options(args))
        print(help_text, file=sys.stderr)
        return 2
    return 0
