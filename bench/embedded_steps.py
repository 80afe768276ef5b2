"""Benchmark: where the time to first audio goes on the embedded model (issue 11).

Usage::

    python bench/embedded_steps.py [--model 1.5b] [--split heldout,unseen]
        [--only ID,ID] [--kinds lookup,two] [--json OUT] [--code DIR]
        [--ab speculate|keep_own_tokens|invented] [--repeat N]

Runs the embedded server in this process (`server.build_app` on 127.0.0.1, the
same `Responder` and engine the launched server runs) and asks the questions of
``bench/questions/questions.yaml`` through `embedded_questions.ask` (the
product's client, tools run at once). Every model step of every request is
logged: which step it was (``decision``, ``call``, ``speech`` or ``yes/no``),
the prompt's tokens, how many were already in the KV cache, how many were
evaluated before the first sampled token and how long that took, the tokens
sampled and the step's time. Per question kind it prints the medians of, for
the request that carries the tool results (the *answer request*): the tokens
evaluated and the time spent before the first sampled token of the spoken
answer, the tokens sampled before the first chunk the speech output would
speak, and the time from that request to its first audio. Times are real
time on this machine: compare them as shares of one run, and say the load.

Per question and per kind it also counts the model's work from the question to
its first audio: prompt tokens evaluated in batches and one-token model steps.
Those counts do not depend on the load (the steps are greedy), so ``--code DIR``
(another checkout's product code, prompts and tools, with this checkout's text
chunker) run after a run of this one compares two versions where the machine is
too busy for their times to compare.

``--ab SWITCH`` asks each question twice in one process, with that engine switch
(``speculate``: greedy drafts; ``keep_own_tokens``: the KV cache reused by text;
``invented``: decoding stops at a made-up argument, `switch_invented`) at
its default and flipped, back to back, the order alternating, the KV cache reset
to the system prompt and "Hello." before each; it reports the paired on - off
differences per kind.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _code_dir() -> Path:
    """``--code DIR`` (read before anything is imported): the checkout whose product
    code runs the server, its prompts and tools included (default: this one)."""
    for i, arg in enumerate(sys.argv):
        if arg == "--code" and i + 1 < len(sys.argv):
            return Path(sys.argv[i + 1]).resolve()
        if arg.startswith("--code="):
            return Path(arg.split("=", 1)[1]).resolve()
    return ROOT


CODE = _code_dir()
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(CODE))
# CODE's packages, imported before embedded_questions puts this checkout first on the path.
for _package in ("peripherals", "voice_agent"):
    importlib.import_module(_package)

import embedded_questions as eq  # noqa: E402

from voice_agent.config import LlmConfig, load_config  # noqa: E402
from voice_agent.llm import LlmClient  # noqa: E402


@dataclass
class Step:
    """One `LlamaEngine.generate` call."""

    request: int
    kind: str
    started_ms: float  # since the question was asked
    prompt_tokens: int = 0
    reused: int = 0
    evaluated: int = 0  # tokens evaluated before the first sampled token
    eval_ms: float = 0.0
    sampled: int = 0
    first_text_ms: float | None = None  # since the question was asked
    total_ms: float = 0.0
    text: str = ""  # what the step wrote (calls included)
    drafted: int = 0  # tokens drafted, and kept, by speculative decoding (greedy steps)
    drafted_kept: int = 0
    steps_ms: float = 0.0  # the one-token model steps after the first sampled token
    batches: int = 0  # draft batches evaluated (`LlamaEngine._verify`)
    batches_ms: float = 0.0


@dataclass
class Trace:
    id: str
    kind: str
    steps: list[Step] = field(default_factory=list)
    request_started_ms: list[float] = field(default_factory=list)
    first_audio_ms: float | None = None
    answer_ms: float = 0.0
    spoken: str = ""
    calls_ok: bool = False
    answer_ok: bool = False
    side: bool | None = None  # the A/B attribute's value (--ab), else None
    #: The model's work from the question to its first audio (the first chunk the
    #: speech output would speak): prompt tokens evaluated in batches, one-token model
    #: steps (a token drawn and evaluated), and the time of each. The counts do not
    #: depend on the machine's load (greedy steps), so two checkouts run one after the
    #: other compare by them (--code).
    evaluated_before_audio: int = 0
    eval_ms_before_audio: float = 0.0
    steps_before_audio: int = 0
    steps_ms_before_audio: float = 0.0


def _step_kind(prompt: str) -> str:
    from voice_agent.local_llm.respond import DECISION_PREFIX

    if prompt.endswith(DECISION_PREFIX):
        return "decision"
    if prompt.endswith('"arguments": '):
        return "call"
    if "Answer only yes or no" in prompt[-400:]:
        return "yes/no"
    return "speech"


def instrument(engine: Any, clock: dict[str, Any]) -> None:
    """Log every generate and the first evaluation of each into `clock["trace"]`."""
    real_generate = engine.generate
    real_eval = engine._llama.eval

    async def generate(prompt: str, params: Any, grammar: Any, on_text: Any, until: Any = None):
        trace: Trace = clock["trace"]
        step = Step(
            request=clock["request"],
            kind=_step_kind(prompt),
            started_ms=(time.monotonic() - clock["t0"]) * 1e3,
        )
        trace.steps.append(step)
        clock["step"] = step

        async def text(piece: str) -> bool:
            step.text += piece
            if step.first_text_ms is None and piece.strip():
                step.first_text_ms = (time.monotonic() - clock["t0"]) * 1e3
            return bool(await on_text(piece))

        stats = await real_generate(prompt, params, grammar, text, until)
        step.prompt_tokens = stats.prompt_tokens
        step.reused = stats.reused_prompt_tokens
        step.total_ms = stats.total_s * 1e3
        step.drafted = int(stats.extra.get("drafted", 0))
        step.drafted_kept = int(stats.extra.get("drafted_kept", 0))
        for seen in stats.extra.get("alternatives") or ():  # a decision's likeliest tokens
            likeliest = ", ".join(f"{t!r} {p:.3f}" for t, p in seen["tokens"][:3])
            step.text += f" [after {seen['after']!r}: {likeliest}]"
        return stats

    real_probability = getattr(engine, "next_token_probability", None)

    async def probability(prompt: str, text: str) -> float:
        trace: Trace = clock["trace"]
        step = Step(
            request=clock["request"],
            kind="p(next)",
            started_ms=(time.monotonic() - clock["t0"]) * 1e3,
        )
        trace.steps.append(step)
        clock["step"] = step
        started = time.monotonic()
        assert real_probability is not None
        p = await real_probability(prompt, text)
        step.total_ms = (time.monotonic() - started) * 1e3
        step.text = f"p({text})={p:.3f}"
        return float(p)

    if real_probability is not None:
        engine.next_token_probability = probability

    def logged_eval(tokens: list[int]) -> None:
        step: Step | None = clock.get("step")
        started = time.monotonic()
        real_eval(tokens)
        elapsed_ms = (time.monotonic() - started) * 1e3
        work = clock.get("work")
        if work is not None and not work["heard"]:
            if len(tokens) > 1:
                work["evaluated"] += len(tokens)
                work["eval_ms"] += elapsed_ms
            else:
                work["steps"] += 1
                work["steps_ms"] += elapsed_ms
        if step is None:
            return
        if step.evaluated == 0 and step.sampled == 0:
            step.evaluated = len(tokens)
            step.eval_ms = (time.monotonic() - started) * 1e3
        else:
            step.sampled += 1
            step.steps_ms += (time.monotonic() - started) * 1e3

    real_verify = getattr(engine, "_verify", None)

    def logged_verify(*args: Any) -> Any:
        step: Step | None = clock.get("step")
        started = time.monotonic()
        assert real_verify is not None
        try:
            return real_verify(*args)
        finally:
            if step is not None:
                step.batches += 1
                step.batches_ms += (time.monotonic() - started) * 1e3

    engine.generate = generate
    # llama-cpp-python's own evaluation, which every checkout's engine calls (a draft
    # batch, `_verify`, decodes by itself and is timed apart).
    engine._llama.eval = logged_eval
    if real_verify is not None:
        engine._verify = logged_verify


def switch_invented(engine: Any) -> None:
    """``--ab invented``: ``engine.invented`` (on by default) switches the rule that stops
    decoding at a made-up argument (`ReplyAssembler.is_invented` and the argument watch it
    enables, notool9): off, each request's responder runs without it, as before."""
    import voice_agent.local_llm.server as server_module

    base = server_module.Responder

    class Switched(base):  # type: ignore[misc,valid-type]
        def __init__(self, engine: Any, chat: Any, reply: Any) -> None:
            super().__init__(engine, chat, reply)
            if not engine.invented:
                reply.is_invented = None

    engine.invented = True
    server_module.Responder = Switched  # type: ignore[misc]  # the A/B's switch


