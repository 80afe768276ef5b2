"""Fixtures of the local LLM tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from voice_agent.local_llm import resolve_model

#: The model whose vocabulary llama.cpp's grammar matcher runs on in grammar tests.
VOCAB_MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


@pytest.fixture(scope="module")
def vocab() -> Iterator[object]:
    """The 0.5B's vocabulary alone (no weights): what `grammar_helpers.grammar_accepts` runs on."""
    llama_cpp = pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")
    llama = llama_cpp.Llama(str(resolve_model(VOCAB_MODEL)), vocab_only=True, verbose=False)
    yield llama
    llama.close()
