"""The scorer of bench/spoken_calls.py: a call's ledger entries into its scores.

Ledger entries written by hand, as the engine writes them; no model or speech runs here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ledger import entries as le
from voice_agent.config import load_config

_BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(_BENCH))  # the bench imports its sibling modules by name
_SPEC = importlib.util.spec_from_file_location("spoken_calls", _BENCH / "spoken_calls.py")
assert _SPEC is not None and _SPEC.loader is not None
sc = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("spoken_calls", sc)
_SPEC.loader.exec_module(sc)

CALLS = {c["id"]: c for c in sc.CALLS}
TOOLS = sc._demo_score_tools()
CONFIG = load_config(None, environ={})
CANNED = sc.canned_phrases(CONFIG)


def _turn(heard: str, *, said: list[str], calls: Sequence[tuple[str, dict, object]] = ()) -> list:
    """Entries of one caller turn: the final transcript, a model response that called
    `calls` (name, arguments, result) and then said `said` (one played text each)."""
    entries: list = [
        le.UserUtterance(turn_id=1, text=heard),
        le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"),
    ]
    for i, (name, arguments, result) in enumerate(calls):
        kind = "write" if name == "schedule_callback" else "read"
        entries += [
            le.ToolCallStarted(
                call_id=f"c{i}",
                response_id="r1",
                name=name,
                arguments=json.dumps(arguments),
                kind=kind,
            ),  # fmt: skip
            le.ToolCallResolved(call_id=f"c{i}", result=result),
        ]
    entries.append(le.LlmRequestStarted(response_id="r2", reason="tool_results", mode="async"))
    entries += [le.AgentTextPlayed(response_id="r2", text=text) for text in said]
    entries.append(le.SessionEnded(reason="input ended"))
    return entries


def test_a_right_lookup_read_out_scores_tool_answer_and_hearing():
    status = {"order_id": "61304", "status": "shipped", "estimated_delivery": "Friday"}
    entries = _turn(
        "Hello, I'm calling to find out where my order is. The number is 61304.",
        calls=[("get_order_status", {"order_id": "61304"}, status)],
        said=["Your order 61304 has shipped and should arrive on Friday."],
    )
    out = sc.outcome_from_entries(CALLS["s01"], entries, 1, TOOLS, CANNED)
    assert (out.heard_ok, out.calls_ok, out.answer_ok) == (True, True, True)
    assert not (out.invented_write or out.no_answer or out.invented), out.why


def test_hold_phrases_inside_a_slow_answer_are_not_the_answer():
    # A slow model's response carries the engine's hold phrases and then the apology:
    # the caller got no answer, whatever those phrases say.
    entries = _turn(
        "Can you change the email address on my online account?",
        said=["One moment.", "Still checking, one moment.", "Almost there.", CONFIG.agent.apology],
    )
    out = sc.outcome_from_entries(CALLS["s10"], entries, 1, TOOLS, CANNED)
    assert out.no_answer and not out.answer_ok
    assert out.spoken == ""
    assert "Still checking, one moment." in out.canned


def test_the_long_wait_phrase_is_canned_not_the_answer():
    # "Sorry, this is taking a little longer than usual." is the engine's (hold9b)
    said = ["One moment.", CONFIG.agent.llm_long_wait_phrase, CONFIG.agent.apology]
    entries = _turn("Can you change the email address on my online account?", said=said)
    out = sc.outcome_from_entries(CALLS["s10"], entries, 1, TOOLS, CANNED)
    assert out.no_answer and out.spoken == ""
    assert CONFIG.agent.llm_long_wait_phrase in out.canned


def test_a_call_back_with_a_number_nobody_said_is_an_invented_write():
    entries = _turn(
        "Could somebody from your team ring me back this afternoon?",
        calls=[
            (
                "schedule_callback",
                {"phone": "5551234567", "time": "this afternoon"},
                {"confirmation": "CB-4821", "time": "this afternoon"},
            ),
        ],  # fmt: skip
        said=["I've scheduled a call back for this afternoon."],
    )
    out = sc.outcome_from_entries(CALLS["s09"], entries, 1, TOOLS, CANNED)
    assert out.invented_write and not out.calls_ok and not out.answer_ok


def _held_call_back(read_back_played: str) -> list:
    """A caller turn whose call-back the engine held for the caller's yes: the model's call
    answered "awaiting confirmation" (as `held_for_confirmation` answers it), no follow-up
    request, and the engine's read-back as its own (canned) response."""
    import embedded_questions as eq

    from voice_agent import demo_tools

    spec = demo_tools.registry.get("schedule_callback")
    arguments = {"phone": "206 555 0173", "time": "tomorrow 11"}
    held = eq.held_for_confirmation(spec, arguments)
    assert held is not None and held["status"] == "awaiting_confirmation"
    return [
        le.UserUtterance(turn_id=1, text=CALLS["s08"]["say"]),
        le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"),
        le.ToolCallStarted(
            call_id="c0",
            response_id="r1",
            name="schedule_callback",
            arguments=json.dumps(arguments),
            kind="write",
        ),  # fmt: skip
        le.ToolCallResolved(call_id="c0", result=held),
        le.LlmResponseFinished(response_id="r1", finish_reason="tool_calls"),
        le.LlmRequestStarted(response_id="r2", reason="canned", mode="async"),
        le.AgentTextPlayed(response_id="r2", text=read_back_played),
        le.SessionEnded(reason="input ended"),
    ]


