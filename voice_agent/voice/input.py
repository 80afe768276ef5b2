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
- ``UserSpeechEnded`` when the VAD ends the segment.
- ``TranscriptFinal(text)`` once the ASR's final decode is ready (``""`` when
  it heard nothing, so the agent returns to listening).

The VAD's ``SpeechPaused`` starts the ASR's final decode at once
(``speech_paused``); ``SpeechResumed`` voids it (``speech_resumed``).
:meth:`process` awaits the final decode when a segment ends, so the caller's
source simply queues (a microphone's queue holds seconds of audio).

Per-utterance timings are recorded in :attr:`VoiceInput.turns`
(:class:`UtteranceTiming`): stream times (seconds of audio fed) and clock times.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fsm import Clock, Event, MonotonicClock
from peripherals.asr import AsrPartial, StreamingAsr
from peripherals.audio import to_float32
from peripherals.half_duplex import HalfDuplexGate
from peripherals.resample import Resampler
from peripherals.vad import SpeechEnded, SpeechPaused, SpeechResumed, SpeechStarted, VadSegmenter

from ..events import TranscriptFinal, TranscriptPartial, UserSpeechEnded, UserSpeechStarted

log = logging.getLogger(__name__)

# Audio kept before the VAD's start and sent to the ASR with the segment: the
# VAD confirms speech ~0.1 s late and soft onsets ("h", "f") score low (seconds).
PREROLL_S = 0.3
# Default shortest speech that may interrupt the agent (seconds of stream time):
# coughs and clicks are shorter; a real interruption is longer.
MIN_BARGE_IN_S = 0.2
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
    final_at: float | None = None  # clock time TranscriptFinal was posted
    final_speculative: bool = False  # the decode started at the pause was kept
    decode_s: float | None = None  # the final decode's own duration (seconds)
    text: str = ""
    dropped: bool = False  # too short to barge in, or barge-in disabled


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
        barge_in: bool = True,
        min_barge_in_s: float = MIN_BARGE_IN_S,
        preroll_s: float = PREROLL_S,
        clock: Clock | None = None,
    ) -> None:
        self._vad = vad
        self._rate = vad.vad.sample_rate
        if sample_rate != self._rate and sample_rate in VAD_RATES:
            raise ValueError(f"the VAD runs at {self._rate} Hz but frames come at {sample_rate} Hz")
        self._resampler = Resampler(sample_rate, self._rate) if sample_rate != self._rate else None
        self._asr = make_asr(self._on_partial)
        self._post = post
        self._agent_busy = agent_busy
        self._gate = gate
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
        self._partial = ""  # last partial posted (or held) in this segment
        self._partial_held = False
        self.turns: list[UtteranceTiming] = []
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
                self._push_pending()
                self._paused = True
                if self._current is not None:
                    self._current.paused_at = self._clock.now()
                self._asr.speech_paused()
            elif isinstance(ev, SpeechResumed):
                self._paused = False
                self._asr.speech_resumed()
            elif isinstance(ev, SpeechEnded):
                await self._end(ev)
        self._push_pending()
        self._maybe_release()

    async def aclose(self) -> None:
        """Close the ASR (idempotent)."""
        if self._closed:
            return
        self._closed = True
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

    def _begin(self, ev: SpeechStarted) -> None:
        busy = self._agent_busy()
        self._current = UtteranceTiming(
            index=len(self.turns), speech_start_s=ev.t, detected_s=self.stream_time, agent_busy=busy
        )
        self.turns.append(self._current)
        self._start_sample = ev.sample
        self._pushed = max(self._history_start, ev.sample - self._preroll)
        self._paused = False
        self._partial = ""
        self._partial_held = False
        self._held = busy
        if busy and not self._barge_in:
            self._current.dropped = True
        if not busy:
            self._post_start()

    def _post_start(self) -> None:
        assert self._current is not None
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
            text, cur.final_speculative, cur.decode_s = final.text, final.speculative, final.decode_s
        cur.text = text
        cur.final_at = self._clock.now()
        self._post(TranscriptFinal(text=text))
