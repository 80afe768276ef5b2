"""Build the speech models and the pipeline pieces from ``Config.voice``.

Loading takes about a second (Whisper ~0.5 s, piper ~0.3 s): do it before
latency matters. Every object returned here is closed by its user.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from fsm import Event
from peripherals.aec import EchoCanceller, EchoCancellerUnavailableError, WebRtcEchoCanceller
from peripherals.asr import AsrPartial, StreamingAsr, WhisperStreamingAsr
from peripherals.audio import ModelNotInstalledError
from peripherals.half_duplex import HalfDuplexGate
from peripherals.tts import PiperTts
from peripherals.turn import SmartTurnDetector, TurnDetector
from peripherals.vad import SileroVad, Vad, VadSegmenter

from ..config import TurnConfig, VoiceConfig
from .endpointing import DEFAULT_BACKCHANNELS, EndpointingRules
from .input import VAD_RATES, Playback, VoiceInput

# The VAD's end threshold sits this far below its start threshold: hysteresis
# against a probability flickering around one value (probability).
VAD_HYSTERESIS = 0.15

log = logging.getLogger(__name__)


def vad_rate(sample_rate: int) -> int:
    """The rate the VAD runs at for frames at ``sample_rate``: the same if Silero takes it, else 16 kHz."""
    return sample_rate if sample_rate in VAD_RATES else 16000


def build_vad(
    cfg: VoiceConfig, sample_rate: int | None = None, vad: Vad | None = None
) -> VadSegmenter:
    """Silero VAD for frames at ``sample_rate`` (default ``cfg.sample_rate``), segmented per
    ``cfg``; ``vad`` when given (a worker's model sharing one ONNX session)."""
    rate = vad_rate(sample_rate or cfg.sample_rate)
    return VadSegmenter(
        vad if vad is not None else SileroVad(rate),
        start_threshold=cfg.vad_threshold,
        end_threshold=max(0.05, cfg.vad_threshold - VAD_HYSTERESIS),
        min_silence_s=cfg.vad_min_silence_ms / 1000,
    )


def asr_factory(cfg: VoiceConfig) -> Callable[[Callable[[AsrPartial], None]], StreamingAsr]:
    """``make_asr(on_partial)`` for :class:`VoiceInput`: streaming Whisper per ``cfg``."""

    def make(on_partial: Callable[[AsrPartial], None]) -> StreamingAsr:
        return WhisperStreamingAsr(
            cfg.asr_model,
            on_partial=on_partial,
            cpu_threads=cfg.asr_threads,
            final_cpu_threads=cfg.asr_final_threads,
            partial_interval_s=cfg.asr_partial_interval_s,
            window_s=cfg.asr_window_s,
            window_pad=cfg.asr_window_pad,
        )

    return make


def tts_options(cfg: VoiceConfig) -> dict[str, Any]:
    """``PiperTts`` keyword arguments for ``cfg``'s speed and variability."""
    return {
        "length_scale": None if cfg.tts_speed == 1.0 else 1.0 / cfg.tts_speed,
        "variability": cfg.tts_variability,
    }


def build_tts(cfg: VoiceConfig, output_rate: int) -> PiperTts:
    """Piper with ``cfg``'s voice, speed and variability, producing audio at ``output_rate``;
    warmed up."""
    tts = PiperTts(
        cfg.tts_voice, output_rate=output_rate, threads=cfg.tts_threads, **tts_options(cfg)
    )
    tts.warm_up()
    return tts


def build_echo_control(cfg: VoiceConfig) -> tuple[EchoCanceller | None, HalfDuplexGate | None]:
    """The echo canceller or the half-duplex gate that ``cfg.echo`` asks for.

    ``aec`` falls back to the gate, with a warning, when the WebRTC module is
    not installed (``pip install livekit``).
    """
    if cfg.echo == "aec":
        try:
            return WebRtcEchoCanceller(cfg.sample_rate), None
        except (EchoCancellerUnavailableError, ValueError) as exc:
            log.warning("echo cancellation unavailable (%s): using the half-duplex gate", exc)
            return None, HalfDuplexGate()
    if cfg.echo == "half_duplex":
        return None, HalfDuplexGate()
    return None, None


def turn_rules(cfg: TurnConfig) -> EndpointingRules:
    """The end-of-turn policy from its settings: each rule ``X_s`` is the setting
    ``X_ms`` in seconds, ``mode`` is ``decision``, every other rule its namesake.
    A rule without its setting is a programming error (raised, not defaulted)."""
    values: dict[str, Any] = {}
    for rule in fields(EndpointingRules):
        name, in_ms = rule.name, rule.name.removesuffix("_s") + "_ms"
        if name == "mode":
            values[name] = cfg.decision
        elif name.endswith("_s") and in_ms in TurnConfig.model_fields:
            ms = getattr(cfg, in_ms)
            values[name] = None if ms is None else ms / 1000
        elif name in TurnConfig.model_fields:
            values[name] = getattr(cfg, name)
        else:
            raise TypeError(f"EndpointingRules.{name} has no setting in TurnConfig")
    return EndpointingRules(**values)


def build_turn_detector(cfg: VoiceConfig, sample_rate: int | None = None) -> TurnDetector | None:
    """Smart Turn at the VAD's rate for frames at ``sample_rate`` (default
    ``cfg.sample_rate``), or None (with a warning) when it is not installed.
    Stateless: one detector may serve many calls."""
    try:
        return SmartTurnDetector(vad_rate(sample_rate or cfg.sample_rate), model=cfg.turn.model)
    except ModelNotInstalledError as exc:
        log.warning("%s; the transcript and the silence decide when turns end", exc)
        return None


def build_input(
    cfg: VoiceConfig,
    post: Callable[[Event], None],
    *,
    agent_busy: Callable[[], bool],
    gate: HalfDuplexGate | None = None,
    playback: Playback | None = None,
    sample_rate: int | None = None,
    vad: VadSegmenter | None = None,
    make_asr: Callable[[Callable[[AsrPartial], None]], StreamingAsr] | None = None,
    turn_detector: TurnDetector | None = None,
) -> VoiceInput:
    """A :class:`VoiceInput` for frames at ``sample_rate`` (default ``cfg.sample_rate``);
    ``playback`` (the agent's voice) is paused while possible barge-in speech lasts.
    ``vad``, ``make_asr`` and ``turn_detector`` replace the ones built from ``cfg`` (a
    worker's shared models)."""
    rate = sample_rate or cfg.sample_rate
    model_turns = cfg.turn.detection == "model"
    if model_turns and turn_detector is None:
        turn_detector = build_turn_detector(cfg, rate)
    return VoiceInput(
        vad=vad if vad is not None else build_vad(cfg, rate),
        make_asr=make_asr if make_asr is not None else asr_factory(cfg),
        post=post,
        sample_rate=rate,
        agent_busy=agent_busy,
        gate=gate,
        playback=playback,
        barge_in=cfg.barge_in,
        level_onset=cfg.barge_in_onset == "level",
        min_barge_in_s=cfg.min_barge_in_ms / 1000,
        unfinished_extra_silence_s=cfg.unfinished_extra_silence_ms / 1000,
        turn_rules=turn_rules(cfg.turn) if model_turns else None,
        turn_detector=turn_detector if model_turns else None,
        backchannels=(cfg.backchannel.phrases or DEFAULT_BACKCHANNELS)
        if cfg.backchannel.enabled
        else None,
        backchannel_max_s=cfg.backchannel.max_ms / 1000,
        tail_decode=cfg.asr_tail_decode,
        tail_quiet_below=cfg.asr_tail_quiet_below,
    )
