"""A transfer on the phone profile: does the engine start a generation after the transfer's
result, which asks for no reply (`voice_agent.guidance.SAY_NOTHING_MORE`)?

Usage: python bench/say_nothing_more.py [--modes async,speculative,sync] [--json out.json]

The caller asks for a person (and, in half the runs, for an order's status in the same
turn). A scripted model (`TransferModel`) calls ``transfer_to_human`` (and
``lookup_order``), then answers every later request with one sentence. The tools are the
phone profile's own (``voice_agent.phone.tools``, on a fresh SQLite file); the line
either carries the transfer out or fails it. The agent (the real table, conversation,
scheduler and ledger) runs on virtual time (``fsm.AutojumpClock``), over a grid of the
model's time to first token, the line's time to carry out the transfer and whether a
lookup rides along (``GRID``), so the figures are exact and do not depend on load.

Reported per mode:

- ``generations_after_silent_result``: requests that started after the transfer's result
  with nothing else to report (the lookup's result already reported or not in the turn);
- ``transfer_alone_words_after_it``: runs without a lookup in which the model said
  something after the engine's transfer words ("I'm transferring you now.") or after its
  "Sorry, I couldn't transfer you" (the caller speaks next);
- ``results_recorded``: transfer results in the ledger (of how many runs).

Run it on the code before a change with that code first on the path
(``PYTHONPATH=/path/to/old/checkout python bench/say_nothing_more.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fsm import AutojumpClock  # noqa: E402
from ledger import Ledger  # noqa: E402
from ledger.entries import OUTCOME_TYPES, Outcome  # noqa: E402
from voice_agent.agent import Agent  # noqa: E402
from voice_agent.call_control import CallAction  # noqa: E402
from voice_agent.config import AgentConfig, CallConfig  # noqa: E402
from voice_agent.events import SessionEnded, TranscriptFinal  # noqa: E402
from voice_agent.llm import StreamFinished, TextDelta, ToolCallReady  # noqa: E402
from voice_agent.output import TextOutput  # noqa: E402

#: (time to first token s, seconds the line takes to transfer, transfer goes through,
#: a lookup rides along)
GRID = list(itertools.product([0.1, 0.6, 2.0], [0.0, 1.5], [True, False], [False, True]))
LATER = "Is there anything else I can help with?"


class TransferModel:
    """Fake model: the first request calls the transfer (and a lookup); later ones say `LATER`."""

    config = None

    def __init__(self, ttft_s: float, lookup: bool) -> None:
        self.ttft_s = ttft_s
        self.lookup = lookup
        self.requests = 0

    async def stream(self, messages: Any, tools: Any = None, **_: Any) -> Any:
        self.requests += 1
        await asyncio.sleep(self.ttft_s)
        if self.requests == 1:
            if self.lookup:
                yield ToolCallReady(
                    "c_lookup", "lookup_order", json.dumps({"order_number": "4471"})
                )
            yield ToolCallReady("c_transfer", "transfer_to_human", json.dumps({"reason": "asked"}))
            yield StreamFinished("tool_calls")
            return
        yield TextDelta(LATER)
        yield StreamFinished("stop")

    async def prewarm(self, messages: Any, tools: Any) -> None:
        return None

    async def aclose(self) -> None:
        return None


def one_call(mode: str, timing: tuple[Any, ...], db: Path) -> dict[str, Any]:
    ttft_s, transfer_s, goes_through, lookup = timing
    os.environ["VOICE_AGENT_PHONE_DB"] = str(db)
    from voice_agent.phone import tools as phone_tools

    clock = AutojumpClock()
    ledger = Ledger("say-nothing-more-bench", clock)
    config = AgentConfig(system_prompt="test", mode=mode, hold_after_s=30.0)
    agent = Agent(config, TransferModel(ttft_s, lookup), phone_tools.registry,  # type: ignore[arg-type]
                  TextOutput(io.StringIO()), ledger, clock)  # fmt: skip

    async def perform(action: CallAction) -> bool:
        await asyncio.sleep(transfer_s)
        return goes_through

    agent.conversation.call.perform = perform

    async def main() -> None:
        task = asyncio.create_task(agent.run())
        text = "put me through to a person" + (", and where is order 4471?" if lookup else "")
        agent.post(TranscriptFinal(text=text))
        await asyncio.sleep(30.0)
        if not task.done():
            agent.post(SessionEnded(reason="bench over"))
        await task

    clock.run(main())
    entries = list(ledger.entries)
    outcomes: list[Outcome] = [e for e in entries if isinstance(e, OUTCOME_TYPES)]  # type: ignore[misc]
    transfer = [e for e in outcomes if e.call_id == "c_transfer"]
    starts = [e for e in entries if e.type == "LlmRequestStarted" and e.reason != "canned"]
    # a request after the transfer's result with no other outcome since the request before
    silent = [
        s
        for before, s in zip(starts, starts[1:], strict=False)
        if transfer
        and s.seq > transfer[0].seq
        and not any(before.seq < o.seq < s.seq and o.call_id != "c_transfer" for o in outcomes)
    ]
    engine_words = {CallConfig().transfer_phrase, CallConfig().transfer_failed}
    last_engine = max(
        (e.seq for e in entries if e.type == "AgentTextPlanned" and e.text in engine_words),
        default=-1,
    )
    after = [e for e in entries if e.type == "AgentTextPlanned" and e.seq > last_engine]
    return {
        "silent_starts": len(silent),
        "words_after": bool(after) and not lookup,
        "alone": not lookup,
        "recorded": bool(transfer),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="async,speculative,sync")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            runs = [
                one_call(mode, timing, Path(tmp) / f"{mode}-{n}.sqlite")
                for n, timing in enumerate(GRID)
            ]
            report[mode] = {
                "generations_after_silent_result": sum(r["silent_starts"] for r in runs),
                "transfer_alone_words_after_it": f"{sum(r['words_after'] for r in runs)} "
                f"of {sum(r['alone'] for r in runs)}",
                "results_recorded": f"{sum(r['recorded'] for r in runs)} of {len(runs)}",
            }
            print(mode, json.dumps(report[mode]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
