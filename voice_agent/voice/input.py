"""``VoiceInput``: the caller's audio in, the agent's user-side events out.

Feed mono frames at ``sample_rate`` with :meth:`VoiceInput.process` (any
length, from any source: a microphone, a file, a LiveKit track). Each frame
optionally passes the :class:`HalfDuplexGate` (which zeroes frames that are
probably the agent's own voice), then the VAD; a speech segment's audio (plus
``preroll_s`` before the VAD's start) is streamed to the ASR. Posted to the
agent, in this order per utterance:

- ``UserSpeechStarted`` at the VAD's start — except while the agent holds the
  floor (``agent_busy()``): then only once the speech has lasted
  ``min_barge_in_s`` of stream time (a cough, a click or a short echo
  residue does not cut the agent off). Speech that ends before that is
  dropped without any event. With ``barge_in=False`` all speech that starts
  while the agent is busy is dropped.
- ``TranscriptPartial(text)`` for each ASR partial whose committed text grew.
- ``UserSpeechPaused(text)`` when the VAD suspects the end (``SpeechPaused``)
  and the early final decode that the pause started (``speech_paused``) has
  produced non-empty text, provided the speech has not resumed (nor ended)
  meanwhile; ``UserSpeechResumed`` when the VAD's ``SpeechResumed`` follows
  a pause that was posted. The agent answers the paused text preemptively.
- ``UserSpeechEnded`` when the VAD ends the segment.
- ``TranscriptFinal(text)`` once the ASR's final decode is ready (``""`` when
  it heard nothing, so the agent returns to listening). When no speech came
  after the last pause this is the early decode's text, the same as the
  ``UserSpeechPaused`` text, so the agent adopts its preemptive answer.
  An empty final after real speech (a partial or early transcript of the
  segment had words, or the VAD heard ``UNHEARD_MIN_VOICED_S`` of voice) is
  posted with ``unheard=True``: the agent asks the caller to say it again
  instead of leaving them in silence; a cough's empty final is not. A final
  that the ASR had to decode a second time (``AsrFinal.retried``) and that came
  out as only Whisper's stock phrase ("Thank you.", "you") counts as empty.

Barge-in without a late stop: while the agent is busy, ``playback`` (the
agent's voice) is paused as soon as the level rises above the background
(:class:`~peripherals.onset.EnergyOnset`, 20 ms into the sound: an unvoiced
"s" that the VAD scores low for 100 ms counts; not with ``level_onset=False``)
or the VAD sees a possible onset (``onset_pending``), and stays paused while
that speech lasts; a sound the VAD never takes for speech resumes it within
``HOLD_S`` (0.25 s). If it lasts ``min_barge_in_s``, ``UserSpeechStarted`` is
posted and the pause holds until the agent has taken it (its interrupt
drops the paused audio; the heard text ends at the paused position). If it
stops before (the onset is not confirmed, or the VAD pauses), playback
resumes exactly where it stopped: a cough costs a short gap, not the answer.
The rule is re-evaluated after every frame from the agent's state, so a
pause never outlives the speech or the agent's turn.

:meth:`process` awaits the final decode when a segment ends, so the caller's
source simply queues (a microphone's queue holds seconds of audio).

What happens to each speech segment is the utterance machine's table
(:mod:`.utterance_fsm`, rendered in ``docs/voice_input_fsm.md``): its state
says whether the segment was announced, is held back as a possible barge-in,
is paused, or is ignored; the methods below are its guards and actions.

Per-utterance timings are recorded in :attr:`VoiceInput.turns`
(:class:`UtteranceTiming`): stream times (seconds of audio fed) and clock times.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fsm import ActionFailed, Clock, Event, Machine, MonotonicClock, TraceRecord
from peripherals.asr import AsrPartial, StreamingAsr, is_stock_phrase
from peripherals.audio import to_float32
from peripherals.half_duplex import HalfDuplexGate
from peripherals.onset import EnergyOnset
from peripherals.resample import Resampler
from peripherals.turn import TurnDetector
from peripherals.vad import SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, VadSegmenter
from voice_agent.voice.endpointing import EndpointingRules, is_backchannel, likely_unfinished

from ..events import (
    TranscriptFinal,
    TranscriptPartial,
    UserBackchanneled,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechResumed,
    UserSpeechStarted,
)
from .tasks import TaskTracker
from .turn_taking import TurnEnder, TurnRecord
from .utterance import (
    TRANSCRIBED,
    EarlyTranscriptReady,
    HeldSpeechLasted,
    PartialTranscribed,
    U,
    VadSpeechEnded,
    VadSpeechPaused,
    VadSpeechResumed,
    VadSpeechStarted,
)

log = logging.getLogger(__name__)

# Audio kept before the VAD's start and sent to the ASR with the segment: the
# VAD confirms speech ~0.1 s late and soft onsets ("h", "f") score low (seconds).
PREROLL_S = 0.3
# Default shortest speech that may interrupt the agent (seconds of stream time):
# coughs and clicks are shorter; a real interruption is longer.
MIN_BARGE_IN_S = 0.2
# After a possible barge-in goes quiet, the agent's voice stays paused this long before it
# resumes: "Wait, I have a question" has a comma pause; a cough does not come back (seconds).
RESUME_AFTER_SILENCE_S = 0.3
# An empty final transcript after at least this much voiced audio (the VAD's speech, its
# pauses not counted) was speech the ASR could not make out, not a cough or a click (those
# last well under half a second): the caller is asked to say it again (seconds).
UNHEARD_MIN_VOICED_S = 1.0
VAD_RATES = (8000, 16000)  # rates the Silero VAD takes natively; others are resampled to 16 kHz


@dataclass
class UtteranceTiming:
    """What happened to one VAD speech segment (stream seconds, clock seconds)."""

    index: int
    speech_start_s: float  # stream time of the VAD's start
    detected_s: float  # stream time when the VAD confirmed speech (SpeechStarted emitted)
    agent_busy: bool  # the agent held the floor when it started
    posted_start_s: float | None = None  # stream time UserSpeechStarted was posted (None: never)
    posted_start_at: float | None = None  # clock time of that post
    speech_end_s: float | None = None  # stream time where its final silence began
    ended_s: float | None = None  # stream time when the VAD declared the end
    ended_at: float | None = None  # clock time of UserSpeechEnded
    paused_at: float | None = None  # clock time of the last SpeechPaused (final decode start)
    pause_posted_at: float | None = None  # clock time UserSpeechPaused was posted for that pause
    final_at: float | None = None  # clock time TranscriptFinal was posted
    final_speculative: bool = False  # the decode started at the pause was kept
    decode_s: float | None = None  # the final decode's own duration (seconds)
    early_decode_at: float | None = None  # clock time the last early decode started
    tail_decodes: int = 0  # early decodes started on a quiet tail, before the VAD's pause
    tail_decodes_voided: int = 0  # ... of which the speech went on (wasted decodes)
    text: str = ""
    dropped: bool = False  # too short to barge in, or barge-in disabled
    turn: TurnRecord | None = None  # the end-of-turn decision (with ``turn_rules``)
    backchannel: bool = False  # listener feedback over the agent ("mhm"): recorded, no barge-in
    voiced_s: float = 0.0  # stream seconds the VAD heard voice in it (its pauses not counted)
    heard_words: bool = False  # an early transcript of it had words
    unheard: bool = False  # real speech, but the final transcript was empty


class Playback(Protocol):
    """The agent's voice as the barge-in rule sees it (``AudioSpeechOutput``)."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


