"""Two lookups whose results come late, one after the other: what the embedded model says
after the second when it already told the first (async mode's follow-up generations).

    .venv/bin/python bench/late_results_embedded.py [--models 1.5b] [--only d06,h03]
        [--compare OLD_CHECKOUT] [--json OUT]

For each open "two lookups" question of ``bench/questions/questions.yaml`` (the
caller's two calls are the question's expected ones; ``--only`` picks ids; the lead's
blind split is never read), the conversation the engine renders in ``async`` mode is
built: both calls pending, the first result fetched late (``get_result``), the model's
answer to it (generated), then the second result fetched late. The second request is
the one measured, on each server (``--compare`` adds one from another checkout, asked
in turn, A/B/A/B, so both see the same load):

- ``repeats``: sentences of the second answer that repeat, word for word, one of the
  first (what the engine's repeat filter, `voice_agent/repeats.py`, drops: generated
  for nothing);
- ``new_fact_s``: from the request to the end of the first sentence that carries the
  second result's fact (`embedded_questions.fact_heard`), None when none does;
- ``words_before``: words generated before that sentence (the machine's load does not
  change it; the time does);
- ``told_second``: the second answer carries that fact at all.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from embedded_questions import (  # noqa: E402
    BLIND_SPLIT,
    MODELS,
    BenchTool,
    _system_prompt,
    fact_heard,
    load_questions,
    load_tool_sets,
)

from peripherals.text_chunker import SentenceChunker  # noqa: E402
from voice_agent.config import LlmConfig, load_config  # noqa: E402
from voice_agent.llm import LlmClient, TextDelta  # noqa: E402
from voice_agent.local_llm.launcher import LocalLlmServer  # noqa: E402
from voice_agent.repeats import sentence_key  # noqa: E402


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}  # fmt: skip


def _late(call_id: str, result: Any) -> list[dict[str, Any]]:
    """The engine's synthetic pair for a result that came after its placeholder was shown."""
    fetch = _call(f"{call_id}-result", "get_result", {"call_id": call_id})
    content = json.dumps({"status": "resolved", "result": result})
    return [
        {"role": "assistant", "content": "", "tool_calls": [fetch]},
        {"role": "tool", "tool_call_id": f"{call_id}-result", "content": content},
    ]


async def _stream(client: LlmClient, messages: list[dict[str, Any]], schemas: list[Any]) -> Any:
    """(text, [(seconds since the request, sentence)]) of one streamed answer."""
    chunker = SentenceChunker()
    text, sentences = "", []
    started = time.monotonic()
    async for item in client.stream(messages, schemas):
        if isinstance(item, TextDelta):
            text += item.text
            for sentence in chunker.push(item.text):
                sentences.append((time.monotonic() - started, sentence))
    sentences += [(time.monotonic() - started, s) for s in chunker.flush()]
    return text, sentences


async def ask(
    client: LlmClient, system: str, question: dict[str, Any], tools: dict[str, BenchTool]
) -> dict[str, Any]:
    schemas = [t.schema for t in tools.values()]
    (first, second) = question["calls"][:2]
    results = [await tools[c["name"]].run(dict(c["args"])) for c in (first, second)]
    pending = [
        {"role": "tool", "tool_call_id": i, "content": json.dumps({"status": "pending", "future": i})}
        for i in ("c1", "c2")
    ]  # fmt: skip
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "content": question["say"]},
        {"role": "assistant", "content": "",
         "tool_calls": [_call("c1", first["name"], first["args"]),
                        _call("c2", second["name"], second["args"])]},
        *pending, *_late("c1", results[0]),
    ]  # fmt: skip
    told_first, _ = await _stream(client, messages, schemas)
    messages += [{"role": "assistant", "content": told_first}, *_late("c2", results[1])]
    told_second, sentences = await _stream(client, messages, schemas)
    said_before = {sentence_key(s) for s in _sentences_of(told_first)}
    fact_field = tools[second["name"]].fact
    fact = results[1].get(fact_field) if isinstance(results[1], dict) and fact_field else None
    carries = [fact is not None and fact_heard(fact, s, fact_field or "") for _, s in sentences]
    first_fact = carries.index(True) if True in carries else None
    new_fact_s = None if first_fact is None else sentences[first_fact][0]
    words_before = (
        None if first_fact is None else sum(len(s.split()) for _, s in sentences[:first_fact])
    )
    return {
        "id": question["id"],
        "first": told_first,
        "second": told_second,
        "repeats": sum(sentence_key(s) in said_before for _, s in sentences),
        "new_fact_s": None if new_fact_s is None else round(new_fact_s, 2),
        "words_before": words_before,
        "told_second": fact is not None and fact_heard(fact, told_second, fact_field or ""),
    }


def _sentences_of(text: str) -> list[str]:
    chunker = SentenceChunker()
    return [*chunker.push(text), *chunker.flush()]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="1.5b")
    parser.add_argument("--only", default="", help="question ids (default: every open two)")
    parser.add_argument("--compare", type=Path, help="a second checkout's server, asked in turn")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    wanted = {i for i in args.only.split(",") if i}
    questions = [
        q
        for q in load_questions()
        if q["kind"] == "two"
        and q["split"] != BLIND_SPLIT
        and len(q["calls"]) >= 2
        and (not wanted or q["id"] in wanted)
    ]
    tool_sets = load_tool_sets()
    config = load_config(environ={}).llm
    variants = [("after", ROOT), *([("before", args.compare)] if args.compare else [])]
    report: dict[str, Any] = {}
    for model in args.models.split(","):
        async with contextlib.AsyncExitStack() as stack:
            clients = {}
            for label, code in variants:
                os.environ["PYTHONPATH"] = str(code)  # the server child runs that checkout
                here = Path.cwd()
                os.chdir(code)
                try:
                    server = await stack.enter_async_context(
                        LocalLlmServer(model=MODELS.get(model, model), startup_timeout_s=600)
                    )
                finally:
                    os.chdir(here)
                client = LlmClient(
                    LlmConfig(
                        base_url=server.base_url, model=server.model_name,
                        temperature=config.temperature, max_tokens=config.max_tokens,
                        timeout_s=600, first_token_timeout_s=300, stall_timeout_s=300,
                    )
                )  # fmt: skip
                stack.push_async_callback(client.aclose)
                clients[label] = (client, code)
            runs: dict[str, list[dict[str, Any]]] = {label: [] for label in clients}
            for question in questions:
                tools = {t.name: t for t in tool_sets[question["tools"]]}
                for label, (client, code) in clients.items():
                    system = _system_prompt(Path(code), question["tools"])
                    run = await ask(client, system, question, tools)
                    runs[label].append(run)
                    print(model, label, json.dumps(run), flush=True)
            for label, done in runs.items():
                times = [r["new_fact_s"] for r in done if r["new_fact_s"] is not None]
                report[f"{model} {label}"] = {
                    "questions": len(done),
                    "repeats": sum(r["repeats"] for r in done),
                    "told_second": sum(r["told_second"] for r in done),
                    "new_fact_s_mean": round(statistics.mean(times), 2) if times else None,
                    "new_fact_s_median": round(statistics.median(times), 2) if times else None,
                    "words_before": sum(r["words_before"] or 0 for r in done),
                    "runs": done,
                }
                summary = {k: v for k, v in report[f"{model} {label}"].items() if k != "runs"}
                print(model, label, json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
