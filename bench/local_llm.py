"""Benchmark the embedded local LLM server: time to first token and decode speed.

Usage: python bench/local_llm.py [--model NAME_OR_PATH] [--threads 2] [--runs 5]
                                 [--tools on|off|both] [--decode-path lowlevel|generate|both]
                                 [--long]

Starts `LocalLlmServer` (one per decode path), sends warm-up requests (so
the system prompt is in the KV cache), then `--runs` streamed requests of
each kind through the openai client:

- text (``--tools off``): no tools; TTFT = request sent -> first content delta;
- tools (``--tools on``): the same prompt with one tool offered
  (grammar-constrained); TTFT = request sent -> first content or tool-call
  delta (a call's first delta comes once its name is decoded, ~10 tokens in).

``--decode-path both`` starts one server per path (`lowlevel`: grammar checked
on the drawn token; `generate`: grammar on the whole vocabulary, the
fallback) and interleaves their requests A/B/A/B, so both see the same
machine load. The kinds run one after the other (each after its own warm-up),
since the tools prompt differs from the text prompt and would evict it from
the cache.

tok/s is the server's own figure (``timings.predicted_per_second`` in the
usage chunk: tokens after the first over the time after the first);
``server_first_token_s`` is the server's request start -> first sampled
token. With the default short answers (~12 tokens) tok/s is noisy, so
``--long`` asks for detailed answers (up to 120 tokens). Prints the medians as one JSON object.
Other processes on the machine skew the numbers: compare ratios, not
absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import openai  # noqa: E402

from voice_agent.local_llm import DEFAULT_MODEL, LocalLlmServer  # noqa: E402
from voice_agent.local_llm.engine import DecodePath  # noqa: E402

LONG_SYSTEM = {
    "role": "system",
    "content": "You are a friendly customer service agent for an online shop. "
    "You can look up orders.",
}
LONG_SUFFIX = " Please explain in detail."
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
    client: openai.AsyncOpenAI, model: str, question: str, tools: bool, long: bool = False
) -> dict[str, float]:
    extra = {"tools": TOOLS} if tools else {}
    sent = time.monotonic()
    # plain dicts for the messages and tools (the typed params would add nothing here)
    stream = await client.chat.completions.create(  # type: ignore[call-overload]
        model=model,
        stream=True,
        temperature=0.2,
        seed=1,
        max_tokens=120 if long else 60,
        stream_options={"include_usage": True},
        messages=[
            LONG_SYSTEM if long else SYSTEM,
            {"role": "user", "content": question + (LONG_SUFFIX if long else "")},
        ],
        **extra,
    )
    first = last = None
    tokens = 0
    server: dict[str, Any] = {}
    async for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
            server = (chunk.model_extra or {}).get("timings") or {}
        if chunk.choices and (chunk.choices[0].delta.content or chunk.choices[0].delta.tool_calls):
            last = time.monotonic()
            first = first or last
    assert first is not None and last is not None
    speed = server.get("predicted_per_second") or float("nan")
    first_token_ms = server.get("first_token_ms")
    return {
        "ttft_s": first - sent,
        "server_first_token_s": first_token_ms / 1e3 if first_token_ms else float("nan"),
        "total_s": last - sent,
        "tokens": tokens,
        "tok_per_s": speed,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tools", choices=("off", "on", "both"), default="both")
    parser.add_argument(
        "--decode-path", choices=("lowlevel", "generate", "both"), default="lowlevel"
    )
    parser.add_argument(
        "--long",
        action="store_true",
        help="ask for detailed answers (up to 120 tokens): steadier tok/s than 10-token replies",
    )
    args = parser.parse_args()
    paths: list[DecodePath] = (
        ["generate", "lowlevel"] if args.decode_path == "both" else [args.decode_path]
    )
    kinds = [("text", False), ("tools", True)]
    kinds = [k for k in kinds if args.tools == "both" or (args.tools == "on") == k[1]]
    result: dict[str, object] = {"threads": args.threads, "runs": args.runs, "long": args.long}
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for path in paths:
            started = time.monotonic()
            llm = await stack.enter_async_context(
                LocalLlmServer(model=args.model, threads=args.threads, decode_path=path)
            )
            result["model"] = llm.model_name
            result[f"{path}_startup_s"] = round(time.monotonic() - started, 2)
            client = await stack.enter_async_context(
                openai.AsyncOpenAI(base_url=llm.base_url, api_key="local")
            )
            clients[path] = (client, llm.model_name)
        for kind, tools in kinds:
            for client, name in clients.values():
                await one(
                    client, name, "Hello!", tools, args.long
                )  # warm-up: caches the system prompt
            runs: dict[str, list[dict[str, float]]] = {path: [] for path in paths}
            for i in range(args.runs):
                for path in paths:  # A/B/A/B: the paths share the machine's load
                    client, name = clients[path]
                    runs[path].append(
                        await one(client, name, QUESTIONS[i % len(QUESTIONS)], tools, args.long)
                    )
            for path in paths:
                prefix = f"{kind}_" if len(paths) == 1 else f"{path}_{kind}_"
                for key in ("ttft_s", "server_first_token_s", "tok_per_s", "tokens", "total_s"):
                    result[f"{prefix}{key}_median"] = round(
                        statistics.median(r[key] for r in runs[path]), 3
                    )
            if len(paths) == 2:
                a, b = (statistics.median(r["tok_per_s"] for r in runs[p]) for p in paths)
                result[f"{kind}_tok_per_s_lowlevel_over_generate"] = round(b / a, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
