"""Simulated peripherals at the transcript level: a user who speaks the
scenario's turns, and a speaker that "plays" the agent's text in time.

``SimulatedUser`` posts, per turn: ``UserSpeechStarted`` at speech start,
``TranscriptPartial`` (the words spoken so far) at the ASR partial cadence,
``UserSpeechEnded`` at the end of speech and ``TranscriptFinal`` after the ASR
final delay. Before a normal turn it waits for the agent to be idle (then the
turn's ``gap_before_ms``); a barge-in turn starts ``barge_in_after_ms`` after
the previous turn's end of speech whatever the agent is doing.

``SimulatedSpeechOutput`` implements ``voice_agent.output.SpeechOutput``:
text is cut into sentences by the product's sentence rules
(:func:`peripherals.text_chunker.whole_sentences`: "9 a.m. and", "Dr. Lee" and
"3.5" end none; a pause ends "... at 9 a.m."); a sentence starts playing
``tts_first_audio_ms`` after it became available, and never before the previous
audio ended; it lasts its words at ``speaking_rate_wpm``. Every played sentence
is recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from peripherals.text_chunker import SentenceChunker, whole_sentences
from voice_agent.bench._clock import Clock, sleep_or_wake, sleep_until
from voice_agent.bench.scenario import PeripheralTiming, Scenario, words_duration_ms
from voice_agent.events import (
    Event,
    PlayoutFinished,
    PlayoutStarted,
    SessionEnded,
    TranscriptFinal,
    TranscriptPartial,
    UserSpeechEnded,
    UserSpeechStarted,
)
from voice_agent.output import Withdrawn

IDLE_POLL_S = 0.05  # how often the user checks whether the agent finished, s
IDLE_SETTLE_S = 0.3  # the agent must stay idle this long before the user speaks again, s
TURN_TIMEOUT_S = 45.0  # give up waiting for the agent after this long, s


@dataclass
class UserTurnRecord:
    """When the simulated user spoke one turn (clock seconds)."""

    index: int
    text: str
    speech_start: float
    end_of_speech: float
    final_at: float
    barge_in: bool
    agent_timed_out: bool = False  # the user stopped waiting for the agent before this turn


class SimulatedUser:
    """Speaks the scenario's turns to the agent through ``post``."""

    def __init__(
        self,
        scenario: Scenario,
        post: Callable[[Event], None],
        clock: Clock,
        is_idle: Callable[[], bool],
        *,
        end_session: bool = True,
        turn_timeout_s: float = TURN_TIMEOUT_S,
    ) -> None:
        self._scenario = scenario
        self._post = post
        self._clock = clock
        self._is_idle = is_idle
        self._end_session = end_session
        self._turn_timeout_s = turn_timeout_s
        self.turns: list[UserTurnRecord] = []
        self.finished_at: float | None = None

    async def run(self) -> None:
        """Speak every turn; finally wait for the agent and post SessionEnded."""
        timing = self._scenario.peripherals
        for index, turn in enumerate(self._scenario.turns):
            timed_out = False
            if turn.barge_in_after_ms is not None and self.turns:
                await sleep_until(
                    self._clock, self.turns[-1].end_of_speech + turn.barge_in_after_ms / 1000
                )
            else:
                if self.turns:
                    timed_out = not await self.wait_for_agent()
                await self._clock.sleep(turn.gap_before_ms / 1000)
            record = await self._speak(index, turn.user, turn.speech_ms(timing) / 1000, timing)
            record.barge_in = turn.barge_in_after_ms is not None
            record.agent_timed_out = timed_out
        await self.wait_for_agent()
        self.finished_at = self._clock.now()
        if self._end_session:
            self._post(SessionEnded(reason="scenario complete"))

    async def wait_for_agent(self) -> bool:
        """Wait until the agent has been idle for IDLE_SETTLE_S; False on timeout."""
        deadline = self._clock.now() + self._turn_timeout_s
        idle_since: float | None = None
        while self._clock.now() < deadline:
            if self._is_idle():
                idle_since = self._clock.now() if idle_since is None else idle_since
                if self._clock.now() - idle_since >= IDLE_SETTLE_S:
                    return True
            else:
                idle_since = None
            await self._clock.sleep(IDLE_POLL_S)
        return False

    async def _speak(
        self, index: int, text: str, duration_s: float, timing: PeripheralTiming
    ) -> UserTurnRecord:
        words = text.split()
        start = self._clock.now()
        self._post(UserSpeechStarted())
        cadence = timing.asr_partial_interval_ms / 1000
        last_partial = ""
        tick = start + cadence
        while tick < start + duration_s:
            await sleep_until(self._clock, tick)
            spoken = int(len(words) * (tick - start) / duration_s)
            partial = " ".join(words[:spoken])
            if partial and partial != last_partial:
                self._post(TranscriptPartial(text=partial))
                last_partial = partial
            tick += cadence
        await sleep_until(self._clock, start + duration_s)
        end_of_speech = self._clock.now()
        self._post(UserSpeechEnded())
        await sleep_until(self._clock, end_of_speech + timing.asr_final_delay_ms / 1000)
        self._post(TranscriptFinal(text=text))
        record = UserTurnRecord(
            index, text, start, end_of_speech, self._clock.now(), barge_in=False
        )
        self.turns.append(record)
        return record


@dataclass
class PlayedSentence:
    """One sentence the simulated speaker played (clock seconds)."""

    response_id: str
    text: str
    start: float
    end: float
    heard: str  # all of ``text``, or the words spoken before an interruption
    interrupted: bool = False


