"""The silence watch over a generation's stream, on virtual time (AutojumpClock: exact)."""

from __future__ import annotations

import asyncio

import pytest

from fsm import AutojumpClock
from voice_agent.llm import LlmError, Progressed, StreamFinished, TextDelta
from voice_agent.llm_watch import (
    SENTENCE_PAUSE_S,
    LlmQuiet,
    SentencePaused,
    SilencePolicy,
    watch_silence,
)

POLICY = SilencePolicy(hold_after_s=1.5, deadline_s=8.0, max_holds=2)


class Script:
    """A stream: (delay on the clock, item) pairs, then optionally a stall forever."""

    def __init__(self, clock: AutojumpClock, steps, *, stall: bool = False) -> None:
        self.clock, self.steps, self.stall = clock, steps, stall
        self.closed = False

    async def __aiter__(self):
        try:
            for delay, item in self.steps:
                await self.clock.sleep(delay)
                if isinstance(item, Exception):
                    raise item
                yield item
            if self.stall:
                await asyncio.Event().wait()
        finally:
            self.closed = True


def run(
    clock: AutojumpClock, script: Script, policy: SilencePolicy = POLICY
) -> tuple[list, BaseException | None]:
    got: list = []
    error: list[BaseException] = []

    async def consume() -> None:
        try:
            async for item in watch_silence(script.__aiter__(), clock, policy):
                got.append((clock.now(), item))
        except LlmError as exc:
            error.append(exc)

    clock.run(consume())
    return got, (error[0] if error else None)


def test_a_silent_stream_gets_a_hold_mark_then_fails_at_the_deadline():
    clock = AutojumpClock()
    script = Script(clock, [], stall=True)
    got, error = run(clock, script)
    assert got == [(1.5, LlmQuiet(silent_s=1.5)), (4.5, LlmQuiet(silent_s=4.5))]
    assert isinstance(error, LlmError) and "nothing for 8.0s" in str(error)
    assert clock.now() == 8.0 and script.closed  # the stream was stopped


def test_a_pause_right_after_a_final_mark_is_marked_once_before_any_hold():
    # the text ends at a final mark ("3." may go on "5"): SENTENCE_PAUSE_S later, with no
    # text, one SentencePaused; text that does not end at a mark gets none, nor does a
    # mark followed by the next token in time
    clock = AutojumpClock()
    steps = [(1.0, TextDelta("The fee is 3.")), (0.1, TextDelta("5 percent.")),
             (2.0, TextDelta(" And")), (2.0, TextDelta(" more?"))]  # fmt: skip
    got, _ = run(clock, Script(clock, steps, stall=True))
    paused = [round(t, 6) for t, i in got if isinstance(i, SentencePaused)]
    assert paused == [round(1.1 + SENTENCE_PAUSE_S, 6), round(5.1 + SENTENCE_PAUSE_S, 6)]
    first_hold = next(t for t, i in got if isinstance(i, LlmQuiet))
    assert round(first_hold, 6) == round(1.1 + POLICY.hold_after_s, 6)  # a pause is no hold


def test_a_pause_after_a_final_mark_and_a_blank_in_the_same_delta_is_marked_too():
    # "6 p.m. " (a model's token may carry the space): the output keeps "p.m." for a
    # capital, so the pause must be marked as after a bare mark (before: none, the
    # sentence waited for the first hold; Hypothesis found it, session 11)
    clock = AutojumpClock()
    steps = [(1.0, TextDelta("We close at 6 p.m. ")), (2.0, TextDelta("Bye."))]
    got, _ = run(clock, Script(clock, steps))
    paused = [round(t, 6) for t, i in got if isinstance(i, SentencePaused)]
    assert paused == [round(1.0 + SENTENCE_PAUSE_S, 6)]


def test_silence_is_counted_from_the_last_item_and_each_silence_holds_afresh():
    clock = AutojumpClock()
    script = Script(
        clock, [(1.0, TextDelta("Let me see.")), (3.0, TextDelta(" Right."))], stall=True
    )
    got, error = run(clock, script)
    got = [(t, i) for t, i in got if not isinstance(i, SentencePaused)]  # (see below)
    assert got == [
        (1.0, TextDelta("Let me see.")),
        (2.5, LlmQuiet(silent_s=1.5)),
        (4.0, TextDelta(" Right.")),
        (5.5, LlmQuiet(silent_s=1.5)),
        (8.5, LlmQuiet(silent_s=4.5)),  # the new silence has its own max_holds (hold9b)
    ]
    assert error is not None and clock.now() == 12.0


