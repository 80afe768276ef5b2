"""What the embedded model does with the futures note and a pending placeholder (issue 6 §2).

.venv/bin/python bench/futures_embedded.py qwen2.5-coder-1.5b-instruct-q4_k_m [nonote]
"""

import asyncio
import json
import sys
from typing import Any

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from ledger.render import PENDING_NOTE
from voice_agent.config import LlmConfig, load_config, render_system_prompt
from voice_agent.llm import LlmClient, TextDelta, ToolCallReady
from voice_agent.local_llm.launcher import LocalLlmServer
from voice_agent.modes import FUTURES_NOTE

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_customer",
            "description": "Find a customer by phone number.",
            "parameters": {
                "type": "object",
                "properties": {"phone": {"type": "string"}},
                "required": ["phone"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_orders",
            "description": "Recent orders of a customer by customer id.",
            "parameters": {
                "type": "object",
                "properties": {"customer_id": {"type": "string"}},
                "required": ["customer_id"],
            },
        },
    },
]


async def ask(client, messages):
    out: dict[str, Any] = {"text": "", "calls": []}
    async for item in client.stream(messages, TOOLS):
        if isinstance(item, TextDelta):
            out["text"] += item.text
        elif isinstance(item, ToolCallReady):
            out["calls"].append((item.call_id, item.name, item.arguments))
    return out


async def main(model):
    system = render_system_prompt(load_config(environ={}).agent) + (
        "" if "nonote" in sys.argv else "\n\n" + FUTURES_NOTE
    )
    user = "Hi, my phone number is 503 555 0142, what's the status of my last order?"
    async with LocalLlmServer(model=model, threads=2, ctx=4096, startup_timeout_s=600) as server:
        client = LlmClient(
            LlmConfig(
                base_url=server.base_url,
                model=server.model_name,
                temperature=0.0,
                timeout_s=600,
                first_token_timeout_s=600,
                stall_timeout_s=600,
                max_retries=0,
            )
        )
        r1 = await ask(
            client, [{"role": "system", "content": system}, {"role": "user", "content": user}]
        )
        print("FIRST:", json.dumps(r1), flush=True)
        cid = "call_lookup1"
        pending = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
            {
                "role": "assistant",
                "content": "Let me find your account.",
                "tool_calls": [
                    {
                        "id": cid,
                        "type": "function",
                        "function": {
                            "name": "lookup_customer",
                            "arguments": json.dumps({"phone": "503 555 0142"}),
                        },
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": cid,
                "content": json.dumps({"status": "pending", "future": cid, "note": PENDING_NOTE}),
            },
        ]
        r2 = await ask(client, pending)
        print("WITH PENDING:", json.dumps(r2), flush=True)
        await client.aclose()


asyncio.run(main(sys.argv[1]))
