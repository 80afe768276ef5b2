"""Hold phrases: a short canned sentence when the line goes quiet while tools run.

:class:`HoldTimer` owns the timer and its bookkeeping (a token that voids a
stale firing, the per-turn count, the phrase rotation). It decides nothing
about the floor: the transition table fires ``say_hold`` when the timer's
:class:`~voice_agent.events.TimerFired` arrives and the guard agrees.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any

from fsm import Clock, Event

from .events import TimerFired

HOLD_TIMER = "hold"


class HoldTimer:
    """Arms, voids and counts hold-phrase timers for one conversation."""

    def __init__(
        self,
        *,
        after_s: float,
        phrases: tuple[str, ...],
        max_per_turn: int,
        clock: Clock,
        post: Callable[[Event], None],
        spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task[Any]],
    ) -> None:
        self._after_s = after_s
        self._phrases = itertools.cycle(phrases) if phrases else None
        self._max = max_per_turn
        self._clock = clock
        self._post = post
        self._spawn = spawn
        self._token = 0
        self.said_in_turn = 0

    def new_turn(self) -> None:
        """A user turn began: the per-turn count restarts and a pending timer is void."""
        self.said_in_turn = 0
        self.cancel()

    def arm(self) -> None:
        """Start a timer (voiding any earlier one) unless this turn's phrases are used up."""
        self.cancel()
        if self._phrases is None or self.said_in_turn >= self._max:
            return
        self._spawn(self._fire_after(self._token), "hold-timer")

    def cancel(self) -> None:
        """Void the pending timer, if any (its firing is then ignored)."""
        self._token += 1

    def is_current(self, ev: TimerFired) -> bool:
        """``ev`` is the firing of the timer armed last and not voided since."""
        return ev.name == HOLD_TIMER and ev.token == self._token

    def next_phrase(self) -> str:
        """The phrase to say now (counted against the turn's limit)."""
        assert self._phrases is not None
        self.said_in_turn += 1
        return next(self._phrases)

    async def _fire_after(self, token: int) -> None:
        await self._clock.sleep(self._after_s)
        self._post(TimerFired(name=HOLD_TIMER, token=token))
