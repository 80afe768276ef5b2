"""The call's own rules, beside the conversation: keypad entries, silence, length, call actions.

:class:`CallFlow` owns the timers and bookkeeping of a telephone call; the
transition table decides when its actions run (rows on ``DtmfReceived``,
``TimerFired`` named ``dtmf``/``idle``/``call_limit``, and
``CallActionRequested``), and :class:`~voice_agent.conversation.Conversation`
calls it from those actions. It never speaks by itself: it tells the
conversation what to say and when the call must end.

- Keypad digits are collected into an entry (``#`` or a pause ends it) that
  becomes the caller's turn, shown to the model as what the caller typed.
- Silence with nothing pending: after ``idle_prompt_after_s`` the agent asks
  whether the caller is still there; after ``idle_end_after_s`` more it says
  goodbye and hangs up.
- ``max_call_s``: a warning ``max_call_warning_s`` before, then a goodbye.
- A tool's hang-up or transfer waits until the floor is quiet (the goodbye
  has been heard); the transport carries it out (``perform``, bound by the
  running call: :meth:`voice_agent.transports.call.Call.perform`); without a
  transport (text chat, bench) it is recorded and the session ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

from fsm import Clock, Event

from .call_control import CallAction, DtmfCollector, HangUp, SendDtmf, Transfer
from .config import CallConfig
from .events import TimerFired

log = logging.getLogger(__name__)


def _error_of(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


_SILENT = "the caller stayed silent"
DTMF_TIMER = "dtmf"
IDLE_TIMER = "idle"
CALL_LIMIT_TIMER = "call_limit"

Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]
Perform = Callable[[CallAction], Awaitable[bool]]
"""Carries out a call action through the transport; False when it could not."""


class CallFlow:
    """Keypad entries, idle prompts, the call-length limit and pending call actions."""

    def __init__(
        self,
        config: CallConfig,
        *,
        clock: Clock,
        post: Callable[[Event], None],
        spawn: Spawn,
    ) -> None:
        self.config = config
        self._clock = clock
        self._post = post
        self._spawn = spawn
        self.perform: Perform | None = None  # bound by the running call's transport
        self.keys = DtmfCollector(config.dtmf_inter_digit_timeout_s)
        self._tokens: dict[str, int] = {DTMF_TIMER: 0, IDLE_TIMER: 0, CALL_LIMIT_TIMER: 0}
        self.idle_stage = 0  # 0: nothing asked yet; 1: "are you still there?" was asked
        self.limit_stage: Literal["running", "warned", "over"] = "running"
        self.ending: HangUp | Transfer | None = None  # carried out once the floor is quiet
        self.carried_out = False
        self.provider_error = ""  # why the provider failed the last hang-up, if it did
        self.spoke_since_request = True  # the agent said something after the ending request
        self._started = False

    # ---------------------------------------------------------------- timers
    def _arm(self, name: str, delay_s: float) -> None:
        self._tokens[name] += 1
        token = self._tokens[name]

        async def fire() -> None:
            await self._clock.sleep(delay_s)
            self._post(TimerFired(name=name, token=token))

        self._spawn(fire(), f"{name}-timer")

    def _void(self, name: str) -> None:
        self._tokens[name] += 1

    def is_current(self, ev: TimerFired, name: str) -> bool:
        """``ev`` is the latest firing of the timer called ``name``."""
        return ev.name == name and ev.token == self._tokens[name]

    def start(self) -> None:
        """The call began: start the length limit (idempotent)."""
        if self._started:
            return
        self._started = True
        limit = self.config.max_call_s
        if limit is not None:
            self._arm(CALL_LIMIT_TIMER, max(0.0, limit - self.config.max_call_warning_s))

    # ---------------------------------------------------------------- keypad
    def press(self, key: str, *, answer_keys: str = "") -> str | None:
        """One key; the finished entry when it completes one (``#``), else None.

        A key in ``answer_keys`` pressed on its own is an entry at once (1 for
        yes, 2 for no while a write waits for confirmation). Arms the
        inter-digit timer while an entry is pending.
        """
        self.caller_active()
        if key in answer_keys and not self.keys.pending:
            self._void(DTMF_TIMER)
            return key
        entry = self.keys.press(key, self._clock.now())
        if entry is None and self.keys.pending:
            self._arm(DTMF_TIMER, self.config.dtmf_inter_digit_timeout_s)
        elif entry is not None:
            self._void(DTMF_TIMER)
        return entry

    def keypad_due(self, ev: TimerFired) -> bool:
        return self.is_current(ev, DTMF_TIMER) and bool(self.keys.pending)

    def expire_entry(self) -> str | None:
        """The pending entry after the inter-digit pause (None if nothing is pending)."""
        return self.keys.expire(self._clock.now())

    @staticmethod
    def keypad_text(entry: str) -> str:
        """How a keypad entry reaches the model: as the caller's words."""
        return f"(typed on the keypad) {entry}" if entry else "(pressed the hash key)"

    # ---------------------------------------------------------------- silence
    def caller_active(self) -> None:
        """The caller spoke or typed: the silence count starts again."""
        self.idle_stage = 0
        self._void(IDLE_TIMER)
        if (
            isinstance(self.ending, HangUp)
            and self.ending.reason == _SILENT
            and not self.carried_out
        ):
            self.ending = None  # the caller is back after all

    def floor_quiet(self) -> None:
        """Nothing is pending and nothing plays: start counting the caller's silence."""
        if self.config.idle_prompt_after_s is None or self.ending is not None:
            return
        delay = (
            self.config.idle_prompt_after_s
            if self.idle_stage == 0
            else self.config.idle_end_after_s
        )
        self._arm(IDLE_TIMER, delay)

    def idle_due(self, ev: TimerFired) -> bool:
        return self.is_current(ev, IDLE_TIMER) and self.ending is None

    def idle_step(self) -> str:
        """What to say after the silence: the question first, then the goodbye (ending the call)."""
        if self.idle_stage == 0:
            self.idle_stage = 1
            return self.config.idle_prompt
        self.ending = HangUp(reason=_SILENT)
        return self.config.idle_goodbye

    # ---------------------------------------------------------------- length
    def limit_due(self, ev: TimerFired) -> bool:
        return self.is_current(ev, CALL_LIMIT_TIMER) and self.limit_stage != "over"

    def limit_step(self) -> str:
        """The warning first (re-arming for the end), then the goodbye (ending the call)."""
        if self.limit_stage == "running" and self.config.max_call_warning_s > 0:
            self.limit_stage = "warned"
            self._arm(CALL_LIMIT_TIMER, self.config.max_call_warning_s)
            return self.config.max_call_warning
        self.limit_stage = "over"
        self.ending = HangUp(reason="the call reached its time limit")
        return self.config.max_call_goodbye

    # ---------------------------------------------------------------- call actions
    def request(self, action: CallAction) -> str | None:
        """A tool asked for ``action``; returns what the agent should say first, if anything.

        DTMF tones go out at once; a hang-up or a transfer waits for a quiet
        floor (:meth:`due`). A second ending request does not replace the first.
        """
        if isinstance(action, SendDtmf):
            self._spawn(self._send_dtmf(action.digits), "send-dtmf")
            return None
        if self.ending is not None:
            return None
        self.ending = action
        self.spoke_since_request = False
        self._void(IDLE_TIMER)
        if isinstance(action, Transfer):
            return self.config.transfer_phrase
        return None

    def due(self) -> bool:
        """A hang-up or transfer is waiting and has not been carried out."""
        return self.ending is not None and not self.carried_out

    async def _send_dtmf(self, digits: str) -> None:
        if self.perform is None:
            log.info("send DTMF %s: no transport to carry it out", digits)
            return
        try:
            await self.perform(SendDtmf(digits=digits))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the provider's failure: logged, the call goes on
            log.warning("send DTMF failed at the provider: %s", _error_of(exc))

    async def carry_out(self) -> tuple[bool, str, str]:
        """Do the pending hang-up or transfer; returns (done, session-end reason, detail).

        Without a transport it is only recorded and the session ends. A
        transfer that fails returns done=False: the caller must not be
        dropped, the conversation goes on. A hang-up ends the session whether
        or not the transport managed to hang up.
        """
        action = self.ending
        assert action is not None
        self.carried_out = True
        error = ""
        try:
            done = await self.perform(action) if self.perform is not None else True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the provider failed (HTTP error, dropped socket): not done
            error, done = _error_of(exc), False
            log.warning("call action %s failed at the provider: %s", action.kind, error)
        if isinstance(action, Transfer):
            if not done:
                return False, "transferred", error or "the transfer did not go through"
            detail = f"to {action.destination}" + ("" if self.perform else " (recorded only)")
            return done, "transferred", detail
        self.provider_error = error
        return True, "hang-up", action.reason

    def transfer_failed(self) -> None:
        """The transfer did not go through: the call goes on."""
        self.ending = None
        self.carried_out = False

    def aclose(self) -> None:
        """Void every timer."""
        for name in self._tokens:
            self._void(name)
