"""How near the decision came to another choice (`decision_margin`), from recorded steps."""

from __future__ import annotations

import pytest

from voice_agent.local_llm.decision_margin import LOW_MARGIN_RATIO, decision_margin

OPTIONS = [
    "get_order_status",
    "get_account_balance",
    "get_refund_status",
    "cancel_order",
    "update_delivery_address",
    "reply",
    "cannot_do",
]
#: bench k11 ("What's the delivery status on order 2604?"), decide10's trace of the 1.5B
K11 = [
    {"after": "", "tokens": [["get", 0.994], ["cancel", 0.003], ["reply", 0.002]]},
    {"after": "get", "tokens": [["_ref", 0.618], ["_order", 0.235], ["_delivery", 0.144]]},
]


def test_k11s_choice_is_low_margin_against_the_order_status():
    margin = decision_margin(K11, "get_refund_status", OPTIONS)
    assert margin is not None and margin.low
    assert margin.runners_up == ("get_order_status",)
    assert margin.ratio == pytest.approx(0.235 / 0.618)


def test_a_clear_choice_is_not_low_margin():
    steps = [
        {"after": "", "tokens": [["get", 0.99], ["cancel", 0.01]]},
        {"after": "get", "tokens": [["_order", 0.95], ["_ref", 0.03], ["_account", 0.01]]},
    ]
    margin = decision_margin(steps, "get_order_status", OPTIONS)
    assert margin is not None and not margin.low
    assert margin.runners_up == ("get_refund_status",)
    assert margin.ratio == pytest.approx(0.03 / 0.95) and margin.ratio < LOW_MARGIN_RATIO


def test_a_token_that_leads_to_no_option_or_to_the_choice_is_no_runner_up():
    steps = [{"after": "get", "tokens": [["_", 0.5], ["_delivery", 0.3], ["_order", 0.1]]}]
    # "_" leads to every get_ option, the choice among them: not a rival; "_delivery" to none
    margin = decision_margin(steps, "get_refund_status", OPTIONS)
    assert margin is not None and margin.runners_up == ("get_order_status",)
    assert margin.ratio == pytest.approx(0.1 / 0.5)


def test_a_token_shared_by_several_options_names_them_all():
    steps = [{"after": "", "tokens": [["cancel", 0.5], ["get", 0.4]]}]
    margin = decision_margin(steps, "cancel_order", OPTIONS)
    assert margin is not None
    assert margin.runners_up == ("get_order_status", "get_account_balance", "get_refund_status")


def test_a_choice_the_grammar_forced_below_the_listed_tokens_is_low_margin():
    steps = [{"after": "", "tokens": [["track", 0.6], ["reply", 0.3], ["cancel", 0.05]]}]
    margin = decision_margin(steps, "cancel_order", OPTIONS)
    assert margin is not None and margin.low and margin.runners_up == ("reply",)
    assert margin.ratio == pytest.approx(0.3 / 0.05)


def test_no_recorded_steps_no_margin():
    assert decision_margin([], "get_order_status", OPTIONS) is None
    margin = decision_margin([{"after": "", "tokens": [["get", 1.0]]}], "get_order_status", OPTIONS)
    assert margin is not None and not margin.low and margin.runners_up == ()
