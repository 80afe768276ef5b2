"""The caller never hears a sentence twice in one turn because a later generation re-says it.

In async mode a turn with two lookups is answered by several generations: one reports
the first outcome while the other call runs, the next one the second outcome. A model
shown every outcome of the turn may tell the first one again (the embedded 1.5B did, in
2 of 3 runs of the spoken call s06: "The order 5091 is currently in the processing
state. The order 5091 is currently in the processing state. The opening hours of the
Dallas store ..."). The engine drops such a sentence before the output
(:mod:`voice_agent.repeats`) and notes it in the ledger.

The engine tests run the real agent (table, conversation, ledger, scheduler, the audio
output's chunker and playout) on ``AutojumpClock`` with a scripted model
(``Reteller``: one sentence per outcome of the turn it is shown, like a small model
told to "tell each answer you found") and two or three tools of different latencies.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fsm import AutojumpClock, Clock
from ledger import Ledger, check_protocol
from voice_agent.agent import Agent
from voice_agent.bench.reteller import Reteller
from voice_agent.bench.word_voice import RATE, TICK_S, WordTts, play_in_step
from voice_agent.config import AgentConfig
from voice_agent.events import SessionEnded, TranscriptFinal
from voice_agent.generation import Generation
from voice_agent.llm import StreamFinished, TextDelta, ToolCallReady
from voice_agent.repeats import SaidInTurn
from voice_agent.tools import ToolRegistry
from voice_agent.voice.output import AudioSpeechOutput
from voice_agent.voice.sinks import TimelineSink

ORDER = "The order 5091 is currently in the processing state."
HOURS = "The Dallas store is open from 9 am to 7 pm."
REFUND = "The refund for order 5091 was sent on Monday."


# ------------------------------------------------------------------ the filter alone


def filtered(deltas: list[str], said: SaidInTurn) -> tuple[list[str], list[str]]:
    """What one generation's deltas let through, delta by delta, and the repeats dropped."""
    gen = Generation(response_id="r", reason="tool_results")
    out, repeats = [], []
    for delta in deltas:
        passed = gen.repeats.push(delta, said)
        out.append(passed.text)
        repeats += passed.repeats
    last = gen.repeats.finish(said)
    return [*out, last.text], repeats + last.repeats


def tokens(text: str) -> list[str]:
    return [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]


def test_a_sentence_said_earlier_in_the_turn_is_dropped_and_the_new_one_said() -> None:
    said = SaidInTurn()
    filtered(tokens(ORDER), said)
    out, repeats = filtered(tokens(f"{ORDER} {HOURS}"), said)
    assert "".join(out) == HOURS
    assert repeats == [ORDER]


def test_a_sentence_is_held_only_while_it_may_still_be_a_repeat() -> None:
    said = SaidInTurn()
    filtered(tokens(ORDER), said)
    out, _ = filtered(tokens("The order 5091 has shipped."), said)
    # "The order 5091" waits; "has" cannot be the said sentence any more: all goes out
    assert out[:4] == ["", "", "", "The order 5091 has"]
    assert "".join(out) == "The order 5091 has shipped."


def test_the_first_answer_of_a_turn_is_never_held() -> None:
    out, repeats = filtered(tokens(ORDER), SaidInTurn())
    assert out[0] == "The" and repeats == []


def test_an_answer_repeating_itself_is_said_as_the_model_said_it() -> None:
    # the rule is about a later generation restarting, not about one answer's wording
    out, repeats = filtered(tokens(f"Okay! {ORDER} Okay!"), SaidInTurn())
    assert "".join(out) == f"Okay! {ORDER} Okay!" and repeats == []


def test_a_new_turn_may_say_it_again() -> None:
    said = SaidInTurn()
    filtered(tokens(ORDER), said)
    said.clear()  # the caller spoke ("can you say that again?")
    out, repeats = filtered(tokens(ORDER), said)
    assert "".join(out) == ORDER and repeats == []


def test_a_repeat_differing_only_in_case_and_punctuation_is_a_repeat() -> None:
    said = SaidInTurn()
    filtered(tokens(ORDER), said)
    out, repeats = filtered(tokens(ORDER.lower().replace(".", "!")), said)
    assert "".join(out) == "" and len(repeats) == 1


def test_held_text_is_given_back_when_the_answer_ends_unsaid() -> None:
    said = SaidInTurn()
    filtered(tokens(ORDER), said)
    gen = Generation(response_id="r", reason="tool_results")
    assert gen.repeats.push("The order", said).text == ""
    assert gen.repeats.discard(said) == "The order"


