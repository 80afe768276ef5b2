"""What a fork on the embedded model costs the ASR: the final decode alone vs beside a fork.

    .venv/bin/python bench/fork_cpu.py [--model qwen2.5-coder-1.5b-instruct-q4_k_m]
        [--repeat 5] [--json out.json]

The ASR is the product's (``WhisperStreamingAsr``, tiny.en, ``voice.asr_threads``);
its input is a piper caller (noise off) whose final decode is timed
(``AsrFinal.decode_s``), which is what the caller waits on at the end of a turn.
The fork is what ``mode: speculative`` sends the embedded model on a partial
transcript: the product's system prompt, the partial transcript with the
partial note, a lookup tool; streamed to its end. Three conditions, interleaved
per repeat so that their ratios come from the same stretch of machine load:

- ``decode_alone``: the final decode with nothing else of ours running;
- ``fork_alone``: the fork's request with nothing else of ours running;
- ``together``: the fork's request, and the final decode started once the fork's
  first token arrived (the fork is generating, as when the caller pauses while a
  fork still runs).

Prints JSON: medians and the ratios together/alone for the decode and the fork,
plus the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from voice_speculation import CALLERS, emit_report, synthesize  # noqa: E402

from peripherals.asr import WhisperStreamingAsr  # noqa: E402
from voice_agent.config import LlmConfig, load_config, render_system_prompt  # noqa: E402
from voice_agent.llm import LlmClient, TextDelta, ToolCallReady  # noqa: E402
from voice_agent.speculation import PARTIAL_NOTE  # noqa: E402

RATE = 16000
TOOL = {
    "type": "function",
    "function": {
        "name": "get_order_status",
        "description": "Look up an order's status by order number.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}


async def final_decode(asr: WhisperStreamingAsr, audio: np.ndarray) -> float:
    """Seconds the ASR's final decode of ``audio`` took (its own measure)."""
    asr.push(audio, RATE)
    final = await asr.finalize()
    return final.decode_s


async def fork(client: LlmClient, system: str, partial: str, first: asyncio.Event) -> float:
    """Seconds a fork's request took to its end; sets ``first`` at its first token."""
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"{partial}\n\n{PARTIAL_NOTE}"},
    ]
    started = time.perf_counter()
    async for item in client.stream(messages, [TOOL]):
        if isinstance(item, TextDelta | ToolCallReady):
            first.set()
    first.set()
    return time.perf_counter() - started


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from voice_agent.local_llm.launcher import LocalLlmServer

    config = load_config(None, environ={})
    model = args.model or config.local_llm.model
    text = CALLERS[0][0]
    audio = synthesize(text, 1.0)
    partial = " ".join(text.split()[:9])  # "Hi, I'm calling about order 4417, it was supposed"
    asr = WhisperStreamingAsr(config.voice.asr_model, cpu_threads=config.voice.asr_threads)
    system = render_system_prompt(config.agent)
    rows: dict[str, list[float]] = {
        "decode_alone_s": [], "fork_alone_s": [], "decode_beside_fork_s": [],
        "fork_beside_decode_s": [],
    }  # fmt: skip
    load_before = os.getloadavg()
    async with LocalLlmServer(
        model=model, threads=config.local_llm.threads, ctx=config.local_llm.ctx,
        startup_timeout_s=600,
    ) as server:  # fmt: skip
        client = LlmClient(
            LlmConfig(
                base_url=server.base_url, model=server.model_name, temperature=0.0,
                max_tokens=args.max_tokens, timeout_s=600, first_token_timeout_s=600,
                stall_timeout_s=600, max_retries=0,
            )
        )  # fmt: skip
        await fork(client, system, partial, asyncio.Event())  # warm-up (prompt cache, pages)
        await final_decode(asr, audio)
        for repeat in range(args.repeat):
            order = ["decode", "fork", "together"]
            shift = repeat % 3
            for what in order[shift:] + order[:shift]:
                if what == "decode":
                    rows["decode_alone_s"].append(await final_decode(asr, audio))
                elif what == "fork":
                    rows["fork_alone_s"].append(
                        await fork(client, system, partial, asyncio.Event())
                    )
                else:
                    first = asyncio.Event()
                    task = asyncio.create_task(fork(client, system, partial, first))
                    await first.wait()
                    rows["decode_beside_fork_s"].append(await final_decode(asr, audio))
                    rows["fork_beside_decode_s"].append(await task)
            print(f"repeat {repeat}: { {k: round(v[-1], 3) for k, v in rows.items()} }",
                  file=sys.stderr)  # fmt: skip
        await client.aclose()
    await asr.aclose()
    med = {k: round(statistics.median(v), 3) for k, v in rows.items()}
    return {
        "model": model,
        "asr": f"{config.voice.asr_model}, {config.voice.asr_threads} thread(s)",
        "audio_s": round(len(audio) / RATE, 2),
        "repeat": args.repeat,
        "median": med,
        "decode_slowdown_beside_fork": round(
            med["decode_beside_fork_s"] / med["decode_alone_s"], 2
        ),
        "fork_slowdown_beside_decode": round(med["fork_beside_decode_s"] / med["fork_alone_s"], 2),
        "runs": {k: [round(x, 3) for x in v] for k, v in rows.items()},
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="embedded model (default: the config's local_llm.model)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=60, help="a fork's filler and call")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()
    emit_report(asyncio.run(main_async(args)), args.json)


if __name__ == "__main__":
    main()
