"""The real server stops on SIGTERM by itself, even in the middle of an answer.

Whoever stops the server (the agent ending, the launcher) does not want the
answer it is writing: in-flight requests get `SHUTDOWN_GRACE_S`, and the
process exits by `EXIT_DEADLINE_S` however far its graceful stop got (an
evaluation in the model cannot be interrupted). The launcher kills a server
still alive 5 s after SIGTERM; a server that stopped by itself exits with 0.
"""

import httpx
import pytest

from voice_agent.local_llm import LocalLlmServer

openai = pytest.importorskip("openai")
pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


async def test_a_server_stopped_mid_answer_exits_by_itself_and_does_not_finish_it():
    async with LocalLlmServer(model=MODEL, startup_timeout_s=300) as server:
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key="local", max_retries=0, timeout=300
        )
        stream = await client.chat.completions.create(
            model=server.model_name,
            stream=True,
            max_tokens=2000,  # minutes of writing: it is stopped long before the end
            temperature=0.0,
            messages=[{"role": "user", "content": "Count from 1 to 1000, one number a line."}],
        )
        async for chunk in stream:  # the model is writing
            if chunk.choices and chunk.choices[0].delta.content:
                break
        process = server._process
        assert process is not None
        await server.aclose()  # SIGTERM; SIGKILL if still alive 5 s later
        finished = False
        try:
            async for chunk in stream:
                finished = finished or bool(chunk.choices and chunk.choices[0].finish_reason)
        except (openai.APIError, httpx.HTTPError):
            pass  # the connection went away mid-answer: what a stopped server does
        await client.close()
    assert process.returncode == 0  # it stopped itself (killed: -9); was killed under load
    assert not finished  # it did not write the rest first
