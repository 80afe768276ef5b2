"""How near the decision step came to another choice, from the model's own probabilities.

The decision (`respond.Responder._decide`) writes an option's name greedily under a
grammar that allows only the options, and stops as soon as the name is unambiguous.
Each sampled step records its most likely tokens with their probabilities
(`engine.SamplingParams.alternatives`). Where the chosen name and another option part
(a token that leads only to that other option), the other option's probability over
the chosen one's is the step's *ratio*; the decision's margin is its largest ratio.

Asked "What's the delivery status on order 2604?" with the customer-service tools,
the 1.5B wrote ``get`` (p 0.994) and then ``_ref`` (p 0.618) against ``_order``
(p 0.235): `get_refund_status` instead of `get_order_status`, a ratio of 0.38 (bench
k11, sessions 9-10). A decision that close is checked (`Responder._checked_choice`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: A decision whose runner-up has at least this share of the chosen option's probability
#: (at the step where they part) is checked. k11's wrong choice had 0.38; the
#: threshold's firing rate on the open splits is in docs/results.md (session 11).
LOW_MARGIN_RATIO = 0.25


@dataclass(frozen=True)
class DecisionMargin:
    """The chosen option, the options nearest to it, and how near (`ratio`)."""

    chosen: str
    #: the options reached by the most likely token that parts from the chosen name, at
    #: the step of the largest ratio, in the options' order
    runners_up: tuple[str, ...]
    #: the runner-up token's probability over the chosen token's at that step (above 1
    #: when the grammar kept the model from its first choice)
    ratio: float

    @property
    def low(self) -> bool:
        """Whether the choice is close enough to be checked (`LOW_MARGIN_RATIO`)."""
        return bool(self.runners_up) and self.ratio >= LOW_MARGIN_RATIO


def _reached(text: str, options: Sequence[str]) -> list[str]:
    """The options whose name (closed by its quote, as the grammar writes it) `text`
    starts or is a start of."""
    return [o for o in options if (o + '"').startswith(text) or text.startswith(o + '"')]


def decision_margin(
    steps: Sequence[Mapping[str, Any]], chosen: str, options: Sequence[str]
) -> DecisionMargin | None:
    """The decision's margin from its steps' recorded alternatives (``{"after": text
    written before the step, "tokens": [[token text, p], ...]}``, most likely first),
    or None when nothing was recorded. A step whose listed tokens do not include the
    chosen one's counts the least listed probability for it (an upper bound)."""
    if not steps:
        return None
    best: tuple[float, tuple[str, ...]] = (0.0, ())
    for step in steps:
        after = str(step.get("after", ""))
        tokens = [(str(t), float(p)) for t, p in step.get("tokens") or ()]
        if not tokens:
            continue
        p_chosen = next((p for t, p in tokens if chosen in _reached(after + t, options)), None)
        if p_chosen is None:
            p_chosen = min(p for _, p in tokens)
        for text, p in tokens:
            reached = _reached(after + text, options)
            if not reached or chosen in reached:
                continue
            ratio = p / p_chosen if p_chosen > 0 else float("inf")
            if ratio > best[0]:
                best = (ratio, tuple(reached))
            break  # the most likely token that parts from the chosen name
    return DecisionMargin(chosen=chosen, runners_up=best[1], ratio=best[0])
