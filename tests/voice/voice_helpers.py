"""Helpers for the audio-pipeline tests (tests/voice): piper-synthesized callers, the
oracle LLM with an order-status tool, Whisper transcription of the agent's audio."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from peripherals.audio_io import rescan_devices
from peripherals.resample import resample
from voice_agent.bench.oracle import MODEL_ID, OracleServer
from voice_agent.bench.runner import build_registry
from voice_agent.bench.scenario import Scenario
from voice_agent.config import Config, load_config
from voice_agent.tools import ToolRegistry

RATE = 16000
ORDER_QUESTION = "Where is my order number four two seven?"  # tiny.en: "... order number 427?"
ORDER_ANSWER = "Your order four two seven has shipped and arrives on Friday."


@functools.cache
def _voice() -> Any:
    from piper import PiperVoice

    from peripherals.models import resolve_tts_voice

    ref = resolve_tts_voice()
    return PiperVoice.load(ref.model_path, ref.config_path)


@functools.cache
def _speech(text: str, length_scale: float) -> np.ndarray:
    from piper import SynthesisConfig

    voice = _voice()
    # No noise: piper samples its phoneme durations and voice at random by default, so the
    # same caller sounded different on every run (a CI run failed on one unlucky sample).
    config = SynthesisConfig(length_scale=length_scale, noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(voice.synthesize(text, syn_config=config))
    audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return resample(audio, chunks[0].sample_rate, RATE)


@dataclass(frozen=True)
class Utterance:
    """Where one synthesized utterance sits in a caller recording (seconds)."""

    text: str
    start_s: float  # first audible sample
    end_s: float  # last audible sample


def speech(
    text: str, length_scale: float = 1.0, gain: float = 0.5
) -> tuple[np.ndarray, float, float]:
    """Piper speech at 16 kHz scaled by ``gain``; returns (samples, first, last audible second)."""
    x = _speech(text, length_scale) * gain
    audible = np.nonzero(np.abs(x) > 0.02 * np.max(np.abs(x)))[0]
    return x, audible[0] / RATE, audible[-1] / RATE


def burst(text: str = "Stop.", ms: float = 150.0) -> np.ndarray:
    """The loudest ``ms`` of ``text`` spoken: a cough-like burst that the VAD takes for speech."""
    x, _, _ = speech(text)
    n = int(ms / 1000 * RATE)
    energy = np.convolve(x * x, np.ones(n, dtype=np.float32), "valid")
    i = int(np.argmax(energy))
    return x[i : i + n]


def caller_recording(
    parts: list[tuple[float, str, float]],
    total_s: float,
    *,
    snr_db: float | None = None,
    seed: int = 7,
) -> tuple[np.ndarray, list[Utterance]]:
    """A caller's recording: ``(at_s, text, length_scale)`` utterances placed on silence of
    ``total_s``; with ``snr_db``, white noise at that SNR (relative to the speech power)."""
    out = np.zeros(int(total_s * RATE), dtype=np.float32)
    placed: list[Utterance] = []
    for at_s, text, scale in parts:
        x, first, last = speech(text, scale)
        i = int(at_s * RATE)
        out[i : i + len(x)] += x[: len(out) - i]
        placed.append(Utterance(text, at_s + first, at_s + last))
    if snr_db is not None:
        active = np.concatenate([speech(t, s)[0] for _, t, s in parts])
        power = float(np.mean(active**2)) / 10 ** (snr_db / 10)
        rng = np.random.default_rng(seed)
        out = out + rng.standard_normal(len(out)).astype(np.float32) * np.float32(np.sqrt(power))
    return out.astype(np.float32), placed


def order_scenario(
    *, answer: str = ORDER_ANSWER, ttft_ms: float = 300.0, filler: str | None = None
) -> Scenario:
    """One turn: the caller asks for order 427; the oracle calls get_order_status only when
    '427' reached it in the user message, then says ``answer``."""
    turn: dict[str, Any] = {
        "user": "Where is my order number 427?",
        "calls": [{"tool": "get_order_status", "arguments": {"order_id": "{{user:427}}"}}],
        "answer": [{"say": answer, "needs": ["get_order_status"], "expect": ["shipped"]}],
    }
    if filler:
        turn["filler"] = filler
    return Scenario.model_validate(
        {
            "name": "voice_order",
            "oracle": {"ttft_ms": ttft_ms, "tokens_per_s": 60},
            "tools": [
                {
                    "name": "get_order_status",
                    "description": "Look up an order's shipping status.",
                    "parameters": {
                        "type": "object",
                        "properties": {"order_id": {"type": "string"}},
                        "required": ["order_id"],
                    },
                    "latency_ms": 300,
                    "result": {"order_id": "427", "status": "shipped"},
                }
            ],
            "turns": [turn],
        }
    )


def voice_config(base_url: str, ledger_dir: str, **voice: Any) -> Config:
    """Config for the oracle at ``base_url``: async mode, ledger in ``ledger_dir``."""
    return load_config(
        None,
        environ={},
        overrides={
            "llm": {"base_url": base_url, "model": MODEL_ID, "max_retries": 0},
            "agent": {"mode": "async", "system_prompt": "You are a helpful agent."},
            "ledger": {"directory": ledger_dir, "persist": True},
            # The agent's voice says the same text with the same samples on every run, so a
            # test that transcribes it does not pass or fail on piper's random draw.
            "voice": {"tts_variability": 0.0, **voice},
        },
    )


@dataclass
class OracleRig:
    server: OracleServer
    scenario: Scenario
    tools: ToolRegistry
    invocations: list[dict[str, Any]]


async def start_oracle(scenario: Scenario) -> AsyncIterator[OracleRig]:
    """The oracle server and the scenario's scripted tools (invocations recorded)."""
    from fsm import MonotonicClock

    invocations: list[dict[str, Any]] = []
    tools = build_registry(scenario, MonotonicClock(), invocations)
    async with OracleServer(scenario) as server:
        yield OracleRig(server, scenario, tools, invocations)


