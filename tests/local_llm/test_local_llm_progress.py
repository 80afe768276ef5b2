"""Progress reports from the embedded server, on the real 0.5B model and the real client.

The engine counts the tokens it evaluates (prompt slices and reply tokens);
the server reports that count on a streamed request that asks for it
(``return_progress``), and :class:`~voice_agent.llm.LlmClient` yields each
report whose count grew as :class:`~voice_agent.llm.Progressed`. The server
runs in this process (aiohttp on 127.0.0.1, a port the OS picks) so its
report interval can be made small; nothing here asserts a duration.
"""

import asyncio

import pytest
import pytest_asyncio
from aiohttp import web

from voice_agent.config import LlmConfig
from voice_agent.llm import LlmClient, Progressed, StreamFinished, TextDelta
from voice_agent.local_llm import resolve_model
from voice_agent.local_llm import server as server_module
from voice_agent.local_llm.engine import LlamaEngine, SamplingParams

pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"
# A prompt of a few hundred tokens (each request of this module differs early, so the KV
# cache holds little of it).
FACTS = " ".join(
    f"Order {40000 + i} was packed on day {i} and shipped from dock {i % 7}." for i in range(12)
)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine():
    engine = await asyncio.to_thread(LlamaEngine.load, resolve_model(MODEL), "qwen", 2, 2048)
    yield engine
    engine.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def base_url(engine):
    runner = web.AppRunner(server_module.build_app(engine), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}/v1"
    await runner.cleanup()


async def test_the_engine_counts_each_token_it_evaluates(engine):
    prompt = f"<|im_start|>user\nA list: {FACTS}\nSay ok.<|im_end|>\n<|im_start|>assistant\n"

    async def on_text(piece: str) -> bool:
        return True

    before = engine.evaluated_tokens
    stats = await engine.generate(prompt, SamplingParams(max_tokens=3, seed=1), None, on_text)
    counted = engine.evaluated_tokens - before
    uncached = stats.prompt_tokens - stats.reused_prompt_tokens
    # the uncached prompt, and the reply's tokens that were fed back (not the last one)
    assert uncached <= counted <= uncached + stats.completion_tokens
    assert uncached > 100
    again = engine.evaluated_tokens
    await engine.generate(prompt, SamplingParams(max_tokens=3, seed=1), None, on_text)
    assert engine.evaluated_tokens - again < counted  # the cached prefix is not counted again


async def stream(base_url: str, progress: bool, question: str) -> list:
    # Deadlines far past any load (at load 19 a plain request's prefill took over 30 s):
    # what is asserted is the reports, never how long they took.
    slack = 600.0  # seconds
    config = LlmConfig(
        base_url=base_url, model="qwen", max_tokens=8, progress=progress,
        timeout_s=slack, first_token_timeout_s=slack, stall_timeout_s=slack,
    )  # fmt: skip
    client = LlmClient(config)
    messages = [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": f"{question}\n{FACTS}"},
    ]
    try:
        return [item async for item in client.stream(messages)]
    finally:
        await client.aclose()


async def test_a_client_that_asks_gets_growing_progress_and_one_that_does_not_gets_none(
    base_url, monkeypatch
):
    monkeypatch.setattr(server_module, "PROGRESS_INTERVAL_S", 0.002)  # seconds
    asked = await stream(base_url, True, "When was order 40003 packed?")
    reports = [item for item in asked if isinstance(item, Progressed)]
    assert reports, asked  # a prefill of hundreds of tokens takes many 2 ms intervals
    for before, after in zip(reports, reports[1:], strict=False):  # each report grew
        assert after.tokens >= before.tokens and after.cpu_ms >= before.cpu_ms
        assert (after.tokens, after.cpu_ms) != (before.tokens, before.cpu_ms)
    assert reports[-1].cpu_ms > 0
    assert isinstance(asked[-1], StreamFinished)
    assert "".join(item.text for item in asked if isinstance(item, TextDelta)).strip()

    plain = await stream(base_url, False, "When was order 40011 packed?")
    assert not any(isinstance(item, Progressed) for item in plain)
    assert isinstance(plain[-1], StreamFinished)