POOL = [ORDER, HOURS, REFUND, "Sure.", "It ships on Friday, by 9 a.m. at the latest.", "Okay!"]


@st.composite
def split_text(draw: st.DrawFn) -> tuple[list[str], list[str], list[str]]:
    """Sentences earlier generations said in the turn, and a new answer (sentences from the
    same pool, maybe repeating its own) cut into deltas at random places."""
    earlier = draw(st.lists(st.sampled_from(POOL), max_size=3))
    answer = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4))
    text = " ".join(answer)
    cuts = sorted(draw(st.sets(st.integers(1, len(text) - 1), max_size=15)))
    deltas = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return earlier, answer, deltas


@settings(max_examples=200, deadline=None)
@given(split_text())
def test_any_split_of_an_answer_loses_nothing_but_its_repeats(
    case: tuple[list[str], list[str], list[str]],
) -> None:
    earlier, answer, deltas = case
    said = SaidInTurn()
    said.add(earlier)
    out, repeats = filtered(deltas, said)
    kept = [sentence for sentence in answer if sentence not in earlier]
    assert " ".join("".join(out).split()) == " ".join(kept)  # the new ones, in order, whole
    assert len(repeats) == len(answer) - len(kept)  # every other one is accounted for


# ------------------------------------------------------------------ the engine


def tell(result: dict[str, Any]) -> str:
    return {"get_order_status": ORDER, "get_store_hours": HOURS, "get_refund": REFUND}[
        result["tool"]
    ]


def registry(latency_s: dict[str, float]) -> ToolRegistry:
    reg = ToolRegistry()
    for name, seconds in latency_s.items():

        async def lookup(_name: str = name, _s: float = seconds) -> dict[str, str]:
            await asyncio.sleep(_s)
            return {"tool": _name}

        reg.tool(lookup, name=name, description=f"{name} (a lookup)", timeout_s=60)
    return reg


_DEFAULTS = AgentConfig(system_prompt="s")
CANNED = {*_DEFAULTS.hold_phrases, _DEFAULTS.llm_long_wait_phrase}  # the engine's, not the model's


class SaysItAgain:
    """A scripted model: the caller's turn gets ``ORDER`` and the order's lookup; the
    follow-up says ``ORDER`` again, a word every ``per_word_s``."""

    config = None

    def __init__(self, clock: Clock, per_word_s: float) -> None:
        self.clock, self.per_word_s = clock, per_word_s
        self.told: list[str] = []

    async def stream(self, messages: list[dict[str, Any]], tools: Any = None, **_: Any) -> Any:
        await self.clock.sleep(0.2)
        self.told.append(ORDER)
        if messages[-1]["role"] == "user":
            yield TextDelta(ORDER + " ")
            yield ToolCallReady("c1", "get_order_status", "{}")
            yield StreamFinished("tool_calls")
            return
        for i, word in enumerate(tokens(ORDER)):
            if i:
                await self.clock.sleep(self.per_word_s)
            yield TextDelta(word)
        yield StreamFinished("stop")

    async def prewarm(self, messages: Any, tools: Any) -> None:
        return None

    async def aclose(self) -> None:
        return None


@dataclass
class Call:
    ledger: Ledger
    told: list[str]  # what the model streamed, sentence by sentence
    state: str  # the agent's state at the end

    def heard_sentences(self) -> list[str]:
        """The model's sentences the caller heard (the output's reports), in order; hold
        phrases left out."""
        heard = " ".join(e.text for e in self.ledger.entries if e.type == "AgentTextPlayed")
        return [s for s in re.split(r"(?<=[.!?])\s+", heard) if s and s not in CANNED]

    def notes(self) -> list[str]:
        return [e.text for e in self.ledger.entries if e.type == "Note"]


