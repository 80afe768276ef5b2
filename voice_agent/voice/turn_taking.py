"""``TurnEnder``: scores the caller's pauses with the turn model and sets when the turn ends.

:class:`VoiceInput` owns one and calls it at five points of an utterance:
``begin`` (a new VAD segment), ``feed`` (its audio, as it goes to the ASR),
``paused`` (the VAD suspects the end), ``text`` (the early transcript of that
pause is ready), ``tick`` (after every frame) and ``resumed`` / ``end``.

Within a pause, once it has lasted ``rules.candidate_silence_s`` of stream
time, the turn model scores the last seconds of the utterance in a worker
thread; when both the score and the early transcript are in,
:func:`~voice_agent.voice.endpointing.decide` gives the silence the pause
needs and the VAD is told (``set_pause_silence``): the turn ends at once on a
confident "done", later on "incomplete", a trailing "and" or a number being
read. Until that decision lands the pause is held open (up to
``max_silence_s``; :meth:`TurnEnder.hold`), so a slow machine delays the
decision but never lets the VAD's fixed silence cut the caller off. Without a
detector the transcript alone decides (``no_model_silence_s`` as the base).
Everything is timed in :class:`TurnRecord` for the per-turn
breakdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from fsm import Clock
from peripherals.turn import TurnDetector, TurnScore, score
from peripherals.vad import VadSegmenter

from .endpointing import EndpointDecision, EndpointingRules, decide
from .tasks import TaskTracker

log = logging.getLogger(__name__)

WINDOW_S = 8.0  # seconds of the utterance kept for the model (it reads the last 8 s)
CALLER_PAUSES = 4  # the caller's latest mid-turn pauses the decision adapts to


@dataclass
class TurnRecord:
    """The end-of-turn decision of one utterance's last pause (clock and stream seconds)."""

    pause_s: float | None = None  # stream time the last pause began (dated by the VAD)
    scored_at: float | None = None  # clock time the model's score was ready
    score_audio_s: float = 0.0  # seconds of audio scored
    model_compute_s: float | None = None  # wall seconds the model took
    text_at: float | None = None  # clock time the early transcript was ready
    decided_at: float | None = None  # clock time the decision was applied
    decision: EndpointDecision | None = None
    scores: int = 0  # model runs in this utterance (one per pause that lasted long enough)
    model_compute_total_s: float = 0.0
    # every decision of the utterance's pauses, in order: (early transcript, decision)
    decisions: list[tuple[str | None, EndpointDecision]] = field(default_factory=list)