def test_output_starts_the_hold_count_again():
    # The docstring's rule, which the code did not keep: after output a new silence is a
    # new wait. Before, the count was per generation: a model that used up max_holds in
    # early pauses then died got no hold at all (8 s of silence before the apology).
    clock = AutojumpClock()
    steps = [(2.0, TextDelta("A.")), (2.0, TextDelta(" B.")), (2.0, TextDelta(" C."))]
    got, error = run(clock, Script(clock, steps, stall=True))
    assert [t for t, i in got if isinstance(i, LlmQuiet)] == [1.5, 3.5, 5.5, 7.5, 10.5]
    assert error is not None


def test_a_lively_stream_passes_through_untouched():
    clock = AutojumpClock()
    steps = [(0.5, TextDelta("Hi")), (0.5, TextDelta(" there.")), (0.2, StreamFinished("stop"))]
    got, error = run(clock, Script(clock, steps))
    assert [i for _, i in got] == [TextDelta("Hi"), TextDelta(" there."), StreamFinished("stop")]
    assert error is None


def test_the_streams_own_error_reaches_the_consumer():
    clock = AutojumpClock()
    script = Script(clock, [(0.5, TextDelta("Hi")), (0.5, LlmError("boom", retryable=False))])
    got, error = run(clock, script)
    assert str(error) == "boom" and script.closed


def test_cancelling_the_consumer_stops_the_stream():
    clock = AutojumpClock()
    script = Script(clock, [], stall=True)

    async def consume() -> None:
        async for _ in watch_silence(script.__aiter__(), clock, POLICY):
            pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    clock.run(main())
    assert script.closed and clock.now() == 1.0


def test_a_silence_that_began_before_the_stream_brings_the_hold_forward_not_the_deadline():
    clock = AutojumpClock()
    got: list = []
    error: list[BaseException] = []

    async def main() -> None:
        await asyncio.sleep(1.0)  # the caller has been waiting since 0.0
        script = Script(clock, [], stall=True)
        try:
            stream = watch_silence(script.__aiter__(), clock, POLICY, hearing=Heard(lambda: 0.0))
            async for item in stream:
                got.append((clock.now(), item))
        except LlmError as exc:
            error.append(exc)

    clock.run(main())
    assert got == [(1.5, LlmQuiet(silent_s=1.5)), (4.5, LlmQuiet(silent_s=4.5))]
    assert error and clock.now() == 9.0  # the LLM's own 8 s, from when it was asked


def test_progress_reports_keep_a_slow_stream_alive_and_are_not_passed_on():
    clock = AutojumpClock()
    steps = [*((1.0, Progressed(64 * i)) for i in range(1, 13)), (1.0, TextDelta("Done.")),
             (0.1, StreamFinished("stop"))]  # fmt: skip
    got, error = run(clock, Script(clock, steps))
    assert error is None
    assert [i for _, i in got if not isinstance(i, LlmQuiet)] == [
        TextDelta("Done."),
        StreamFinished("stop"),
    ]
    # two holds while no progress is needed to earn them, then more while it progresses:
    # 3 s apart up to holds_before_long_wait (3), then the long-wait mark (hold9b; was one
    # per 2 x 3 s past max_holds, and no long-wait mark)
    quiet = [(t, i.long_wait) for t, i in got if isinstance(i, LlmQuiet)]
    assert quiet == [(1.5, False), (4.5, False), (7.5, False), (10.5, True)]


def test_every_hold_past_the_short_ones_is_marked_a_long_wait_then_they_come_further_apart():
    clock = AutojumpClock()
    policy = SilencePolicy(hold_after_s=1.5, hold_again_s=2.0, deadline_s=8.0, max_holds=3,
                           patience_s=60.0, holds_before_long_wait=2, max_hold_gap_s=6.0)  # fmt: skip
    steps = [*((1.0, Progressed(64 * i)) for i in range(1, 26)), (1.0, TextDelta("Done.")),
             *((1.0, Progressed(2000 + 64 * i)) for i in range(1, 16))]  # fmt: skip
    got, error = run(clock, Script(clock, steps, stall=True), policy)
    quiet = [(t, i.long_wait) for t, i in got if isinstance(i, LlmQuiet)]
    # 2 short holds, then long-wait marks 4 s, 6 s (capped), 6 s... apart; after the output
    # at 26 s a new silence: short holds again, then long-wait marks again. Each mark past
    # the short holds says "the wait is long": the conversation says the long-wait phrase
    # at the first one it actually says (once per answer), so a mark it could not say is
    # not the end of it (hold10; was one mark per generation, lost if not said)
    assert quiet == [(1.5, False), (3.5, False), (5.5, True), (9.5, True), (15.5, True),
                     (21.5, True), (27.5, False), (29.5, False), (31.5, True),
                     (35.5, True), (41.5, True)]  # fmt: skip
    assert isinstance(error, LlmError)


