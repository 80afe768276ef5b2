"""The real 0.5B: a call whose values nobody said ends its decoding (notool9, session 9).

Asked "Could you order me a taxi to the station?" with the phone line's tools, the 1.5B
looked up an invented order "12345" and went on with calls on a customer nobody named,
41-75 tokens before the caller heard "Sorry, I can't help" (bench e22, session 8). Every
model step here is greedy, so each case is one deterministic run of the real model.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

pytest.importorskip("llama_cpp", reason="pip install 'voice-agent[local-llm]'")

from voice_agent.local_llm import resolve_model  # noqa: E402
from voice_agent.local_llm.engine import LlamaEngine  # noqa: E402
from voice_agent.local_llm.output_parser import ToolCallStreamParser  # noqa: E402
from voice_agent.local_llm.protocol import parse_chat_request  # noqa: E402
from voice_agent.local_llm.reply import ReplyAssembler  # noqa: E402
from voice_agent.local_llm.respond import (  # noqa: E402
    ASK_LEAD,
    CANNOT_LEAD,
    MAX_CALLS_PER_REPLY,
    Responder,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"
SYSTEM = "You are Sam, the phone agent of Acme Home. Answer briefly."


def _phone_tools() -> list[dict[str, Any]]:
    from voice_agent.phone import tools as phone

    return [spec.openai_schema() for spec in phone.registry]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def engine():
    engine = LlamaEngine.load(resolve_model(MODEL), "qwen", 2, 4096)
    yield engine
    engine.close()


class Steps:
    """The real engine, each step's text recorded (what the model wrote, until it stopped)."""

    def __init__(self, engine: LlamaEngine) -> None:
        self.engine = engine
        self.written: list[tuple[str, str]] = []  # (the prompt's last 40 characters, text)

    async def next_token_probability(self, prompt: str, text: str) -> float:
        return await self.engine.next_token_probability(prompt, text)

    async def generate(self, prompt, params, grammar, on_text, until=None):  # type: ignore[no-untyped-def]
        written: list[str] = []

        async def recorded(piece: str) -> bool:
            written.append(piece)
            return await on_text(piece)

        try:
            return await self.engine.generate(prompt, params, grammar, recorded, until)
        finally:
            self.written.append((prompt[-40:], "".join(written)))


async def _respond(engine: LlamaEngine, said: str, tool_choice: str) -> tuple[Responder, Steps]:
    chat = parse_chat_request(
        {
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": said}],
            "tools": _phone_tools(),
            "tool_choice": tool_choice,
            "temperature": 0.0,
            "max_tokens": 200,
        }
    )
    reply = ReplyAssembler(ToolCallStreamParser(bare_json_calls=True))
    steps = Steps(engine)
    responder = Responder(steps, chat, reply)  # type: ignore[arg-type]

    async def on_text(piece: str) -> bool:
        _, go_on = reply.feed(piece)
        return go_on

    await responder.run(on_text)
    reply.finish()
    return responder, steps


@pytest.mark.parametrize(
    "said",
    # (not "a table for two": "two" is a number said, and "2" an order number grounded)
    ["Could you order me a taxi to the station?", "Can you recommend a good plumber near me?"],
)
async def test_a_call_on_an_order_nobody_named_stops_inside_its_number(engine, said):
    # "required": the decision must name a tool, as the 1.5B's did for e22; the call
    # step may write MAX_CALLS_PER_REPLY calls.
    responder, steps = await _respond(engine, said, "required")
    reply = responder.reply
    calls = [text for prompt, text in steps.written if prompt.endswith('"arguments": ')]
    assert calls, steps.written  # the decision named a tool and its call was decoded
    assert not reply.calls  # nothing nobody said is looked up
    # The step ended inside the first call: not one call was written whole, let alone
    # the further ones the grammar allows (before: '{"order_number": "12345"}}' and on).
    assert "</tool_call>" not in calls[0] and '"}' not in calls[0], calls[0]
    assert MAX_CALLS_PER_REPLY > 1
    assert getattr(reply, "stopped_at_invented", False)
    ((_, missing),) = reply.ungrounded
    assert missing
    # and the agent asks or declines, in so many words
    assert reply.text.startswith((ASK_LEAD, CANNOT_LEAD)), reply.text
