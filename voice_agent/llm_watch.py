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

- Hold phrases are timed from the **caller's silence**, not from the model's text: the
  conversation tells the watch what the caller hears (``hearing``, from the speech
  output's count of what is still to be played:
  :class:`~voice_agent.caller_silence.CallerSilence`). A long sentence the model sent
  at once is heard for seconds; the silence, and its first hold, begin when it ends.
- After ``hold_after_s`` of the caller's silence it yields :class:`LlmQuiet` (the
  conversation says a hold phrase, between sentences only: see
  ``Conversation.say_llm_hold``); if the wait goes on, another one every
  ``hold_again_s`` (never while the previous one is still heard). The caller's **wait**
  ends when they are given something of the answer (anything but a hold phrase): a word
  that makes no sentence is not heard, so it ends neither the silence nor the wait (a
  model trickling words got no hold at all). A long wait: every hold of a wait past
  ``holds_before_long_wait`` is marked ``long_wait`` (the conversation says "this is
  taking longer than usual" at the first of them it says, once per caller turn), and the
  gaps double up to ``max_hold_gap_s`` (see :class:`SilencePolicy`). After
  ``max_holds`` since the LLM's last output (as many as fit before its deadline), a
  hold phrase comes only while the LLM shows signs of life (one within the last
  ``hold_again_s``): a model slowed by a busy machine keeps the line, a stopped one
  does not.
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
from typing import Protocol

from fsm import Clock, move_on_at
from peripherals.text_chunker import CLOSERS, SENTENCE_MARKS, SentenceChunker

from .llm import LlmError, Progressed, StreamItem, TextDelta

__all__ = ["Hearing", "LlmQuiet", "SentencePaused", "SilencePolicy", "watch_silence"]


class Hearing(Protocol):
    """What the caller hears of the agent (:class:`~voice_agent.caller_silence.CallerSilence`)."""

    def since(self) -> float:
        """When the caller's silence begins: in the future while speech still plays."""
        ...

    @property
    def answered_at(self) -> float:
        """When speech other than a hold phrase was last given to the caller (their wait
        for the answer starts again once they have heard it)."""
        ...


@dataclass(frozen=True)
class SilencePolicy:
    """How long a generation may stay silent (seconds on the clock).

    ``deadline_s``: no sign of life (output or progress) this long ends the
    generation; ``patience_s``: nothing speakable this long ends it even while
    the LLM shows signs of life (at least ``deadline_s``).

    A long wait is held the way a person on the phone holds it: after
    ``holds_before_long_wait`` short holds ``hold_again_s`` apart, the next ones
    are marked ``long_wait`` (the conversation says once per caller turn "Sorry, this
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
    """The stream has been silent for ``silent_s`` seconds and the caller for the policy's
    hold time: time for a hold phrase (``long_wait``: past the policy's short holds; the
    wait is long, say so if not yet said in this answer)."""

    silent_s: float
    long_wait: bool = False


@dataclass(frozen=True)
class SentencePaused:
    """The text paused ``SENTENCE_PAUSE_S`` right after a sentence's final mark (and any
    blank after it): the speech output keeps that sentence for a continuation ("3." "5",
    "a.m." before a capital); time to have it said (no hold yet)."""

    silent_s: float


_END = object()
# Output just yielded reaches the speech output within this (the conversation hands it
# over as soon as it handles the event): the watch looks at the caller's silence again
# then, so a sentence about to be said is not taken for silence. Seconds.
HAND_OVER_S = 0.1
# A sentence whose final mark came last is complete but for a continuation ("at 9." may
# go on " a.m."): the speech output keeps it for the model's next token. When no text
# follows for this long the watch yields :class:`SentencePaused` and the conversation
# has the output say it (``withdraw`` commits what the pause completes). A continuation
# is the model's very next token: 27 ms a step for the local 1.5B on a quiet machine,
# ~17 ms for a 60 tokens/s endpoint, ~0.1 s on this 2-core machine at load 7
# (docs/results.md), so 0.3 s lets a slow step join its sentence while the caller
# waits 0.3 s, not the hold time (1.5 s: "Sure," ... rest), when the model stalls there.
SENTENCE_PAUSE_S = 0.3


def _completes_speech(chunker: SentenceChunker, text: str) -> bool:
    """``text`` completes a chunk (or ends a sentence) of what the stream said so far."""
    done = bool(chunker.push(text))
    if not done and text.rstrip().endswith(tuple(SENTENCE_MARKS)):
        chunker.flush()  # the sentence is over (the next delta cannot change that for us)
        done = True
    return done


async def watch_silence(
    items: AsyncIterator[StreamItem],
    clock: Clock,
    policy: SilencePolicy,
    *,
    hearing: Hearing | None = None,
) -> AsyncIterator[StreamItem | LlmQuiet | SentencePaused]:
    """Re-yield ``items`` with :class:`LlmQuiet` marks; raise LlmError at the silence deadline.

    ``hearing.since()`` is when the caller's silence began: in the past (the previous
    response's audio ended a while ago, tools ran), or in the future while the agent's
    speech still plays. It is read again whenever a hold may be due, and shortly after
    each output and hold (when they have been handed over). Without ``hearing`` the
    caller is taken to hear what the model says the moment it completes something
    speakable. The deadlines always count from the stream's own items (the LLM's
    silence), never from the caller's.

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
    # For the patience and for the caller's wait, text counts once it completes something a
    # speech output says (a sentence, a long clause): a model trickling words without one
    # leaves the caller in silence. (Any output is a sign of life, for the deadline.)
    speakable = SentenceChunker()
    patience = max(policy.patience_s, policy.deadline_s)
    try:
        alive = clock.now()  # the LLM's last sign of life (output or progress)
        spoke = alive  # its last speakable progress
        said = alive if hearing is None else min(alive, hearing.since())  # its last output
        holds = 0  # hold phrases of the caller's current wait (the long wait, the gaps)
        # of them, those due hold_after_s or more after the LLM's last output: max_holds is
        # sized to fit them before its deadline (the wait's earlier ones count from the
        # caller's silence, which may have begun before that output)
        quiet_holds = 0
        next_hold = -math.inf  # no hold before this (the policy's cadence; output handed over)
        look_at = math.inf  # when to read the caller's silence again (output handed over)
        last_hold = -math.inf  # when the last hold phrase was due (said or passed over)
        # when the sentence the last text ended (its final mark last) is said anyway
        sentence_pause = math.inf

        def caller_silent_since() -> float:
            return spoke if hearing is None else hearing.since()

        def hold_due_at() -> float:
            """When the next hold phrase is due (inf: none): the first after hold_after_s of
            the caller's silence, the next ones at the policy's cadence but never while the
            caller still hears the one before; past max_holds only while the LLM shows
            signs of life."""
            if quiet_holds >= policy.max_holds and alive <= last_hold:
                return math.inf
            quiet = caller_silent_since()
            return max(next_hold, quiet + policy.hold_after_s if holds == 0 else quiet)

        while True:
            now = clock.now()
            answered_at = spoke if hearing is None else hearing.answered_at
            if holds and answered_at >= last_hold:  # the caller was given more of the answer
                holds, quiet_holds, next_hold = 0, 0, -math.inf  # since the last hold: a new wait
            lifeless = alive + policy.deadline_s <= spoke + patience  # which deadline is first
            deadline = alive + policy.deadline_s if lifeless else spoke + patience
            if sentence_pause <= now:
                sentence_pause = math.inf
                look_at = now + HAND_OVER_S
                yield SentencePaused(silent_s=now - said)
                continue
            due = hold_due_at()
            if due <= now and due < deadline:
                last_hold = now
                if quiet_holds < policy.max_holds or now - alive < policy.hold_again_s:
                    holds += 1
                    quiet_holds += now >= said + policy.hold_after_s
                    next_hold = now + policy.gap_after(holds)
                    look_at = now + HAND_OVER_S
                    long_wait = holds > policy.holds_before_long_wait
                    yield LlmQuiet(silent_s=now - said, long_wait=long_wait)
                continue
            if now >= deadline:
                if lifeless:
                    raise LlmError(
                        f"the LLM produced nothing for {policy.deadline_s:.1f}s", retryable=False
                    )
                raise LlmError(
                    f"the LLM said nothing that can be spoken for {patience:.1f}s "
                    f"(it was still working)",
                    retryable=False,
                )
            wake = min(deadline, due, look_at, sentence_pause)
            quiet = caller_silent_since()
            if quiet > now:  # the caller hears the agent: look again when that should end
                wake = min(wake, quiet)
            got: object = None
            async with move_on_at(clock, wake) as scope:
                got = await queue.get()
            if scope.expired:
                if clock.now() >= look_at:
                    look_at = math.inf
                continue  # a hold, the deadline, or a look at the caller's silence
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
            said = alive
            quiet_holds = 0
            look_at = alive + HAND_OVER_S  # read the caller's silence once it is handed over
            if not isinstance(got, TextDelta) or _completes_speech(speakable, got.text):
                spoke = alive
                next_hold = max(next_hold, look_at)  # not before it was handed over
            # (words that complete nothing put off no hold: a model trickling them faster
            # than HAND_OVER_S kept the caller waiting past the cadence; Hypothesis found
            # "r" 0.05 s before a due hold. The conversation still says no hold over
            # audio that a clause of them started.)
            # text ending at a final mark is kept by the output for a continuation: said
            # after the pause; a blank after the mark in the same delta too ("6 p.m. ": kept
            # for a capital; Hypothesis found it, session 11)
            text = got.text if isinstance(got, TextDelta) else ""
            ends_mark = text.rstrip().rstrip(CLOSERS).endswith(tuple(SENTENCE_MARKS))
            sentence_pause = alive + SENTENCE_PAUSE_S if ends_mark else math.inf
            yield got  # type: ignore[misc]
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # the child's own cancellation ends here...
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise asyncio.CancelledError  # ...but never a cancellation of this task
