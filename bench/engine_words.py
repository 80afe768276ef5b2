"""The engine's own words between a result and its report: is the result still told?

Usage: python bench/engine_words.py [--json out.json]

The embedded server tells the outcomes since the agent last spoke (`turn_history.untold`).
The engine also speaks by itself: a hold phrase while tools run, the apology when the model
fails. When those words counted as the agent's, a result that came before them and was
never told dropped out of what the next reply tells. Two scenarios, async mode:

- ``apology``: the caller asks for an order and a store's hours; the order's result comes
  first, its follow-up stalls until the engine's deadline (the apology), the hours come
  after it.
- ``chain``: the second call takes the first one's future as its argument (a customer's
  balance by the customer the first call finds): the first result is reported with the
  second, and a hold phrase is said while the second runs.

A scripted model (`voice_agent.bench.reteller.Reteller`, ``since="agent"``) tells each
outcome the server would have it tell, one sentence each. The agent (the real table,
conversation, scheduler and ledger) runs on virtual time (``fsm.AutojumpClock``) over a
grid of tool latencies and model timings, so the figures are exact and do not depend on
load. Reported per scenario: ``facts_never_told``, the runs in which a result's sentence
was never said (of how many).

Run it on the code before a change with that code first on the path
(``PYTHONPATH=/path/to/old/checkout python bench/engine_words.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import follow_up_repeats  # noqa: E402

from fsm import AutojumpClock  # noqa: E402
from ledger import Ledger  # noqa: E402
from voice_agent.agent import Agent  # noqa: E402
from voice_agent.bench.reteller import Reteller  # noqa: E402
from voice_agent.config import AgentConfig  # noqa: E402
from voice_agent.events import SessionEnded, TranscriptFinal  # noqa: E402
from voice_agent.output import TextOutput  # noqa: E402
from voice_agent.tools import ToolRegistry  # noqa: E402

FACTS = {
    "get_order_status": "The order 5091 has shipped.",
    "get_store_hours": "The Dallas store opens at 9 am.",
    "find_customer": "I found your account, Dana.",
    "get_balance": "Your balance is 42 dollars.",
}
SCENARIOS: dict[str, list[tuple[str, str]]] = {
    "apology": [
        ("get_order_status", '{"order_id": "5091"}'),
        ("get_store_hours", '{"city": "Dallas"}'),
    ],
    "chain": [
        ("find_customer", '{"phone": "555 0100"}'),
        ("get_balance", '{"customer": "c1"}'),
    ],
}
#: (first tool s, second tool s, time to first token s, s per word)
GRID = list(itertools.product([0.2, 0.5, 1.0], [2.0, 4.0, 12.0, 20.0], [0.1, 0.5], [0.05, 0.2]))


def registry(first_s: float, second_s: float) -> ToolRegistry:
    """follow_up_repeats' two lookups (order, hours), and a lookup chained on another's."""
    reg = follow_up_repeats.registry(first_s, second_s)

    @reg.tool(timeout_s=60)
    async def find_customer(phone: str) -> str:
        """The id of the customer with this phone number."""
        await asyncio.sleep(first_s)
        return "K-17"

    @reg.tool(timeout_s=60)
    async def get_balance(customer: str) -> dict[str, str]:
        """A customer's balance."""
        await asyncio.sleep(second_s)
        return {"tool": "get_balance"}

    return reg


def one_call(scenario: str, timing: tuple[float, ...]) -> dict[str, Any]:
    first_s, second_s, ttft_s, per_word_s = timing
    clock = AutojumpClock()
    ledger = Ledger("engine-words-bench", clock)
    model = Reteller(
        clock,
        SCENARIOS[scenario],
        lambda result: FACTS[result["tool"] if isinstance(result, dict) else "find_customer"],
        ttft_s=ttft_s,
        per_word_s=per_word_s,
        gap_s=0.1,
        since="agent",
        stalls=1 if scenario == "apology" else 0,
    )
    config = AgentConfig(system_prompt="You are a test agent.", mode="async")
    agent = Agent(config, model, registry(first_s, second_s), TextOutput(io.StringIO()),  # type: ignore[arg-type]
                  ledger, clock)  # fmt: skip

    async def main() -> None:
        task = asyncio.create_task(agent.run())
        agent.post(TranscriptFinal(text="Can you check these for me?"))
        await asyncio.sleep(60.0)
        agent.post(SessionEnded(reason="bench over"))
        await task

    clock.run(main())
    entries = list(ledger.entries)
    said = " ".join(e.text for e in entries if e.type == "AgentTextPlanned" and not _canned(e))
    wanted = [FACTS[name] for name, _ in SCENARIOS[scenario]]
    return {"missing": any(f not in said for f in wanted)}


#: The config's own phrases (holds, the apology, the long-wait phrase): what the engine
#: said before its words were marked `canned`.
_CONFIG = AgentConfig(system_prompt="s")
_ENGINE_PHRASES = {*_CONFIG.hold_phrases, _CONFIG.apology, _CONFIG.llm_long_wait_phrase}


def _canned(entry: Any) -> bool:
    """The engine's own words: marked `canned` (from this change on), else said by the
    engine's own phrases (the config's holds and apology)."""
    return bool(getattr(entry, "canned", False)) or entry.text in _ENGINE_PHRASES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report: dict[str, Any] = {}
    for scenario in SCENARIOS:
        runs = [one_call(scenario, timing) for timing in GRID]
        report[scenario] = {
            "facts_never_told": f"{sum(r['missing'] for r in runs)} of {len(runs)}",
        }
        print(scenario, json.dumps(report[scenario]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