def run_call(
    latency_s: dict[str, float], *, ttft_s: float = 0.2, per_word_s: float = 0.05,
    gap_s: float = 0.0, mode: str = "async", model: type[SaysItAgain] | None = None,
) -> Call:  # fmt: skip
    """One caller turn asking for every tool's answer, on virtual time, until idle
    (``Reteller`` answers, or ``model``)."""
    clock = AutojumpClock()

    async def main() -> Call:
        tts = WordTts(clock)
        sink = TimelineSink(RATE)
        output = AudioSpeechOutput(tts, sink)
        ledger = Ledger("test", clock)
        llm = (
            model(clock, per_word_s)
            if model is not None
            else Reteller(
                clock,
                [(name, "{}") for name in latency_s],
                tell,
                ttft_s=ttft_s,
                per_word_s=per_word_s,
                gap_s=gap_s,
            )
        )
        config = AgentConfig(system_prompt="You are a test agent.", mode=mode)
        agent = Agent(config, llm, registry(latency_s), output, ledger, clock)  # type: ignore[arg-type]

        task = asyncio.create_task(agent.run())
        player = asyncio.create_task(play_in_step(sink, output, clock))
        try:
            agent.post(TranscriptFinal(text="Where is order 5091, and when is Dallas open?"))
            await clock.sleep(TICK_S)
            while not agent.is_idle():
                assert clock.now() < 300, ledger.transcript()
                await clock.sleep(TICK_S)
            await clock.sleep(1.0)  # the last audio plays out
            state = str(agent.state)
        finally:
            agent.post(SessionEnded(reason="test over"))
            await asyncio.wait_for(task, 10)
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
            await output.aclose()
        return Call(ledger, llm.told, state)

    return clock.run(main())


def test_an_outcome_arriving_mid_answer_does_not_get_the_first_sentence_said_twice() -> None:
    # r1 calls both at 0.2 s; the order is in at 0.5 s and r2 tells it (first word at
    # 0.7 s); the hours arrive at 0.8 s while r2 speaks; r3, shown both outcomes, tells
    # both: the caller hears the order once (r2's), then the hours (r3's)
    two = {"get_order_status": 0.3, "get_store_hours": 0.6}
    call = run_call(two, ttft_s=0.2, per_word_s=0.05, gap_s=0.0)
    played = [(e.response_id, e.text) for e in call.ledger.entries if e.type == "AgentTextPlayed"]
    assert played == [("r2", ORDER), ("r3", HOURS)]
    assert call.told == [ORDER, ORDER, HOURS]  # what the model said
    assert any(f"{ORDER!r} not said again" in note for note in call.notes())
    check_protocol(call.ledger.render_messages("s"))  # r3 saw r2's words as the agent's


def test_a_follow_up_that_only_says_it_again_leaves_the_floor_when_it_ends() -> None:
    # r1 says the order and looks it up; the outcome comes while its audio plays, so r2
    # starts in speaking; r1's audio ends while r2 (slow) says the order again, which is
    # dropped: r2 ends having said nothing, and the floor is free (before: the agent
    # stayed in speaking with nothing to play and never settled)
    call = run_call({"get_order_status": 0.3}, per_word_s=0.5, model=SaysItAgain)
    assert call.heard_sentences() == [ORDER]
    assert call.told == [ORDER, ORDER]
    assert call.state == "listening"


ALL_TOOLS = ["get_order_status", "get_store_hours", "get_refund"]
LATENCY = st.sampled_from([0.05, 0.3, 0.8, 1.5, 4.0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tools=st.lists(st.sampled_from(ALL_TOOLS), min_size=2, max_size=3, unique=True),
    latencies=st.lists(LATENCY, min_size=3, max_size=3),
    ttft_s=st.sampled_from([0.1, 0.6, 2.0]),
    per_word_s=st.sampled_from([0.02, 0.1, 0.3]),
    gap_s=st.sampled_from([0.0, 0.4, 1.2]),
    mode=st.sampled_from(["async", "speculative", "sync"]),
)
def test_any_arrival_order_says_each_fact_once_and_the_ledger_keeps_the_rest(
    tools: list[str], latencies: list[float], ttft_s: float, per_word_s: float,
    gap_s: float, mode: str,
) -> None:  # fmt: skip
    latency_s = dict(zip(tools, latencies, strict=False))
    call = run_call(latency_s, ttft_s=ttft_s, per_word_s=per_word_s, gap_s=gap_s, mode=mode)
    facts = call.heard_sentences()
    # 1. no sentence of the answer is heard twice
    assert not [s for s, n in Counter(facts).items() if n > 1], facts
    # 2. every outcome's fact is heard
    assert sorted(facts) == sorted(tell({"tool": name}) for name in tools), facts
    # 3. the ledger keeps what happened: what it planned is what was played, and every
    #    sentence the model said but the caller did not hear again is noted
    entries = call.ledger.entries
    planned = " ".join(e.text for e in entries if e.type == "AgentTextPlanned")
    played = " ".join(e.text for e in entries if e.type == "AgentTextPlayed")
    assert planned.split() == played.split()
    repeated = [n for n in call.notes() if "not said again: the caller heard it" in n]
    assert len(call.told) == len(facts) + len(repeated)
    check_protocol(call.ledger.render_messages("s"))
