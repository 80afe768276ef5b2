"""The agent FSM's context: what the guards read and what the actions do.

The transition table (:mod:`voice_agent.agent_fsm`) decides *when*; this
module says *what*: start and cancel LLM generations, hand text to the speech
output, start tool futures, record everything in the ledger, apply the
barge-in rules. Guards are pure reads of this object; actions are methods
with the ``(self, event)`` signature so that the table can name them.

Terms: a *generation* is one LLM request/response (at most one runs at a
time); *news* is a tool outcome the model has not been shown yet; the *floor*
is free when no generation runs and the user is not speaking (audio may still
be playing: a new response queues behind it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fsm import ActionFailed, Clock, Event
from ledger import Ledger
from ledger import entries as le

from .config import AgentConfig
from .events import (
    LlmFailed,
    LlmTextDelta,
    LlmToolCallIssued,
    LlmTurnFinished,
    PlayoutFinished,
    PlayoutStarted,
    TimerFired,
    ToolCallFailed,
    ToolCallResolved,
    TranscriptFinal,
    TranscriptPartial,
)
from .llm import LlmClient, LlmError, StreamFinished, TextDelta, ToolCallReady
from .output import SpeechOutput
from .scheduler import ToolScheduler
from .tools import ToolRegistry

log = logging.getLogger(__name__)


def _spoken(text: str) -> str:
    """Whitespace folded: how planned and heard text are recorded, so the two compare equal."""
    return " ".join(text.split())


HOLD_TIMER = "hold"
RequestReason = Literal["user_turn", "tool_results", "hold", "continuation", "canned"]
# A sentence ends at . ! ? (optionally followed by a quote/bracket) and whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+")


@dataclass
class Generation:
    """One LLM response in flight."""

    response_id: str
    reason: RequestReason
    task: asyncio.Task[None] | None = None
    pushed: bool = False  # some text was handed to the output
    buffer: str = ""  # text not yet recorded as a planned sentence
    queued_calls: list[LlmToolCallIssued] = field(default_factory=list)  # sync mode
    call_ids: list[str] = field(default_factory=list)
    # A preemptive generation is held: its stream items wait here until it is adopted.
    held: list[Event] | None = None
    user_text: str = ""  # the transcript a preemptive generation answers
    ledger_len: int = 0  # ledger size when it started (anything new but partials: not adoptable)
    started_at: float = 0.0


class Conversation:
    """State and behaviour behind the agent's transition table."""

    def __init__(
        self,
        *,
        config: AgentConfig,
        system_prompt: str,
        llm: LlmClient,
        tools: ToolRegistry,
        output: SpeechOutput,
        ledger: Ledger,
        clock: Clock,
        post: Callable[[Event], None],
    ) -> None:
        self.config = config
        self.mode = config.mode
        self.system_prompt = system_prompt
        self.llm = llm
        self.tools = tools
        self.output = output
        self.ledger = ledger
        self.clock = clock
        self._post = post
        self.scheduler = ToolScheduler(tools, ledger, self._on_tool_outcome, clock)
        self.turn_id = 0
        self.gen: Generation | None = None
        self.preempt: Generation | None = None  # started at a pause, adopted at the turn's end
        self.playing: dict[str, bool] = {}  # response ids handed to the output, not yet finished
        self.news: set[str] = set()  # call ids with outcomes the model has not seen
        self.sync_awaiting: set[str] = set()
        self.silent_calls: set[str] = (
            set()
        )  # outcomes to record but not report (on_interrupt=continue)
        self.turn_calls: set[str] = set()
        self.followups_in_turn = 0
        self.holds_in_turn = 0
        self._hold_token = 0
        self._hold_phrase = itertools.cycle(config.hold_phrases)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False

    # ================================================================ helpers
    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Start a task this conversation owns (cancelled by :meth:`aclose`)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_tool_outcome(self, event: Event) -> None:
        """The scheduler recorded an outcome: mark it as news, then tell the FSM."""
        call_id = getattr(event, "call_id", "")
        self.sync_awaiting.discard(call_id)
        if call_id in self.silent_calls:
            self.silent_calls.discard(call_id)
        else:
            self.news.add(call_id)
        self._post(event)

    def _next_response_id(self) -> str:
        return f"r{next(self._ids)}"

    # ================================================================ guards
    def is_current(self, ev: Any) -> bool:
        """The event belongs to the generation in flight (not a cancelled one)."""
        return self.gen is not None and getattr(ev, "response_id", None) == self.gen.response_id

    def has_news(self, ev: Any = None) -> bool:
        """There are outcomes to report and the mode allows reporting them now."""
        if not self.news or self.followups_in_turn >= self.config.max_followups:
            return False
        if self.mode == "sync" and self.sync_awaiting:
            return False  # the baseline continues only when every call of the response is done
        return True

    def floor_free(self) -> bool:
        return self.gen is None

    def news_and_floor(self, ev: Any = None) -> bool:
        return self.floor_free() and self.has_news()

    def finishing_silent(self, ev: Any) -> bool:
        """The current generation ends without having said anything, and nothing plays."""
        return (
            self.is_current(ev)
            and self.gen is not None
            and not self.gen.pushed
            and not self.playing
        )

    def finishing_silent_with_news(self, ev: Any) -> bool:
        if not self.finishing_silent(ev):
            return False
        if self.mode == "sync" and self.gen is not None and self.gen.queued_calls:
            return False  # its calls start now; the continuation waits for them
        return self.has_news()

    def last_playout(self, ev: PlayoutFinished) -> bool:
        """This playout was the last audio queued and no generation runs."""
        return set(self.playing) <= {ev.response_id} and self.gen is None

    def last_playout_with_news(self, ev: PlayoutFinished) -> bool:
        return self.last_playout(ev) and self.has_news()

    def known_playout(self, ev: PlayoutStarted) -> bool:
        return ev.response_id in self.playing

    def nonempty(self, ev: TranscriptFinal) -> bool:
        return bool(ev.text.strip())

    def hold_due(self, ev: TimerFired) -> bool:
        return (
            ev.name == HOLD_TIMER
            and ev.token == self._hold_token
            and self._waiting_on_tools()
            and self.gen is None
            and not self.playing
        )

    def _waiting_on_tools(self) -> bool:
        return any(c in self.turn_calls for c in self.scheduler.pending())

    # ================================================================ user side
    def begin_user_speech(self, ev: Any) -> None:
        self._cancel_hold()

    def record_partial(self, ev: TranscriptPartial) -> None:
        self._cancel_hold()
        if ev.text.strip():
            self.ledger.append(
                le.UserUtterance(turn_id=self.turn_id + 1, text=ev.text, final=False)
            )

    def note_speech_end(self, ev: Any) -> None:
        """The VAD says the user stopped; the final transcript will follow."""

    def commit_user_turn(self, ev: TranscriptFinal) -> None:
        """Record the final transcript and start the turn's generation."""
        self.drop_preemptive(ev)
        self._begin_turn(ev.text.strip())
        self._start_generation("user_turn")

    def _begin_turn(self, text: str) -> None:
        self.turn_id += 1
        self.scheduler.new_turn(self.turn_id)
        self.turn_calls.clear()
        self.followups_in_turn = 0
        self.holds_in_turn = 0
        self._cancel_hold()
        self.ledger.append(le.UserUtterance(turn_id=self.turn_id, text=text, final=True))

    # ---------------------------------------------------------------- preemption
    def can_preempt(self, ev: Any) -> bool:
        return self.config.preemptive_generation and bool(getattr(ev, "text", "").strip())

    def start_preemptive(self, ev: Any) -> None:
        """The user paused: start answering the early transcript, holding the output.

        Nothing reaches the ledger or the speaker until the final transcript
        confirms the turn (:meth:`adopt_preemptive`); the LLM's time to first
        token is then already spent during the end-of-turn silence.
        """
        self.drop_preemptive(ev)
        text = " ".join(ev.text.split())
        rid = self._next_response_id()
        gen = Generation(response_id=rid, reason="user_turn", held=[], user_text=text)
        gen.ledger_len = len(self.ledger.entries)
        gen.started_at = self.clock.now()
        messages = self.ledger.render_messages(self.system_prompt) + [
            {"role": "user", "content": text}
        ]
        gen.task = self._spawn(
            self._generate(gen, messages, self.tools.openai_tools() or None), f"llm:{rid}"
        )
        self.preempt = gen

    def drop_preemptive(self, ev: Any = None) -> None:
        """The user went on (or anything else happened): the preemptive answer is void."""
        gen, self.preempt = self.preempt, None
        if gen is None:
            return
        if gen.task is not None and not gen.task.done():
            gen.task.cancel()
        self.ledger.append(
            le.Note(text=f"preemptive generation on {gen.user_text!r} dropped: the turn went on")
        )

    def matches_preemptive(self, ev: TranscriptFinal) -> bool:
        """The final transcript is what the preemptive generation answers, and nothing else changed."""
        gen = self.preempt
        if gen is None or " ".join(ev.text.split()) != gen.user_text:
            return False
        news = self.ledger.entries[gen.ledger_len :]
        return all(isinstance(e, le.UserUtterance) and not e.final for e in news)

    def adopt_preemptive(self, ev: TranscriptFinal) -> None:
        """Commit the turn and make the preemptive generation the current one."""
        gen = self.preempt
        assert gen is not None and gen.held is not None
        self.preempt = None
        self._begin_turn(gen.user_text)
        self.ledger.append(
            le.LlmRequestStarted(response_id=gen.response_id, reason="user_turn", mode=self.mode)
        )
        ahead = self.clock.now() - gen.started_at
        self.ledger.append(
            le.Note(
                text=f"{gen.response_id}: preemptive generation adopted; it started {ahead:.3f}s before the turn ended"
            )
        )
        self.news.clear()
        self.gen = gen
        held, gen.held = gen.held, None
        for event in held:
            self._post(event)

    def barge_in(self, ev: Any) -> None:
        """The user talks over the agent: stop audio, cancel the LLM, apply tool policies."""
        self._stop_talking()
        cancelled, silent = self.scheduler.on_interrupt()
        self.silent_calls.update(silent)
        self.sync_awaiting.clear()

    # ================================================================ generation
    def start_followup(self, ev: Any = None) -> None:
        """Report tool outcomes: a new generation that sees them."""
        self.followups_in_turn += 1
        self._start_generation("tool_results")

    def maybe_followup(self, ev: Any = None) -> None:
        """Start a follow-up if the floor is free and there is news (audio queues behind)."""
        if self.news_and_floor():
            self.start_followup(ev)

    def _start_generation(self, reason: RequestReason) -> None:
        if self.gen is not None:
            self._cancel_generation(self.gen)
        rid = self._next_response_id()
        self.gen = Generation(response_id=rid, reason=reason)
        self.ledger.append(le.LlmRequestStarted(response_id=rid, reason=reason, mode=self.mode))
        messages = self.ledger.render_messages(self.system_prompt)
        self.news.clear()
        tools = self.tools.openai_tools() or None
        self.gen.task = self._spawn(self._generate(self.gen, messages, tools), f"llm:{rid}")

    async def _generate(
        self, gen: Generation, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> None:
        rid = gen.response_id

        def emit(event: Event) -> None:
            if gen.held is not None:
                gen.held.append(event)  # preemptive: wait for the turn to really end
            else:
                self._post(event)

        try:
            async for item in self.llm.stream(messages, tools):
                if isinstance(item, TextDelta):
                    emit(LlmTextDelta(response_id=rid, text=item.text))
                elif isinstance(item, ToolCallReady):
                    emit(
                        LlmToolCallIssued(
                            response_id=rid,
                            call_id=item.call_id,
                            name=item.name,
                            arguments=item.arguments,
                        )
                    )
                elif isinstance(item, StreamFinished):
                    emit(LlmTurnFinished(response_id=rid, finish_reason=item.finish_reason))
        except asyncio.CancelledError:
            raise
        except LlmError as exc:
            emit(LlmFailed(response_id=rid, error=str(exc)))
        except Exception as exc:  # anything else from the client is still a failed request
            log.exception("LLM generation %s failed", rid)
            emit(LlmFailed(response_id=rid, error=f"{type(exc).__name__}: {exc}"))

    def _cancel_generation(self, gen: Generation) -> None:
        if gen.task is not None and not gen.task.done():
            gen.task.cancel()
        self._flush_planned(gen, final=True)
        self.ledger.append(
            le.LlmResponseFinished(
                response_id=gen.response_id, finish_reason="cancelled", error=None
            )
        )
        if self.gen is gen:
            self.gen = None

    def speak_delta(self, ev: LlmTextDelta) -> None:
        gen = self.gen
        assert gen is not None
        if not ev.text:
            return
        if not gen.pushed and not ev.text.strip():
            return  # leading whitespace is not speech
        gen.pushed = True
        self.playing.setdefault(gen.response_id, True)
        self.output.push(gen.response_id, ev.text)
        gen.buffer += ev.text
        self._flush_planned(gen, final=False)

    def _flush_planned(self, gen: Generation, *, final: bool) -> None:
        """Record complete sentences of ``gen``'s text as planned (all of it when ``final``)."""
        while True:
            m = _SENTENCE_END.search(gen.buffer)
            if m is None:
                break
            sentence, gen.buffer = _spoken(gen.buffer[: m.start()]), gen.buffer[m.end() :]
            if sentence:
                self.ledger.append(le.AgentTextPlanned(response_id=gen.response_id, text=sentence))
        if final and gen.buffer.strip():
            self.ledger.append(
                le.AgentTextPlanned(response_id=gen.response_id, text=_spoken(gen.buffer))
            )
            gen.buffer = ""

    def issue_call(self, ev: LlmToolCallIssued) -> None:
        """A call is complete in the stream: start it now (async) or after the response (sync)."""
        gen = self.gen
        assert gen is not None
        gen.call_ids.append(ev.call_id)
        self.turn_calls.add(ev.call_id)
        if self.mode == "sync":
            gen.queued_calls.append(ev)
        else:
            self._start_call(ev)

    def _start_call(self, ev: LlmToolCallIssued) -> None:
        self.scheduler.start(
            call_id=ev.call_id, response_id=ev.response_id, name=ev.name, arguments=ev.arguments
        )

    def finish_response(self, ev: LlmTurnFinished) -> None:
        """The stream ended: record it, start sync-mode calls, let the output finish."""
        gen = self.gen
        assert gen is not None
        self._flush_planned(gen, final=True)
        if gen.queued_calls:
            self.sync_awaiting.update(c.call_id for c in gen.queued_calls)
            for call in gen.queued_calls:
                self._start_call(call)  # all at once: gathered, in parallel
        self.ledger.append(
            le.LlmResponseFinished(
                response_id=gen.response_id,
                finish_reason="tool_calls" if gen.call_ids else "stop",
                error=None,
            )
        )
        if gen.pushed:
            self.output.end(gen.response_id)
        self.gen = None

    def apologize(self, ev: LlmFailed) -> None:
        """The LLM failed after retries: say so, record why, keep the session alive."""
        gen = self.gen
        assert gen is not None
        self.ledger.append(
            le.Note(text=f"LLM request {gen.response_id} failed: {ev.error}", level="error")
        )
        self._flush_planned(gen, final=True)
        text = (" " if gen.pushed else "") + self.config.apology
        gen.pushed = True
        self.playing.setdefault(gen.response_id, True)
        self.output.push(gen.response_id, text)
        self.ledger.append(
            le.AgentTextPlanned(response_id=gen.response_id, text=self.config.apology)
        )
        for call in gen.queued_calls:  # sync mode: calls of a failed response never start
            self.scheduler.start(
                call_id=call.call_id,
                response_id=call.response_id,
                name=call.name,
                arguments=call.arguments,
            )
        self.ledger.append(
            le.LlmResponseFinished(
                response_id=gen.response_id, finish_reason="error", error=ev.error
            )
        )
        self.output.end(gen.response_id)
        self.gen = None

    # ================================================================ playout
    def playout_started(self, ev: PlayoutStarted) -> None:
        self._cancel_hold()

    def record_played(self, ev: PlayoutFinished) -> None:
        if self.playing.pop(ev.response_id, None) is None:
            return  # already recorded (e.g. cut off by a barge-in)
        self.ledger.append(
            le.AgentTextPlayed(
                response_id=ev.response_id, text=_spoken(ev.heard), interrupted=ev.interrupted
            )
        )

    # ================================================================ holding
    def arm_hold(self, ev: Any = None) -> None:
        """Silence while tools run: after ``hold_after_s`` say a hold phrase (async modes)."""
        self._cancel_hold()
        if self.mode == "sync" or not self._waiting_on_tools():
            return
        if self.holds_in_turn >= self.config.max_hold_phrases or not self.config.hold_phrases:
            return
        token = self._hold_token
        self._spawn(self._hold_timer(token), "hold-timer")

    async def _hold_timer(self, token: int) -> None:
        await self.clock.sleep(self.config.hold_after_s)
        self._post(TimerFired(name=HOLD_TIMER, token=token))

    def _cancel_hold(self) -> None:
        self._hold_token += 1

    def say_hold(self, ev: TimerFired) -> None:
        """Say a short canned hold phrase (no LLM round trip: it must be instant)."""
        self.holds_in_turn += 1
        self.say(next(self._hold_phrase), reason="canned")

    def say(self, text: str, *, reason: RequestReason = "canned") -> str:
        """Speak a fixed text as its own response (greetings, hold phrases)."""
        rid = self._next_response_id()
        self.ledger.append(le.LlmRequestStarted(response_id=rid, reason=reason, mode=self.mode))
        self.ledger.append(le.AgentTextPlanned(response_id=rid, text=text))
        self.ledger.append(
            le.LlmResponseFinished(response_id=rid, finish_reason="stop", error=None)
        )
        self.playing[rid] = True
        self.output.push(rid, text)
        self.output.end(rid)
        return rid

    # ================================================================ errors, end
    def record_action_failure(self, ev: ActionFailed) -> None:
        self.ledger.append(
            le.Note(text=f"action {ev.action} failed during {ev.during}: {ev.error}", level="error")
        )

    def stuck(self, ev: Any = None) -> bool:
        """Nothing runs and nothing plays: without help the floor would never come back."""
        return self.gen is None and not self.playing

    def recover(self, ev: ActionFailed) -> None:
        """An action broke and nothing is left running: apologise so the caller is not left hanging."""
        self.say(self.config.apology, reason="canned")

    def _stop_talking(self) -> None:
        """Drop the preemptive answer and the hold timer, cut the audio (recording what was
        heard), cancel the generation in flight."""
        self.drop_preemptive()
        self._cancel_hold()
        heard = self.output.interrupt()
        for rid in list(self.playing):
            self.ledger.append(
                le.AgentTextPlayed(
                    response_id=rid, text=_spoken(heard.get(rid, "")), interrupted=True
                )
            )
        self.playing.clear()
        if self.gen is not None:
            self._cancel_generation(self.gen)

    def shutdown(self, ev: Any) -> None:
        self._stop_talking()
        self.ledger.append(le.SessionEnded(reason=getattr(ev, "reason", "ended")))

    async def aclose(self) -> None:
        """Cancel every owned task and running tool (idempotent)."""
        if self.closed:
            return
        self.closed = True
        await self.scheduler.aclose()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def is_settled(self) -> bool:
        """No generation streaming (a finished, held preemptive one counts as settled) and no
        running tool call: only playout may be going on."""
        held_done = self.preempt is None or (self.preempt.task is not None and self.preempt.task.done())
        return self.gen is None and held_done and not self.scheduler.pending()

    def is_idle(self) -> bool:
        """No generation, nothing playing, no running call whose result will be reported."""
        return (
            self.gen is None
            and self.preempt is None
            and not self.playing
            and not any(c not in self.silent_calls for c in self.scheduler.pending())
            and not (self.news and self.followups_in_turn < self.config.max_followups)
        )


# Guards the table uses that read only the event (kept here for one import).
def is_outcome(ev: Event) -> bool:
    return isinstance(ev, ToolCallResolved | ToolCallFailed)
