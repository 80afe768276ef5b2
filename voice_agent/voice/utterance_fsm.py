"""The utterance machine: what :class:`VoiceInput` does with one VAD speech segment.

Each row reads: in ``source``, on ``event``, if ``guard``: go to ``target``
and run ``actions`` (methods of :class:`VoiceInput`, the machine's context).
``docs/voice_input_fsm.md`` is rendered from this table
(``voice-agent fsm --machine voice_input``) and a test keeps it current.

States:

- ``silent``: no speech segment.
- ``speaking``: the caller's speech, announced to the agent (``UserSpeechStarted``).
- ``paused``: announced speech the VAD suspects has ended; the early final
  decode runs.
- ``pause_announced``: the early decode's text was posted as ``UserSpeechPaused``
  (the agent may answer preemptively; speaking again posts ``UserSpeechResumed``).
- ``held``: speech that began while the agent held the floor; its
  ``UserSpeechStarted`` waits until it has lasted ``min_barge_in_s``
  (a cough does not cut the agent off); the agent's voice is paused meanwhile.
- ``held_paused``: held speech that went quiet (not counted towards the barge-in).
- ``ignored``: speech while the agent holds the floor with barge-in disabled.
"""

from __future__ import annotations

from fsm import ActionFailed, Ignore, MachineDefinition, Transition

from .input import VoiceInput as V
from .utterance import (
    ANNOUNCED,
    HELD_BACK,
    IN_SEGMENT,
    EarlyTranscriptReady,
    HeldSpeechLasted,
    PartialTranscribed,
    U,
    VadSpeechEnded,
    VadSpeechPaused,
    VadSpeechResumed,
    VadSpeechStarted,
)

EVENTS = (
    VadSpeechStarted, VadSpeechPaused, VadSpeechResumed, VadSpeechEnded,
    HeldSpeechLasted, PartialTranscribed, EarlyTranscriptReady, ActionFailed,
)  # fmt: skip

TRANSITIONS = (
    # ---- a segment starts: announced at once, held back as a possible barge-in, or ignored
    Transition(U.SILENT, VadSpeechStarted, U.HELD, guard=V.may_barge_in, actions=[V.open_utterance]),
    Transition(U.SILENT, VadSpeechStarted, U.IGNORED, guard=V.agent_holds_floor, actions=[V.open_ignored]),
    Transition(U.SILENT, VadSpeechStarted, U.SPEAKING, actions=[V.open_utterance, V.announce_start]),
    # ---- held speech becomes a barge-in once it lasted; quiet stretches do not count
    Transition(U.HELD, HeldSpeechLasted, U.SPEAKING, actions=[V.announce_start]),
    Transition(U.HELD, VadSpeechPaused, U.HELD_PAUSED, actions=[V.start_early_decode, V.await_held_text]),
    # ---- with backchannels, held speech that paused is judged by its words
    Transition(U.HELD_PAUSED, EarlyTranscriptReady, U.IGNORED, guard=V.backchannel_heard, actions=[V.record_backchannel]),
    Transition(U.HELD_PAUSED, EarlyTranscriptReady, U.PAUSED, guard=V.interruption_heard, actions=[V.announce_start, V.judge_turn]),
    Transition(U.HELD_PAUSED, EarlyTranscriptReady, None, actions=[V.stop_judging], label="stale or empty (a cough): nothing decided"),
    Transition(U.HELD_PAUSED, VadSpeechEnded, U.SILENT, guard=V.judging, actions=[V.end_judged]),
    Transition(U.IGNORED, VadSpeechResumed, U.HELD, guard=V.was_backchannel, actions=[V.resume_after_backchannel]),
    Transition(U.HELD_PAUSED, VadSpeechResumed, U.HELD, actions=[V.void_early_decode]),
    Transition(HELD_BACK, PartialTranscribed, None, guard=V.partial_grew, actions=[V.hold_partial]),
    Transition(HELD_BACK, PartialTranscribed, None, label="no new words"),
    Transition((*HELD_BACK, U.IGNORED), VadSpeechEnded, U.SILENT, actions=[V.drop_utterance]),
    # ---- announced speech: partials, a pause that may end the turn, the end
    Transition(ANNOUNCED, PartialTranscribed, None, guard=V.partial_grew, actions=[V.post_partial]),
    Transition(ANNOUNCED, PartialTranscribed, None, label="no new words"),
    Transition(U.SPEAKING, VadSpeechPaused, U.PAUSED, actions=[V.start_early_decode, V.await_early_text]),
    Transition(U.PAUSED, EarlyTranscriptReady, U.PAUSE_ANNOUNCED, guard=V.early_text_ends_turn, actions=[V.judge_turn, V.announce_pause]),
    Transition(U.PAUSED, EarlyTranscriptReady, None, guard=V.early_text_unfinished, actions=[V.extend_pause]),
    Transition(U.PAUSED, EarlyTranscriptReady, None, actions=[V.judge_turn], label="stale or empty: nothing to announce"),
    Transition(U.PAUSED, VadSpeechResumed, U.SPEAKING, actions=[V.void_early_decode]),
    Transition(U.PAUSE_ANNOUNCED, VadSpeechResumed, U.SPEAKING, actions=[V.void_early_decode, V.announce_resume]),
    Transition(ANNOUNCED, VadSpeechEnded, U.SILENT, actions=[V.finish_utterance]),
    # ---- a failed action is logged with its traceback by the machine; the stream goes on
    Transition("*", ActionFailed, None, actions=[V.note_action_failed]),
)  # fmt: skip

IGNORED = (
    Ignore(IN_SEGMENT, VadSpeechStarted, "already in a segment"),
    Ignore(U.SILENT, VadSpeechPaused, "no segment"),
    Ignore(U.SILENT, VadSpeechResumed, "no segment"),
    Ignore(U.SILENT, VadSpeechEnded, "no segment"),
    Ignore((U.SILENT, U.IGNORED), PartialTranscribed, "nothing is transcribed for the agent"),
    Ignore((U.SILENT, U.SPEAKING, U.PAUSE_ANNOUNCED), EarlyTranscriptReady, "stale: the speech went on or ended"),
    Ignore((U.HELD, U.IGNORED), EarlyTranscriptReady, "held speech is judged once it pauses; ignored speech never"),
    Ignore((U.SPEAKING, U.HELD, U.IGNORED), VadSpeechResumed, "not paused"),
    Ignore((U.PAUSED, U.PAUSE_ANNOUNCED, U.HELD_PAUSED, U.IGNORED), VadSpeechPaused, "already paused or ignored"),
    Ignore((U.SILENT, *ANNOUNCED, U.HELD_PAUSED, U.IGNORED), HeldSpeechLasted, "only held, ongoing speech can barge in"),
)  # fmt: skip

UTTERANCE_MACHINE = MachineDefinition(
    name="voice_input",
    states=tuple(U),
    initial=U.SILENT,
    events=EVENTS,
    transitions=TRANSITIONS,
    ignored=IGNORED,
)