def watch_first_audio(clock: dict[str, Any]) -> None:
    """Have `embedded_questions.ask` cut speech with this checkout's text chunker (the
    same rule whichever code runs the model, --code), and mark in ``clock["work"]``
    the moment its first chunk is complete."""

    from voice_agent.voice.output import FIRST_CHUNK_CHARS

    spec = importlib.util.spec_from_file_location(
        "_bench_text_chunker", ROOT / "peripherals" / "text_chunker.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    class Watched:
        def __init__(self) -> None:
            self._inner = module.SentenceChunker(first_clause_after_chars=FIRST_CHUNK_CHARS)

        def push(self, text: str) -> list[str]:
            return self._heard(self._inner.push(text))

        def flush(self) -> list[str]:
            return self._heard(self._inner.flush())

        def _heard(self, chunks: list[str]) -> list[str]:
            work = clock.get("work")
            if chunks and work is not None:
                work["heard"] = True
            return chunks

    eq._speech_chunker = Watched


async def run(args: argparse.Namespace) -> list[Trace]:
    from aiohttp import web

    from voice_agent.local_llm.engine import LlamaEngine
    from voice_agent.local_llm.models import resolve_model
    from voice_agent.local_llm.server import build_app

    questions = eq.load_questions()
    # Never "all": the lead's blind split is not run here.
    questions = [
        q for q in questions if q["split"] in set(args.split.split(",")) - {eq.BLIND_SPLIT}
    ]
    if args.only:
        questions = [q for q in questions if q["id"] in set(args.only.split(","))]
    if args.kinds:
        questions = [q for q in questions if q["kind"] in set(args.kinds.split(","))]
    order = {name: i for i, name in enumerate(dict.fromkeys(q["tools"] for q in questions))}
    questions.sort(key=lambda q: order[q["tools"]])
    path = await asyncio.to_thread(resolve_model, eq.MODELS.get(args.model, args.model))
    engine = await asyncio.to_thread(LlamaEngine.load, path, args.model, 2, 4096)
    clock: dict[str, Any] = {"t0": time.monotonic(), "request": 0, "trace": Trace("warm", "")}
    engine.keep_own_tokens = args.by_text
    if args.ab == "invented":
        switch_invented(engine)
    instrument(engine, clock)
    watch_first_audio(clock)
    runner = web.AppRunner(build_app(engine), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = load_config(environ={}).llm
    client = LlmClient(
        LlmConfig(
            base_url=f"http://127.0.0.1:{port}/v1",
            model=args.model,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            timeout_s=600,
            first_token_timeout_s=300,
            stall_timeout_s=300,
        )
    )
    if CODE != ROOT:
        eq.PROFILES = {name: CODE / path.relative_to(ROOT) for name, path in eq.PROFILES.items()}
    tool_sets = eq.load_tool_sets()
    prompts = {name: eq._system_prompt(CODE, name) for name in tool_sets}
    traces = []
    real_stream = client.stream

    def stream(messages: Any, schemas: Any, *a: Any, **k: Any) -> Any:
        clock["request"] += 1
        clock["trace"].request_started_ms.append((time.monotonic() - clock["t0"]) * 1e3)
        return real_stream(messages, schemas, *a, **k)

    client.stream = stream  # type: ignore[method-assign,assignment]
    try:
        first = questions[0]["tools"] if questions else "demo"
        await client.prewarm(
            [{"role": "system", "content": prompts[first]}, {"role": "user", "content": "Hello."}],
            [t.schema for t in tool_sets[first]],
        )
        sides: list[bool | None] = [None]
        if args.ab:
            default = bool(getattr(engine, args.ab))
            sides = [default, not default]
        for number, question in enumerate(questions * args.repeat):
            tools = tool_sets[question["tools"]]
            # A/B: both sides of one question back to back (same load), the order
            # alternating, each after the same cache state (the system prompt and
            # "Hello.", as after start-up), so neither side reuses the other's prompt.
            for side in sides if number % 2 == 0 else sides[::-1]:
                if side is not None:
                    setattr(engine, args.ab, side)
                    clock.update(trace=Trace("reset", ""), step=None)
                    await client.prewarm(
                        [
                            {"role": "system", "content": prompts[question["tools"]]},
                            {"role": "user", "content": "Hello."},
                        ],
                        [t.schema for t in tools],
                    )
                trace = Trace(question["id"], question["kind"], side=side)
                work = {"heard": False, "evaluated": 0, "eval_ms": 0.0, "steps": 0, "steps_ms": 0.0}
                clock.update(t0=time.monotonic(), request=0, trace=trace, step=None, work=work)
                out = await eq.ask(client, prompts[question["tools"]], tools, question, "m")
                clock["work"] = None
                trace.evaluated_before_audio = int(work["evaluated"])
                trace.eval_ms_before_audio = float(work["eval_ms"])
                trace.steps_before_audio = int(work["steps"])
                trace.steps_ms_before_audio = float(work["steps_ms"])
                trace.first_audio_ms = out.first_audio_ms
                trace.answer_ms = out.answer_ms
                trace.spoken = out.spoken
                trace.calls_ok, trace.answer_ok = out.calls_ok, out.answer_ok
                traces.append(trace)
                print(describe(trace), file=sys.stderr, flush=True)
    finally:
        await client.aclose()
        await runner.cleanup()
        engine.close()
    return traces


def describe(trace: Trace) -> str:
    mark = "ok " if trace.calls_ok and trace.answer_ok else "BAD"
    side = "" if trace.side is None else f" [{'on' if trace.side else 'off'}]"
    lines = [
        f"{mark} {trace.id}{side} {trace.kind}: first audio {trace.first_audio_ms or 0:.0f} ms, "
        f"answer {trace.answer_ms:.0f} ms | {trace.spoken[:90]!r}",
        f"    before first audio: {trace.evaluated_before_audio} tokens evaluated in "
        f"{trace.eval_ms_before_audio:.0f} ms, {trace.steps_before_audio} one-token steps in "
        f"{trace.steps_ms_before_audio:.0f} ms",
    ]
    for s in trace.steps:
        lines.append(
            f"    r{s.request} {s.kind:<8} at {s.started_ms:6.0f}: prompt {s.prompt_tokens:5d} "
            f"cached {s.reused:5d} eval {s.evaluated:4d} in {s.eval_ms:5.0f} ms, "
            f"sampled {s.sampled:3d}, {s.total_ms:6.0f} ms"
            + (
                f", drafts kept {s.drafted_kept}/{s.drafted} in {s.batches} batches "
                f"{s.batches_ms:.0f} ms (steps {s.steps_ms:.0f} ms)"
                if s.drafted
                else ""
            )
            + (f", first text at {s.first_text_ms:.0f}" if s.first_text_ms else "")
            + f" {s.text[:70]!r}"
        )
    return "\n".join(lines)


def summary(traces: list[Trace]) -> dict[str, Any]:
    """Scores, and per kind medians over the questions whose answer request followed results."""
    kinds: dict[str, list[dict[str, float]]] = {}
    before_audio: dict[str, list[Trace]] = {}
    for t in traces:
        if t.first_audio_ms is not None:
            before_audio.setdefault(t.kind, []).append(t)
            before_audio.setdefault("all", []).append(t)
        if t.first_audio_ms is None or len(t.request_started_ms) < 2:
            continue
        last = len(t.request_started_ms)
        answer_steps = [s for s in t.steps if s.request == last]
        first_request = [s for s in t.steps if s.request == 1]
        row = {
            "request_to_first_audio_ms": t.first_audio_ms - t.request_started_ms[-1],
            "answer_request_evaluated": sum(s.evaluated for s in answer_steps),
            "answer_request_eval_ms": sum(s.eval_ms for s in answer_steps),
            "answer_steps": len(answer_steps),
            "first_request_ms": sum(s.total_ms for s in first_request),
            "first_request_sampled": sum(s.sampled for s in first_request),
        }
        speech = [s for s in answer_steps if s.kind == "speech"]
        if speech and speech[-1].first_text_ms is not None:
            row["speech_step_start_after_request_ms"] = (
                speech[-1].started_ms - t.request_started_ms[-1]
            )
        kinds.setdefault(t.kind, []).append(row)
    out: dict[str, Any] = {
        "calls_ok_pct": round(100 * sum(t.calls_ok for t in traces) / max(len(traces), 1), 1),
        "answer_ok_pct": round(100 * sum(t.answer_ok for t in traces) / max(len(traces), 1), 1),
        "questions": len(traces),
        # decisions after results that named a tool (another call, or the same one again)
        "calls_decided_after_results": [
            (t.id, s.text)
            for t in traces
            for s in t.steps
            if s.kind == "decision" and s.request > 1 and s.text.strip() != "reply"
        ],
    }
    # Per kind: the model's work before the first audio (medians; see `Trace`).
    out["work_before_first_audio"] = {
        kind: {
            "n": len(ts),
            "evaluated": statistics.median(t.evaluated_before_audio for t in ts),
            "steps": statistics.median(t.steps_before_audio for t in ts),
            "ms_per_evaluated": round(
                sum(t.eval_ms_before_audio for t in ts)
                / max(sum(t.evaluated_before_audio for t in ts), 1),
                1,
            ),
            "ms_per_step": round(
                sum(t.steps_ms_before_audio for t in ts)
                / max(sum(t.steps_before_audio for t in ts), 1),
                1,
            ),
        }
        for kind, ts in sorted(before_audio.items())
    }
    for kind, rows in sorted(kinds.items()):
        keys = sorted({k for r in rows for k in r})
        out[kind] = {"n": len(rows)} | {
            k: round(statistics.median([r[k] for r in rows if k in r]), 1) for k in keys
        }
    return out


def ab_summary(traces: list[Trace]) -> dict[str, Any]:
    """Per kind (and ``all``): the median of the paired on - off differences (ms) of first
    audio and of the answer's end, how many pairs the "on" side was slower on, and the
    model steps (tokens sampled, drafted, drafts kept) summed over each side's questions."""
    on = [t for t in traces if t.side]
    off = [t for t in traces if t.side is False]
    kinds: dict[str, list[tuple[Trace, Trace]]] = {}
    for a, b in zip(on, off, strict=True):
        assert a.id == b.id
        kinds.setdefault(a.kind, []).append((a, b))
        kinds.setdefault("all", []).append((a, b))
    out: dict[str, Any] = {}
    for kind, pairs in sorted(kinds.items()):
        row: dict[str, Any] = {"pairs": len(pairs)}
        for key in ("first_audio_ms", "answer_ms"):
            deltas = [
                getattr(a, key) - getattr(b, key)
                for a, b in pairs
                if getattr(a, key) is not None and getattr(b, key) is not None
            ]
            ratios = [
                getattr(a, key) / getattr(b, key)
                for a, b in pairs
                if getattr(a, key) and getattr(b, key)
            ]
            row[key] = {
                "median_on_minus_off": round(statistics.median(deltas)) if deltas else None,
                "median_on_over_off": round(statistics.median(ratios), 3) if ratios else None,
                "on_slower": sum(d > 0 for d in deltas),
            }
        for label, side in (("on", 0), ("off", 1)):
            steps = [s for pair in pairs for s in pair[side].steps]
            row[f"steps_{label}"] = {
                "one_token_steps": sum(s.sampled for s in steps),
                "one_token_steps_ms": round(sum(s.steps_ms for s in steps)),
                "draft_batches": sum(s.batches for s in steps),
                "draft_batches_ms": round(sum(s.batches_ms for s in steps)),
                "drafted": sum(s.drafted for s in steps),
                "drafted_kept": sum(s.drafted_kept for s in steps),
                "right": sum(p[side].calls_ok and p[side].answer_ok for p in pairs),
            }
        out[kind] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="1.5b")
    parser.add_argument("--split", default="heldout,unseen")
    parser.add_argument("--only")
    parser.add_argument("--kinds")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--by-text",
        action="store_true",
        help="reuse the KV cache by text too (engine.keep_own_tokens on; off by default)",
    )
    parser.add_argument(
        "--ab",
        choices=["speculate", "keep_own_tokens", "invented"],
        help="ask each question twice, with this engine switch at its default and flipped "
        "(back to back, the order alternating; the cache reset between): paired differences",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="the checkout whose product code, prompts and tools run (e.g. a detached "
        "worktree of the commit before a change); the text chunker stays this one's",
    )
    args = parser.parse_args()
    load_start = os.getloadavg()
    traces = asyncio.run(run(args))
    report = {
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "per_kind": summary(traces),
    }
    if args.ab:
        report["ab"] = {"switch": args.ab, "per_kind": ab_summary(traces)}
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(
            json.dumps({"summary": report, "traces": [asdict(t) for t in traces]}, indent=1)
        )


if __name__ == "__main__":
    main()
