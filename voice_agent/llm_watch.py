"""The caller is never left in silence by a slow LLM: a watch over one generation's stream.

:func:`watch_silence` re-yields a generation's stream items and measures, on
the injected clock, two things:

- the LLM's **signs of life**: output (text other than whitespace, a complete
  tool call, the finish) or a progress report of the endpoint
  (:class:`~voice_agent.llm.Progressed`: it evaluated more tokens).
  Keep-alives, role-only chunks, headers and a progress count that does not
  grow are not signs of life: only what :class:`~voice_agent.llm.LlmClient`
  yields is;
- **speakable progress**: text that completes a chunk a speech output says
  (a sentence, a long clause; the rules of
  :class:`~peripherals.text_chunker.SentenceChunker`), a complete tool call,
  the finish. A model that trickles words without finishing one is as silent
  to the caller as one that sends nothing.

What the caller hears:

- After ``hold_after_s`` without output it yields :class:`LlmQuiet` (the
  conversation says a hold phrase, between sentences only: see
  ``Conversation.say_llm_hold``); if the silence goes on, another one every
  ``hold_again_s``, up to ``max_holds`` per silence: any output starts the
  count again (a new silence is a new wait; a count per generation left a model
  that paused early and then died with no hold at all before the apology). A
  long wait: after ``holds_before_long_wait`` holds, one marked ``long_wait``
  (said once per generation: "this is taking longer than usual"), then gaps
  doubling up to ``max_hold_gap_s`` (see :class:`SilencePolicy`). Past
  ``max_holds``, a hold phrase comes only while the LLM shows signs of life
  (one within the last ``hold_again_s``): a model slowed by a busy machine
  keeps the line, a stopped one does not.
- After ``deadline_s`` without a sign of life (a dead or stalled endpoint:
  within seconds, whatever the machine's load) it stops the stream (closing
  the HTTP request) and raises :class:`~voice_agent.llm.LlmError`: the
  conversation apologises, offers a way forward and the session goes on.
- After ``patience_s`` without speakable progress, even from an LLM that
  shows signs of life (a model trickling words that never make a sentence,
  or one too slow to be of use), the same. A healthy model slowed by a busy
  machine is not apologised for as long as it says something within
  ``patience_s``: the deadline follows its progress, not a fixed guess of
  its speed.

This holds whatever the endpoint does (headers then nothing, a slow first
byte, a stall after some text, keep-alives forever) because it does not rely
on the HTTP client's timeouts: the stream is consumed by a task the watch
owns, and the watch waits on a queue with :func:`fsm.move_on_at` deadlines,
so a stalled read is abandoned without being cancelled half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fsm import Clock, move_on_at
from peripherals.text_chunker import SentenceChunker

from .llm import LlmError, Progressed, StreamItem, TextDelta

__all__ = ["LlmQuiet", "SilencePolicy", "watch_silence"]


@dataclass(frozen=True)
class SilencePolicy:
    """How long a generation may stay silent (seconds on the clock).

    ``deadline_s``: no sign of life (output or progress) this long ends the
    generation; ``patience_s``: nothing speakable this long ends it even while
    the LLM shows signs of life (at least ``deadline_s``).

    A long wait is held the way a person on the phone holds it: after
    ``holds_before_long_wait`` short holds ``hold_again_s`` apart, the next one
    is marked ``long_wait`` (the conversation says once per answer "Sorry, this
    is taking a little longer than usual."), and from then on the gaps double
    (2x, 4x ``hold_again_s``...) up to ``max_hold_gap_s``: a few words now and
    then, not "Almost there." every 2 s for a minute.
    """

    hold_after_s: float = 1.5
    hold_again_s: float = 3.0
    deadline_s: float = 8.0
    max_holds: int = 2
    patience_s: float = 30.0
    holds_before_long_wait: int = 3
    max_hold_gap_s: float = 8.0

    def gap_after(self, holds: int) -> float:
        """Seconds from the ``holds``-th hold phrase of a silence (1-based) to the next."""
        doublings = holds - self.holds_before_long_wait
        if doublings <= 0:
            return self.hold_again_s
        return max(self.hold_again_s, min(self.hold_again_s * 2.0**doublings, self.max_hold_gap_s))


@dataclass(frozen=True)
class LlmQuiet:
    """The stream has been silent for ``silent_s`` seconds: time for a hold phrase
    (``long_wait``: the first past the policy's short holds; say that it takes long)."""

    silent_s: float
    long_wait: bool = False


_END = object()
_SENTENCE_END = (".", "!", "?", "…")


def _completes_speech(chunker: SentenceChunker, text: str) -> bool:
    """``text`` completes a chunk (or ends a sentence) of what the stream said so far."""
    done = bool(chunker.push(text))
    if not done and text.rstrip().endswith(_SENTENCE_END):
        chunker.flush()  # the sentence is over (the next delta cannot change that for us)
        done = True
    return done


async def watch_silence(
    items: AsyncIterator[StreamItem],
    clock: Clock,
    policy: SilencePolicy,
    *,
    quiet_since: float | None = None,
) -> AsyncIterator[StreamItem | LlmQuiet]:
    """Re-yield ``items`` with :class:`LlmQuiet` marks; raise LlmError at the silence deadline.

    ``quiet_since`` is when the caller's silence began, if earlier than now
    (the previous response's audio ended a while ago, tools ran): the first
    hold mark is due ``hold_after_s`` after it, while the deadline always
    counts from the stream's start (the LLM's own silence).

    Closing or cancelling the consumer cancels the stream's task and waits
    for it (the HTTP request is closed before this returns).
    """
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in items:
                await queue.put(item)
            await queue.put(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # handed to the consumer, which re-raises it
            await queue.put(exc)

    task = asyncio.get_running_loop().create_task(pump(), name="llm-stream")
    # For the patience, text counts once it completes something a speech output can say
    # (a sentence, a long clause): a model trickling words without one leaves the caller
    # in silence. (Any output restarts the hold phrases' count; any sign of life, the
    # deadline's.)
    speakable = SentenceChunker()
    patience = max(policy.patience_s, policy.deadline_s)
    try:
        alive = clock.now()  # the LLM's last sign of life (output or progress)
        spoke = alive  # its last speakable progress
        heard = alive if quiet_since is None else min(alive, quiet_since)  # the caller's
        next_hold = heard + policy.hold_after_s
        holds = 0  # hold phrases of the current silence
        announced = False  # the long wait was announced (once per generation)
        last_hold = -math.inf  # when the last hold phrase was due (said or passed over)
        while True:
            lifeless = alive + policy.deadline_s <= spoke + patience  # which deadline is first
            deadline = alive + policy.deadline_s if lifeless else spoke + patience
            if holds < policy.max_holds:
                hold_at = next_hold
            elif alive > last_hold:  # signs of life since: the LLM works, keep the line
                hold_at = next_hold  # spaced out by the policy's long-wait gaps
            else:
                hold_at = math.inf
            hold_due = hold_at < deadline
            got: object = None
            async with move_on_at(clock, hold_at if hold_due else deadline) as scope:
                got = await queue.get()
            if scope.expired:
                now = clock.now()
                if hold_due:
                    last_hold = now
                    if holds < policy.max_holds or now - alive < policy.hold_again_s:
                        holds += 1
                        next_hold = now + policy.gap_after(holds)
                        long_wait = holds == policy.holds_before_long_wait + 1 and not announced
                        announced = announced or long_wait
                        yield LlmQuiet(silent_s=now - heard, long_wait=long_wait)
                    continue
                if lifeless:
                    raise LlmError(
                        f"the LLM produced nothing for {policy.deadline_s:.1f}s", retryable=False
                    )
                raise LlmError(
                    f"the LLM said nothing that can be spoken for {patience:.1f}s "
                    f"(it was still working)",
                    retryable=False,
                )
            if got is _END:
                return
            if isinstance(got, BaseException):
                raise got
            if isinstance(got, TextDelta) and not got.text.strip():
                # whitespace is neither heard nor a sign of life: a model emitting
                # blanks for ever kept the hold phrases away and the caller heard 30 s
                # of silence before the apology
                yield got  # type: ignore[misc]
                continue
            alive = clock.now()
            if isinstance(got, Progressed):
                continue  # a sign of life, nothing the caller hears
            heard = alive
            next_hold = heard + policy.hold_after_s
            holds = 0  # a new silence: its holds count afresh (else a model that dies after
            # output used up the count had 4-6 s of silence before the apology)
            if not isinstance(got, TextDelta) or _completes_speech(speakable, got.text):
                spoke = heard
            yield got  # type: ignore[misc]
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # the child's own cancellation ends here...
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError  # ...but never a cancellation of this task
