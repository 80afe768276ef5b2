"""The waiting room on virtual time: the hold message repeats at its interval while a call
waits, stops at once when a slot is handed over, and a wait that lasts too long ends with
the apology; the caller's audio is drained meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from fsm import AutojumpClock
from voice_agent.admission import Admission
from voice_agent.config import WorkerConfig
from voice_agent.transports.base import TransportBase
from voice_agent.waiting_room import CallNotServed, WaitingRoom

RATE = 8000
SPOKEN_S = {"HOLD": 2.0, "SORRY": 1.5}  # how long each message "speaks" (s)


class Sink:
    """An `AudioSink` that plays what is written in real (here: virtual) time and remembers
    when each write began (it never pauses; the waiting room does not pause it)."""

    def __init__(self, clock: AutojumpClock) -> None:
        self.clock = clock
        self.writes: list[tuple[float, int]] = []
        self.clears: list[float] = []
        self._until = 0.0

    @property
    def sample_rate(self) -> int:
        return RATE

    @property
    def played_samples(self) -> int:
        return 0

    @property
    def paused(self) -> bool:
        return False

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def write(self, samples: np.ndarray) -> None:
        self.writes.append((self.clock.now(), len(samples)))
        self._until = max(self._until, self.clock.now()) + len(samples) / RATE

    async def wait_drained(self) -> None:
        await self.clock.sleep(max(0.0, self._until - self.clock.now()))

    def clear(self) -> int:
        self.clears.append(self.clock.now())
        self._until = self.clock.now()
        return 0


class Caller(TransportBase):
    """A caller who keeps sending audio until it hangs up at ``hang_up_at`` (s)."""

    name = "test"

    def __init__(self, clock: AutojumpClock, hang_up_at: float = 1e9) -> None:
        self.clock = clock
        self.sink = Sink(clock)
        self.frames_read = 0
        self.hang_up_at = hang_up_at

    @property
    def input_rate(self) -> int:
        return RATE

    @property
    def output(self) -> Sink:
        return self.sink

    async def audio_in(self) -> AsyncIterator[np.ndarray]:
        while self.clock.now() < self.hang_up_at:
            await self.clock.sleep(0.02)
            self.frames_read += 1
            yield np.zeros(160, np.float32)


async def speak(text: str, rate: int) -> np.ndarray:
    return np.zeros(int(SPOKEN_S[text] * rate), np.float32)


def room(clock: AutojumpClock, **cfg: float) -> WaitingRoom:
    config = WorkerConfig(hold_message="HOLD", queue_apology="SORRY", **cfg)  # type: ignore[arg-type]
    return WaitingRoom(config, speak, clock=clock)


def test_the_hold_message_repeats_every_interval_until_the_slot_is_handed_over() -> None:
    clock = AutojumpClock()

    async def run() -> None:
        admission = Admission(1, max_waiting=1)
        assert admission.try_enter()
        caller = Caller(clock)
        waiting = asyncio.ensure_future(
            room(clock, hold_interval_s=5.0, wait_timeout_s=60).wait(admission.queue(), caller)
        )
        await clock.sleep(12.0)
        admission.leave()  # the call ahead ends at t=12
        wait = await waiting
        assert [t for t, _ in caller.sink.writes] == pytest.approx([0.0, 5.0, 10.0])
        assert caller.sink.clears == pytest.approx([12.0])  # the hold message stops at once
        assert wait.hold_messages == 3 and wait.waited_s == pytest.approx(12.0)
        assert caller.frames_read >= 12 / 0.02 - 1  # the caller's audio did not pile up
        assert admission.active == 1 and admission.waiting == 0

    clock.run(run())


def test_a_message_longer_than_the_interval_is_repeated_right_after_it_ends() -> None:
    clock = AutojumpClock()

    async def run() -> None:
        admission = Admission(1, max_waiting=1)
        assert admission.try_enter()
        caller = Caller(clock)
        with pytest.raises(CallNotServed) as err:
            await room(clock, hold_interval_s=1.0, wait_timeout_s=7.0).wait(
                admission.queue(), caller
            )
        assert [t for t, _ in caller.sink.writes][:4] == pytest.approx([0.0, 2.0, 4.0, 6.0])
        apology = caller.sink.writes[-1]
        assert apology[0] == pytest.approx(7.0)  # right after the clear at 7 s
        assert apology[1] == int(SPOKEN_S["SORRY"] * RATE)
        assert err.value.reason == "queue timeout" and err.value.wait.hold_messages == 4
        assert clock.now() == pytest.approx(7.0 + SPOKEN_S["SORRY"])  # the apology heard first
        assert admission.waiting == 0 and admission.active == 1

    clock.run(run())


def test_a_caller_who_hangs_up_while_waiting_leaves_the_queue_without_an_apology() -> None:
    clock = AutojumpClock()

    async def run() -> None:
        admission = Admission(1, max_waiting=1)
        assert admission.try_enter()
        caller = Caller(clock, hang_up_at=3.0)
        with pytest.raises(CallNotServed) as err:
            await room(clock, hold_interval_s=5.0, wait_timeout_s=60).wait(
                admission.queue(), caller
            )
        assert err.value.reason == "caller hung up while queued"
        assert len(caller.sink.writes) == 1  # the first hold message; no apology
        assert admission.waiting == 0
        admission.leave()
        assert admission.active == 0  # the slot was not handed to the caller who left

    clock.run(run())
