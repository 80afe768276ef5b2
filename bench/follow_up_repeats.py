"""Two lookups in one turn: does a later follow-up make the caller hear a sentence twice?

Usage: python bench/follow_up_repeats.py [--modes async,speculative,sync] [--since caller|agent]
                                         [--json out.json]

The caller asks for an order's status and a store's hours in one turn (spoken call s06).
A scripted model (``Reteller``) calls both tools, then answers each follow-up as the
embedded server's answer note asks: ``--since caller`` (the note before session 11,
"tell the caller each answer you found above" about every outcome since the caller
spoke) made the 1.5B tell one sentence per outcome of the turn it is shown, the ones
it told before included; ``--since agent`` (the default: the note since session 11)
asks for the outcomes since the agent last spoke only. The tools' latencies, the model's time to first token, its speed and the
gap between its two calls run over a fixed grid (72 timings per mode). The agent
(the real table, conversation, scheduler and ledger) speaks through the real
``AudioSpeechOutput`` into a ``TimelineSink`` played in step with the clock, with
``voice_agent.bench.word_voice.WordTts`` (0.25 s per word); time is virtual
(``fsm.AutojumpClock``), so the figures are exact and do not depend on load.

Reported per mode:

- ``timings_with_a_repeat``: timings in which the caller heard one of the model's
  sentences twice (of how many); ``sentences_heard_twice``: over all timings;
- ``facts_missing``: timings in which an outcome's sentence was never heard;
- ``dropped_as_repeats``: sentences the engine's repeat filter (`voice_agent.repeats`)
  kept from the caller (generated, never said: the model's time spent on them);
- ``both_facts_s``: the turn's end to the moment the caller heard the second fact
  whole (mean, median, max);
- ``turn_done_s``: the turn's end to the end of the last audio (mean, median, max).

Run it on the code before a change with that code first on the path
(``PYTHONPATH=/path/to/old/checkout python bench/follow_up_repeats.py``): it uses
only the agent, the tool registry and the speech output.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


from fsm import AutojumpClock  # noqa: E402
from ledger import Ledger  # noqa: E402
from voice_agent.agent import Agent  # noqa: E402
from voice_agent.bench.reteller import Reteller  # noqa: E402
from voice_agent.bench.word_voice import PER_WORD, RATE, TICK_S, WordTts, play_in_step  # noqa: E402
from voice_agent.config import AgentConfig  # noqa: E402
from voice_agent.events import SessionEnded, TranscriptFinal  # noqa: E402
from voice_agent.tools import ToolRegistry  # noqa: E402
from voice_agent.voice.output import AudioSpeechOutput  # noqa: E402
from voice_agent.voice.sinks import TimelineSink  # noqa: E402

ORDER = "The order 5091 is currently in the processing state."
HOURS = "The Dallas store is open from 9 am to 7 pm."
FACTS = {"get_order_status": ORDER, "get_store_hours": HOURS}
#: (order latency s, hours latency s, time to first token s, s per word, gap between calls s)
GRID = list(
    itertools.product([0.3, 0.8, 2.0], [0.4, 1.5, 4.0], [0.2, 0.6], [0.05, 0.25], [0.1, 1.0])
)
CAP_S = 120.0  # a turn taking longer (clock seconds) is reported as stuck


def registry(order_s: float, hours_s: float) -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool(timeout_s=60)
    async def get_order_status(order_id: str) -> dict[str, str]:
        """An order's status."""
        await asyncio.sleep(order_s)
        return {"tool": "get_order_status"}

    @reg.tool(timeout_s=60)
    async def get_store_hours(city: str) -> dict[str, str]:
        """A store's opening hours."""
        await asyncio.sleep(hours_s)
        return {"tool": "get_store_hours"}

    return reg


def one_call(mode: str, timing: tuple[float, ...], since: str = "agent") -> dict[str, Any]:
    order_s, hours_s, ttft_s, per_word_s, gap_s = timing
    clock = AutojumpClock()

    async def main() -> tuple[Ledger, list[tuple[float, str]]]:
        tts = WordTts(clock)
        sink = TimelineSink(RATE)
        output = AudioSpeechOutput(tts, sink)
        ledger = Ledger("repeats-bench", clock)
        config = AgentConfig(system_prompt="You are a test agent.", mode=mode)
        llm = Reteller(
            clock,
            [
                ("get_order_status", '{"order_id": "5091"}'),
                ("get_store_hours", '{"city": "Dallas"}'),
            ],
            lambda result: FACTS[result["tool"]],
            ttft_s=ttft_s,
            per_word_s=per_word_s,
            gap_s=gap_s,
            since=since,  # type: ignore[arg-type]
        )
        agent = Agent(config, llm, registry(order_s, hours_s), output, ledger, clock)  # type: ignore[arg-type]

        task = asyncio.create_task(agent.run())
        player = asyncio.create_task(play_in_step(sink, output, clock))
        try:
            agent.post(TranscriptFinal(text="Can you check order 5091, and the Dallas hours?"))
            await clock.sleep(TICK_S)
            while not agent.is_idle() and clock.now() < CAP_S:
                await clock.sleep(TICK_S)
            await clock.sleep(1.0)
        finally:
            agent.post(SessionEnded(reason="bench over"))
            await asyncio.wait_for(task, 10)
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
            await output.aclose()
        return ledger, tts.asked

    ledger, asked = clock.run(main())
    canned = set(AgentConfig(system_prompt="s").hold_phrases)
    played = " ".join(e.text for e in ledger.entries if e.type == "AgentTextPlayed")
    heard = [s for s in re.split(r"(?<=[.!?])\s+", played) if s and s not in canned]
    end = 0.0
    heard_at: dict[str, float] = {}  # fact -> when its last chunk finished playing
    for at, text in asked:  # each chunk plays whole, from when it is made or the last ends
        end = max(at, end) + len(text.split()) * PER_WORD / RATE
        for fact in FACTS.values():
            if fact not in heard_at and text.strip() and fact.endswith(text.strip()):
                heard_at[fact] = end
    dropped = [e for e in ledger.entries if e.type == "Note" and "not said again" in e.text]
    return {
        "twice": sum(n - 1 for n in Counter(heard).values()),
        "missing": sum(fact not in heard for fact in FACTS.values()),
        "dropped": len(dropped),
        "turn_done_s": round(end, 3),
        "both_facts_s": round(max(heard_at.values()), 3) if len(heard_at) == 2 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="async,speculative,sync")
    parser.add_argument("--since", choices=("caller", "agent"), default="agent")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for mode in args.modes.split(","):
        runs = [one_call(mode, timing, args.since) for timing in GRID]
        done = [r["turn_done_s"] for r in runs]
        both = [r["both_facts_s"] for r in runs if r["both_facts_s"] is not None]
        report[mode] = {
            "timings_with_a_repeat": f"{sum(r['twice'] > 0 for r in runs)} of {len(runs)}",
            "sentences_heard_twice": sum(r["twice"] for r in runs),
            "facts_missing": sum(r["missing"] > 0 for r in runs),
            "dropped_as_repeats": sum(r["dropped"] for r in runs),
            "both_facts_s": {
                "mean": round(statistics.mean(both), 2),
                "median": round(statistics.median(both), 2),
                "max": round(max(both), 2),
            },
            "turn_done_s": {
                "mean": round(statistics.mean(done), 2),
                "median": round(statistics.median(done), 2),
                "max": round(max(done), 2),
            },
        }
        print(mode, json.dumps(report[mode]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
