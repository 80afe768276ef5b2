"""End-of-turn detection from the audio: the ``TurnDetector`` protocol and ``SmartTurnDetector``.

A VAD knows when the caller is silent, not whether they are done: "my order
number is ..." and "that's all, thanks." end in the same silence. A turn
detector reads *how* the speech ended (intonation, a trailing filler, a cut
word) and scores the probability that the turn is complete.

``SmartTurnDetector`` runs Pipecat's Smart Turn v3.2 (BSD-2-Clause, a
Whisper-tiny encoder with a classification head, 8.7 MB ONNX) with
onnxruntime alone: the last 8 s of the turn (zero-padded in front), as
Whisper log-mel features (:mod:`peripherals.mel`), give one sigmoid
probability. The model file is installed by :mod:`peripherals.turn_model`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from peripherals.audio import ModelNotInstalledError, to_float32
from peripherals.mel import MEL_RATE, log_mel
from peripherals.prosody import Contour, final_contour
from peripherals.turn_model import resolve_turn_model

WINDOW_S = 8  # seconds of audio the model reads (the end of the turn, zero-padded in front)


class TurnDetector(Protocol):
    """Probability that a speaker has finished their turn, from its audio.

    ``probability_done(audio)`` takes the turn so far (mono float32 or int16
    at ``sample_rate``, ending now: the speech and the silence after it) and
    returns a probability in [0, 1]. It is stateless between calls and may
    block for tens of milliseconds: call it from a worker thread.
    """

    @property
    def sample_rate(self) -> int: ...

    def probability_done(self, audio: np.ndarray) -> float: ...


@dataclass(frozen=True)
class TurnScore:
    """One scoring: the probability, the pitch contour of the same audio, and what it cost."""

    probability: float
    compute_s: float  # wall seconds of the call (model and contour)
    audio_s: float  # seconds of audio scored
    contour: Contour | None = None  # how the speech ended (None: too little voicing)


def score(detector: TurnDetector, audio: np.ndarray, *, with_contour: bool = True) -> TurnScore:
    """Run ``detector`` on ``audio`` and, unless ``with_contour`` is false, track the pitch
    at its end (:func:`peripherals.prosody.final_contour`, a few ms); time both (blocking)."""
    started = time.perf_counter()
    p = detector.probability_done(audio)
    contour = final_contour(audio, detector.sample_rate) if with_contour else None
    return TurnScore(p, time.perf_counter() - started, len(audio) / detector.sample_rate, contour)


def _session(path: Path, threads: int) -> object:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelNotInstalledError(
            "SmartTurnDetector needs onnxruntime: pip install 'onnxruntime>=1.17,<2'"
        ) from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Busy-waiting threads would steal the core that ASR or TTS is using.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class SmartTurnDetector:
    """``TurnDetector`` running Smart Turn v3.2 on onnxruntime (CPU).

    Audio at 8 kHz (the phone path) is resampled to the model's 16 kHz.
    ``model`` is a path to another ONNX file of the same interface; by
    default the installed v3.2 file. One scoring costs ~the same whatever the
    turn's length (the window is always 8 s).
    """

    def __init__(self, sample_rate: int = 16000, model: str | None = None, threads: int = 1):
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.model_path = resolve_turn_model(model)
        self._session = _session(self.model_path, threads)
        inputs = self._session.get_inputs()  # type: ignore[attr-defined]
        if [i.name for i in inputs] != ["input_features"]:
            raise ValueError(f"{self.model_path} is not a Smart Turn v3 model")
        self._rate = sample_rate

    @property
    def sample_rate(self) -> int:
        return self._rate

    def probability_done(self, audio: np.ndarray) -> float:
        x = to_float32(np.asarray(audio))
        keep = WINDOW_S * self._rate
        x = x[-keep:]  # only the end matters; bounds the resampling cost
        if self._rate != MEL_RATE:
            from peripherals.resample import resample

            x = resample(x, self._rate, MEL_RATE)
        window = np.zeros(WINDOW_S * MEL_RATE, dtype=np.float32)
        if len(x):
            window[-len(x) :] = x[-len(window) :]
        features = log_mel(window, len(window))[np.newaxis]
        out = self._session.run(None, {"input_features": features})  # type: ignore[attr-defined]
        return float(np.asarray(out[0]).reshape(-1)[0])
