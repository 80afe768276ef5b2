"""``voice-agent run --input user.wav --output agent.wav [--realtime]``: answer a recorded call.

The caller's WAV (any rate, mixed to mono, resampled to ``voice.sample_rate``)
is fed in 20 ms frames to :class:`VoiceInput`; the agent's voice goes through
:class:`AudioSpeechOutput` into a :class:`TimelineSink` whose play head is
the input's position, so the output WAV is the agent's audio *on the input's
timeline*: sample ``i`` of the output plays while sample ``i`` of the input is
heard. The output is at least as long as the input, plus the agent's tail.
After the input ends, silence is fed until the agent is idle.

Two clocks:

- ``--realtime``: frame ``k`` is fed when it would have arrived from a
  microphone (``t0 + (k+1)·20 ms`` on the wall clock) and the play head
  follows the wall clock. ASR, LLM and TTS take the time they take: latency
  and barge-in are measured honestly.
- default, *as fast as possible*: a virtual stream clock that advances one
  20 ms frame at a time, and only when the engine is settled — no event
  queued or being handled, no LLM generation streaming, no tool call running,
  no text waiting for synthesis. So recognition, generation, tool calls and
  synthesis take zero stream time; the output depends only on the input audio
  and the LLM's answers (timers such as the hold phrase still run on the wall
  clock). Leave the agent room to answer between the caller's utterances:
  speech that starts while the agent talks is a barge-in in both modes.
  ``UserSpeechPaused`` / ``UserSpeechResumed`` are not passed to the agent in
  this mode: with generation taking no stream time a preemptive answer gains
  nothing, whether the early decode beats the end of the pause would depend
  on the machine (the output would no longer depend on the input alone), and
  a held preemptive generation never counts as settled, so the clock could
  not reach the end of the pause.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from fsm import MonotonicClock
from ledger import entries as le
from peripherals.resample import resample

from ..config import Config
from ..events import DtmfReceived
from ..tools import ToolRegistry
from ..voice.input import PlaybackPause, UtteranceTiming
from ..voice.sinks import TimelineSink
from ..voice.turn_report import format_timings, turn_timings
from ..voice.wavio import WavError, check_writable, read_wav, write_wav
from .base import CallHandle, TransportBase
from .call import run_call

log = logging.getLogger(__name__)

KEY_GAP_S = 0.25  # between the keys of one --keys entry (s): a person typing
FRAME_MS = 20  # input framing, and the granularity of the output play head (ms)
MAX_TAIL_S = 120.0  # after the input ends, wait at most this long for the agent (stream s)
SETTLE_POLL_S = 0.002  # how often the fast mode checks that the engine settled (s)
SETTLE_TIMEOUT_S = 60.0  # the engine must settle within this (wall s), else the run fails


class EngineStuck(RuntimeError):
    """In fast mode the engine did not settle in ``SETTLE_TIMEOUT_S``."""


@dataclass
class AudioRunResult:
    """One answered recording."""

    agent_audio: np.ndarray  # float32 on the input's timeline
    sample_rate: int
    input_s: float
    entries: list[le.Entry]
    ledger_path: Path | None
    utterances: list[UtteranceTiming]
    playback_pauses: list[PlaybackPause]  # where a suspected barge-in held the agent's voice
    t0: float  # clock time of stream time 0 (meaningful in realtime mode)


class FileTransport(TransportBase):
    """A recording as the caller: 20 ms frames on the chosen clock; the agent's audio on a
    :class:`TimelineSink` whose play head is the input's position (see the module doc)."""

    name = "files"

    def __init__(
        self,
        samples: np.ndarray,
        sample_rate: int,
        *,
        realtime: bool,
        keys: Sequence[tuple[float, str]] = (),
    ) -> None:
        self._x = samples
        self._rate = sample_rate
        self.realtime = realtime
        # Keypad presses on the input's timeline (seconds, key), posted as DtmfReceived.
        self._keys = sorted(keys)
        self.call_actions: list[str] = []  # what the agent asked of the line (recorded only)
        self._hung_up = False
        self.sink = TimelineSink(sample_rate)
        self.clock = MonotonicClock()
        self.t0: float | None = None
        self._end_reason = "end of input"

    @property
    def input_rate(self) -> int:
        return self._rate

    @property
    def output(self) -> TimelineSink:
        return self.sink

    async def aclose(self) -> None:
        await self.sink.aclose()

    async def audio_in(self) -> AsyncIterator[np.ndarray]:
        """Frames of the recording, then silence until the agent is done (or ``MAX_TAIL_S``)."""
        call = self._call
        assert call is not None, "attach() the call first"
        rate, x, sink, clock = self._rate, self._x, self.sink, self.clock
        frame = rate * FRAME_MS // 1000
        n = len(x)
        t0 = self.t0 = clock.now()
        k = 0
        keys = list(self._keys)
        while True:
            pos = k * frame
            while keys and keys[0][0] * rate <= pos:
                call.post(DtmfReceived(digit=keys.pop(0)[1]))
            if self._hung_up:
                return
            if pos >= n:
                await asyncio.sleep(0)
                if not self.realtime:
                    await _settle(call)
                if call.done():
                    return
                if pos - n > MAX_TAIL_S * rate:
                    log.warning("the agent was still busy %.0f s after the input ended", MAX_TAIL_S)
                    return
                chunk = np.zeros(frame, dtype=np.float32)
            else:
                chunk = x[pos : pos + frame]
                if len(chunk) < frame:
                    chunk = np.concatenate([chunk, np.zeros(frame - len(chunk), dtype=np.float32)])
            if self.realtime:
                delay = t0 + (k + 1) * frame / rate - clock.now()
                if delay > 0:
                    await asyncio.sleep(delay)
                sink.advance_to(int((clock.now() - t0) * rate))
            else:
                await _settle(call)
                sink.advance(frame)
            call.poll_output()
            yield chunk
            k += 1

    # A recording cannot be transferred or hung up: the request is recorded and the
    # caller's side of the recording ends there.
    async def transfer(self, destination: str) -> None:
        self.call_actions.append(f"transfer to {destination}")
        self._end_reason, self._hung_up = "transferred", True

    async def hang_up(self) -> None:
        self.call_actions.append("hang up")
        self._end_reason, self._hung_up = "hang-up", True

    async def send_dtmf(self, digits: str) -> None:
        self.call_actions.append(f"send DTMF {digits}")


