"""The agent's transition table: the conversation floor as data.

States are who holds the floor; tool futures and forks are not states (they
live in the ledger and raise events). Each row reads: in ``source``, on
``event``, if ``guard``: go to ``target`` and run ``actions``. Several rows
for one pair are tried top to bottom. Rows whose guard is ``is_current``
reject events of a generation that was cancelled (a barge-in), which may
still be in the queue. ``docs/agent_fsm.md`` is rendered from this table
(``voice-agent fsm``).
"""

from __future__ import annotations

from enum import StrEnum

from fsm import ActionFailed, Ignore, MachineDefinition, Transition

from .call_control import CallActionFailed, CallActionRequested
from .conversation import Conversation as C
from .events import (
    DtmfReceived,
    ForkAdopted,
    ForkDiscarded,
    ForkOpened,
    LlmFailed,
    LlmStalled,
    LlmTextDelta,
    LlmToolCallIssued,
    LlmTurnFinished,
    PlayoutFinished,
    PlayoutStarted,
    SessionEnded,
    TimerFired,
    ToolCallFailed,
    ToolCallResolved,
    TranscriptFinal,
    TranscriptPartial,
    UserBackchanneled,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechResumed,
    UserSpeechStarted,
)


class S(StrEnum):
    """Who holds the floor."""

    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    SPEAKING = "speaking"
    ENDED = "ended"


L, U, T, SP = S.LISTENING, S.USER_SPEAKING, S.THINKING, S.SPEAKING
AGENT_BUSY = (T, SP)
USER_SIDE = (L, U)

EVENTS = (
    UserSpeechStarted, UserSpeechEnded, UserSpeechPaused, UserSpeechResumed, UserBackchanneled,
    TranscriptPartial, TranscriptFinal,
    LlmTextDelta, LlmToolCallIssued, LlmTurnFinished, LlmFailed, LlmStalled,
    ToolCallResolved, ToolCallFailed, PlayoutStarted, PlayoutFinished,
    ForkOpened, ForkAdopted, ForkDiscarded, DtmfReceived, TimerFired,
    SessionEnded, ActionFailed, CallActionRequested, CallActionFailed,
)  # fmt: skip

