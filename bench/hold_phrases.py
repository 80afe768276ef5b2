"""Where hold phrases land in a slow answer: between sentences, or spliced into one.

Usage: python bench/hold_phrases.py [--stall-s 3.0] [--json out.json]

Each answer below is streamed word by word (one delta per word) by a scripted slow
endpoint (``voice_agent.bench.fault_server.FaultServer`` over HTTP, the real
``LlmClient``), with one stall inserted after each word in turn: ``--stall-s``
seconds of nothing, then the rest of the answer ("slow"), or nothing ever again
("dead": the deadline's apology). Plus one run per answer without a stall (the
time to first sound). The agent (async mode, the default agent configuration)
speaks through the real ``AudioSpeechOutput`` (its sentence chunker, synthesis
queue and playout) into a ``TimelineSink`` played in step with the clock; the TTS
is a fake (``WordTts``: 0.25 s of tone per word, made at once) so only the
engine is measured. Time is virtual (``fsm.AutojumpClock``): the figures are exact
and do not depend on the machine's load.

Reported per kind of run (slow, dead, prompt):

- ``holds``: hold phrases said; ``stalls_without_a_hold``: runs that got none; ``holds_inside_sentence``: of them, those said
  inside a sentence (in one chunk with other words, or after a chunk that does not
  end a sentence); ``holds_cut_at_a_word``: of those, the ones right after a word
  (no punctuation: "The order / One moment."); ``holds_after_a_clause_heard``: of
  those, the ones after a clause the output had already said ("Sure, / One moment. /
  let me check that for you."): said on time rather than leave the caller in silence
  until the sentence ends;
- ``holds_right_after_the_answer``: hold phrases that began less than 0.5 s after
  the answer's audio ended (or queued behind it): the caller was not in silence;
- ``answers_heard_whole``: runs whose answer words were all heard, in order, with
  nothing between them but hold phrases at sentence ends or after a clause heard
  (slow and prompt runs);
- ``stalls_before_audio_held``: stalls before any of the answer was heard that got
  a hold phrase (of how many);
- ``longest_silence_s``: the longest stretch without agent audio between the end of
  the caller's turn and the end of the answer (median and max over runs);
- ``first_sound_s``: the turn's end to the first agent audio (median, max);
- ``long_wait``: a model reporting progress but saying nothing for 30 s (the
  default patience and deadline) and 120 s (both raised to it): phrases said before
  the apology, of them "this is taking longer" and "Almost there.", and the
  longest silence.
- ``long_first_sentence``: a long first sentence streamed at once (20 words, 5 s of
  speech), then the model is quiet: 3, 5 and 7 s then the rest ("slow"), dead (the
  apology), or working (progress reports) for 20 s then the rest; each also with the
  long-wait phrase due after one short hold (``llm_holds_before_long_wait=1``), and
  each with the stall right after the sentence's final mark (the output keeps that
  sentence for the next token until a hold is due) or after a blank (it is said at
  once). Per
  run: the silence the caller heard between the sentence's end and the first hold
  phrase (``silence_before_first_hold_s``; 0 is a phrase glued to the sentence), the
  holds said, the long-wait phrase said (and whether it was due: a wait past the
  short holds), the longest silence.

- ``slow_follow_up``: one caller turn answered in three generations ("Let me look that
  up." and a lookup; with its result "Your order 58213 has shipped." and a second
  lookup; each lookup 1 s), the last one (after the second result) slow: 3, 5, 7 s then
  the answer, dead, or working 20 s; the stall at its start or after its first sentence
  ("It is with the courier."), with the default short holds and with one. Per run: the
  holds said, those right after the answer's audio (< 0.5 s), the long-wait phrase
  said (and whether it was due), whether the answer was heard, the longest silence.

Run it on the code before a change with that code first on the path, e.g.
``PYTHONPATH=/path/to/old/checkout python bench/hold_phrases.py``: it uses only
the agent, the speech output, the fault server and the LLM client.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
from typing import Any

import numpy as np

from fsm import AutojumpClock, Clock
from ledger import Ledger
from voice_agent.agent import Agent
from voice_agent.bench.fault_server import FaultServer, progressing, words
from voice_agent.bench.word_voice import PER_WORD, RATE, TICK_S, WordTts, play_in_step
from voice_agent.config import AgentConfig, LlmConfig
from voice_agent.events import SessionEnded, TranscriptFinal
from voice_agent.llm import LlmClient
from voice_agent.tools import ToolRegistry
from voice_agent.voice.output import AudioSpeechOutput
from voice_agent.voice.sinks import TimelineSink

ANSWERS = [
    "The order 58213 is currently in the processing state. It ships on Friday.",
    "Sure, let me check that for you. Your refund of 42 dollars was issued on Monday, "
    "and it should reach your card within five days.",
    "Our Denver store opens at 9 a.m. and closes at 6 p.m. on weekdays. "
    "On Saturdays it closes at noon.",
    "I can't book a taxi here. I can check an order, look up store hours, or schedule "
    "a call-back. Would that help?",
]
TTFT_S = 0.3  # the endpoint's time to first token (clock seconds)
CAP_S = 60.0  # a turn taking longer (clock seconds) is reported as stuck
CONFIG = AgentConfig(system_prompt="You are a test agent.", mode="async")
HOLDS = set(CONFIG.hold_phrases)
SENTENCE_MARKS = (".", "!", "?", "…")
CLAUSE_MARKS = (",", ";", ":")
GLUED_S = 0.5  # a hold phrase this soon after the answer's audio follows it without a pause  # a chunk the output cut at a clause to start audio sooner


def _script(answer: str, stall_after: int | None, stall_s: float, dead: bool) -> list[Any]:
    steps = words(answer)
    if stall_after is not None:
        steps.insert(stall_after + 1, ("stall",) if dead else ("sleep", stall_s))
    return [("headers",), ("role",), ("sleep", TTFT_S), *steps, ("finish", "stop"), ("usage",),
            ("done",)]  # fmt: skip


async def _one_run(
    script: list[Any],
    clock: Clock,
    config: AgentConfig = CONFIG,
    timeout_s: float = 30.0,
    cap_s: float = CAP_S,
    tools: ToolRegistry | None = None,
) -> dict[str, Any]:
    async with FaultServer(script, clock=clock) as server:
        llm = LlmClient(
            LlmConfig(base_url=server.base_url, model="slow", timeout_s=timeout_s), clock=clock
        )
        tts = WordTts(clock)
        sink = TimelineSink(RATE)
        output = AudioSpeechOutput(tts, sink)
        ledger = Ledger("hold-bench", clock)
        agent = Agent(config, llm, tools or ToolRegistry(), output, ledger, clock)

        task = asyncio.create_task(agent.run())
        player = asyncio.create_task(play_in_step(sink, output, clock))
        agent.post(TranscriptFinal(text="Where is my order?"))
        t0 = clock.now()
        start_pos = sink.position
        await clock.sleep(TICK_S)
        stuck = False
        while not agent.is_idle():
            if clock.now() - t0 > cap_s:
                stuck = True
                break
            await clock.sleep(TICK_S)
        end_pos = sink.position
        agent.post(SessionEnded(reason="bench over"))
        await asyncio.wait_for(task, 10)
        player.cancel()
        await asyncio.gather(player, return_exceptions=True)
        await output.aclose()
        await llm.aclose()
    timeline = sink.render(end_pos)[start_pos:end_pos]
    return {
        "chunks": [text for _, text in tts.asked],
        "asked": [(round(at - t0, 3), text) for at, text in tts.asked],
        "first_sound_s": _first_sound(timeline),
        "longest_silence_s": _longest_silence(timeline),
        "stuck": stuck,
    }


def _first_sound(timeline: np.ndarray) -> float | None:
    sound = np.flatnonzero(timeline)
    return round(float(sound[0]) / RATE, 3) if len(sound) else None


def _longest_silence(timeline: np.ndarray) -> float:
    """Longest run without sound from the turn's end to the last sound (seconds)."""
    sound = np.flatnonzero(timeline)
    if not len(sound):
        return round(len(timeline) / RATE, 3)
    edges = np.diff(np.concatenate([[-1], sound]))
    return round(float(edges.max() - 1) / RATE, 3)