@functools.cache
def _whisper() -> Any:
    from faster_whisper import WhisperModel

    from peripherals.models import resolve_asr_model

    return WhisperModel(
        resolve_asr_model().location, device="cpu", compute_type="int8", cpu_threads=2
    )


def transcribe(samples: np.ndarray, rate: int = RATE) -> str:
    """What Whisper tiny.en hears in ``samples`` (lower-case text)."""
    x = resample(samples.astype(np.float32), rate, 16000)
    segments, _ = _whisper().transcribe(
        x, language="en", beam_size=1, temperature=0.0, condition_on_previous_text=False
    )
    return " ".join(s.text.strip() for s in segments).lower()


def audible_spans(
    x: np.ndarray, rate: int = RATE, *, threshold: float = 0.01, gap_s: float = 0.3
) -> list[tuple[float, float]]:
    """(start, end) seconds of non-silent stretches (|x| > threshold), merging gaps < ``gap_s``."""
    idx = np.nonzero(np.abs(x) > threshold)[0]
    if len(idx) == 0:
        return []
    spans: list[tuple[float, float]] = []
    start = prev = int(idx[0])
    for i in idx[1:]:
        i = int(i)
        if i - prev > gap_s * rate:
            spans.append((start / rate, prev / rate))
            start = i
        prev = i
    spans.append((start / rate, prev / rate))
    return spans


class RecordingPlayback:
    """Stands in for the agent's voice: records pause/resume calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")


# ---------------------------------------------------------------- PulseAudio virtual devices
# The native protocol's socket comes last: once it exists, the devices do.
PULSE_CONFIG = """\
load-module module-null-sink sink_name=mic_feed rate=16000 channels=1
load-module module-null-sink sink_name=agent_out rate=16000 channels=1
set-default-sink agent_out
set-default-source mic_feed.monitor
load-module module-native-protocol-unix
"""
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _die_with_parent() -> Callable[[], None]:
    """For ``Popen(preexec_fn=…)``: the child gets SIGTERM when this process dies, however
    it dies (a test run killed with SIGKILL left its daemon running for 90 minutes).
    Linux's parent-death signal; "parent" is the thread that starts the child, so start it
    from a thread that lives as long as the daemon should (pytest's main thread)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was asked for
            os.kill(os.getpid(), signal.SIGTERM)

    return in_child


@dataclass(frozen=True)
class Pulse:
    """A private PulseAudio daemon: ``env`` reaches it (for paplay/parecord/pactl)."""

    env: dict[str, str]
    runtime: str
    pid: int


@contextlib.contextmanager
def private_pulse(root: Path) -> Iterator[Pulse]:
    """A private PulseAudio daemon under ``root`` with null sinks mic_feed and agent_out,
    this process's environment pointed at it while it runs; stopped afterwards, and
    also when this process is killed (it is this process's child, with a parent-death
    signal: ``_die_with_parent``).

    PortAudio (through ALSA's pulse plugin) sees it as the devices "pulse" and
    "default": the default source is mic_feed.monitor, the default sink agent_out.
    """
    home, runtime = root / "home", root / "run"
    home.mkdir(parents=True)
    runtime.mkdir(mode=0o700)
    (root / "default.pa").write_text(PULSE_CONFIG)
    names = ("HOME", "XDG_RUNTIME_DIR", "PULSE_SERVER", "VOICE_AGENT_CACHE")
    saved = {name: os.environ.get(name) for name in names}
    # Models assembled into ~/.cache stay where they are while HOME points elsewhere.
    cache = os.environ.get("VOICE_AGENT_CACHE") or str(Path.home() / ".cache" / "voice-agent")
    env = dict(
        os.environ,
        VOICE_AGENT_CACHE=cache,
        HOME=str(home),
        XDG_RUNTIME_DIR=str(runtime),
        PULSE_SERVER=f"unix:{runtime}/pulse/native",
    )
    log = (root / "pulse.log").open("wb")
    daemon = subprocess.Popen(
        ["pulseaudio", "-n", "-F", str(root / "default.pa"), "--daemonize=no",
         "--exit-idle-time=-1", "--use-pid-file=yes", "--log-level=error"],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        preexec_fn=_die_with_parent(),  # a prctl call in the child: nothing that locks
    )  # fmt: skip
    try:
        socket = runtime / "pulse" / "native"
        deadline = time.monotonic() + 60  # a safety net, never the measure of a test
        while not socket.exists() and daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if not socket.exists():
            raise RuntimeError(f"pulseaudio did not start: {(root / 'pulse.log').read_text()}")
        os.environ.update({name: env[name] for name in names})
        rescan_devices()  # PortAudio lists devices when it starts: rescan with the daemon up
        yield Pulse(env=env, runtime=str(runtime), pid=daemon.pid)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        daemon.terminate()  # a test may have killed it already
        try:
            daemon.wait(10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        rescan_devices()  # not after a stream was abandoned (it would wait for that stream)