class TurnEnder:
    """The end-of-turn decision for one stream (see the module doc)."""

    def __init__(
        self,
        *,
        rules: EndpointingRules,
        detector: TurnDetector | None,
        vad: VadSegmenter,
        clock: Clock,
        tasks: TaskTracker,
        sample_rate: int,
        on_decision: Callable[[EndpointDecision], None] | None = None,
    ) -> None:
        if detector is not None and detector.sample_rate != sample_rate:
            raise ValueError(
                f"the turn detector runs at {detector.sample_rate} Hz, the stream at {sample_rate} Hz"
            )
        self.rules = rules
        self._detector = detector
        self._vad = vad
        self._clock = clock
        self._tasks = tasks
        self._rate = sample_rate
        self._on_decision = on_decision
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="turn-model")
            if detector is not None
            else None
        )
        self._interrupting = False
        self._audio: list[np.ndarray] = []
        self._length = 0
        self._pause = 0  # bumped by every pause, resume and end: voids pending work
        self._paused = False
        self._score: TurnScore | None = None
        self._text: str | None = None
        self._have_text = False
        self._scoring = False
        self._decided = False
        self.record = TurnRecord()
        self.pending = 0  # scorings in flight (the fast file clock waits for them)
        # this caller's latest pauses inside a turn (s), across the call's turns
        self.caller_pauses_s: tuple[float, ...] = ()
        # stream time the pause that ended the last turn began (its decision ended it)
        self._ended_pause_s: float | None = None

    # ------------------------------------------------------------ utterance hooks
    def begin(self, *, interrupting: bool = False, at_s: float | None = None) -> None:
        """A new VAD segment (``interrupting``: it started over the agent) whose speech began
        at stream time ``at_s``: forget the last one.

        When the last turn was ended by a decision (and did not itself start over the
        agent) and the caller speaks again within
        ``max_silence_s`` of that pause's start, the decision cut them off: the pause they
        took (its start to ``at_s``) is one of their mid-turn pauses
        (:attr:`caller_pauses_s`), so their later doubtful ends wait past it."""
        if (
            at_s is not None
            and self._ended_pause_s is not None
            and self.rules.candidate_silence_s <= at_s - self._ended_pause_s
            and at_s - self._ended_pause_s <= self.rules.max_silence_s
        ):
            gap = round(at_s - self._ended_pause_s, 3)
            self.caller_pauses_s = (*self.caller_pauses_s, gap)[-CALLER_PAUSES:]
        self._ended_pause_s = None
        self._interrupting = interrupting
        self._audio, self._length = [], 0
        self._pause += 1
        self._paused = False
        self.record = TurnRecord()

    def feed(self, audio: np.ndarray) -> None:
        """The segment's audio (as it goes to the ASR, pauses included), at ``sample_rate``."""
        if not len(audio):
            return
        self._audio.append(audio)
        self._length += len(audio)
        keep = int(WINDOW_S * self._rate)
        if self._length > 2 * keep:  # trim now and then, not on every frame
            joined = np.concatenate(self._audio)[-keep:]
            self._audio, self._length = [joined], len(joined)

    def paused(self, pause_s: float) -> None:
        """The VAD suspects the end (the pause began at stream time ``pause_s``)."""
        self._pause += 1
        self._paused = True
        self._score, self._text, self._have_text = None, None, False
        self._scoring = self._decided = False
        self.record.pause_s = pause_s
        self.record.scored_at = self.record.text_at = self.record.decided_at = None
        self.record.decision = None

    def hold(self) -> None:
        """The current pause may end the turn: until its decision lands it lasts up to
        ``max_silence_s``, not the VAD's own silence.

        The decision needs the pause's early transcript, which is the final transcript
        too, so waiting for it costs the answer nothing; ending the pause on the VAD's
        fixed silence instead would cut a pausing caller off whenever the machine is
        slow (the score and the decode arrive late under load, the silence does not).
        """
        if self._paused and not self._decided:
            self._vad.set_pause_silence(self.rules.max_silence_s)

    def resumed(self, at_s: float | None = None) -> None:
        """Speech came back (at stream time ``at_s``): the pause's scoring and decision are
        void, and the pause, if it lasted ``candidate_silence_s``, is one of this caller's
        own mid-turn pauses (:attr:`caller_pauses_s`, the decision's per-caller floor)."""
        if self._paused and at_s is not None and self.record.pause_s is not None:
            length = at_s - self.record.pause_s
            if length >= self.rules.candidate_silence_s:
                self.caller_pauses_s = (*self.caller_pauses_s, round(length, 3))[-CALLER_PAUSES:]
        self._pause += 1
        self._paused = False

    def text(self, text: str | None) -> None:
        """The early transcript of the current pause is ready (None/"" when nothing was heard)."""
        if not self._paused or self._have_text:
            return
        self._text, self._have_text = text, True
        self.record.text_at = self._clock.now()
        self._maybe_decide()

    def tick(self, silence_s: float | None) -> None:
        """After each frame: ``silence_s`` is how long the current pause has lasted."""
        if (
            not self._paused
            or self._scoring
            or silence_s is None
            or silence_s < self.rules.candidate_silence_s
        ):
            return
        self._scoring = True
        if self._detector is None:
            self._maybe_decide()
            return
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, dtype=np.float32)
        self.pending += 1
        self._tasks.spawn(self._run_model(audio, self._pause), "turn-score")

    def end(self) -> TurnRecord:
        """The segment ended: returns its record (the last pause's decision, if any)."""
        # a turn the decision ended (not speech over the agent: a backchannel, a barge-in)
        decided = (
            self._paused
            and self._decided
            and self.record.decision is not None
            and not self._interrupting
        )
        self._ended_pause_s = self.record.pause_s if decided else None
        self._pause += 1
        self._paused = False
        self._audio, self._length = [], 0
        return self.record

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ internals
    async def _run_model(self, audio: np.ndarray, token: int) -> None:
        assert self._detector is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, score, self._detector, audio)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the turn model failed; the transcript and the silence decide")
            result = None
        finally:
            self.pending -= 1
        if result is not None:
            self.record.scores += 1
            self.record.model_compute_total_s += result.compute_s
        if token != self._pause:
            return  # the speech went on (or ended) meanwhile
        self._score = result
        self.record.scored_at = self._clock.now()
        if result is not None:
            self.record.score_audio_s = result.audio_s
            self.record.model_compute_s = result.compute_s
        self._maybe_decide()

    def _maybe_decide(self) -> None:
        """Decide once the score (if any) and the early transcript are both in (the pause
        is held open until then: :meth:`hold`)."""
        if self._decided or not self._paused or not self._scoring or not self._have_text:
            return
        if self._detector is not None and self.record.scored_at is None:
            return  # the score is still being computed
        probability = self._score.probability if self._score is not None else None
        contour = self._score.contour if self._score is not None else None
        decision = decide(
            self.rules,
            probability,
            self._text,
            interrupting=self._interrupting,
            contour=contour,
            caller_pause_s=max(self.caller_pauses_s) if self.caller_pauses_s else None,
        )
        self._decided = True
        self.record.decision = decision
        self.record.decisions.append((self._text, decision))
        self.record.decided_at = self._clock.now()
        self._vad.set_pause_silence(decision.silence_s)
        if self._on_decision is not None:
            self._on_decision(decision)
