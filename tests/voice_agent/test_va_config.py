"""Configuration: defaults, files, environment overrides and clear errors."""

from __future__ import annotations

import pytest

from voice_agent.config import ConfigError, load_config, render_system_prompt


def test_embedded_defaults_load_and_use_the_local_model():
    config = load_config(environ={})
    assert config.llm.base_url is None
    assert config.agent.mode == "async"
    assert "Acme" in render_system_prompt(config.agent)


def test_file_then_environment_then_overrides(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("agent:\n  mode: sync\n  company: Globex\nllm:\n  max_retries: 1\n")
    env = {
        "VOICE_AGENT__LLM__MAX_RETRIES": "4",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENAI_API_KEY": "sk-secret",
    }
    config = load_config(path, environ=env, overrides={"agent": {"persona": "Sam"}})
    assert config.agent.mode == "sync"
    assert config.llm.max_retries == 4
    assert config.llm.base_url == "http://127.0.0.1:9/v1"
    assert config.llm.api_key.get_secret_value() == "sk-secret"
    assert "sk-secret" not in repr(config)
    prompt = render_system_prompt(config.agent)
    assert "Sam" in prompt and "Globex" in prompt


@pytest.mark.parametrize(
    ("yaml_text", "field", "problem"),
    [
        ("agent:\n  mode: turbo\n", "agent.mode", "'sync', 'async' or 'speculative'"),
        ("llm:\n  base_url: localhost:8000\n", "llm.base_url", "http://"),
        ("llm:\n  timeout_s: -1\n", "llm.timeout_s", "greater than 0"),
        ("agent:\n  moood: sync\n", "agent.moood", "Extra inputs are not permitted"),
        ("- just\n- a list\n", "top level", "mapping"),
        ("agent: [unclosed\n", "not valid YAML", ""),
    ],
)
def test_a_bad_config_names_the_field_and_the_problem(tmp_path, yaml_text, field, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert field in str(info.value) and problem in str(info.value)
    assert (
        str(path) in str(info.value)
        or "not valid" in str(info.value)
        or "top level" in str(info.value)
    )


def test_a_bad_api_key_value_is_never_echoed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("llm:\n  api_key: [1234, 5678]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "llm.api_key" in str(info.value) and "1234" not in str(info.value)


def test_a_text_field_from_the_environment_is_taken_verbatim():
    # an environment variable for a text field is text, whatever YAML would make of it
    config = load_config(environ={"VOICE_AGENT__LLM__API_KEY": "[1, 2]"})
    assert config.llm.api_key.get_secret_value() == "[1, 2]"


def test_missing_config_file_is_an_error():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/config.yaml", environ={})
