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

Barge-in without a late stop: while the agent is busy, ``playback`` (the
agent's voice) is paused as soon as the VAD sees a possible onset
(``onset_pending``), a frame or two into the speech, and stays paused while
that speech lasts. If it lasts ``min_barge_in_s``, ``UserSpeechStarted``
is posted and the pause holds until the agent has taken it (its interrupt
drops the paused audio; the heard text ends at the paused position). If it
stops before (the onset is not confirmed, or the VAD pauses), playback
resumes exactly where it stopped: a cough costs a short gap, not the answer.
The rule is re-evaluated after every frame from the agent's state, so a
pause never outlives the speech or the agent's turn.

:meth:`process` awaits the final decode when a segment ends, so the caller's
source simply queues (a microphone's queue holds seconds of audio).

Per-utterance timings are recorded in :attr:`VoiceInput.turns`
(:class:`UtteranceTiming`): stream times (seconds of audio fed) and clock times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fsm import Clock, Event, MonotonicClock
from peripherals.asr import AsrPartial, StreamingAsr
from peripherals.audio import to_float32
from peripherals.half_duplex import HalfDuplexGate
from peripherals.resample import Resampler
from peripherals.vad import SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, VadSegmenter
from voice_agent.voice.endpointing import likely_unfinished

from ..events import (
    TranscriptFinal,
    TranscriptPartial,
    UserSpeechEnded,
    UserSpeechPaused,
    UserSpeechResumed,
    UserSpeechStarted,
)
from .tasks import TaskTracker

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
    text: str = ""
    dropped: bool = False  # too short to barge in, or barge-in disabled


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
    resampled to 16 kHz first.
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
        min_barge_in_s: float = MIN_BARGE_IN_S,
        preroll_s: float = PREROLL_S,
        unfinished_extra_silence_s: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
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
        self._preroll = int(preroll_s * self._rate)
        self._clock = clock or MonotonicClock()
        # Recent audio at the VAD rate: _history[0] is stream sample _history_start.
        self._history = np.zeros(0, dtype=np.float32)
        self._history_start = 0
        self._fed = 0  # samples fed (stream position, at the VAD rate)
        self._pushed = 0  # stream position up to which the current utterance went to the ASR
        self._current: UtteranceTiming | None = None
        self._start_sample = 0
        self._held = False  # in a segment whose UserSpeechStarted is held back
        self._paused = False
        self._paused_since = 0.0  # stream time of the current in-segment pause
        self._partial = ""  # last partial posted (or held) in this segment
        self._partial_held = False
        self._pause_token = (
            0  # bumped by every pause, resume and end: voids a pending UserSpeechPaused
        )
        self._pause_posted = False  # UserSpeechPaused was posted for the current pause
        self._barge_posted = False  # a barge-in start was posted; the agent has not taken it yet
        self._tasks = TaskTracker("voice-input")
        self.turns: list[UtteranceTiming] = []
        self.playback_pauses: list[PlaybackPause] = []
        self._closed = False

    @property
    def stream_time(self) -> float:
        """Seconds of audio processed so far."""
        return self._fed / self._rate

    @property
    def in_speech(self) -> bool:
        """The VAD is inside a speech segment."""
        return self._current is not None

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
        for ev in self._vad.process(x):
            if isinstance(ev, SpeechStarted):
                self._begin(ev)
            elif isinstance(ev, SpeechPaused):
                self._pause()
            elif isinstance(ev, SpeechResumed):
                self._resume()
            elif isinstance(ev, SpeechEnded):
                await self._end(ev)
        self._push_pending()
        self._maybe_release()
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
        await self._asr.aclose()

    # ---------------------------------------------------------------- internals
    def _remember(self, x: np.ndarray) -> None:
        self._history = np.concatenate([self._history, x])
        self._fed += len(x)
        keep = self._preroll + self._rate  # preroll plus a second of VAD lag, at most
        if self._current is None and len(self._history) > keep:
            drop = len(self._history) - keep
            self._history = self._history[drop:]
            self._history_start += drop

    def _push_pending(self) -> None:
        if self._current is None or self._pushed >= self._fed:
            return
        audio = self._history[self._pushed - self._history_start : self._fed - self._history_start]
        self._asr.push(audio, self._rate)
        self._pushed = self._fed
        # Inside a segment the history only needs what was not pushed yet.
        drop = self._pushed - self._history_start
        self._history = self._history[drop:]
        self._history_start = self._pushed

    def _pause(self) -> None:
        """The VAD suspects the end: start the early final decode; announce its text when ready."""
        self._push_pending()
        self._paused = True
        self._paused_since = self.stream_time
        self._pause_token += 1
        self._asr.speech_paused()
        cur = self._current
        if cur is None:
            return
        cur.paused_at = self._clock.now()
        if not self._held and not cur.dropped:
            self._tasks.spawn(self._announce_pause(cur, self._pause_token), "paused-text")

    async def _announce_pause(self, cur: UtteranceTiming, token: int) -> None:
        text = await self._asr.paused_text()
        if not text or self._current is not cur or self._pause_token != token:
            return  # nothing heard, or the speech went on (or ended) meanwhile
        if self._unfinished_extra > 0 and likely_unfinished(text):
            # "Thank you, ..." — probably mid-thought: wait longer, answer nothing yet.
            self._vad.extend_pause(self._unfinished_extra)
            return
        self._pause_posted = True
        cur.pause_posted_at = self._clock.now()
        self._post(UserSpeechPaused(text=text))

    def _resume(self) -> None:
        self._paused = False
        self._pause_token += 1
        self._asr.speech_resumed()
        if self._pause_posted:
            self._pause_posted = False
            if self._current is not None:
                self._current.pause_posted_at = None
            self._post(UserSpeechResumed())

    def _steer_playback(self) -> None:
        """Pause the agent's voice while possible barge-in speech lasts (see the module doc)."""
        if self._playback is None:
            return
        busy = self._barge_in and self._agent_busy()
        if not busy:
            self._barge_posted = False  # the agent took the floor back (or never held it)
        cur = self._current
        if cur is None:
            speech = self._vad.onset_pending
        else:
            quiet_for = self.stream_time - self._paused_since if self._paused else 0.0
            speech = self._held and not cur.dropped and quiet_for < RESUME_AFTER_SILENCE_S
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

    def _begin(self, ev: SpeechStarted) -> None:
        busy = self._agent_busy()
        self._current = UtteranceTiming(
            index=len(self.turns), speech_start_s=ev.t, detected_s=self.stream_time, agent_busy=busy
        )
        self.turns.append(self._current)
        self._start_sample = ev.sample
        self._pushed = max(self._history_start, ev.sample - self._preroll)
        self._paused = False
        self._pause_posted = False
        self._partial = ""
        self._partial_held = False
        self._held = busy
        if busy and not self._barge_in:
            self._current.dropped = True
        if not busy:
            self._post_start()

    def _post_start(self) -> None:
        assert self._current is not None
        if self._held:  # a barge-in: keep the agent paused until it has taken the floor
            self._barge_posted = True
            if self.playback_paused:
                self.playback_pauses[-1].barge_in = True
        self._held = False
        self._current.posted_start_s = self.stream_time
        self._current.posted_start_at = self._clock.now()
        self._post(UserSpeechStarted())
        if self._partial_held:
            self._partial_held = False
            self._post(TranscriptPartial(text=self._partial))

    def _maybe_release(self) -> None:
        """Post a held start once the speech has lasted ``min_barge_in_s`` (and still goes on)."""
        cur = self._current
        if cur is None or not self._held or cur.dropped or self._paused:
            return
        if self._fed - self._start_sample >= self._min_barge_in:
            self._post_start()

    def _on_partial(self, partial: AsrPartial) -> None:
        cur = self._current
        text = partial.text.strip()
        if cur is None or cur.dropped or len(text) <= len(self._partial):
            return
        self._partial = text
        if self._held:
            self._partial_held = True
        else:
            self._post(TranscriptPartial(text=text))

    async def _end(self, ev: SpeechEnded) -> None:
        cur = self._current
        assert cur is not None
        cur.speech_end_s = ev.t
        cur.ended_s = self.stream_time
        self._push_pending()
        self._current = None
        self._pause_token += 1
        self._pause_posted = False
        if self._held or cur.dropped:
            cur.dropped = True
            self._held = False
            await self._asr.discard()
            return
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
        cur.text = text
        cur.final_at = self._clock.now()
        self._post(TranscriptFinal(text=text))