def parse_keys(spec: str) -> list[tuple[float, str]]:
    """``--keys "4.0:4417#,20:1"``: keypad presses at input times (seconds), 0.25 s apart.

    Raises ValueError with what is wrong.
    """
    out: list[tuple[float, str]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        at, sep, digits = part.partition(":")
        if not sep or not digits:
            raise ValueError(f"--keys: {part!r} is not TIME:KEYS (e.g. 4.0:4417#)")
        try:
            t = float(at)
        except ValueError:
            raise ValueError(f"--keys: {at!r} is not a time in seconds") from None
        bad = [d for d in digits if d not in "0123456789*#ABCD"]
        if t < 0 or bad:
            raise ValueError(f"--keys: {part!r}: time must be >= 0 and keys 0-9 * # A-D")
        out += [(t + i * KEY_GAP_S, d) for i, d in enumerate(digits)]
    return out


async def _settle(call: CallHandle) -> None:
    """Wait until nothing in the engine works towards output (fast mode's condition)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    await asyncio.sleep(0)
    while not call.settled():
        if loop.time() > deadline:
            raise EngineStuck(f"the engine did not settle within {SETTLE_TIMEOUT_S:g} s")
        await asyncio.sleep(SETTLE_POLL_S)


async def run_audio(
    config: Config,
    samples: np.ndarray,
    sample_rate: int,
    *,
    realtime: bool = False,
    tools: ToolRegistry | None = None,
    keys: Sequence[tuple[float, str]] = (),
) -> AudioRunResult:
    """Answer ``samples`` (mono, any rate) with the agent; returns its audio on the input's timeline."""
    rate = config.voice.sample_rate
    x = resample(samples.astype(np.float32), sample_rate, rate)
    transport = FileTransport(x, rate, realtime=realtime, keys=keys)
    try:
        result = await run_call(config, transport, tools=tools, clock=transport.clock)
    finally:
        await transport.aclose()
    return AudioRunResult(
        agent_audio=transport.sink.render(len(x)),
        sample_rate=rate,
        input_s=len(x) / rate,
        entries=result.entries,
        ledger_path=result.ledger_path,
        utterances=result.utterances,
        playback_pauses=result.playback_pauses,
        t0=transport.t0 if transport.t0 is not None else 0.0,
    )


async def run_files(
    config: Config,
    input_path: str | Path,
    output_path: str | Path,
    *,
    realtime: bool = False,
    tools: ToolRegistry | None = None,
    keys: Sequence[tuple[float, str]] = (),
) -> AudioRunResult:
    """Read ``input_path``, answer it, write the agent's audio to ``output_path`` (16-bit WAV).

    Both paths are checked before the call runs (an unwritable output fails at once).
    """
    samples, rate = read_wav(input_path)
    if Path(output_path).exists() and Path(output_path).resolve() == Path(input_path).resolve():
        # the agent's audio replaced the caller's recording (hostile7)
        raise WavError(
            f"{output_path}: is the input too; writing the agent's audio there would "
            "replace the caller's recording: give another output file"
        )
    check_writable(output_path)
    result = await run_audio(config, samples, rate, realtime=realtime, tools=tools, keys=keys)
    write_wav(output_path, result.agent_audio, result.sample_rate)
    return result


def main(config: Config, args: argparse.Namespace, stdout: TextIO = sys.stdout) -> int:
    """``voice-agent run``: returns the exit status (2 for an unreadable input)."""
    try:
        keys = parse_keys(getattr(args, "keys", None) or "")
    except ValueError as exc:
        print(f"voice-agent: {exc}", file=sys.stderr)
        return 2
    try:
        result = asyncio.run(
            run_files(config, args.input, args.output, realtime=bool(args.realtime), keys=keys)
        )
    except WavError as exc:
        print(f"voice-agent: {exc}", file=sys.stderr)
        return 2
    said = [e.text for e in result.entries if isinstance(e, le.UserUtterance) and e.final]
    stdout.write(
        f"input: {args.input} ({result.input_s:.1f} s, {len(said)} utterance(s)); "
        f"agent audio: {args.output} ({len(result.agent_audio) / result.sample_rate:.1f} s, "
        f"{'real time' if args.realtime else 'as fast as possible'})\n"
    )
    for entry in result.entries:
        if isinstance(entry, le.UserUtterance) and entry.final:
            stdout.write(f"you>   {entry.text}\n")
        elif isinstance(entry, le.AgentTextPlayed):
            cut = " —" if entry.interrupted else ""
            stdout.write(f"agent> {entry.text}{cut}\n")
    rows = turn_timings(
        result.utterances,
        result.entries,
        result.agent_audio,
        result.sample_rate,
        result.t0 if args.realtime else None,
    )
    if rows:
        stdout.write(format_timings(rows) + "\n")
        if not args.realtime:
            stdout.write(
                "(clock stages need --realtime: the fast stream clock does not run with it)\n"
            )
    if result.ledger_path is not None:
        stdout.write(f"ledger: {result.ledger_path}\n")
    stdout.flush()
    return 0
