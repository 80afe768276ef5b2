"""The model registry's default is the one default of the configuration."""

from __future__ import annotations

from voice_agent.config import load_config
from voice_agent.local_llm.models import DEFAULT_MODEL, MODELS


def test_the_configuration_default_is_the_registry_default_and_is_registered():
    assert load_config(environ={}).local_llm.model == DEFAULT_MODEL
    assert DEFAULT_MODEL in MODELS
    assert "default" in MODELS[DEFAULT_MODEL].description


def test_a_config_file_may_still_pick_another_registered_model():
    config = load_config(
        environ={}, overrides={"local_llm": {"model": "qwen2.5-coder-0.5b-instruct-q4_k_m"}}
    )
    assert config.local_llm.model == "qwen2.5-coder-0.5b-instruct-q4_k_m" != DEFAULT_MODEL