def _longest_hold_run(said: list[str], holds: set[str]) -> int:
    """The most hold phrases said in a row: the long-wait phrase is due after more
    than the short ones."""
    run, longest = 0, 0
    for text in said:
        run = run + 1 if text in holds else 0
        longest = max(longest, run)
    return longest


def _glued(asked: list[tuple[float, str]], holds: set[str] = HOLDS) -> int:
    """Hold phrases that began less than GLUED_S after the answer's audio ended."""
    spans = _spans(asked)
    return sum(
        1
        for (_, end, before), (start, _, text) in zip(spans, spans[1:], strict=False)
        if text in holds and before not in holds and start - end < GLUED_S
    )


def _ends_sentence(text: str) -> bool:
    return text.rstrip().rstrip("\"')]}”’»").endswith(SENTENCE_MARKS)


def _judge(chunks: list[str], answer: str) -> dict[str, Any]:
    holds = inside = at_word = after_clause = 0
    for i, text in enumerate(chunks):
        spliced = [h for h in HOLDS if h in text and text != h]
        if text in HOLDS or spliced:
            holds += 1
            before = chunks[i - 1] if i else ""
            if spliced or (before and not _ends_sentence(before)):
                inside += 1
                cut = text.split(spliced[0])[0].strip() if spliced else before
                at_word += bool(cut) and cut[-1].isalnum()
                after_clause += not spliced and before.rstrip().endswith(CLAUSE_MARKS)
    said = " ".join(c for c in chunks if c not in HOLDS).split()
    whole = said == answer.split() and inside == after_clause
    return {
        "holds": holds,
        "inside": inside,
        "at_word": at_word,
        "after_clause": after_clause,
        "whole": whole,
    }


