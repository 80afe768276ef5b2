"""Confirmed writes: a write the caller must approve is held, read back, and run on a yes.

When the model calls a tool that needs confirmation
(:attr:`ToolSpec.needs_confirmation`, or every write with
``agent.call.confirm_writes``), nothing runs. The model's call is answered at
once with "awaiting the caller's confirmation" (so the protocol stays valid
and the model knows it is not done), the intent is held here, and when the
response ends the agent reads it back: "Just to confirm: cancel order 4471.
Shall I go ahead?". The caller's next turn decides
(:func:`~voice_agent.call_control.confirmation_answer`):

- an explicit yes (or keypad 1): the write runs as a new call of the engine's
  own, through the scheduler's write book, so its idempotency key makes it
  happen once whatever is repeated afterwards;
- an explicit no (or keypad 2): dropped, and the model hears the caller's no;
- anything else (another request, a question): dropped, and the utterance is
  an ordinary turn.

A barge-in before the question was asked, or the end of the call, drops it too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .tools import ToolSpec

CONFIRMATION_PENDING = {
    "status": "awaiting_confirmation",
    "note": "Not done yet. The system is reading this back to the caller and will run it "
    "only if they say yes; do not say it is done.",
}


@dataclass
class PendingWrite:
    """A write held for the caller's yes."""

    call_id: str  # the model's call, answered with CONFIRMATION_PENDING
    spec: ToolSpec
    arguments: str  # the model's JSON arguments, as validated
    read_back: str
    turn_id: int
    asked: bool = False

    def answer(self) -> dict[str, Any]:
        """What the model's call is answered with while the write waits: not done, and
        what the caller is asked to confirm."""
        return {**CONFIRMATION_PENDING, "read_back": self.read_back}

    def question(self) -> str:
        """What the agent asks (a sentence the caller answers with yes or no)."""
        return f"Just to confirm: {self.read_back}. Shall I go ahead?"


class Confirmations:
    """At most one write waiting for the caller's answer (a newer one replaces it)."""

    def __init__(self) -> None:
        self.pending: PendingWrite | None = None

    def hold(self, call_id: str, spec: ToolSpec, arguments: str, turn_id: int) -> PendingWrite:
        """Hold the model's call ``call_id`` of ``spec`` until the caller answers."""
        args = spec.parse_arguments(arguments)
        self.pending = PendingWrite(
            call_id=call_id,
            spec=spec,
            arguments=json.dumps(args, ensure_ascii=False),
            read_back=spec.read_back(args),
            turn_id=turn_id,
        )
        return self.pending

    def take(self) -> PendingWrite | None:
        """Remove and return the pending write."""
        pending, self.pending = self.pending, None
        return pending
