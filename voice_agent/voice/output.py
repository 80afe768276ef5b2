"""``AudioSpeechOutput``: the agent's voice — streamed text to sentences to piper to a sink.

Contract (see :class:`voice_agent.output.SpeechOutput`):

- Responses play one after another in the order they were first pushed.
- A response's streamed text is cut by :class:`SentenceChunker` (its first
  chunk may end at a clause mark after ``first_chunk_chars``); each chunk is
  synthesized as soon as it is complete, while the previous one plays (the
  synthesizer runs at most ``LOOKAHEAD`` chunks ahead of the player), so the
  first audio leaves while the LLM is still streaming.
- ``PlayoutStarted(response_id)`` is posted when the sink has *played* the
  response's first sample (not when it was queued); ``PlayoutFinished(
  response_id, heard=<all chunks joined by single spaces>, interrupted=False)``
  when the sink has played its last sample, after ``end(response_id)``.
- ``interrupt()`` stops at once (cancels synthesis and playing, clears the
  sink) and returns, per response that had started playing, the chunks fully
  played plus the leading words of the current chunk in proportion to its
  samples played (rounded down: never more than was heard). No playout event
  follows for those responses. ``interrupt()`` also lifts a ``pause()``.
- ``pause()`` silences the sink at once without dropping anything (a suspected
  barge-in); ``resume()`` plays on from the same sample. Synthesis goes on
  meanwhile; no playout event can fire while paused (nothing is played).
- A response's first chunk starts with its first sound: the synthesizer's
  lead-in silence (piper: 30-65 ms on most words) is cut to 10 ms
  (:func:`~peripherals.tts.lead_in_trimmed`); later chunks keep theirs.
- ``withdraw(response_id)``: the response's text pauses (its LLM stalled); the
  sentence whose final mark came last is committed, the sentence begun after it
  is taken back from the chunker (it was never synthesised: nobody heard any of
  it) and returned, with whether the chunks committed so far end inside a
  sentence (:meth:`SentenceChunker.take_unfinished`). A hold phrase pushed next
  is then said between sentences; the taken text pushed again after it is said
  whole, as if it had never left. ``unplayed_s(response_id)``: how long the
  listener will still hear that response (its audio in the sink, plus its
  chunks not yet synthesised at ``SPEECH_S_PER_WORD``).
- ``prepare(text)``: text that may soon start a response (a preemptive answer
  held until the caller's turn ends) has its first chunk synthesised at once;
  a response whose chunk is that text plays the prepared audio without
  synthesising it again, so an adopted answer's first audio leaves as soon as
  it is released. At most ``PREPARED_MAX`` are kept; ``interrupt`` drops them.
- A response's first chunk whose text an earlier response's first chunk had ("Sure,",
  "Okay,") plays the audio made then, without synthesising it again (a
  :class:`~peripherals.tts.PhraseCache`: ``phrase_cache`` entries (0 turns it off), or a
  cache shared with other outputs).

Playout progress is read from ``sink.played_samples`` by :meth:`poll`, which a
monitor task calls every ``POLL_S``; a transport that moves a stream clock
(the file transport) calls :meth:`poll` right after each move, so event times
are exact in stream time.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fsm import Event
from peripherals.text_chunker import SentenceChunker
from peripherals.tts import PHRASE_CACHE_ENTRIES, PhraseCache, Tts, lead_in_trimmed

from ..events import PlayoutFinished, PlayoutStarted
from ..output import Withdrawn
from .sinks import Sink
from .tasks import TaskTracker

log = logging.getLogger(__name__)

POLL_S = 0.01  # how often playout progress is checked: bounds PlayoutStarted/Finished lateness (s)
LOOKAHEAD = 2  # synthesized chunks waiting for the player; 1 is enough to overlap, 2 absorbs jitter
# A response's first chunk may end at the first clause mark (, ; :) after this many
# characters: piper starts on "Sure," or "Okay, so" instead of waiting for the whole
# first sentence to stream; the first audio then leaves ~one clause earlier (characters).
FIRST_CHUNK_CHARS = 4
# First chunks synthesised ahead by prepare() and not yet used: the newest preemptive answer's,
# plus one that an older answer may still use; older ones are dropped (count).
PREPARED_MAX = 2
# How long a word of text not yet synthesised will take to say: piper's voices speak about
# 170 words a minute. Only unplayed_s's estimate for text still waiting (s per word).
SPEECH_S_PER_WORD = 0.35


@dataclass
class _Segment:
    """One synthesized chunk placed on the sink, in played-sample coordinates."""

    text: str
    start: int
    length: int


@dataclass
class _Response:
    rid: str
    chunker: SentenceChunker
    pending: deque[str] = field(default_factory=deque)  # chunks waiting for synthesis
    ended: bool = False
    synthesized_all: bool = False  # every chunk went to the player (after end)
    end_pos: int | None = None  # played-sample position of its last sample (all written)
    segments: list[_Segment] = field(default_factory=list)
    started: bool = False  # PlayoutStarted posted
    synthesized_any: bool = False  # its first chunk went to the player
    unwritten_words: int = 0  # words of its chunks accepted and not yet in the sink


def heard_text(segments: list[_Segment], played: int) -> str:
    """What a listener heard of ``segments`` once ``played`` samples had played (pure)."""
    words: list[str] = []
    for seg in segments:
        done = played - seg.start
        if done <= 0:
            break
        if done >= seg.length:
            words.extend(seg.text.split())
            continue
        chunk = seg.text.split()
        words.extend(chunk[: math.floor(len(chunk) * done / seg.length)])
        break
    return " ".join(words)


class AudioSpeechOutput:
    """``SpeechOutput`` that speaks through ``tts`` into ``sink``.

    The tts and the sink belong to the caller (this object never closes them).
    Background tasks start on the first ``push`` and are owned here;
    ``aclose`` stops them (idempotent).
    """

    def __init__(
        self,
        tts: Tts,
        sink: Sink,
        *,
        first_chunk_chars: int = FIRST_CHUNK_CHARS,
        prepare_ahead: bool = True,
        phrase_cache: int | PhraseCache = PHRASE_CACHE_ENTRIES,
    ) -> None:
        self._tts = tts
        # first chunks already heard, trimmed as played (see the module doc)
        self.phrases = (
            phrase_cache if isinstance(phrase_cache, PhraseCache) else PhraseCache(phrase_cache)
        )
        self._prepare_ahead = prepare_ahead  # False: prepare() does nothing
        self._sink = sink
        self._first_chunk_chars = first_chunk_chars
        self._emit: Callable[[Event], None] = lambda e: None
        self._tasks = TaskTracker("speech-output")
        self._order: deque[_Response] = deque()  # not yet finished, in play order
        self._by_id: dict[str, _Response] = {}
        self._more = asyncio.Event()  # new text or an end arrived
        self._audio: asyncio.Queue[tuple[_Response, _Segment | None, np.ndarray | None]] | None = (
            None
        )
        # played-sample position where the next written sample will play; a sink may have
        # played before this output (a queued call's hold message), so start where it is
        self._written = sink.played_samples
        self._inflight = 0  # chunks accepted but not yet written to the sink
        self._workers: list[asyncio.Task[None]] = []
        self._monitor: asyncio.Task[None] | None = None
        # first chunks synthesised ahead (prepare), by text, oldest first
        self._prepared: dict[str, asyncio.Task[np.ndarray]] = {}
        self._closed = False

    # ---------------------------------------------------------------- SpeechOutput
    def bind(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit

    def push(self, response_id: str, text: str) -> None:
        """Queue streamed text of ``response_id``; complete chunks go to synthesis at once."""
        if self._closed:
            return
        resp = self._by_id.get(response_id)
        if resp is None:
            resp = _Response(
                response_id, SentenceChunker(first_clause_after_chars=self._first_chunk_chars)
            )
            self._by_id[response_id] = resp
            self._order.append(resp)
        if resp.ended:
            log.warning("text pushed after end(%s) is dropped: %r", response_id, text)
            return
        self._accept(resp, resp.chunker.push(text))

    def end(self, response_id: str) -> None:
        """No more text for ``response_id``: its last partial chunk is synthesized too."""
        resp = self._by_id.get(response_id)
        if resp is None or resp.ended or self._closed:
            return
        self._accept(resp, resp.chunker.flush())
        resp.ended = True
        self._more.set()

    def withdraw(self, response_id: str) -> Withdrawn:
        """Take back ``response_id``'s unfinished sentence (see the module doc)."""
        resp = self._by_id.get(response_id)
        if resp is None or resp.ended or self._closed:
            return Withdrawn()
        chunks, text, inside = resp.chunker.take_unfinished()
        if chunks:
            self._accept(resp, chunks)
        return Withdrawn(text, inside_sentence=inside)

    def unplayed_s(self, response_id: str) -> float:
        """Seconds of ``response_id`` not yet heard: its audio in the sink, plus its chunks
        not yet there at ``SPEECH_S_PER_WORD``."""
        resp = self._by_id.get(response_id)
        if resp is None:
            return 0.0
        played = self._sink.played_samples
        samples = sum(min(s.length, max(0, s.start + s.length - played)) for s in resp.segments)
        return samples / self._sink.sample_rate + resp.unwritten_words * SPEECH_S_PER_WORD

    def prepare(self, text: str) -> None:
        """Synthesise the first chunk of ``text`` now (see the module doc); idempotent.

        Nothing happens until ``text`` holds a complete first chunk (as ``push`` would cut
        it), so a caller may call this after every delta of a held answer."""
        if self._closed or not self._prepare_ahead:
            return
        if any(text.startswith(chunk) for chunk in self._prepared):
            return  # its first chunk is ready (or being made): no need to cut it again
        chunks = SentenceChunker(first_clause_after_chars=self._first_chunk_chars).push(text)
        if not chunks or chunks[0] in self._prepared:
            return
        if self.phrases.holds(chunks[0], self._sink.sample_rate):
            return  # heard before: it plays at once without being prepared
        while len(self._prepared) >= PREPARED_MAX:
            oldest = next(iter(self._prepared))
            self._tasks.cancel(self._prepared.pop(oldest))
        chunk = chunks[0]
        self._prepared[chunk] = self._tasks.spawn(self._synthesize(chunk), "prepare")

    def interrupt(self) -> dict[str, str]:
        """Stop at once; return heard text per response that had started playing."""
        played = self._sink.played_samples
        heard = {
            r.rid: heard_text(r.segments, played)
            for r in self._order
            if r.segments and played > r.segments[0].start
        }
        for task in [*self._workers, *self._prepared.values()]:
            self._tasks.cancel(task)
        self._workers = []
        self._prepared.clear()
        self._audio = None
        self._sink.clear()
        self._sink.resume()
        self._written = self._sink.played_samples
        self._order.clear()
        self._by_id.clear()
        self._inflight = 0
        return heard

    def pause(self) -> None:
        """Silence at once, keeping the queued audio and the play position (idempotent)."""
        self._sink.pause()

    def resume(self) -> None:
        """Play on exactly where :meth:`pause` stopped (idempotent)."""
        self._sink.resume()

    @property
    def paused(self) -> bool:
        return self._sink.paused

    async def aclose(self) -> None:
        """Stop speaking and release the background tasks (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.interrupt()
        await self._tasks.aclose()

    # ---------------------------------------------------------------- progress
    @property
    def busy(self) -> bool:
        """Something is queued or playing (a response not yet finished)."""
        return bool(self._order)

    @property
    def synthesis_pending(self) -> bool:
        """Text accepted for speech is not yet all in the sink (synthesis or writing in progress)."""
        return self._inflight > 0 or any(r.ended and r.end_pos is None for r in self._order)

    def poll(self) -> None:
        """Post the playout events that the sink's progress allows (idempotent)."""
        played = self._sink.played_samples
        while self._order:
            resp = self._order[0]
            if not resp.started and (
                (resp.segments and played > resp.segments[0].start) or resp.end_pos is not None
            ):
                resp.started = True
                self._emit(PlayoutStarted(response_id=resp.rid))
            if resp.end_pos is None or played < resp.end_pos:
                return
            self._order.popleft()
            self._by_id.pop(resp.rid, None)
            heard = " ".join(s.text for s in resp.segments)
            self._emit(PlayoutFinished(response_id=resp.rid, heard=heard, interrupted=False))

    # ---------------------------------------------------------------- pipeline
    def _accept(self, resp: _Response, chunks: list[str]) -> None:
        resp.pending.extend(chunks)
        resp.unwritten_words += sum(len(c.split()) for c in chunks)
        self._inflight += len(chunks)
        self._more.set()
        self._ensure_workers()

    def _ensure_workers(self) -> None:
        if self._monitor is None:
            self._monitor = self._tasks.spawn(self._monitor_loop(), "monitor")
        if not self._workers:
            queue: asyncio.Queue[tuple[_Response, _Segment | None, np.ndarray | None]] = (
                asyncio.Queue(LOOKAHEAD)
            )
            self._audio = queue
            self._workers = [
                self._tasks.spawn(self._synthesize_loop(queue), "synthesize"),
                self._tasks.spawn(self._play_loop(queue), "play"),
            ]

    def _next_to_synthesize(self) -> _Response | None:
        for resp in self._order:
            if not resp.synthesized_all:
                return resp
        return None

    async def _synthesize_loop(
        self, queue: asyncio.Queue[tuple[_Response, _Segment | None, np.ndarray | None]]
    ) -> None:
        while True:
            resp = self._next_to_synthesize()
            if resp is None or (not resp.pending and not resp.ended):
                self._more.clear()
                await self._more.wait()
                continue
            if not resp.pending:  # ended and everything synthesized
                resp.synthesized_all = True
                await queue.put((resp, None, None))
                continue
            text = resp.pending[0]
            first = not resp.synthesized_any
            rate = self._sink.sample_rate
            audio = self.phrases.get(text, rate) if first else None
            if audio is None:
                audio = await self._prepared_audio(text)
                if audio is None:
                    audio = await self._synthesize(text)
                if first:  # the answer's first sound leaves without a lead-in
                    audio = lead_in_trimmed(audio, rate)
                    self.phrases.put(text, rate, audio)
            resp.synthesized_any = True
            resp.pending.popleft()
            await queue.put((resp, _Segment(text, 0, len(audio)), audio))

    async def _prepared_audio(self, text: str) -> np.ndarray | None:
        """The audio ``prepare`` made of ``text`` (waiting for it if still running), or None."""
        task = self._prepared.pop(text, None)
        if task is None:
            return None
        await asyncio.wait([task])
        if task.cancelled() or task.exception() is not None:
            return None  # synthesised again by the caller (an error shows there)
        return task.result()

    async def _synthesize(self, text: str) -> np.ndarray:
        """``text`` as one array at the sink's rate."""
        stream = self._tts.synthesize(text, self._sink.sample_rate)
        try:
            pieces = [chunk.samples async for chunk in stream]
        finally:  # also on cancellation: the generator stops its worker promptly
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    async def _play_loop(
        self, queue: asyncio.Queue[tuple[_Response, _Segment | None, np.ndarray | None]]
    ) -> None:
        while True:
            resp, seg, audio = await queue.get()
            if seg is None or audio is None:
                resp.end_pos = self._written
                self.poll()
                continue
            if len(audio):
                seg.start = self._written
                resp.segments.append(seg)
                self._written += len(audio)
                await self._sink.write(audio)
            resp.unwritten_words -= len(seg.text.split())
            self._inflight -= 1

    async def _monitor_loop(self) -> None:
        while True:
            self.poll()
            await asyncio.sleep(POLL_S)
