"""A process's first LLM request costs no more than its later ones: what the OpenAI client
library imports on first use is imported when the client is built (the session's set-up)."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_llm_client_imports_the_chat_resources_before_the_first_request() -> None:
    code = (
        "import sys\n"
        "from voice_agent.config import load_config\n"
        "from voice_agent.llm import LlmClient\n"
        "cfg = load_config(None, environ={}, overrides={'llm': {'base_url': "
        "'http://127.0.0.1:9/v1', 'model': 'm'}})\n"
        "assert 'openai.resources.chat.completions' not in sys.modules\n"
        "LlmClient(cfg.llm)\n"
        "print('openai.resources.chat.completions' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "True", done.stderr
