"""Property: whatever the transcripts, call plans and event orders, no write ever executes
from a fork, and every adopted call's result is the one the model sees.

Hypothesis generates what the caller says word by word (numbers a hasty model looks up,
``cancel`` that makes it write), how the final transcript differs from the partials
(self-corrections, an empty transcript), tool latencies, the speculation policy and an
optional barge-in; the real agent table, scheduler and ledger run on virtual time.
"""

from __future__ import annotations

import asyncio
import io
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_va_speculation import Backend, HastyLlm

from fsm import AutojumpClock
from ledger import Ledger, check_protocol
from ledger.render import outcome_payload
from voice_agent.agent import Agent
from voice_agent.config import AgentConfig, SpeculationConfig
from voice_agent.events import (
    SessionEnded,
    TranscriptFinal,
    TranscriptPartial,
    UserSpeechEnded,
    UserSpeechStarted,
)
from voice_agent.output import TextOutput

WORDS = st.sampled_from(["order", "please", "cancel", "the", "and", "4417", "4471", "5200"])


@st.composite
def conversations(draw):  # type: ignore[no-untyped-def]
    words = draw(st.lists(WORDS, min_size=1, max_size=9))
    final = draw(st.sampled_from(["same", "corrected", "empty", "shorter"]))
    if final == "same":
        text = " ".join(words)
    elif final == "corrected":
        text = " ".join(words + [draw(st.sampled_from(["4417", "4471", "5200"]))])
    elif final == "empty":
        text = ""
    else:
        text = " ".join(words[: max(1, len(words) // 2)])
    return {
        "words": words,
        "final": text,
        "gaps": draw(st.lists(st.floats(0.01, 0.4), min_size=len(words), max_size=len(words))),
        "latency": draw(st.floats(0.0, 1.5)),
        "barge_after": draw(st.none() | st.floats(0.0, 1.0)),
        "policy": SpeculationConfig(
            min_new_words=draw(st.integers(1, 2)),
            min_interval_s=draw(st.sampled_from([0.0, 0.3])),
            callworthy_only=draw(st.booleans()),
            keep_superseded_calls=draw(st.booleans()),
            drop_covered_preamble=draw(st.booleans()),
        ),
    }


async def _converse(case: dict, clock: AutojumpClock) -> tuple[Ledger, Backend]:
    backend = Backend(case["latency"])
    ledger = Ledger("prop", clock)
    backend.ledger = ledger
    config = AgentConfig(mode="speculative", system_prompt="t", speculation=case["policy"])
    agent = Agent(config, HastyLlm(), backend.registry, TextOutput(io.StringIO()), ledger, clock)  # type: ignore[arg-type]
    task = asyncio.create_task(agent.run())
    agent.post(UserSpeechStarted())
    for n, gap in enumerate(case["gaps"], start=1):
        await asyncio.sleep(gap)
        agent.post(TranscriptPartial(text=" ".join(case["words"][:n])))
    await asyncio.sleep(0.1)
    agent.post(UserSpeechEnded())
    agent.post(TranscriptFinal(text=case["final"]))
    if case["barge_after"] is not None:
        await asyncio.sleep(case["barge_after"])
        agent.post(UserSpeechStarted())
        agent.post(TranscriptPartial(text="and 5200"))
        await asyncio.sleep(0.2)
        agent.post(TranscriptFinal(text="and 5200"))
    for _ in range(600):  # at most 60 s of virtual time
        await asyncio.sleep(0.1)
        if agent.is_idle():
            break
    agent.post(SessionEnded(reason="done"))
    await asyncio.wait_for(task, 5)
    return ledger, backend


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(conversations())
def test_no_write_runs_from_a_fork_and_adopted_results_are_what_the_model_sees(case) -> None:
    clock = AutojumpClock()
    ledger, backend = clock.run(_converse(case, clock))
    entries = ledger.entries
    starts = {e.call_id: e for e in entries if e.type == "ToolCallStarted"}
    # no speculative write is ever recorded as started, and each write that ran was started
    # by an answer after a final transcript
    assert not [e for e in starts.values() if e.speculative and e.kind == "write"]
    finals = [e.seq for e in entries if e.type == "UserUtterance" and e.final]
    for name, _order, at in backend.ran:
        if name == "cancel_order":
            assert finals and min(finals) < at
    written = [e for e in starts.values() if e.kind == "write"]
    assert len([r for r in backend.ran if r[0] == "cancel_order"]) <= len(written)
    # every adopted call renders the speculative outcome; speculative ids never render
    messages = ledger.render_messages("sys")
    check_protocol(messages)
    rendered = json.dumps(messages)
    for e in starts.values():
        if e.speculative:
            assert f'"{e.call_id}"' not in rendered
    tool_messages = {
        m["tool_call_id"]: json.loads(m["content"]) for m in messages if m["role"] == "tool"
    }
    for adopted in (e for e in entries if e.type == "ForkAdopted"):
        for final_id, spec_id in adopted.adopted.items():
            outcome = ledger.call(spec_id).outcome
            shown = tool_messages.get(f"{final_id}-result") or tool_messages[final_id]
            if outcome is not None and shown.get("status") != "pending":
                assert shown == outcome_payload(outcome)
    # every fork is closed, every speculative call nobody adopted ended
    opened = {e.fork_id for e in entries if e.type == "ForkOpened"}
    closed = {e.fork_id for e in entries if e.type in ("ForkAdopted", "ForkDiscarded")}
    assert opened == closed
    for e in starts.values():
        if e.speculative and ledger.call(e.call_id).adopted_by is None:
            assert ledger.call(e.call_id).outcome is not None
