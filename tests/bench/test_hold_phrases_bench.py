"""bench/hold_phrases.py: its judge and one of its runs (virtual time, fake TTS, no model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fsm import AutojumpClock

_PATH = Path(__file__).resolve().parents[2] / "bench" / "hold_phrases.py"
_SPEC = importlib.util.spec_from_file_location("hold_phrases_bench", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
hp = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(hp)

ANSWER = "The order 58213 is in processing. It ships on Friday."


def test_the_judge_counts_a_spliced_hold_and_one_after_an_unfinished_chunk() -> None:
    spliced = ["The order One moment.", "58213 is in processing.", "It ships on Friday."]
    assert hp._judge(spliced, ANSWER) == {
        "holds": 1, "inside": 1, "at_word": 1, "after_clause": 0, "whole": False
    }  # fmt: skip
    # a hold after a clause already heard ("Sure,"): said on time, the sentence whole after
    after_clause = ["Sure,", "One moment.", "the order 58213 is in processing."]
    judged = hp._judge(after_clause, "Sure, the order 58213 is in processing.")
    assert judged["inside"] == 1 and judged["after_clause"] == 1 and judged["whole"]
    between = ["One moment.", "The order 58213 is in processing.", "It ships on Friday."]
    assert hp._judge(between, ANSWER) == {
        "holds": 1, "inside": 0, "at_word": 0, "after_clause": 0, "whole": True
    }  # fmt: skip


def test_a_stall_after_an_opening_clause_is_held_on_time() -> None:
    # before (hold9): "Sure," then silence until the sentence ended (or 7.75 s to the apology)
    clock = AutojumpClock()
    answer = "Sure, let me check that for you."
    result = clock.run(hp._one_run(hp._script(answer, 1, 3.0, dead=True), clock))
    assert result["chunks"][:2] == ["Sure,", "One moment."]
    assert result["longest_silence_s"] <= 2.0 + hp.TICK_S


def test_a_stall_mid_sentence_is_measured_as_held_between_sentences() -> None:
    clock = AutojumpClock()
    result = clock.run(hp._one_run(hp._script(ANSWER, 1, 3.0, dead=False), clock))
    assert result["chunks"] == ["One moment.", "The order 58213 is in processing.",
                                "It ships on Friday."]  # fmt: skip
    # the phrase, 1.5 s into the caller's silence: "The order" (at TTFT_S) is not heard, so
    # it does not put the phrase off (hold10; was TTFT_S + 1.5)
    assert result["first_sound_s"] == 1.5
    assert not result["stuck"]


def test_a_long_wait_is_measured_with_one_long_wait_phrase_and_spaced_holds() -> None:
    got = hp.long_wait(30.0)
    # 1.5, 3.5, 5.5, the long-wait phrase at 7.5, then 11.5, 19.5, 27.5 (was 9 phrases)
    assert got["phrases"] == 7 and got["long_wait_phrases"] == 1 and not got["stuck"]
    assert got["longest_silence_s"] <= hp.CONFIG.llm_hold_gap_max_s


def test_a_long_first_sentence_gets_its_first_hold_after_it_was_heard_and_the_long_wait_said() -> (
    None
):
    runs = hp.long_first_sentence(short_holds=(1,), blanks=(True,))
    held = [r for r in runs if r["holds"]]
    assert held and all(r["silence_before_first_hold_s"] >= 1.5 - hp.TICK_S for r in held)
    assert all(r["long_wait_said"] == 1 for r in runs if r["long_wait_due"])
    assert all(r["long_wait_said"] <= 1 and not r["stuck"] for r in runs)


def test_a_slow_second_follow_up_is_measured_after_two_lookups() -> None:
    # the turn's third generation (after the second lookup's result) is 3 s late: one hold
    # 1.5 s into the caller's silence, then its answer; the scenario reaches it
    clock = AutojumpClock()
    tail = [("sleep", 3.0), *hp.words(hp.REST)]
    result = clock.run(hp._one_run(hp._follow_up_plan(tail), clock, tools=hp._order_tools(clock)))
    assert result["chunks"] == [hp.FOLLOW_UP_FIRST, hp.FOLLOW_UP_SHIPPED, "One moment.", hp.REST]
    assert result["longest_silence_s"] <= hp.CONFIG.llm_hold_after_s + hp.TICK_S
    assert not result["stuck"]