def test_a_call_back_held_for_the_callers_yes_is_answered_by_its_read_back():
    question = "Just to confirm: schedule a call back to 2 0 6, 5 5 5, 0 1 7 3 for tomorrow 11."
    out = sc.outcome_from_entries(CALLS["s08"], _held_call_back(question + " Shall I go ahead?"),
                                  1, TOOLS, CANNED)  # fmt: skip
    assert (out.calls_ok, out.answer_ok, out.no_answer, out.invented_write) == (
        True, True, False, False), out.why  # fmt: skip
    # cut off before the read-back: the caller heard nothing of it, so no answer
    cut = sc.outcome_from_entries(CALLS["s08"], _held_call_back("Just to"), 1, TOOLS, CANNED)
    assert cut.no_answer and not cut.answer_ok


def test_a_misheard_number_is_told_apart_as_a_recognition_error():
    status = {"order_id": "7229", "status": "delivered", "delivered_on": "Monday"}
    entries = _turn(
        "My order number is 7229. No, sorry, 7229. Where is it?",
        calls=[("get_order_status", {"order_id": "7229"}, status)],
        said=["Order 7229 was delivered."],
    )
    out = sc.outcome_from_entries(CALLS["s07"], entries, 1, TOOLS, CANNED)
    assert not out.heard_ok and not out.calls_ok
    assert any("recognition" in why for why in out.why)


def test_two_lookups_need_both_calls_and_both_facts():
    a = {"order_id": "315", "status": "shipped", "estimated_delivery": "Monday"}
    b = {"order_id": "316", "status": "processing", "estimated_delivery": "Friday"}
    heard = "I have two orders, 315 and 316. Where are they?"
    only_one = _turn(heard, calls=[("get_order_status", {"order_id": "315"}, a)],
                     said=["Order 315 has shipped."])  # fmt: skip
    both = _turn(
        heard,
        calls=[
            ("get_order_status", {"order_id": "315"}, a),
            ("get_order_status", {"order_id": "316"}, b),
        ],  # fmt: skip
        said=["Order 315 has shipped, and order 316 is still processing."],
    )
    assert not sc.outcome_from_entries(CALLS["s05"], only_one, 1, TOOLS, CANNED).calls_ok
    out = sc.outcome_from_entries(CALLS["s05"], both, 1, TOOLS, CANNED)
    assert out.calls_ok and out.answer_ok, out.why


def test_the_callers_speak_in_voices_no_other_bench_or_test_uses():
    others = "\n".join(p.read_text() for p in _BENCH.glob("*.py") if p.name != "spoken_calls.py")
    voices = [c["voice"] for c in sc.CALLS]
    assert len(set(voices)) == len(voices) == 12
    assert [v for v in voices if f'"{v}"' in others] == []
