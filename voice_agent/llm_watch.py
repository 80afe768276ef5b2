"""The caller is never left in silence by a slow LLM: a watch over one generation's stream.

:func:`watch_silence` re-yields a generation's stream items and measures, on
the injected clock, how long the stream has gone without anything the caller
can hear or that moves the turn on (text, a complete tool call, the finish).
Keep-alives, role-only chunks and headers do not count: only what
:class:`~voice_agent.llm.LlmClient` yields does. For the deadline, text
counts when it completes a chunk a speech output says (a sentence, a long
clause; the rules of :class:`~peripherals.text_chunker.SentenceChunker`): a
model that trickles words without finishing one is as silent to the caller
as one that sends nothing, and gets the apology at the deadline.

- After ``hold_after_s`` of such silence it yields :class:`LlmQuiet` (the
  conversation says a hold phrase); if the silence goes on, another one every
  ``hold_again_s``, up to ``max_holds`` per generation (after output, a new
  silence starts the count again).
- After ``deadline_s`` without speakable progress it stops the stream (closing the HTTP
  request) and raises :class:`~voice_agent.llm.LlmError`: the conversation
  apologises, offers a way forward and the session goes on.

This holds whatever the endpoint does (headers then nothing, a slow first
byte, a stall after some text, keep-alives forever) because it does not rely
on the HTTP client's timeouts: the stream is consumed by a task the watch
owns, and the watch waits on a queue with :func:`fsm.move_on_at` deadlines,
so a stalled read is abandoned without being cancelled half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fsm import Clock, move_on_at
from peripherals.text_chunker import SentenceChunker

from .llm import LlmError, StreamItem, TextDelta

__all__ = ["LlmQuiet", "SilencePolicy", "watch_silence"]


@dataclass(frozen=True)
class SilencePolicy:
    """How long a generation may stay silent (seconds on the clock)."""

    hold_after_s: float = 1.5
    hold_again_s: float = 3.0
    deadline_s: float = 8.0
    max_holds: int = 2


@dataclass(frozen=True)
class LlmQuiet:
    """The stream has been silent for ``silent_s`` seconds: time for a hold phrase."""

    silent_s: float


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
    # For the deadline, text counts once it completes something a speech output can say
    # (a sentence, a long clause): a model trickling words without one leaves the caller
    # in silence. (Any output restarts the hold phrases' count.)
    speakable = SentenceChunker()
    try:
        last = clock.now()  # the LLM's last sign of life
        heard = last if quiet_since is None else min(last, quiet_since)  # the caller's
        next_hold = heard + policy.hold_after_s
        holds = 0
        while True:
            deadline = last + policy.deadline_s
            hold_due = holds < policy.max_holds and next_hold < deadline
            got: object = None
            async with move_on_at(clock, next_hold if hold_due else deadline) as scope:
                got = await queue.get()
            if scope.expired:
                if hold_due:
                    holds += 1
                    next_hold = clock.now() + policy.hold_again_s
                    yield LlmQuiet(silent_s=clock.now() - heard)
                    continue
                raise LlmError(
                    f"the LLM produced nothing for {policy.deadline_s:.1f}s", retryable=False
                )
            if got is _END:
                return
            if isinstance(got, BaseException):
                raise got
            heard = clock.now()
            next_hold = heard + policy.hold_after_s
            if not isinstance(got, TextDelta) or _completes_speech(speakable, got.text):
                last = heard
            yield got  # type: ignore[misc]
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # the child's own cancellation ends here...
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError  # ...but never a cancellation of this task
