"""The scorer of bench/embedded_questions.py: where it was wrong, in both directions.

Plain functions on saved text; no model runs here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "embedded_questions.py"
_SPEC = importlib.util.spec_from_file_location("embedded_questions", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
eq = importlib.util.module_from_spec(_SPEC)
sys.modules.setdefault("embedded_questions", eq)
_SPEC.loader.exec_module(eq)


def _outcome(spoken: str, calls: list[dict], results: list[dict], kind: str = "lookup"):
    return eq.Outcome("x", "tune", kind, "m", spoken=spoken, calls=calls, results=results)


@pytest.mark.parametrize(
    ("expected", "actual", "same"),
    [
        ("this evening 6 pm", "evening at 6 pm", True),  # a run of the caller's words
        ("tomorrow 10 am", "tomorrow at 10:00 am", True),
        ("this evening 6 pm", "tomorrow 6 pm", False),
        ("this afternoon", "afternoon", True),
        ("Friday 3 pm", "3 pm", False),  # part of the time is missing
    ],
)
def test_free_text_values_ignore_words_that_carry_nothing(expected, actual, same):
    assert eq._value_matches(expected, actual) is same


def test_an_answer_that_names_a_city_nobody_looked_up_is_wrong():
    question = {
        "say": "When does the Miami store open? No wait, I mean the Orlando one.",
        "answer": "facts",
        "calls": [{"name": "get_store_hours", "args": {"city": "Orlando"}}],
    }
    tools = {t.name: t for t in eq._demo_tools()}
    calls = [{"name": "get_store_hours", "arguments": {"city": "Orlando"}}]
    results = [{"name": "get_store_hours", "result": {"city": "Orlando", "hours": "10 am to 8 pm"}}]
    wrong = _outcome("The Miami store opens from 10 am to 8 pm.", calls, results)
    eq.score(wrong, question, tools)
    assert wrong.calls_ok and not wrong.answer_ok
    right = _outcome(
        "The Orlando store opens from 10 am to 8 pm, Monday to Saturday.", calls, results
    )
    eq.score(right, question, tools)
    assert right.answer_ok


def test_an_earlier_turns_city_in_the_answer_is_wrong_but_a_day_or_the_callers_name_is_not():
    context = (
        "What time does the Boston store open? The Boston store opens at 9 am. And Providence?"
    )
    looked_up = '[{"city": "Providence"}, {"hours": "9 am to 7 pm, Monday to Saturday"}]'
    assert eq.named_elsewhere("The Boston store opens at 9 am.", context, looked_up) == {"boston"}
    assert eq.named_elsewhere("Providence opens at 9 am on Monday.", context, looked_up) == set()
    phone = "My number is 555 147 2099, can you pull up my account?"
    assert (
        eq.named_elsewhere(
            "I found your account, 555 147 2099.", phone, '[{"phone_number": "5551472099"}]'
        )
        == set()
    )


def test_a_count_of_the_items_a_result_lists_is_not_an_invented_number():
    question = {
        "say": "Can you find my account? My phone number is 555 147 2099.",
        "answer": "facts",
    }
    result = {"name": "Hana Wei", "recent_orders": [{"order": "17240"}, {"order": "30425"}]}
    calls = [{"name": "lookup_customer", "arguments": {"phone_number": "5551472099"}}]
    out = _outcome(
        "Hi Hana Wei, I found your account. You have 2 recent orders.",
        calls,
        [{"name": "lookup_customer", "result": result}],
    )
    eq.score(
        out,
        {
            **question,
            "calls": [{"name": "lookup_customer", "args": {"phone_number": "5551472099"}}],
        },
        {},
    )
    assert not out.invented
    out = _outcome(
        "You have 3 recent orders.", calls, [{"name": "lookup_customer", "result": result}]
    )
    eq.score(out, {**question, "calls": []}, {})
    assert out.invented  # a count the result does not have


def test_speaking_of_the_caller_to_the_caller_is_a_narration():
    question = {"say": "I want a call back from a manager.", "answer": "ask", "calls": []}
    out = _outcome("Could you tell me the caller's phone number?", [], [], kind="write_missing")
    eq.score(out, question, {})
    assert out.narration and not out.answer_ok
    out = _outcome("Could you tell me your phone number?", [], [], kind="write_missing")
    eq.score(out, question, {})
    assert not out.narration and out.answer_ok


def test_a_count_of_the_items_a_result_lists_as_text_is_not_an_invented_number():
    question = {
        "say": "Could you check my store credit? My number's 555 938 5250.",
        "answer": "facts",
    }
    result = {"name": "Sofia Clark", "recent_orders": "71111 (delivered), 90875 (delivered)"}
    calls = [{"name": "lookup_customer", "arguments": {"phone_number": "5559385250"}}]
    out = _outcome("You have 2 recent orders, 71111 and 90875.", calls,
                   [{"name": "lookup_customer", "result": result}])  # fmt: skip
    eq.score(out, {**question, "calls": []}, {})
    assert not out.invented


def test_an_answer_from_an_earlier_turns_result_is_grounded_and_right():
    """A history `call` turn: its result (the real tool's, run by `_history`) grounds
    the answer's facts; a number in neither it nor the caller's words is invented."""
    history = [
        {"user": "What's the balance on account 30071?"},
        {"call": {"name": "get_account_balance", "args": {"account_number": "30071"}}},
        {"assistant": "The balance on account 30071 is $512.00."},
    ]
    question = {"say": "And when is it due?", "history": history, "calls": [],
                "answer": "facts", "facts": ["June 20"]}  # fmt: skip
    earlier = [{"account_number": "30071", "balance": "$512.00", "due_date": "June 20"}]
    out = _outcome("The balance on account 30071 is due on June 20.", [], [])
    out.earlier_results = earlier
    eq.score(out, question, {})
    assert out.answer_ok and out.calls_ok and not out.invented, out.why
    out = _outcome("It is due on June 22.", [], [])
    out.earlier_results = earlier
    eq.score(out, question, {})
    assert out.invented and not out.answer_ok


async def test_a_history_call_turn_becomes_the_call_and_its_real_result():
    async def run(arguments):
        return {"account_number": arguments["account_number"], "due_date": "June 20"}

    tools = {"get_account_balance": eq.BenchTool("get_account_balance", "read", {}, None, run)}
    question = {"history": [
        {"user": "Balance on 30071?"},
        {"call": {"name": "get_account_balance", "args": {"account_number": "30071"}}},
    ]}  # fmt: skip
    messages = await eq._history(question, tools)
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    call = messages[1]["tool_calls"][0]
    assert call["function"]["name"] == "get_account_balance"
    assert messages[2]["tool_call_id"] == call["id"]
    assert '"due_date": "June 20"' in messages[2]["content"]


def test_every_question_has_its_own_id():
    ids = [q["id"] for q in eq.load_questions()]
    assert len(ids) == len(set(ids)) and len(ids) > 100


@pytest.mark.parametrize(
    ("fact", "spoken", "heard"),
    [
        ("pending", "The refund for order 2290 has not been paid yet.", True),
        ("pending", "Your refund is still being processed.", True),
        ("pending", "The refund for order 2290 is pending.", True),
        ("pending", "The refund for order 2290 has been paid.", False),
        ("paid on May 28", "The refund for order 5521 has not been paid yet.", False),
        ("awaiting pickup", "It is not ready yet.", True),
    ],
)
def test_a_not_done_status_is_heard_in_words_that_say_it_is_not_done_yet(fact, spoken, heard):
    assert eq.fact_heard(fact, spoken, "refund") is heard


@pytest.mark.parametrize(
    ("spoken", "right"),
    [
        ("I'm sorry, but I can't help with that.", False),  # a refusal, not the lookup's answer
        ("Your order 7001 is on its way.", False),  # says nothing of the failure
        ("I couldn't find an order with the number 7001. Could you check it?", True),
        ("Sorry, there's no order 7001 on our system.", True),
        ("I'm sorry, but I can't find an order 7001.", True),  # bench o08, session 14
        ("I can't do that here. I can help with other things.", False),  # the lookup runs
    ],
)
def test_a_lookup_that_failed_is_answered_by_saying_so(spoken, right):
    question = {
        "say": "Where is order 7001?",
        "answer": "facts",
        "calls": [{"name": "get_order_status", "args": {"order_id": "7001"}}],
    }
    tools = {t.name: t for t in eq._demo_tools()}
    calls = [{"name": "get_order_status", "arguments": {"order_id": "7001"}}]
    results = [{"name": "get_order_status", "result": {"error": "no order with that number"}}]
    outcome = _outcome(spoken, calls, results)
    eq.score(outcome, question, tools)
    assert outcome.calls_ok
    assert outcome.answer_ok is right


@pytest.mark.parametrize(
    ("spoken", "claims"),
    [
        ("Your order 3390 has been cancelled.", True),
        ("Yes, your money has not yet been refunded for the return on order 2290.", False),
        ("It hasn't been cancelled yet.", False),
        ("Order 5 is not shipped, but order 6 has been cancelled.", True),
    ],
)
def test_a_negated_change_is_not_a_claim_that_a_change_was_made(spoken, claims):
    assert eq.claims_done(spoken) is claims


@pytest.mark.parametrize(
    ("spoken", "preamble"),
    [
        ("Sure, here's the answer: order 3307 has shipped.", True),  # h08, b07 (session 7)
        ("Here is the information you asked for. Order 3307 has shipped.", True),
        ("Here's what I found: the Boston store opens at 9 am.", True),
        ("I found the answer. Your order has shipped.", True),
        ("Order 3307 has shipped and should arrive on Friday.", False),
        ("Here you go, order 3307 has shipped.", False),  # no announcement of an answer
        ("Order 3307 has shipped, so it should be here soon.", False),
    ],
)
def test_speech_that_announces_an_answer_is_a_preamble(spoken, preamble):
    question = {
        "say": "Has order 3307 been dispatched?",
        "answer": "facts",
        "calls": [{"name": "get_order_status", "args": {"order_id": "3307"}}],
    }
    tools = {t.name: t for t in eq._demo_tools()}
    calls = [{"name": "get_order_status", "arguments": {"order_id": "3307"}}]
    results = [{"name": "get_order_status", "result": {"order_id": "3307", "status": "shipped"}}]
    out = _outcome(spoken, calls, results)
    eq.score(out, question, tools)
    assert out.preamble is preamble
    assert not out.narration  # counted apart, not as a narration
    assert out.answer_ok is not preamble  # each carries the fact: only the preamble decides
    assert eq.summarise([out])["preambles"] == int(preamble)


@pytest.mark.parametrize(
    ("spoken", "right", "invented"),
    [
        ("No, I am not a person.", True, False),  # "am" is not a clock time (session 8's f24)
        ("I'm an automated assistant. How can I help?", True, False),
        ("Yes, I am a person.", False, True),  # a false fact about itself
        ("I'm a real human, happy to help!", False, True),
        ("We open at 9 am on Monday.", False, True),  # a time and a day with no result
    ],
)
def test_small_talk_about_what_the_agent_is_is_scored_on_what_it_claims(spoken, right, invented):
    question = {"say": "Are you a real person?", "answer": "any", "calls": []}
    out = _outcome(spoken, [], [], kind="smalltalk")
    eq.score(out, question, {t.name: t for t in eq._demo_tools()})
    assert (out.answer_ok, out.invented) == (right, invented), out.why


@pytest.mark.parametrize(
    ("spoken", "right"),
    [
        ("I am sorry, but I cannot help with that. Please try again later.", False),
        ("I'm putting you through to a colleague now.", True),
        ("", True),  # the engine says its own transfer phrase
    ],
)
def test_a_refusal_after_a_transfer_is_wrong(spoken, right):
    question = {
        "say": "Put me through to a manager please.",
        "answer": "call",
        "calls": [{"name": "transfer_to_human", "args": {"reason": "*"}}],
    }
    tools = {t.name: t for t in eq._phone_tools()}
    calls = [{"name": "transfer_to_human", "arguments": {"reason": "wants a manager"}}]
    results = [
        {
            "name": "transfer_to_human",
            "result": {"transferring": True, "note": "the caller is told and transferred"},
        }
    ]
    outcome = _outcome(spoken, calls, results, kind="transfer")
    eq.score(outcome, question, tools)
    assert outcome.calls_ok
    assert outcome.answer_ok is right


def test_a_tools_name_said_in_words_is_a_narration_unless_the_caller_said_them():
    # Spoken call s10 (session 10): no tool covers changing an email address, and the
    # agent said a tool's name with its underscore as a space.
    tools = {t.name: t for t in eq._demo_tools()}
    question = {"say": "Can you change the email address on my online account?", "answer": "cannot"}
    narrated = _outcome(
        "To change the email address on your online account, you can use the following "
        "command: schedule callback from tomorrow",
        [],
        [],
        kind="nocover",
    )
    eq.score(narrated, question, tools)
    assert narrated.narration and "names a tool in words" in narrated.why
    run_together = _outcome("Just say getorderstatus and the number.", [], [], kind="nocover")
    eq.score(run_together, question, tools)
    assert run_together.narration
    # Plain English that shares words with a name, or the caller's own words, is not.
    plain = _outcome("I can look up store hours, or schedule a call back.", [], [], "nocover")
    eq.score(plain, question, tools)
    assert not plain.narration
    asked = {"say": "Please schedule callback for 206 555 0148 tomorrow.", "answer": "facts"}
    echoed = _outcome("I will schedule callback for you.", [], [], kind="write")
    eq.score(echoed, asked, tools)
    assert "names a tool in words" not in echoed.why


# ------------------------------------------------- claims no result supports (session 12)

_PACKED = {"order_id": "3815", "status": "packed and waiting for the courier",
           "estimated_delivery": "Saturday"}  # fmt: skip


def _customer_service() -> dict:
    return {t.name: t for t in eq.load_tool_sets()["customer_service"]}


@pytest.mark.parametrize(
    ("spoken", "claimed"),
    [
        ("Okay, order 3815 has been sent out. It is packed and waiting for the courier.", True),
        ("Order 3815 has been dispatched.", True),  # the same state in other words
        ("Order 3815 is packed and waiting for the courier.", False),
        ("Order 3815 has not been sent out yet; it is waiting for the courier.", False),
        ("It should be shipped by Saturday.", False),  # a future, not a fact
        ("It is expected to be delivered on Saturday.", False),
    ],
)
def test_a_state_no_result_says_is_an_invented_claim_not_an_invented_number(spoken, claimed):
    # bench x09 (session 11): "Has order 3815 been sent out yet?", the status "packed and
    # waiting for the courier", and the 1.5B said it had been sent out: no number wrong.
    question = {"say": "Has order 3815 been sent out yet?", "answer": "facts",
                "calls": [{"name": "get_order_status", "args": {"order_id": "3815"}}]}  # fmt: skip
    calls = [{"name": "get_order_status", "arguments": {"order_id": "3815"}}]
    out = _outcome(spoken, calls, [{"name": "get_order_status", "result": _PACKED}])
    eq.score(out, question, _customer_service())
    assert out.invented_claim is claimed, out.why
    assert not out.invented  # the invented-numbers column is what it was
    if claimed:
        assert not out.answer_ok


@pytest.mark.parametrize(
    ("spoken", "claimed"),
    [
        # what a clause reports is a claim, whatever modal comes before the report
        ("I can confirm that order 3815 has shipped.", True),
        ("I'm happy to tell you your order has been delivered.", True),
        ("I can tell you it has been sent out.", True),
        ("I can see that it was delivered on Saturday.", True),
        # a negated report, a question or a future after it: no claim
        ("I can't confirm that it has shipped yet.", False),
        ("I can check whether it has shipped.", False),
        ("I can confirm it will be delivered on Saturday.", False),
        ("I found that it has not been sent out yet.", False),
        # the result's own words, reported: no claim is unsupported
        ("I can confirm that order 3815 is packed and waiting for the courier.", False),
    ],
)
def test_a_reported_state_is_a_claim_unless_the_report_is_negated(spoken, claimed):
    # "I can confirm that it has shipped" was not read as a claim (session 12's detector
    # skipped any state after a modal in its clause).
    out = _outcome(spoken, [], [{"name": "get_order_status", "result": _PACKED}])
    eq.score(out, {"say": "Has order 3815 shipped?", "answer": "facts", "calls": []}, {})
    assert out.invented_claim is claimed, out.why


def test_a_reported_state_the_result_says_is_supported():
    shipped = {"order_id": "3815", "status": "shipped", "estimated_delivery": "Saturday"}
    out = _outcome("I can confirm that order 3815 has been sent out.", [],
                   [{"name": "get_order_status", "result": shipped}])  # fmt: skip
    eq.score(out, {"say": "Has it been sent out?", "answer": "facts", "calls": []}, {})
    assert not out.invented_claim, out.why


_Z12_CALLS = [
    {"name": "get_refund_status", "arguments": {"order_id": "8427"}},
    {"name": "get_account_balance", "arguments": {"account_number": "31580"}},
]
_Z12_RESULTS = [
    {"name": "get_refund_status",
     "result": {"order_id": "8427", "refund": "paid on November 20", "amount": "$38.75"}},
    {"name": "get_account_balance",
     "result": {"account_number": "31580", "balance": "$220.00", "due_date": "December 15"}},
]  # fmt: skip


@pytest.mark.parametrize(
    ("spoken", "claimed"),
    [
        # bench z12 (session 13, 0.5B): both calls made, the refund's amount told as the balance
        ("The refund for order 8427 has been paid on November 20, and the balance on "
         "account 31580 is $38.75.", True),
        ("The refund for order 8427 was paid on November 20, and the balance on account "
         "31580 is $220.00, due December 15.", False),
        ("The refund of $38.75 for order 8427 was paid. Your balance is $220.00.", False),
        ("Orders 8427 and 31580: $38.75 and $220.00.", False),  # both named: not judged
    ],
)  # fmt: skip
def test_a_number_told_about_a_thing_whose_result_does_not_hold_it_is_a_claim(spoken, claimed):
    question = {"say": "Has the refund for order 8427 gone through, and what's the balance "
                "on account 31580?", "answer": "facts", "calls": []}  # fmt: skip
    out = _outcome(spoken, _Z12_CALLS, _Z12_RESULTS)
    eq.score(out, question, _customer_service())
    assert out.invented_claim is claimed, out.why
    assert not out.invented  # every number is some result's


def test_a_synonym_of_the_results_state_is_supported():
    shipped = {"order_id": "3815", "status": "shipped", "estimated_delivery": "Saturday"}
    out = _outcome("Yes, order 3815 has been sent out.", [],
                   [{"name": "get_order_status", "result": shipped}])  # fmt: skip
    eq.score(out, {"say": "Has it been sent out?", "answer": "facts", "calls": []}, {})
    assert not out.invented_claim, out.why


@pytest.mark.parametrize(
    ("spoken", "results", "claimed"),
    [
        # 0.5B, x12 (session 11): the refund never looked up, told as paid
        ("The balance on account 27743 is $9.99, and the refund for order 9180 has been paid.",
         [{"name": "get_account_balance", "result": {"account_number": "27743",
                                                      "balance": "$9.99"}}], True),
        ("The refund for order 9180 has been paid on October 21.",
         [{"name": "get_refund_status", "result": {"order_id": "9180",
                                                    "refund": "paid on October 21"}}], False),
        # 0.5B, x03: the store's hours never looked up, told as open
        ("The Fresno store is open from Friday to Saturday.",
         [{"name": "get_order_status", "result": _PACKED}], True),
        ("The Fresno store is open from 10 am to 8 pm.",
         [{"name": "get_store_hours", "result": {"city": "Fresno",
                                                  "hours": "10 am to 8 pm, Monday to Saturday"}}],
         False),
        ("It was placed on November 2.",  # a field named by the state ("placed_on")
         [{"name": "lookup_order", "result": {"placed_on": "2026-11-02"}}], False),
        ("Your refund has been processed.",  # a paid refund is processed
         [{"name": "get_refund_status", "result": {"refund": "paid on May 2"}}], False),
        ("Your refund has been processed.",
         [{"name": "get_refund_status", "result": {"refund": "pending"}}], True),
        ("You paid $269.98 for the order.",  # what the caller did, not a state
         [{"name": "lookup_order", "result": {"total": "$269.98"}}], False),
    ],
)  # fmt: skip
def test_a_state_is_supported_only_by_a_result_that_says_it(spoken, results, claimed):
    out = _outcome(spoken, [], results)
    eq.score(out, {"say": "What about it?", "answer": "facts", "calls": []}, {})
    assert out.invented_claim is claimed, out.why


def _scored_cancel(say: str, order_id: str, spoken: str, result: dict):
    """A cancel question asked as `say`, scored with the call on `order_id` made and answered
    with `result`, then `spoken`."""
    question = {"say": say, "answer": "facts",
                "calls": [{"name": "cancel_order", "args": {"order_id": order_id}}]}  # fmt: skip
    calls = [{"name": "cancel_order", "arguments": {"order_id": order_id}}]
    out = _outcome(spoken, calls, [{"name": "cancel_order", "result": result}], kind="write")
    eq.score(out, question, _customer_service())
    return out


@pytest.mark.parametrize(
    ("spoken", "result", "claimed"),
    [
        # bench x13 (session 11): the cancel ran and the caller heard a promise
        ("Sure, I can cancel order 4096 for you.",
         {"order_id": "4096", "cancelled": True, "confirmation": "X-4096"}, True),
        ("I'll cancel that order for you right away.",
         {"order_id": "4096", "cancelled": True, "confirmation": "X-4096"}, True),
        ("I'm sorry, but I can't assist with that.",  # 0.5B, m12 (session 12)
         {"order_id": "2187", "cancelled": True, "confirmation": "X-2187"}, True),
        ("Order 4096 has been cancelled.",
         {"order_id": "4096", "cancelled": True, "confirmation": "X-4096"}, False),
        ("Done, your cancellation number is X-4096.",
         {"order_id": "4096", "cancelled": True, "confirmation": "X-4096"}, False),
        # a write that did not run, told as done
        ("Your order 4096 has been cancelled.", {"error": "that order cannot be cancelled"}, True),
        ("Order 4096 has been cancelled.",
         {"cancelled": False, "reason": "the order is already shipped"}, True),
        ("Order 4096 has been cancelled.",
         {"status": "awaiting_confirmation", "note": "Not done yet."}, True),
        ("Sorry, order 4096 could not be cancelled: it has already shipped.",
         {"error": "that order cannot be cancelled, it has already shipped"}, False),
    ],
)  # fmt: skip
def test_a_writes_outcome_must_be_told_as_it_happened(spoken, result, claimed):
    out = _scored_cancel("Can you cancel order 4096 for me?", "4096", spoken, result)
    assert out.invented_claim is claimed, out.why
    if claimed:
        assert not out.answer_ok


def test_a_call_back_that_ran_is_told_done_by_its_confirmation_or_a_done_word():
    tools = {t.name: t for t in eq._demo_tools()}
    question = {"say": "Call me back on 617 555 0143 this Friday at 10 am.", "answer": "facts",
                "calls": [{"name": "schedule_callback",
                           "args": {"phone": "6175550143", "time": "Friday 10 am"}}]}  # fmt: skip
    calls = [{"name": "schedule_callback",
              "arguments": {"phone": "617 555 0143", "time": "Friday 10 am"}}]  # fmt: skip
    results = [{"name": "schedule_callback",
                "result": {"confirmation": "CB-8700", "time": "Friday 10 am"}}]  # fmt: skip
    for spoken, claimed in [
        ("I have scheduled a call back on Friday at 10 am.", False),
        ("Your confirmation is CB-8700, Friday 10 am.", False),
        ("Yes", True),
        ("I can schedule a call back for Friday at 10 am.", True),
    ]:
        out = _outcome(spoken, calls, results, kind="write")
        eq.score(out, question, tools)
        assert out.invented_claim is claimed, (spoken, out.why)


def test_invented_claims_are_their_own_column_beside_invented_numbers():
    claim = _outcome("Order 3815 has been sent out.", [],
                     [{"name": "get_order_status", "result": _PACKED}])  # fmt: skip
    number = _outcome("Order 3815 arrives on May 9.", [],
                      [{"name": "get_order_status", "result": _PACKED}])  # fmt: skip
    for out in (claim, number):
        eq.score(out, {"say": "Where is order 3815?", "answer": "facts", "calls": []}, {})
    summary = eq.summarise([claim, number])
    assert (summary["invented_facts"], summary["invented_claims"]) == (1, 1)


@pytest.mark.parametrize(
    ("fact", "spoken", "heard"),
    [
        # bench x07 (session 11): the call back booked for Friday, told "at 10 am"
        ("Friday 10 am", "I have scheduled a call back on 617 555 0143 at 10 am.", False),
        ("Friday 10 am", "I have scheduled a call back for Friday at 10 am.", True),
        ("10 am to 8 pm, Monday to Saturday", "It is open from 10 am to 8 pm.", True),
    ],
)
def test_a_time_is_heard_with_the_day_it_is_on(fact, spoken, heard):
    assert eq.fact_heard(fact, spoken, "time") is heard


# ------------------------------------------------------ the fixture tools' schemas (session 13)


def test_every_fixture_argument_keeps_its_whole_description() -> None:
    for tools in eq.load_tool_sets().values():
        for tool in tools:
            for prop in tool.schema["function"]["parameters"].get("properties", {}).values():
                assert None not in prop.values(), (tool.name, prop)


def test_a_description_cut_by_an_unquoted_comma_is_refused() -> None:
    import yaml

    spec = yaml.safe_load(
        "{name: t, kind: read, description: d, parameters: {type: object, properties:"
        " {order_id: {type: string, description: the order number, digits only}}}}"
    )
    with pytest.raises(ValueError, match="digits only"):
        eq._fixture_tool(spec)


def test_a_quantity_said_of_a_thing_a_result_counts_that_no_result_gives_is_invented():
    """recheck14 o15: "3 bookshelf items" for "2 bookshelf" holds only digits some result
    has (3 entries), so it was not counted; a quantity of a thing is checked against the
    thing's."""
    question = {"say": "Could you check orders 27562 and 58206 for me?", "answer": "facts"}
    results = [
        {"name": "lookup_order", "result": {"order_number": "27562", "items": "2 bookshelf"}},
        {"name": "lookup_order",
         "result": {"order_number": "58206", "items": "2 toaster, 2 wool blanket, a yoga mat"}},
    ]  # fmt: skip
    wrong = _outcome("Order 27562 has 3 bookshelf items; 58206 has 2 toasters.", [], results)
    eq.score(wrong, {**question, "calls": []}, {})
    assert wrong.invented
    assert "quantities no result gives: [\"'3 bookshelf' (results: 2)\"]" in wrong.why
    one = _outcome("Order 58206 has two toasters and 2 yoga mats.", [], results)
    eq.score(one, {**question, "calls": []}, {})
    assert one.invented  # a thing the result has one of, said to be two
    right = _outcome(
        "Order 27562 has 2 bookshelf items; 58206 has two toasters, two wool blankets "
        "and a yoga mat, 3 items.",
        [],
        results,
    )
    eq.score(right, {**question, "calls": []}, {})
    assert not right.invented, right.why


# ------------------------------------------------- a reason no result gives (session 15)


@pytest.mark.parametrize(
    ("spoken", "result", "invented"),
    [
        # bench o09 (session 14, 1.5B): the result gives no reason
        ("I'm sorry, but I can't cancel order 2058 because it hasn't been shipped yet.",
         {"error": "that order cannot be cancelled"}, True),
        ("Sorry, that order cannot be cancelled.", {"error": "that order cannot be cancelled"},
         False),
        ("Sorry, order 2058 can't be cancelled since it has already shipped.",
         {"error": "that order cannot be cancelled"}, True),
        # the result's own reason, told as one
        ("Order 2058 can't be cancelled because it is already shipped.",
         {"cancelled": False, "reason": "the order is already shipped"}, False),
    ],
)  # fmt: skip
def test_a_reason_no_result_gives_is_an_invented_claim(spoken, result, invented):
    out = _scored_cancel("I changed my mind, please cancel order 2058.", "2058", spoken, result)
    assert out.invented_claim is invented, out.why
    assert out.answer_ok is not invented, out.why


@pytest.mark.parametrize(
    ("not_a_reason", "a_reason"),
    [
        # "since" a time, not a reason
        ("It has been delayed since Monday.", "It has been delayed since it was lost."),
        # a manner
        ("Please give the number exactly as it is printed.", "Please wait, as it is lost."),
        # a time
        ("I'll call you as soon as it ships.", "I'll call you, as it ships."),
    ],
)
def test_a_clause_that_gives_no_reason_is_not_judged_as_one(not_a_reason, a_reason):
    sc = sys.modules["spoken_claims"]
    assert sc.invented_reasons(not_a_reason, ["delayed"]) == []
    assert sc.invented_reasons(a_reason, ["delayed"]) != []