def test_when_progress_stops_the_deadline_counts_from_the_last_report():
    clock = AutojumpClock()
    steps = [(1.0, Progressed(10)), (1.0, Progressed(20)), (1.0, Progressed(30))]
    got, error = run(clock, Script(clock, steps, stall=True))
    assert isinstance(error, LlmError) and "nothing for 8.0s" in str(error)
    assert clock.now() == 11.0


def test_progress_without_anything_speakable_ends_at_the_patience():
    clock = AutojumpClock()
    steps = [(1.0, Progressed(i)) for i in range(1, 100)]
    got: list = []
    error: list[BaseException] = []

    async def consume() -> None:
        policy = SilencePolicy(hold_after_s=1.5, deadline_s=8.0, max_holds=2, patience_s=20.0)
        try:
            async for item in watch_silence(Script(clock, steps).__aiter__(), clock, policy):
                got.append((clock.now(), item))
        except LlmError as exc:
            error.append(exc)

    clock.run(consume())
    assert error and "for 20.0s (it was still working)" in str(error[0])
    assert clock.now() == 20.0


class Heard:
    """What the caller hears, scripted: ``since()`` from a function; ``answered_at`` set by
    the test (the answer was never given unless it says so)."""

    def __init__(self, since) -> None:
        self.since = since
        self.answered_at = float("-inf")


def run_heard(
    clock: AutojumpClock, script: Script, heard_until, policy: SilencePolicy = POLICY
) -> tuple[list, BaseException | None]:
    """``run`` with the caller's silence told by ``heard_until(marks so far)``."""
    got: list = []
    error: list[BaseException] = []

    async def consume() -> None:
        stream = watch_silence(
            script.__aiter__(), clock, policy, hearing=Heard(lambda: heard_until(got))
        )
        try:
            async for item in stream:
                got.append((clock.now(), item))
        except LlmError as exc:
            error.append(exc)

    clock.run(consume())
    return got, (error[0] if error else None)


def test_a_hold_is_timed_from_the_end_of_the_audio_the_caller_heard_not_from_the_text():
    # A long sentence arrives at once and is heard until 4.0 s; the model then stalls. The
    # caller's silence begins at 4.0: the first hold is due 1.5 s later, not 1.5 s after
    # the text (when the caller still heard the sentence: hold9b's leftover)
    clock = AutojumpClock()
    script = Script(clock, [(0.0, TextDelta("A sentence heard for four seconds."))], stall=True)
    got, error = run_heard(clock, script, lambda got: 4.0 if got else 0.0)
    quiet = [(t, i) for t, i in got if isinstance(i, LlmQuiet)]
    assert quiet == [(5.5, LlmQuiet(silent_s=5.5))]  # the next one would be past the deadline
    assert isinstance(error, LlmError) and clock.now() == 8.0  # the LLM's own deadline


def test_a_hold_waits_for_its_predecessors_audio_to_end():
    # each hold phrase is heard for 2.5 s: the next one is due when it ends, not 2 s after
    # it began (never queued behind audio the caller still hears)
    clock = AutojumpClock()
    policy = SilencePolicy(hold_after_s=1.5, hold_again_s=2.0, deadline_s=20.0, max_holds=3)

    def heard(got: list) -> float:
        return got[-1][0] + 2.5 if got else 0.0

    got, error = run_heard(clock, Script(clock, [], stall=True), heard, policy)
    assert [t for t, _ in got] == [1.5, 4.0, 6.5]


def test_text_the_caller_does_not_hear_neither_ends_their_silence_nor_their_wait():
    # A word every second that never makes a sentence: nothing is heard but the hold
    # phrases (0.5 s each). Before, each word was a new silence for the watch, so none was
    # ever 1.5 s long: no hold at all until the deadline's apology. Now the holds are timed
    # from the caller's silence and counted as one wait: past max_holds they go on while
    # the words show the model works, and the wait is marked long.
    clock = AutojumpClock()
    steps = [(1.0, TextDelta(f" w{i}")) for i in range(12)]

    def heard(got: list) -> float:
        marks = [t for t, i in got if isinstance(i, LlmQuiet)]
        return marks[-1] + 0.5 if marks else 0.0

    got, error = run_heard(clock, Script(clock, steps, stall=True), heard)
    marks = [(t, i.long_wait) for t, i in got if isinstance(i, LlmQuiet)]
    assert marks == [(1.5, False), (4.5, False), (7.5, False), (10.5, True), (16.5, True)]
    assert isinstance(error, LlmError) and clock.now() == 20.0  # 8 s after the last word