TRANSITIONS = (
    # ---- the user takes the floor; in the agent's turn that is a barge-in
    Transition(L, UserSpeechStarted, U, actions=[C.begin_user_speech]),
    Transition(AGENT_BUSY, UserSpeechStarted, U, actions=[C.barge_in, C.begin_user_speech]),
    Transition(L, TranscriptPartial, U, actions=[C.record_partial]),
    Transition(U, TranscriptPartial, None, guard=C.fork_due, actions=[C.record_partial, C.open_fork]),
    Transition(U, TranscriptPartial, None, actions=[C.record_partial]),
    Transition(AGENT_BUSY, TranscriptPartial, U, actions=[C.barge_in, C.record_partial]),
    Transition(U, UserSpeechEnded, None, actions=[C.note_speech_end]),
    # ---- a pause may end the turn: fork on the early transcript (preemptive generation)
    Transition(U, UserSpeechPaused, None, guard=C.can_preempt, actions=[C.start_preemptive]),
    Transition(U, UserSpeechResumed, None, actions=[C.drop_preemptive]),
    # ---- end of the user's turn: adopt a fork whole, or answer (its calls adopt the forks');
    # ---- a typed message while the agent talks is a barge-in
    Transition(USER_SIDE, TranscriptFinal, T, guard=C.answers_confirmation, actions=[C.resolve_confirmation]),
    Transition(AGENT_BUSY, TranscriptFinal, T, guard=C.answers_confirmation, actions=[C.barge_in, C.resolve_confirmation]),
    Transition(U, TranscriptFinal, T, guard=C.matches_fork, actions=[C.adopt_fork]),
    Transition(USER_SIDE, TranscriptFinal, T, guard=C.nonempty, actions=[C.commit_user_turn]),
    Transition(USER_SIDE, TranscriptFinal, T, guard=C.unheard, actions=[C.discard_forks, C.ask_to_repeat]),
    Transition(USER_SIDE, TranscriptFinal, T, guard=C.news_and_floor, actions=[C.discard_forks, C.start_followup]),
    Transition(USER_SIDE, TranscriptFinal, L, actions=[C.discard_forks, C.arm_hold]),
    Transition(AGENT_BUSY, TranscriptFinal, T, guard=C.nonempty, actions=[C.barge_in, C.commit_user_turn]),
    # ---- the LLM streams (rows with is_current drop a cancelled generation's leftovers)
    Transition(AGENT_BUSY, LlmTextDelta, None, guard=C.is_current, actions=[C.speak_delta]),
    Transition(AGENT_BUSY, LlmToolCallIssued, None, guard=C.is_current, actions=[C.issue_call]),
    Transition(AGENT_BUSY, LlmStalled, None, guard=C.is_current, actions=[C.say_llm_hold]),
    Transition(AGENT_BUSY, LlmTurnFinished, None, guard=C.answered_nothing, actions=[C.apologize_empty]),
    # (in speaking too: earlier audio ended while a follow-up ran that says nothing new)
    Transition(AGENT_BUSY, LlmTurnFinished, T, guard=C.finishing_silent_with_news, actions=[C.finish_response, C.start_followup]),
    Transition(AGENT_BUSY, LlmTurnFinished, L, guard=C.finishing_silent, actions=[C.finish_response, C.arm_hold]),
    Transition(T, LlmTurnFinished, None, guard=C.is_current, actions=[C.finish_response, C.maybe_followup]),
    Transition(SP, LlmTurnFinished, None, guard=C.is_current, actions=[C.finish_response, C.maybe_followup]),
    Transition(AGENT_BUSY, LlmFailed, None, guard=C.is_current, actions=[C.apologize]),
    # ---- tool outcomes (already in the ledger): report at the next free moment
    Transition(L, ToolCallResolved, T, guard=C.news_and_floor, actions=[C.start_followup]),
    Transition(L, ToolCallFailed, T, guard=C.news_and_floor, actions=[C.start_followup]),
    Transition(L, ToolCallResolved, None, guard=C.loop_guard_tripped, actions=[C.tell_loop_guard]),
    Transition(L, ToolCallFailed, None, guard=C.loop_guard_tripped, actions=[C.tell_loop_guard]),
    Transition(T, ToolCallResolved, None, guard=C.can_batch, actions=[C.batch_into_followup]),
    Transition(T, ToolCallFailed, None, guard=C.can_batch, actions=[C.batch_into_followup]),
    Transition(SP, ToolCallResolved, None, actions=[C.maybe_followup]),
    Transition(SP, ToolCallFailed, None, actions=[C.maybe_followup]),
    # ---- playout
    Transition((L, T), PlayoutStarted, SP, guard=C.known_playout, actions=[C.playout_started]),
    Transition(SP, PlayoutStarted, None, actions=[C.playout_started]),
    Transition(SP, PlayoutFinished, T, guard=C.last_playout_with_news, actions=[C.record_played, C.start_followup]),
    Transition(SP, PlayoutFinished, L, guard=C.last_playout, actions=[C.record_played, C.arm_hold]),
    Transition(SP, PlayoutFinished, None, actions=[C.record_played]),
    Transition((L, T), PlayoutFinished, None, actions=[C.record_played]),
    # ---- timers: a keypad entry's pause, the call's time limit, a hold phrase, the caller's silence
    Transition("*", TimerFired, None, guard=C.keypad_due, actions=[C.finish_keypad_entry]),
    Transition("*", TimerFired, None, guard=C.limit_due, actions=[C.call_limit_reached]),
    Transition(L, TimerFired, T, guard=C.hold_due, actions=[C.say_hold]),
    Transition(L, TimerFired, T, guard=C.idle_due, actions=[C.idle_prompt]),
    # ---- the call: keypad digits in every state; call actions happen when the floor is quiet
    Transition("*", DtmfReceived, None, actions=[C.key_pressed]),
    Transition("*", CallActionRequested, None, actions=[C.request_call_action]),
    Transition("*", CallActionFailed, None, actions=[C.call_action_failed]),
    # ---- listener feedback over the agent ("mhm") is recorded, never an interruption
    Transition("*", UserBackchanneled, None, actions=[C.record_backchannel]),
    # ---- errors and the end
    Transition((T, SP), ActionFailed, L, guard=C.stuck, actions=[C.record_action_failure, C.recover]),
    Transition("*", ActionFailed, None, actions=[C.record_action_failure]),
    Transition("*", SessionEnded, S.ENDED, actions=[C.shutdown]),
)  # fmt: skip

