"""The embedded default LLM: a local OpenAI-compatible server on llama.cpp.

When no LLM endpoint is configured, the agent starts `LocalLlmServer`
(`models.DEFAULT_MODEL`, Qwen2.5-Coder-1.5B-Instruct Q4_K_M from PyPI) and talks to it
with the ordinary `openai.AsyncOpenAI` client. The server makes a small
model's tool calls dependable with grammar-constrained output while speaking
the standard protocol (streamed ``tool_calls`` deltas).

Modules: `models` (registry, `resolve_model`), `chat_format` (ChatML
prompt), `grammar` (GBNF), `output_parser` (incremental text/call split),
`reply` (OpenAI deltas), `protocol` (wire format), `engine` (llama.cpp),
`sampling` (grammar checked on the drawn token), `respond` (decide, then
call or speak), `grounding` and `turn_history` (what a reply may use),
`server` (HTTP), `launcher` (child process).

Importing this package does not import llama.cpp, nor the server and its
HTTP stack: `LocalLlmServer` and `run_local_llm_server` load on first use
(the configuration imports `models.DEFAULT_MODEL` at every start-up).
"""

from typing import TYPE_CHECKING, Any

from voice_agent.local_llm.errors import (
    LocalLlmError,
    ModelIntegrityError,
    ModelNotInstalledError,
    ServerStartError,
    UnknownModelError,
)
from voice_agent.local_llm.models import DEFAULT_MODEL, MODELS, ModelSpec, cache_dir, resolve_model

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "LocalLlmError",
    "LocalLlmServer",
    "ModelIntegrityError",
    "ModelNotInstalledError",
    "ModelSpec",
    "ServerStartError",
    "UnknownModelError",
    "cache_dir",
    "resolve_model",
    "run_local_llm_server",
]

if TYPE_CHECKING:
    from voice_agent.local_llm.launcher import LocalLlmServer, run_local_llm_server


def __getattr__(name: str) -> Any:
    if name in ("LocalLlmServer", "run_local_llm_server"):
        from voice_agent.local_llm import launcher

        return getattr(launcher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