@dataclass
class PlaybackPause:
    """One stretch during which the input held the agent's voice paused (stream seconds)."""

    start_s: float
    end_s: float | None = None  # None: still paused
    barge_in: bool = False  # a barge-in was confirmed during it (the agent then stopped)


class VoiceInput:
    """VAD + streaming ASR + barge-in rule, posting the agent's user-side events.

    ``make_asr(on_partial)`` builds the ASR with the callback to report
    partials to; the ASR is owned here (``aclose`` closes it). The VAD
    segmenter must run at 16 or 8 kHz; frames at another ``sample_rate`` are
    resampled to 16 kHz first. The utterance machine's transitions are passed
    to ``on_transition`` when given (tests, traces).
    """

    def __init__(
        self,
        *,
        vad: VadSegmenter,
        make_asr: Callable[[Callable[[AsrPartial], None]], StreamingAsr],
        post: Callable[[Event], None],
        sample_rate: int,
        agent_busy: Callable[[], bool] = lambda: False,
        gate: HalfDuplexGate | None = None,
        playback: Playback | None = None,
        barge_in: bool = True,
        level_onset: bool = True,
        min_barge_in_s: float = MIN_BARGE_IN_S,
        preroll_s: float = PREROLL_S,
        unfinished_extra_silence_s: float = 0.0,
        turn_rules: EndpointingRules | None = None,
        turn_detector: TurnDetector | None = None,
        backchannels: tuple[str, ...] | None = None,
        backchannel_max_s: float = 0.9,
        tail_decode: bool = False,
        tail_quiet_below: float | None = None,
        clock: Clock | None = None,
        on_transition: Callable[[TraceRecord], None] | None = None,
    ) -> None:
        from .utterance_fsm import UTTERANCE_MACHINE  # the table imports this class

        self._vad = vad
        self._unfinished_extra = unfinished_extra_silence_s
        self._rate = vad.vad.sample_rate
        if sample_rate != self._rate and sample_rate in VAD_RATES:
            raise ValueError(f"the VAD runs at {self._rate} Hz but frames come at {sample_rate} Hz")
        self._resampler = Resampler(sample_rate, self._rate) if sample_rate != self._rate else None
        self._asr = make_asr(self._on_partial)
        self._post = post
        self._agent_busy = agent_busy
        self._gate = gate
        self._playback = playback
        self._barge_in = barge_in
        self._min_barge_in = int(min_barge_in_s * self._rate)
        # With backchannel phrases, held speech interrupts once it lasts backchannel_max_s,
        # or earlier once its early transcript says something else ("Stop.").
        self._backchannels = backchannels
        self._confirm_after = (
            max(self._min_barge_in, int(backchannel_max_s * self._rate))
            if backchannels is not None
            else self._min_barge_in
        )
        self._judging = False  # a held pause's early transcript is awaited (its words decide)
        # The end-of-turn decode may start when the newest audio is quiet, before the VAD's
        # frame grid pauses (VadSegmenter.tail_quiet); _tail_sample is where that decode's
        # audio ends (stream samples), None when no such decode stands.
        self._tail_decode = tail_decode
        # The VAD probability under which the tail reads quiet (None: the VAD's end threshold).
        self._tail_below = tail_quiet_below
        self._tail_sample: int | None = None
        self._preroll = int(preroll_s * self._rate)
        self._clock = clock or MonotonicClock()
        self._machine: Machine[VoiceInput] = Machine(
            UTTERANCE_MACHINE, self, clock=self._clock, on_transition=on_transition
        )
        self._dispatching = asyncio.Lock()  # frames and ASR callbacks take turns
        # Recent audio at the VAD rate: _history[0] is stream sample _history_start.
        self._history = np.zeros(0, dtype=np.float32)
        self._history_start = 0
        self._fed = 0  # samples fed (stream position, at the VAD rate)
        self._pushed = 0  # stream position up to which the current utterance went to the ASR
        self._current: UtteranceTiming | None = None
        self._start_sample = 0
        self._pauses = 0  # VAD pauses so far: names the early decode each one started
        self._paused_since = 0.0  # stream time of the current in-segment pause
        self._partial = ""  # last partial posted (or held) in this segment
        self._voiced_from: float | None = None  # stream time the segment's voice last began
        # A barge-in start was posted and the agent has not taken the floor yet: the
        # agent's voice stays paused until it does (a rule about the agent, not the segment).
        self._barge_posted = False
        # The level's onset pauses the agent's voice before the VAD's first speech frame
        # (an unvoiced "s" scores low for 100 ms); the VAD confirms or it resumes at once.
        self._onset = EnergyOnset(self._rate) if level_onset else None
        self._tasks = TaskTracker("voice-input")
        # With turn rules each pause is scored (turn model + transcript cues) and the decision
        # sets the silence that ends it; without, the VAD's fixed silence does (see the doc).
        self._turn = (
            TurnEnder(
                rules=turn_rules,
                detector=turn_detector,
                vad=vad,
                clock=self._clock,
                tasks=self._tasks,
                sample_rate=self._rate,
            )
            if turn_rules is not None
            else None
        )
        self.turns: list[UtteranceTiming] = []
        self.playback_pauses: list[PlaybackPause] = []
        self._closed = False

    @property
    def state(self) -> U:
        """The utterance machine's state."""
        return U(self._machine.state)

    @property
    def stream_time(self) -> float:
        """Seconds of audio processed so far."""
        return self._fed / self._rate

    @property
    def settled(self) -> bool:
        """No early transcript or turn-model scoring is pending (a fast stream clock waits)."""
        return self._tasks.pending == 0

    @property
    def in_speech(self) -> bool:
        """The VAD is inside a speech segment."""
        return self.state is not U.SILENT

    async def process(self, frame: np.ndarray) -> None:
        """Feed the next frame (float32 or int16 at ``sample_rate``); posts what it causes."""
        if self._closed:
            raise RuntimeError("VoiceInput is closed")
        x = to_float32(frame)
        if self._resampler is not None:
            x = self._resampler.process(x)
        if self._gate is not None and len(x):
            x = self._gate.gate(x)
        self._remember(x)
        if self._playback is not None and self._onset is not None:
            self._onset.process(x)
        for ev in self._vad.process(x):
            if isinstance(ev, SpeechStarted):
                self._push_pending()
                await self._fire(VadSpeechStarted(t=ev.t, sample=ev.sample))
                self._voiced_from = ev.t
            elif isinstance(ev, SpeechPaused):
                self._count_voiced(ev.t)
                self._push_pending()
                await self._fire(VadSpeechPaused())
            elif isinstance(ev, SpeechResumed):
                self._voiced_from = ev.t
                await self._fire(VadSpeechResumed())
            elif isinstance(ev, SpeechEnded):
                self._push_pending()
                await self._fire(VadSpeechEnded(t=ev.t))
        self._push_pending()
        if self._tail_decode and self.state is U.SPEAKING:
            self._watch_tail()
        if self._turn is not None and self.state in (U.PAUSED, U.PAUSE_ANNOUNCED):
            self._turn.tick(self._vad.pause_silence_s)
        if self.state is U.HELD and self._fed - self._start_sample >= self._confirm_after:
            await self._fire(HeldSpeechLasted())
        self._steer_playback()

    @property
    def playback_paused(self) -> bool:
        """The input holds the agent's voice paused right now."""
        return bool(self.playback_pauses) and self.playback_pauses[-1].end_s is None

    async def aclose(self) -> None:
        """Resume a paused playback, stop pending work, close the ASR (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._set_playback_paused(False)
        await self._tasks.aclose()
        if self._turn is not None:
            self._turn.close()
        await self._asr.aclose()
        await self._machine.aclose()

    # ---------------------------------------------------------------- plumbing
    async def _fire(self, event: Event) -> None:
        """Run the utterance machine on ``event`` (one event at a time)."""
        async with self._dispatching:
            if not self._machine.closed:
                await self._machine.dispatch(event)
                await self._machine.dispatch_queued()  # an ActionFailed a failing action posted

    def _remember(self, x: np.ndarray) -> None:
        self._history = np.concatenate([self._history, x])
        self._fed += len(x)
        keep = self._preroll + self._rate  # preroll plus a second of VAD lag, at most
        if self.state not in TRANSCRIBED and len(self._history) > keep:
            drop = len(self._history) - keep
            self._history = self._history[drop:]
            self._history_start += drop

    def _push_pending(self) -> None:
        """Send the segment's audio not yet sent to the ASR (announced or held speech only)."""
        if self.state not in TRANSCRIBED or self._pushed >= self._fed:
            return
        audio = self._history[self._pushed - self._history_start : self._fed - self._history_start]
        self._asr.push(audio, self._rate)
        if self._turn is not None:
            self._turn.feed(audio)
        self._pushed = self._fed
        # Inside a segment the history only needs what was not pushed yet.
        drop = self._pushed - self._history_start
        self._history = self._history[drop:]
        self._history_start = self._pushed

    def _watch_tail(self) -> None:
        """Start the end-of-turn decode on a quiet tail; void it once the speech went on.

        The decode covers the audio up to the quiet tail. It stands for the utterance if the
        VAD's pause comes no later than one frame after that point (the frame the speech
        ended in); a frame of speech past it voids it (the partials resume, and the pause
        starts its own decode). The VAD decides what is speech, as for the pause's decode.
        """
        cur = self._current
        if self._tail_sample is not None:
            if self._vad.speech_end_sample > self._tail_sample + self._vad.vad.frame_size:
                self._asr.speech_resumed()
                self._tail_sample = None
                if cur is not None:
                    cur.tail_decodes_voided += 1
            return
        if self._vad.tail_quiet(self._tail_below):
            self._asr.speech_paused()
            self._tail_sample = self._fed
            if cur is not None:
                cur.tail_decodes += 1
                cur.early_decode_at = self._clock.now()

    def _count_voiced(self, until: float) -> None:
        """The voice that began at ``_voiced_from`` paused at ``until`` (stream seconds)."""
        if self._current is not None and self._voiced_from is not None:
            self._current.voiced_s += max(0.0, until - self._voiced_from)
        self._voiced_from = None

    def _heard_speech(self, cur: UtteranceTiming) -> bool:
        """The segment was speech by its transcripts or its voiced time (see
        ``UNHEARD_MIN_VOICED_S``), whatever its final decode made of it."""
        return bool(self._partial) or cur.heard_words or cur.voiced_s >= UNHEARD_MIN_VOICED_S

    def _on_partial(self, partial: AsrPartial) -> None:
        if not self._closed:
            self._tasks.spawn(self._fire(PartialTranscribed(text=partial.text.strip())), "partial")

    def _steer_playback(self) -> None:
        """Pause the agent's voice while possible barge-in speech lasts (see the module doc)."""
        if self._playback is None:
            return
        busy = self._barge_in and self._agent_busy()
        if not busy:
            self._barge_posted = False  # the agent took the floor back (or never held it)
        state = self.state
        if state is U.SILENT:
            speech = self._vad.onset_pending or (self._onset is not None and self._onset.active)
        elif state is U.HELD:
            speech = True
        elif state is U.HELD_PAUSED:
            quiet = self.stream_time - self._paused_since
            speech = quiet < RESUME_AFTER_SILENCE_S or self._judging
        else:
            speech = False
        self._set_playback_paused(busy and (speech or self._barge_posted))

    def _set_playback_paused(self, paused: bool) -> None:
        if self._playback is None or paused == self.playback_paused:
            return
        if paused:
            self.playback_pauses.append(
                PlaybackPause(self.stream_time, barge_in=self._barge_posted)
            )
            self._playback.pause()
        else:
            self.playback_pauses[-1].end_s = self.stream_time
            self._playback.resume()

    # ---------------------------------------------------------------- guards
    def agent_holds_floor(self, event: VadSpeechStarted) -> bool:
        """The agent is thinking or speaking."""
        return self._agent_busy()

    def may_barge_in(self, event: VadSpeechStarted) -> bool:
        """The agent holds the floor and speech may interrupt it."""
        return self._barge_in and self._agent_busy()

    def partial_grew(self, event: PartialTranscribed) -> bool:
        """The committed transcript has more than what was posted (or held) so far."""
        return len(event.text) > len(self._partial)

    def _current_early_text(self, event: EarlyTranscriptReady) -> bool:
        return event.pause == self._pauses and bool(event.text)

    def early_text_unfinished(self, event: EarlyTranscriptReady) -> bool:
        """The early text of this pause looks cut mid-thought ("Thank you, ...") and the
        plain VAD rule applies (with turn rules the decision weighs the text instead)."""
        return (
            self._turn is None
            and self._current_early_text(event)
            and self._unfinished_extra > 0
            and likely_unfinished(event.text)
        )

    def backchannel_heard(self, event: EarlyTranscriptReady) -> bool:
        """Held speech over the agent said only listener feedback ("mhm", "yeah")."""
        return (
            self._backchannels is not None
            and self._current_early_text(event)
            and is_backchannel(event.text, self._backchannels)
        )

    def interruption_heard(self, event: EarlyTranscriptReady) -> bool:
        """Held speech over the agent said words that are no backchannel ("Stop.")."""
        return (
            self._backchannels is not None
            and self._current_early_text(event)
            and not is_backchannel(event.text, self._backchannels)
        )

    def was_backchannel(self, event: Event) -> bool:
        """The current segment was judged a backchannel (before the VAD could end it)."""
        return self._current is not None and self._current.backchannel

    def resume_after_backchannel(self, event: VadSpeechResumed) -> None:
        """Speech went on right after a backchannel ("Okay, I want to cancel"): judge what
        follows as new held speech, with the backchannel's audio as its context."""
        cur = self._current
        assert cur is not None
        cur.dropped = False
        self._asr.speech_resumed()
        self._start_sample = self._fed
        self._pushed = max(self._pushed, self._history_start)

    def judging(self, event: Event) -> bool:
        """A held pause's words are still being transcribed."""
        return self._judging

    def early_text_ends_turn(self, event: EarlyTranscriptReady) -> bool:
        """The early decode of this pause heard words that may end the turn."""
        return self._current_early_text(event) and not self.early_text_unfinished(event)

    # ---------------------------------------------------------------- actions
    def open_utterance(self, event: VadSpeechStarted) -> None:
        """Start timing a segment; its audio (with the preroll) goes to the ASR."""
        if self._turn is not None:
            self._turn.begin(interrupting=self._agent_busy(), at_s=event.t)
        self._current = UtteranceTiming(
            index=len(self.turns),
            speech_start_s=event.t,
            detected_s=self.stream_time,
            agent_busy=self._agent_busy(),
        )
        self.turns.append(self._current)
        self._tail_sample = None
        self._start_sample = event.sample
        self._pushed = max(self._history_start, event.sample - self._preroll)
        self._partial = ""

    def open_ignored(self, event: VadSpeechStarted) -> None:
        """A segment nobody will hear (barge-in disabled): timed, never transcribed."""
        self.open_utterance(event)
        assert self._current is not None
        self._current.dropped = True

    def announce_start(self, event: Event) -> None:
        """Post ``UserSpeechStarted`` (and a partial held back meanwhile)."""
        cur = self._current
        assert cur is not None
        self._judging = False
        if cur.agent_busy:  # a barge-in: keep the agent paused until it takes the floor
            self._barge_posted = True
            if self.playback_paused:
                self.playback_pauses[-1].barge_in = True
        cur.posted_start_s = self.stream_time
        cur.posted_start_at = self._clock.now()
        self._post(UserSpeechStarted())
        if self._partial:
            self._post(TranscriptPartial(text=self._partial))

    def hold_partial(self, event: PartialTranscribed) -> None:
        self._partial = event.text

    def post_partial(self, event: PartialTranscribed) -> None:
        self._partial = event.text
        self._post(TranscriptPartial(text=event.text))

    def start_early_decode(self, event: VadSpeechPaused) -> None:
        """The VAD suspects the end: the ASR starts the final decode early (or keeps the one
        a quiet tail started, if the pause is dated within a frame of it)."""
        self._pauses += 1
        self._paused_since = self.stream_time
        tail, self._tail_sample = self._tail_sample, None
        if tail is not None and self._vad.speech_end_sample > tail + self._vad.vad.frame_size:
            self._asr.speech_resumed()
            tail = None
            if self._current is not None:
                self._current.tail_decodes_voided += 1
        if tail is None:
            self._asr.speech_paused()
            if self._current is not None:
                self._current.early_decode_at = self._clock.now()
        if self._turn is not None:
            self._turn.paused(self.stream_time - (self._vad.pause_silence_s or 0.0))
        if self._current is not None:
            self._current.paused_at = self._clock.now()

    def await_early_text(self, event: VadSpeechPaused) -> None:
        """Report the early decode's text as an event when it is ready; with turn rules
        the pause lasts until the end-of-turn decision that text completes."""
        if self._turn is not None:
            self._turn.hold()
        self._tasks.spawn(self._early_text(self._pauses), "paused-text")

    def await_held_text(self, event: VadSpeechPaused) -> None:
        """Held speech went quiet: with backchannels, its words decide (if it lasted at all)."""
        if self._backchannels is None or self._fed - self._start_sample < self._min_barge_in:
            return
        self._judging = True
        self._tasks.spawn(self._early_text(self._pauses), "held-text")

    def record_backchannel(self, event: EarlyTranscriptReady) -> None:
        """Listener feedback: recorded, the agent's voice resumes; speech that goes on in
        this segment is judged afresh (:meth:`resume_after_backchannel`)."""
        cur = self._current
        assert cur is not None
        self._judging = False
        cur.dropped = cur.backchannel = True
        cur.text = event.text
        self._post(UserBackchanneled(text=event.text))

    def stop_judging(self, event: EarlyTranscriptReady) -> None:
        """Nothing heard in this pause (a cough): the agent's voice resumes after the quiet."""
        if event.pause == self._pauses:
            self._judging = False

    async def end_judged(self, event: VadSpeechEnded) -> None:
        """The VAD ended held speech before its words were known: wait for them, then
        record a backchannel, finish an interruption, or drop a cough."""
        cur = self._current
        assert cur is not None
        self._judging = False
        text = await self._asr.paused_text() or ""
        assert self._backchannels is not None
        if text and not is_backchannel(text, self._backchannels):
            self.announce_start(event)
            await self.finish_utterance(event)
            return
        if text:
            cur.backchannel = True
            self._post(UserBackchanneled(text=text))
        await self.drop_utterance(event)
        cur.text = text

    def judge_turn(self, event: EarlyTranscriptReady) -> None:
        """The pause's early transcript goes into the end-of-turn decision."""
        if self._turn is not None and event.pause == self._pauses:
            self._turn.text(event.text)

    async def _early_text(self, pause: int) -> None:
        cur = self._current
        text = await self._asr.paused_text()
        if text and cur is not None:
            cur.heard_words = True
        await self._fire(EarlyTranscriptReady(text=text or "", pause=pause))

    def announce_pause(self, event: EarlyTranscriptReady) -> None:
        """Post ``UserSpeechPaused(text)``: the agent may answer preemptively."""
        if self._current is not None:
            self._current.pause_posted_at = self._clock.now()
        self._post(UserSpeechPaused(text=event.text))

    def extend_pause(self, event: EarlyTranscriptReady) -> None:
        """Probably mid-thought: the VAD waits longer before it ends the segment."""
        self._vad.extend_pause(self._unfinished_extra)

    def void_early_decode(self, event: VadSpeechResumed) -> None:
        """Speech came back: the early decode no longer stands for the utterance."""
        self._asr.speech_resumed()
        self._tail_sample = None
        self._judging = False
        if self._turn is not None:
            self._turn.resumed(self.stream_time)

    def announce_resume(self, event: VadSpeechResumed) -> None:
        if self._current is not None:
            self._current.pause_posted_at = None
        self._post(UserSpeechResumed())

    async def drop_utterance(self, event: VadSpeechEnded) -> None:
        """Held speech that never lasted (a cough), or ignored speech: no event, no decode."""
        cur = self._current
        assert cur is not None
        self._close_timing(cur, event)
        cur.dropped = True
        await self._asr.discard()

    async def finish_utterance(self, event: VadSpeechEnded) -> None:
        """Post ``UserSpeechEnded``, then ``TranscriptFinal`` once the final decode is ready."""
        cur = self._current
        assert cur is not None
        self._close_timing(cur, event)
        cur.ended_at = self._clock.now()
        self._post(UserSpeechEnded())
        try:
            final = await self._asr.finalize()
        except Exception:
            # The turn still ends: an empty final returns the agent to listening.
            log.exception("the final speech recognition of utterance %d failed", cur.index)
            text, cur.final_speculative, cur.decode_s = "", False, None
        else:
            text, cur.final_speculative, cur.decode_s = (
                final.text,
                final.speculative,
                final.decode_s,
            )
            if final.retried and is_stock_phrase(text):
                # (hostile8) The final decode was dropped and the second, stock decode of
                # the same unclear audio gave only Whisper's stock phrase ("Thank you."):
                # the caller is asked to repeat, not answered. A caller's own "Thank you."
                # comes from a first decode and is heard.
                log.info(
                    "utterance %d: the second decode heard only %r, Whisper's stock phrase "
                    "on unclear audio: taken as unheard",
                    cur.index,
                    text,
                )
                text = ""
        cur.text = text
        cur.unheard = not text.strip() and self._heard_speech(cur)
        cur.final_at = self._clock.now()
        self._post(TranscriptFinal(text=text, unheard=cur.unheard))

    def note_action_failed(self, event: ActionFailed) -> None:
        """Already logged with its traceback by the machine; nothing else to undo."""

    def _close_timing(self, cur: UtteranceTiming, event: VadSpeechEnded) -> None:
        cur.speech_end_s = event.t
        cur.ended_s = self.stream_time
        if self._turn is not None:
            cur.turn = self._turn.end()
        self._current = None