def run(stall_s: float) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for answer in ANSWERS:
        n = len(words(answer))
        plans: list[tuple[str, int | None]] = [("prompt", None)]
        plans += [(kind, k) for kind in ("slow", "dead") for k in range(-1, n - 1)]
        for kind, k in plans:
            clock = AutojumpClock()
            script = _script(answer, k, stall_s, dead=kind == "dead")
            result = clock.run(_one_run(script, clock))
            result.update(kind=kind, answer=answer, stall_after_word=k)
            result.update(_judge(result["chunks"], answer))
            result["glued"] = _glued(result["asked"])
            runs.append(result)
    summary: dict[str, Any] = {}
    for kind in ("prompt", "slow", "dead"):
        rs = [r for r in runs if r["kind"] == kind]
        silences = [r["longest_silence_s"] for r in rs]
        firsts = [r["first_sound_s"] for r in rs if r["first_sound_s"] is not None]
        before_audio = [r for r in rs if r["stall_after_word"] == -1]  # before any text
        summary[kind] = {
            "runs": len(rs),
            "holds": sum(r["holds"] for r in rs),
            "holds_inside_sentence": sum(r["inside"] for r in rs),
            "holds_cut_at_a_word": sum(r["at_word"] for r in rs),
            "holds_right_after_the_answer": sum(r["glued"] for r in rs),
            "holds_after_a_clause_heard": sum(r["after_clause"] for r in rs),
            "runs_with_a_hold_inside_a_sentence": sum(r["inside"] > 0 for r in rs),
            "stalls_without_a_hold": sum(r["holds"] == 0 for r in rs),
            "answers_heard_whole": None if kind == "dead" else sum(r["whole"] for r in rs),
            "stalls_before_audio_held": None
            if kind == "prompt"
            else f"{sum(r['holds'] > 0 for r in before_audio)}/{len(before_audio)}",
            "longest_silence_s": {
                "median": statistics.median(silences),
                "max": max(silences),
            },
            "first_sound_s": {"median": statistics.median(firsts), "max": max(firsts)},
            "stuck": sum(r["stuck"] for r in rs),
        }
    examples = [
        r["chunks"]
        for r in runs
        if r["kind"] == "slow" and r["answer"] == ANSWERS[0] and r["stall_after_word"] == 1
    ]
    return {"stall_s": stall_s, "summary": summary, "example_slow_stall_after_2_words": examples}