# An Ignore for a pair whose rows are all guarded says what happens when no guard passes.
IGNORED = (
    Ignore(U, UserSpeechStarted, "already speaking"),
    Ignore((L, T, SP), UserSpeechEnded, "only meaningful while the user speaks"),
    Ignore((L, T, SP), UserSpeechPaused, "only meaningful while the user speaks"),
    Ignore(U, UserSpeechPaused, "otherwise: no early answer (disabled, or nothing heard yet)"),
    Ignore((L, T, SP), UserSpeechResumed, "only meaningful while the user speaks"),
    Ignore(AGENT_BUSY, TranscriptFinal, "otherwise: an empty transcript does not interrupt the agent"),
    Ignore(USER_SIDE, LlmTextDelta, "a cancelled generation's leftovers"),
    Ignore(USER_SIDE, LlmToolCallIssued, "a cancelled generation's leftovers"),
    Ignore(USER_SIDE, LlmTurnFinished, "a cancelled generation's leftovers"),
    Ignore(USER_SIDE, LlmFailed, "a cancelled generation's leftovers"),
    Ignore(USER_SIDE, LlmStalled, "a cancelled generation's leftovers"),
    Ignore(AGENT_BUSY, LlmStalled, "otherwise: a cancelled generation's leftovers"),
    Ignore(AGENT_BUSY, LlmTextDelta, "otherwise: a cancelled generation's leftovers"),
    Ignore(AGENT_BUSY, LlmToolCallIssued, "otherwise: a cancelled generation's leftovers"),
    Ignore(AGENT_BUSY, LlmTurnFinished, "otherwise: a cancelled generation's leftovers"),
    Ignore(AGENT_BUSY, LlmFailed, "otherwise: a cancelled generation's leftovers"),
    Ignore(L, ToolCallResolved, "otherwise: recorded; nothing to report now (speculative, "
           "silent, the sync policy waits for the response's other calls, or the follow-up limit)"),
    Ignore(L, ToolCallFailed, "otherwise: recorded; nothing to report now (speculative, "
           "silent, the sync policy waits for the response's other calls, or the follow-up limit)"),
    Ignore(U, ToolCallResolved, "recorded; reported when the user's turn ends"),
    Ignore(U, ToolCallFailed, "recorded; reported when the user's turn ends"),
    Ignore(T, ToolCallResolved, "otherwise: recorded; reported when the generation in flight ends"),
    Ignore(T, ToolCallFailed, "otherwise: recorded; reported when the generation in flight ends"),
    Ignore((L, T), PlayoutStarted, "otherwise: audio of a response cut off before it started"),
    Ignore(U, PlayoutStarted, "output was interrupted; nothing plays while the user speaks"),
    Ignore(U, PlayoutFinished, "recorded at the barge-in"),
    Ignore(L, TimerFired, "otherwise: a stale timer, or the floor is taken, or nothing runs"),
    Ignore((U, T, SP), TimerFired, "otherwise: the floor is not free (no hold phrase or "
           "silence prompt), or a stale timer"),
    Ignore("*", ForkOpened, "speculation is recorded in the ledger; the floor does not change"),
    Ignore("*", ForkAdopted, "speculation is recorded in the ledger; the floor does not change"),
    Ignore("*", ForkDiscarded, "speculation is recorded in the ledger; the floor does not change"),
)  # fmt: skip

AGENT_MACHINE = MachineDefinition(
    name="agent",
    states=tuple(S),
    initial=S.LISTENING,
    final=(S.ENDED,),
    events=EVENTS,
    transitions=TRANSITIONS,
    ignored=IGNORED,
)
