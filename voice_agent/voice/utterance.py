"""The utterance machine's states and events (its table is in :mod:`.utterance_fsm`).

The states say where the current speech segment stands inside
:class:`~voice_agent.voice.input.VoiceInput`; the events drive the utterance machine (:mod:`.utterance_fsm`); they never
reach the agent. They are facts from the VAD (a segment started, paused,
resumed, ended), from the clock of the stream (held speech lasted long enough
to interrupt) and from the ASR (a partial grew, the early decode finished).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fsm import Event


class U(StrEnum):
    """Where the current speech segment stands (see :mod:`.utterance_fsm`)."""

    SILENT = "silent"
    SPEAKING = "speaking"
    PAUSED = "paused"
    PAUSE_ANNOUNCED = "pause_announced"
    HELD = "held"
    HELD_PAUSED = "held_paused"
    IGNORED = "ignored"


ANNOUNCED = (U.SPEAKING, U.PAUSED, U.PAUSE_ANNOUNCED)  # the agent knows the caller speaks
HELD_BACK = (U.HELD, U.HELD_PAUSED)  # a possible barge-in, not announced yet
IN_SEGMENT = (*ANNOUNCED, *HELD_BACK, U.IGNORED)
TRANSCRIBED = (*ANNOUNCED, *HELD_BACK)  # the segment's audio goes to the ASR


@dataclass(frozen=True, kw_only=True)
class VadSpeechStarted(Event):
    """The VAD confirmed speech that began at stream time ``t`` (sample ``sample``)."""

    t: float
    sample: int


@dataclass(frozen=True, kw_only=True)
class VadSpeechPaused(Event):
    """The VAD suspects the end of the segment (the speaker went quiet)."""


@dataclass(frozen=True, kw_only=True)
class VadSpeechResumed(Event):
    """Speech came back before the pause became an end."""


@dataclass(frozen=True, kw_only=True)
class VadSpeechEnded(Event):
    """The VAD ended the segment; its final silence began at stream time ``t``."""

    t: float


@dataclass(frozen=True, kw_only=True)
class HeldSpeechLasted(Event):
    """Speech held back as a possible barge-in has lasted the minimum barge-in time."""


@dataclass(frozen=True, kw_only=True)
class PartialTranscribed(Event):
    """The ASR's committed partial transcript of the segment is now ``text``."""

    text: str


@dataclass(frozen=True, kw_only=True)
class EarlyTranscriptReady(Event):
    """The early final decode started at pause number ``pause`` produced ``text``."""

    text: str
    pause: int