def long_wait(wait_s: float) -> dict[str, Any]:
    """A model that reports progress every second but says nothing for ``wait_s`` (the
    patience; the deadline raised to it when longer than the default patience, as the
    benches raise it): the
    phrases said before the apology, when, and the longest gap between them."""
    raised = wait_s > CONFIG.llm_patience_s  # the product's deadline, unless raised with it
    deadline = wait_s if raised else CONFIG.llm_deadline_s
    config = CONFIG.model_copy(update={"llm_patience_s": wait_s, "llm_deadline_s": deadline})
    script = [("headers",), ("role",), *progressing(wait_s + 5.0, 1.0), ("stall",)]
    clock = AutojumpClock()
    result = clock.run(
        _one_run(script, clock, config, timeout_s=wait_s + 10.0, cap_s=wait_s + 10.0)
    )
    phrases = [c for c in result["chunks"] if c not in CONFIG.apology]
    return {
        "wait_s": wait_s,
        "phrases": len(phrases),
        "long_wait_phrases": sum(
            c == getattr(CONFIG, "llm_long_wait_phrase", None) for c in phrases
        ),  # fmt: skip
        "almost_there": sum(c == "Almost there." for c in phrases),
        "longest_silence_s": result["longest_silence_s"],
        "stuck": result["stuck"],
    }


LONG_FIRST = (
    "Sure, your order 58213 left our Denver warehouse on Monday morning "
    "and it is now on its way to you with the courier."
)
REST = "It should reach you by Friday."


def _spans(asked: list[tuple[float, str]]) -> list[tuple[float, float, str]]:
    """(start, end, text) of each chunk as heard: whole, in order, from when it was
    synthesised or when the one before it ended (seconds from the turn's end)."""
    spans, end = [], 0.0
    for at, text in asked:
        start = max(at, end)
        end = start + len(text.split()) * PER_WORD / RATE
        spans.append((start, end, text))
    return spans


def long_first_sentence(
    short_holds: tuple[int, ...] = (CONFIG.llm_holds_before_long_wait, 1),
    blanks: tuple[bool, ...] = (False, True),
) -> list[dict[str, Any]]:
    """A long first sentence, then the model goes quiet (see the module doc)."""
    holds = {*CONFIG.hold_phrases, CONFIG.llm_long_wait_phrase}
    plans: list[tuple[str, list[Any]]] = [
        (f"slow {s:g}s", [("sleep", s), *words(" " + REST)[1:]]) for s in (3.0, 5.0, 7.0)
    ]
    plans += [("dead", [("stall",)])]
    plans += [("working 20s", [*progressing(20.0, 1.0), *words(" " + REST)[1:]])]
    out = []
    for short, blank in itertools.product(short_holds, blanks):
        config = CONFIG.model_copy(update={"llm_holds_before_long_wait": short})
        for name, tail in plans:
            lead = [("text", " ")] if blank else []
            script = [("headers",), ("role",), ("sleep", TTFT_S), *words(LONG_FIRST), *lead,
                      *tail, ("finish", "stop"), ("usage",), ("done",)]  # fmt: skip
            clock = AutojumpClock()
            result = clock.run(_one_run(script, clock, config))
            spans = _spans(result["asked"])
            said = [t for _, _, t in spans]
            first_hold = next((i for i, t in enumerate(said) if t in holds), None)
            gap = None
            if first_hold:
                gap = round(spans[first_hold][0] - spans[first_hold - 1][1], 3)
            out.append({
                "run": name,
                "short_holds": short,
                "stall_after": "a blank" if blank else "the final mark",
                "silence_before_first_hold_s": gap,
                "holds": sum(t in holds for t in said),
                "long_wait_said": said.count(CONFIG.llm_long_wait_phrase),
                "long_wait_due": _longest_hold_run(said, holds) > short,
                "longest_silence_s": result["longest_silence_s"],
                "stuck": result["stuck"],
            })  # fmt: skip
    return out


