"""Benchmark helper: how often the decision's low-margin check fires, and what it changes.

Usage::

    python bench/decision_margins.py --split recheck9,probe10 [--tools phone,customer_service]
        [--only ID,ID] [--model 1.5b] [--json OUT]

For each question (the conversation built as `answer_steps` builds it, up to the
caller's words), the product's `Responder` runs on a model loaded in this process
until its first call or word: the decision step, and on a low-margin tool decision
the check (`Responder._checked_choice`, `decision_margin`). Per question it prints
the decision, its margin (the runner-up's probability over the choice's where they
part), whether the check ran, the tools it asked about with the model's yes/no, and
the tool expected by the question; then how many tool decisions were checked, how
many the check changed, and how many of those it made right or wrong. Questions are
taken in tool-set order, so the system prompt and tools stay in the KV cache.
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


async def decided(
    engine: LlamaEngine, question: dict[str, Any], tools: list[Any]
) -> dict[str, Any]:
    """The decision (and its check) for one question, stopped at the reply's first text."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": eq._system_prompt(ROOT, question["tools"])}
    ]
    messages += await eq._history(question, {t.name: t for t in tools})
    messages.append({"role": "user", "content": question["say"]})
    chat = parse_chat_request({"messages": messages, "tools": [t.schema for t in tools]})
    reply = ReplyAssembler(ToolCallStreamParser(bare_json_calls=True))
    responder = Responder(engine, chat, reply)

    async def first_text(piece: str) -> bool:
        return False  # the decision is made: nothing more is needed

    started = time.monotonic()
    await responder.run(first_text)
    plan = responder.plan
    expected = [c["name"] for c in question.get("calls") or []]
    return {
        "id": question["id"],
        "split": question["split"],
        "kind": question["kind"],
        "tools": question["tools"],
        "expected": expected[0] if expected else None,
        "decision": plan.decision,
        "margin": plan.margin,
        "checked": plan.margin_check,
        "seconds": round(time.monotonic() - started, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", required=True, help="comma list of open splits")
    parser.add_argument("--tools", default="", help="comma list of tool sets (default: all)")
    parser.add_argument("--only", default="", help="comma list of question ids")
    parser.add_argument("--model", default="1.5b")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    splits = set(args.split.split(","))
    if eq.BLIND_SPLIT in splits or "all" in splits:
        parser.error(f"{eq.BLIND_SPLIT} is the lead's blind set; name open splits")
    questions = [
        q
        for q in eq.load_questions()
        if q["split"] in splits
        and (not args.tools or q["tools"] in args.tools.split(","))
        and (not args.only or q["id"] in args.only.split(","))
    ]
    questions.sort(key=lambda q: q["tools"])
    tool_sets = eq.load_tool_sets()
    path = resolve_model(eq.MODELS.get(args.model, args.model))
    engine = await asyncio.to_thread(LlamaEngine.load, path, args.model, 2, 4096)
    rows: list[dict[str, Any]] = []
    try:
        for question in questions:
            row = await decided(engine, question, tool_sets[question["tools"]])
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        engine.close()
    checked = [r for r in rows if r["checked"]]
    changed = [r for r in checked if r["decision"] != r["checked"][0][0]]
    measured = [r for r in rows if r["margin"] is not None]
    summary = {
        "questions": len(rows),
        "tool_decisions_measured": len(measured),
        "checked": len(checked),
        "changed": len(changed),
        "changed_to_expected": sum(r["decision"] == r["expected"] for r in changed),
        "changed_from_expected": sum(r["checked"][0][0] == r["expected"] for r in changed),
        "checked_ids": [r["id"] for r in checked],
    }
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
