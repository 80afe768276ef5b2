"""The agent's mode as one policy object, chosen once from the configuration.

A mode answers the few questions where the three ways of running a turn
differ; :class:`~voice_agent.conversation.Conversation` asks them and never
branches on the mode's name. A fourth mode is a new :class:`ModePolicy`
subclass registered in :data:`POLICIES`, not new branches.

- ``sync`` — the conventional baseline: a response's tool calls start when
  its stream ends (all at once, gathered) and the model continues only when
  every one of them is done; no hold phrases (the baseline has no futures to
  hold for).
- ``async`` — tool calls are futures: each starts the moment its JSON is
  complete in the stream; outcomes are reported at the next free moment;
  hold phrases cover silence while they run. Forks run only on the early
  final transcript (preemptive generation) and hold their calls until the
  turn is confirmed.
- ``speculative`` — ``async`` plus forks on the stable prefix of partial
  transcripts whose ``read`` calls start at once as speculative futures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .config import Mode

FUTURES_NOTE = (
    "Tool calls run in the background. When a call needs the result of a call that is "
    "still pending, you may pass that call's id as the argument's value: it waits for "
    "the result and uses it."
)
"""Appended to the system prompt where calls are futures (the model may name them)."""


@dataclass(frozen=True)
class ModePolicy:
    """What differs between modes. Subclasses override class attributes only."""

    name: ClassVar[Mode]
    defers_calls: ClassVar[bool] = False
    """Calls issued in a response start when its stream ends (True) or at once (False)."""
    reports_partial_outcomes: ClassVar[bool] = True
    """Outcomes may be reported while other calls of the same response still run."""
    holds_the_line: ClassVar[bool] = True
    """Say a hold phrase after a silence with the turn's calls still running."""
    forks_on_partials: ClassVar[bool] = False
    """Open forks on partial transcripts while the user speaks."""
    fork_runs_reads: ClassVar[bool] = False
    """A fork's ``read`` calls start at once as speculative futures (else they wait for
    the fork's adoption, like any call of the adopted response)."""
    futures_in_prompt: ClassVar[bool] = True
    """The system prompt tells the model a call may name a pending call's future."""

    def system_prompt(self, base: str) -> str:
        """The system prompt the model gets in this mode."""
        return f"{base}\n\n{FUTURES_NOTE}" if self.futures_in_prompt else base


@dataclass(frozen=True)
class SyncPolicy(ModePolicy):
    name: ClassVar[Mode] = "sync"
    defers_calls: ClassVar[bool] = True
    reports_partial_outcomes: ClassVar[bool] = False
    holds_the_line: ClassVar[bool] = False
    futures_in_prompt: ClassVar[bool] = False  # the conventional baseline has no futures


@dataclass(frozen=True)
class AsyncPolicy(ModePolicy):
    name: ClassVar[Mode] = "async"


@dataclass(frozen=True)
class SpeculativePolicy(AsyncPolicy):
    name: ClassVar[Mode] = "speculative"
    forks_on_partials: ClassVar[bool] = True
    fork_runs_reads: ClassVar[bool] = True


POLICIES: dict[str, type[ModePolicy]] = {
    p.name: p for p in (SyncPolicy, AsyncPolicy, SpeculativePolicy)
}


def policy_for(mode: str) -> ModePolicy:
    """The policy of ``mode`` (a validated config value; KeyError names an unknown one)."""
    try:
        return POLICIES[mode]()
    except KeyError:
        raise KeyError(f"unknown mode {mode!r}; known: {sorted(POLICIES)}") from None
