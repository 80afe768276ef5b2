"""Benchmark the embedded local LLM server: time to first token and decode speed.

Usage: python bench/local_llm.py [--model NAME_OR_PATH] [--threads 2] [--runs 5]

Starts `LocalLlmServer`, sends one warm-up request (so the system prompt is
in the KV cache), then `--runs` streamed requests of each kind through the
openai client:

- text: no tools; TTFT = request sent -> first content delta;
- tools: the same prompt with one tool offered (grammar-constrained);
  TTFT = request sent -> first content or tool-call delta.

tok/s = (completion tokens - 1) / (last delta - first delta). Prints the
medians as one JSON object. Other processes on the machine skew the numbers:
compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import openai  # noqa: E402

from voice_agent.local_llm import DEFAULT_MODEL, LocalLlmServer  # noqa: E402

SYSTEM = {
    "role": "system",
    "content": "You are a friendly customer service agent for an online shop. "
    "Answer in one or two short sentences. You can look up orders.",
}
QUESTIONS = [
    "What are your opening hours?",
    "Can I return a pair of shoes?",
    "Do you ship to Canada?",
    "How long does delivery take?",
    "Can I change my delivery address?",
    "Do you have gift cards?",
    "Is there a student discount?",
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order_status",
            "description": "Get the status of an order",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    }
]


async def one(
    client: openai.AsyncOpenAI, model: str, question: str, tools: bool
) -> dict[str, float]:
    extra = {"tools": TOOLS} if tools else {}
    sent = time.monotonic()
    stream = await client.chat.completions.create(
        model=model,
        stream=True,
        temperature=0.2,
        seed=1,
        max_tokens=60,
        stream_options={"include_usage": True},
        messages=[SYSTEM, {"role": "user", "content": question}],
        **extra,
    )
    first = last = None
    tokens = 0
    async for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and (chunk.choices[0].delta.content or chunk.choices[0].delta.tool_calls):
            last = time.monotonic()
            first = first or last
    assert first is not None and last is not None
    speed = (tokens - 1) / (last - first) if last > first and tokens > 1 else float("nan")
    return {"ttft_s": first - sent, "total_s": last - sent, "tokens": tokens, "tok_per_s": speed}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    started = time.monotonic()
    async with LocalLlmServer(model=args.model, threads=args.threads) as llm:
        startup = time.monotonic() - started
        async with openai.AsyncOpenAI(base_url=llm.base_url, api_key="local") as client:
            await one(
                client, llm.model_name, "Hello!", tools=False
            )  # warm-up: caches the system prompt
            await one(client, llm.model_name, "Hello!", tools=True)
            result: dict[str, object] = {
                "model": llm.model_name,
                "threads": args.threads,
                "startup_s": round(startup, 2),
                "runs": args.runs,
            }
            for kind, tools in (("text", False), ("tools", True)):
                runs = [
                    await one(client, llm.model_name, QUESTIONS[i % len(QUESTIONS)], tools)
                    for i in range(args.runs)
                ]
                for key in ("ttft_s", "tok_per_s", "tokens", "total_s"):
                    result[f"{kind}_{key}_median"] = round(
                        statistics.median(r[key] for r in runs), 3
                    )
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
