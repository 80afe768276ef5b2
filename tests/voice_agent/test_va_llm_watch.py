"""The silence watch over a generation's stream, on virtual time (AutojumpClock: exact)."""

from __future__ import annotations

import asyncio

import pytest

from fsm import AutojumpClock
from voice_agent.llm import LlmError, Progressed, StreamFinished, TextDelta
from voice_agent.llm_watch import LlmQuiet, SilencePolicy, watch_silence

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


def test_silence_is_counted_from_the_last_item_and_each_silence_holds_afresh():
    clock = AutojumpClock()
    script = Script(
        clock, [(1.0, TextDelta("Let me see.")), (3.0, TextDelta(" Right."))], stall=True
    )
    got, error = run(clock, script)
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
    steps = [(2.0, TextDelta("a")), (2.0, TextDelta("b")), (2.0, TextDelta("c"))]
    got, error = run(clock, Script(clock, steps, stall=True))
    assert [t for t, i in got if isinstance(i, LlmQuiet)] == [1.5, 3.5, 5.5, 7.5, 10.5]
    assert error is not None


def test_a_lively_stream_passes_through_untouched():
    clock = AutojumpClock()
    steps = [(0.5, TextDelta("Hi")), (1.0, TextDelta(" there.")), (0.2, StreamFinished("stop"))]
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
            async for item in watch_silence(script.__aiter__(), clock, POLICY, quiet_since=0.0):
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


def test_a_long_wait_is_marked_once_then_holds_come_further_apart():
    clock = AutojumpClock()
    policy = SilencePolicy(hold_after_s=1.5, hold_again_s=2.0, deadline_s=8.0, max_holds=3,
                           patience_s=60.0, holds_before_long_wait=2, max_hold_gap_s=6.0)  # fmt: skip
    steps = [*((1.0, Progressed(64 * i)) for i in range(1, 26)), (1.0, TextDelta("Done.")),
             *((1.0, Progressed(2000 + 64 * i)) for i in range(1, 16))]  # fmt: skip
    got, error = run(clock, Script(clock, steps, stall=True), policy)
    quiet = [(t, i.long_wait) for t, i in got if isinstance(i, LlmQuiet)]
    # 2 short holds, the long-wait mark, then 4 s, 6 s (capped), 6 s...; after the output
    # at 26 s a new silence: short holds again, but the long wait is not announced again
    assert quiet == [(1.5, False), (3.5, False), (5.5, True), (9.5, False), (15.5, False),
                     (21.5, False), (27.5, False), (29.5, False), (31.5, False),
                     (35.5, False), (41.5, False)]  # fmt: skip
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
