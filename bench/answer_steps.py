"""Benchmark helper: the answer step alone, on the expected calls' real results (issue 11).

Usage::

    python bench/answer_steps.py --only e01,e11,b10 [--model 1.5b] [--temperature 0.3]

For each question of ``bench/questions/questions.yaml`` named by ``--only``, the
conversation is built as `embedded_questions` builds it (the profile's system
prompt, the question's history), followed by the question's *expected* calls
and their real results (the tools of that question's tool set are run; a free
argument ``*`` gets a placeholder); the product's `Responder` then answers on a
model loaded in this process, and the answer is scored with
`embedded_questions.score`. With no call expected, the whole reply (decision
included) runs. A quick look at what the answer step says, question by
question, without the decision and the calls before it (a full question through
the server takes 3-4 requests); never a figure for the splits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import embedded_questions as eq  # noqa: E402

from voice_agent.local_llm.engine import LlamaEngine  # noqa: E402
from voice_agent.local_llm.models import resolve_model  # noqa: E402
from voice_agent.local_llm.output_parser import ToolCallStreamParser  # noqa: E402
from voice_agent.local_llm.protocol import parse_chat_request  # noqa: E402
from voice_agent.local_llm.reply import ReplyAssembler  # noqa: E402
from voice_agent.local_llm.respond import Responder  # noqa: E402


async def conversation(
    question: dict[str, Any], tools: list[eq.BenchTool]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The messages up to the answer, the calls (as scored) and their results."""
    by_name = {t.name: t for t in tools}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": eq._system_prompt(ROOT, question["tools"])}
    ]
    messages += await eq._history(question, by_name)
    messages.append({"role": "user", "content": question["say"]})
    calls, results, answers = [], [], []
    for number, call in enumerate(question.get("calls") or []):
        args = {k: (v if v != "*" else "it stopped working") for k, v in call["args"].items()}
        result = await by_name[call["name"]].run(args)
        calls.append({"name": call["name"], "arguments": args})
        results.append({"name": call["name"], "result": result})
        answers.append((f"c{number}", call["name"], json.dumps(args), result))
    if answers:
        messages.append({
            "role": "assistant", "content": "",
            "tool_calls": [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                           for i, n, a, _ in answers],
        })  # fmt: skip
        messages += [
            {"role": "tool", "tool_call_id": i,
             "content": json.dumps({"status": "resolved", "result": r})}
            for i, _, _, r in answers
        ]  # fmt: skip
    return messages, calls, results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", required=True, help="comma list of question ids")
    parser.add_argument("--model", default="1.5b")
    parser.add_argument("--temperature", type=float, default=0.3)
    parser.add_argument("--repeat", type=int, default=1, help="answers per question")
    args = parser.parse_args()
    questions = {q["id"]: q for q in eq.load_questions()}
    wanted = args.only.split(",")
    if eq.BLIND_SPLIT in {questions[i]["split"] for i in wanted if i in questions}:
        parser.error(f"{eq.BLIND_SPLIT} is the lead's blind set")
    tool_sets = eq.load_tool_sets()
    path = resolve_model(eq.MODELS.get(args.model, args.model))
    engine = await asyncio.to_thread(LlamaEngine.load, path, args.model, 2, 4096)
    try:
        for qid in [q for q in wanted for _ in range(args.repeat)]:
            question = questions[qid]
            tools = tool_sets[question["tools"]]
            messages, calls, results = await conversation(question, tools)
            chat = parse_chat_request(
                {"messages": messages, "tools": [t.schema for t in tools],
                 "temperature": args.temperature}
            )  # fmt: skip
            reply = ReplyAssembler(ToolCallStreamParser(bare_json_calls=True))
            responder = Responder(engine, chat, reply)
            said: list[str] = []

            async def on_text(
                piece: str, reply: ReplyAssembler = reply, said: list[str] = said
            ) -> bool:
                deltas, go_on = reply.feed(piece)
                said.extend(d["content"] for d in deltas if d.get("content"))
                return go_on

            started = time.monotonic()
            await responder.run(on_text)
            said.extend(d["content"] for d in reply.finish() if d.get("content"))
            outcome = eq.Outcome(
                qid, question["split"], question["kind"], args.model,
                spoken=" ".join("".join(said).split()), calls=calls, results=results,
            )  # fmt: skip
            eq.score(outcome, question, {t.name: t for t in tools})
            mark = "ok " if outcome.answer_ok else "BAD"
            print(
                f"{qid} {mark} {time.monotonic() - started:5.1f} s | {outcome.spoken} | "
                f"{'; '.join(outcome.why)}",
                flush=True,
            )
    finally:
        engine.close()


if __name__ == "__main__":
    asyncio.run(main())