@dataclass
class _Response:
    chunker: SentenceChunker = field(default_factory=whole_sentences)  # text not yet cut
    sentences: list[tuple[str, float]] = field(default_factory=list)  # (text, available_at)
    ended: bool = False
    started: bool = False
    heard: list[str] = field(default_factory=list)


@dataclass
class _Playing:
    response_id: str
    text: str
    start: float
    end: float


class SimulatedSpeechOutput:
    """A ``SpeechOutput`` that plays text at a speaking rate; run ``run()`` in a task group.

    Responses play one after another in the order of their first ``push``.
    A response that was ended without any text produces no events.
    ``interrupt()`` returns the heard text of each started response (played
    sentences, plus the words of the current one already spoken); no
    PlayoutFinished follows for them, and later pushes for them are dropped.
    """

    def __init__(self, timing: PeripheralTiming, clock: Clock) -> None:
        self._timing = timing
        self._clock = clock
        self._emit: Callable[[Event], None] = lambda event: None
        self._responses: dict[str, _Response] = {}
        self._dropped: set[str] = set()
        self._playing: _Playing | None = None
        self._audio_free_at = float("-inf")
        self._wake = asyncio.Event()
        self._closed = False
        self.sentences: list[PlayedSentence] = []

    def bind(self, emit: Callable[[Event], None]) -> None:
        self._emit = emit

    def push(self, response_id: str, text: str) -> None:
        if self._closed or response_id in self._dropped:
            return
        response = self._responses.setdefault(response_id, _Response())
        if response.ended:
            return
        self._queue(response, response.chunker.push(text))

    def end(self, response_id: str) -> None:
        response = self._responses.get(response_id)
        if response is None or response.ended:
            return
        response.ended = True
        self._queue(response, response.chunker.flush())

    def withdraw(self, response_id: str) -> Withdrawn:
        """Take back the sentence begun (it plays in whole sentences: never inside one)."""
        response = self._responses.get(response_id)
        if response is None or response.ended:
            return Withdrawn()
        done, unfinished, inside = response.chunker.take_unfinished()
        self._queue(response, done)  # the pause ends a sentence whose mark came last
        return Withdrawn(unfinished, inside_sentence=inside)

    def unplayed_s(self, response_id: str) -> float:
        """The rest of its sentence playing plus its sentences waiting, at the speaking rate."""
        left = 0.0
        if self._playing is not None and self._playing.response_id == response_id:
            left += max(0.0, self._playing.end - self._clock.now())
        response = self._responses.get(response_id)
        if response is not None:
            rate = self._timing.speaking_rate_wpm
            left += sum(words_duration_ms(t, rate) / 1000 for t, _ in response.sentences)
        return left

    def interrupt(self) -> dict[str, str]:
        now = self._clock.now()
        if self._playing is not None:
            playing = self._playing
            words = playing.text.split()
            fraction = (now - playing.start) / max(1e-9, playing.end - playing.start)
            spoken = " ".join(words[: int(len(words) * min(1.0, max(0.0, fraction)))])
            self.sentences.append(
                PlayedSentence(
                    playing.response_id, playing.text, playing.start, now, spoken, interrupted=True
                )
            )
            if spoken:
                self._responses[playing.response_id].heard.append(spoken)
            self._audio_free_at = now
            self._playing = None
        heard = {rid: " ".join(r.heard) for rid, r in self._responses.items() if r.started}
        self._dropped.update(self._responses)
        self._responses.clear()
        self._wake.set()
        return heard

    async def aclose(self) -> None:
        if self._closed:
            return
        self.interrupt()
        self._closed = True
        self._wake.set()

    async def run(self) -> None:
        """Play until ``aclose()``."""
        while not self._closed:
            deadline, action = self._next_action()
            if await sleep_or_wake(self._clock, self._wake, deadline) and action is not None:
                action()

    def _queue(self, response: _Response, sentences: list[str]) -> None:
        """``sentences`` were cut from ``response``'s text: available to play from now."""
        now = self._clock.now()
        response.sentences.extend((sentence, now) for sentence in sentences)
        self._wake.set()

    def _next_action(self) -> tuple[float | None, Callable[[], None] | None]:
        if self._playing is not None:
            return self._playing.end, self._finish_sentence
        for response_id, response in self._responses.items():
            if response.sentences:
                available_at = response.sentences[0][1]
                start = max(
                    self._audio_free_at, available_at + self._timing.tts_first_audio_ms / 1000
                )
                return start, lambda rid=response_id: self._start_sentence(rid)
            if not response.ended:
                return None, None  # the head response is still streaming: wait for text
            self._responses.pop(response_id)
            if response.started:
                self._emit(PlayoutFinished(response_id=response_id, heard=" ".join(response.heard)))
            return self._clock.now(), None
        return None, None

    def _start_sentence(self, response_id: str) -> None:
        response = self._responses[response_id]
        text, _ = response.sentences.pop(0)
        now = self._clock.now()
        duration = words_duration_ms(text, self._timing.speaking_rate_wpm) / 1000
        self._playing = _Playing(response_id, text, now, now + duration)
        if not response.started:
            response.started = True
            self._emit(PlayoutStarted(response_id=response_id))

    def _finish_sentence(self) -> None:
        playing = self._playing
        assert playing is not None
        self._playing = None
        self._audio_free_at = playing.end
        self.sentences.append(
            PlayedSentence(
                playing.response_id, playing.text, playing.start, playing.end, playing.text
            )
        )
        self._responses[playing.response_id].heard.append(playing.text)