FOLLOW_UP_FIRST = "Let me look that up."
FOLLOW_UP_SHIPPED = "Your order 58213 has shipped."
FOLLOW_UP_COURIER = "It is with the courier."
TOOL_S = 1.0  # each lookup's run time (clock seconds)


def _follow_up_plan(tail: list[Any]) -> Any:
    """A turn answered in three generations: "Let me look that up." and a lookup; with its
    result, a sentence and a second lookup; with the second result, ``tail`` (the slow
    follow-up). Keyed by the results the request carries, so a restarted request gets
    the same script again."""
    head = [("headers",), ("role",), ("sleep", TTFT_S)]

    def plan(index: int, body: dict[str, Any]) -> list[Any]:
        results = sum(1 for m in body["messages"] if m.get("role") == "tool")
        if results == 0:
            return [*head, *words(FOLLOW_UP_FIRST), ("call", 0, "call_a", "lookup_order",
                    '{"order_id": "58213"}'), ("finish", "tool_calls"), ("done",)]  # fmt: skip
        if results == 1:
            return [*head, *words(FOLLOW_UP_SHIPPED), ("call", 0, "call_b", "track_parcel",
                    '{"order_id": "58213"}'), ("finish", "tool_calls"), ("done",)]  # fmt: skip
        return [*head, *tail, ("finish", "stop"), ("usage",), ("done",)]

    return plan


def _order_tools(clock: Clock) -> ToolRegistry:
    registry = ToolRegistry()

    @registry.tool
    async def lookup_order(order_id: str) -> dict[str, str]:
        """Look up an order's status."""
        await clock.sleep(TOOL_S)
        return {"order_id": order_id, "status": "shipped"}

    @registry.tool
    async def track_parcel(order_id: str) -> dict[str, str]:
        """Where an order's parcel is."""
        await clock.sleep(TOOL_S)
        return {"order_id": order_id, "eta": "Friday"}

    return registry


def slow_follow_up(
    short_holds: tuple[int, ...] = (CONFIG.llm_holds_before_long_wait, 1),
) -> list[dict[str, Any]]:
    """The turn's second follow-up is slow (see the module doc)."""
    holds = {*CONFIG.hold_phrases, CONFIG.llm_long_wait_phrase}
    out = []
    for short, lead in itertools.product(short_holds, ([], words(FOLLOW_UP_COURIER))):
        config = CONFIG.model_copy(update={"llm_holds_before_long_wait": short})
        rest = words(" " + REST)[1:] if lead else words(REST)
        plans: list[tuple[str, list[Any]]] = [
            (f"slow {s:g}s", [*lead, ("sleep", s), *rest]) for s in (3.0, 5.0, 7.0)
        ]
        plans += [("dead", [*lead, ("stall",)])]
        plans += [("working 20s", [*lead, *progressing(20.0, 1.0), *rest])]
        for name, tail in plans:
            clock = AutojumpClock()
            result = clock.run(
                _one_run(_follow_up_plan(tail), clock, config, tools=_order_tools(clock))
            )
            spans = _spans(result["asked"])
            said = [t for _, _, t in spans]
            out.append({
                "run": name,
                "short_holds": short,
                "stall": "after its first sentence" if lead else "at its start",
                "holds": sum(t in holds for t in said),
                "holds_right_after_the_answer": _glued(result["asked"], holds),
                "long_wait_said": said.count(CONFIG.llm_long_wait_phrase),
                "long_wait_due": _longest_hold_run(said, holds) > short,
                "answer_heard": REST in said,
                "longest_silence_s": result["longest_silence_s"],
                "stuck": result["stuck"],
                "said": said,
            })  # fmt: skip
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stall-s", type=float, default=3.0)
    parser.add_argument("--json", help="also write the full report here")
    args = parser.parse_args(argv)
    report = run(args.stall_s)
    report["long_wait"] = [long_wait(w) for w in (30.0, 120.0)]
    report["long_first_sentence"] = long_first_sentence()
    report["slow_follow_up"] = slow_follow_up()
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
