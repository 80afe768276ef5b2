"""The agent FSM's context: what the guards read and what the actions do.

The transition table (:mod:`voice_agent.agent_fsm`) decides *when*; this
module says *what*: start and end LLM generations, hand text to the speech
output, start tool futures, record everything in the ledger, apply the
barge-in rules. Guards are pure reads of this object; actions are methods
with the ``(self, event)`` signature so that the table can name them.

Its parts each live in their own module: the mode is one policy object
(:mod:`voice_agent.modes`) chosen once; forks — speculation on partial
transcripts and the preemptive answer at a pause — are
:mod:`voice_agent.speculation`'s; hold phrases are :mod:`voice_agent.holds`'s;
a generation's state is :mod:`voice_agent.generation`'s. Every generation
ends in one place, :meth:`Conversation._end_generation`.

Terms: a *generation* is one LLM request/response (at most one runs at a
time, besides held forks); *news* is a tool outcome the model has not been
shown yet; the *floor* is free when no generation runs and the user is not
speaking (audio may still be playing: a new response queues behind it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal
from urllib.parse import urlsplit

from fsm import ActionFailed, Clock, Event
from ledger import Ledger
from ledger import entries as le
from ledger.budget import FitResult
from ledger.state import RESULT_SUFFIX

from .call_control import (
    CallActionFailed,
    CallActionRequested,
    CallControl,
    HangUp,
    Transfer,
    caller_closes,
)
from .call_flow import CallFlow
from .caller_silence import CallerSilence, SilenceFrom
from .config import AgentConfig
from .confirmations import Confirmations
from .events import (
    DtmfReceived,
    LlmFailed,
    LlmStalled,
    LlmTextDelta,
    LlmToolCallIssued,
    LlmTurnFinished,
    PlayoutFinished,
    PlayoutStarted,
    SessionEnded,
    TimerFired,
    ToolCallFailed,
    ToolCallResolved,
    TranscriptFinal,
    TranscriptPartial,
)
from .generation import Generation, RequestReason, spoken
from .guidance import says_nothing_more
from .holds import HoldTimer
from .llm import LlmClient, LlmError, StreamFinished, TextDelta, ToolCallReady
from .llm_watch import Hearing, LlmQuiet, SentencePaused, SilencePolicy, watch_silence
from .modes import policy_for
from .output import SpeechOutput, SpeechPreparer, Withdrawn
from .repeats import SaidInTurn
from .scheduler import ToolScheduler
from .speculation import Speculator
from .tools import ToolRegistry

log = logging.getLogger(__name__)

# Seconds between hold phrases while the LLM stays silent: a short phrase (~0.8 s spoken)
# plus ~1.2 s of quiet keeps every silence under the 2 s the caller should ever wait.
LLM_HOLD_AGAIN_S = 2.0

EndReason = Literal["stop", "tool_calls", "cancelled", "error"]

# The loop guard counts tool rounds (``max_followups``); as a backstop against a model
# that answers every outcome with another parallel burst, follow-up requests per turn are
# also capped at this multiple of it. Unit: requests per round allowed.
FOLLOWUP_CAP_FACTOR = 4
# A follow-up that has produced nothing yet is restarted at most this many times to take in
# outcomes that arrived meanwhile (one request reports them all); each restart costs the
# request's time to first token again, so the caller's wait stays bounded.
MAX_BATCH_RESTARTS = 3
# Leading text longer than this is content, not a filler: it is spoken, never dropped. Words.
PREAMBLE_MAX_WORDS = 10


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
        self.policy = policy_for(config.mode)
        self.mode = self.policy.name
        self.system_prompt = self.policy.system_prompt(system_prompt)
        self.llm = llm
        self.tools = tools
        self.output = output
        self.ledger = ledger
        self.clock = clock
        self._post = post
        self.scheduler = ToolScheduler(tools, ledger, self._on_tool_outcome, clock)
        self.turn_id = 0
        self.gen: Generation | None = None
        self.playing: dict[str, bool] = {}  # response ids handed to the output, not yet finished
        self.news: set[str] = set()  # call ids with outcomes the model has not seen
        # calls of a response whose outcomes are reported together (policies that do not
        # report partial outcomes: the sync baseline)
        self.awaiting_together: set[str] = set()
        self.silent_calls: set[str] = set()  # outcomes recorded, not reported (continue)
        self.turn_calls: set[str] = set()
        self.followups_in_turn = 0
        self.call_round: dict[str, int] = {}  # call id -> tool round of the response that issued it
        self.said_in_turn = False  # the LLM said something to the caller in this turn
        # "this is taking longer than usual" was said in this turn (once: a follow-up's
        # long wait in the same turn gets plain hold phrases)
        self.long_wait_said = False
        self.said = SaidInTurn()  # its sentences: a later generation does not say them again
        self.loop_guard_told = False  # the caller was told the loop guard stopped this turn
        self._silence = SilencePolicy(
            hold_after_s=config.llm_hold_after_s,
            # Another phrase every LLM_HOLD_AGAIN_S while it goes on, so the caller never
            # waits more than ~2 s in silence before the apology at the deadline.
            hold_again_s=LLM_HOLD_AGAIN_S,
            deadline_s=config.llm_deadline_s,
            patience_s=config.llm_patience_s,
            # as many as fit with the last one said a second before the apology
            max_holds=1
            + max(
                0,
                int((config.llm_deadline_s - 1.0 - config.llm_hold_after_s) // LLM_HOLD_AGAIN_S),
            ),
            # a long wait: a few short holds, once "this is taking longer", then spaced out
            holds_before_long_wait=config.llm_holds_before_long_wait,
            max_hold_gap_s=max(LLM_HOLD_AGAIN_S, config.llm_hold_gap_max_s),
        )
        self._llm_hold_phrases = itertools.cycle(config.hold_phrases or ("One moment.",))
        # when the caller stopped (or will stop) hearing the agent: hold phrases count from it
        self.silence = CallerSilence(clock, self._unplayed_s)
        self._ids = itertools.count(1)
        self._call_ids: set[str] = set()  # every call id a stream of this session issued
        self._tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self.holds = HoldTimer(
            after_s=config.hold_after_s,
            phrases=config.hold_phrases,
            max_per_turn=config.max_hold_phrases,
            clock=clock,
            post=post,
            spawn=self._spawn,
        )
        # The telephone call's own rules (issue 8): keypad, silence, length, call actions,
        # and writes held for the caller's yes.
        self.call = CallFlow(config.call, clock=clock, post=post, spawn=self._spawn)
        self.confirmations = Confirmations()
        self.scheduler.call_control = CallControl(post, may_hang_up=self._caller_closed)
        self.speculation = Speculator(
            policy=self.policy,
            config=config.speculation,
            preemptive=config.preemptive_generation,
            local_llm=_llm_is_local(config.speculation.fork_llm, llm),
            scheduler=self.scheduler,
            tools=tools,
            ledger=ledger,
            clock=clock,
            post=post,
            launch=self._launch,
            system_prompt=self.system_prompt,
        )

    # ================================================================ helpers
    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a task this conversation owns (cancelled by :meth:`aclose`)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _unplayed_s(self) -> float:
        """Seconds of the agent's speech the caller has still to hear (responses play one
        after another: all of them)."""
        return sum(self.output.unplayed_s(rid) for rid in self.playing)

    def _hand_over(
        self, response_id: str, text: str, *, end: bool = False, hold: bool = False
    ) -> None:
        """Give ``text`` of ``response_id`` to the output (and end it): the one place the
        agent's speech goes out. It is playing until its PlayoutFinished; ``self.silence``
        learns at once what the caller has to hear (``hold``: a hold phrase for a slow
        model, which does not end the caller's wait for the answer)."""
        left = self._unplayed_s()
        self.playing.setdefault(response_id, True)
        if text:
            self.output.push(response_id, text)
        if end:
            self.output.end(response_id)
        self.silence.handed_over(added=self._unplayed_s() > left, hold=hold)

    def _on_tool_outcome(self, event: Event) -> None:
        """The scheduler recorded an outcome: mark it as news, then tell the FSM.

        A speculative call's outcome is news only through the final call that
        adopted it; one nobody adopted (yet) is not news.
        """
        call_id = getattr(event, "call_id", "")
        if self.speculation.is_speculative(call_id):
            final = self.speculation.final_of(call_id)
            if final is None:
                self._post(event)
                return
            # Adopted (or claimed: the adoption is recorded when the answer's stream ends,
            # before any follow-up can start): the outcome is news for the final call.
            call_id = final
        self._outcome_arrived(call_id)
        self._post(event)

    def _outcome_arrived(self, call_id: str) -> None:
        """The one place that decides whether a recorded outcome is news (a follow-up will
        report it) or not: a call whose outcome stays silent (its ``on_interrupt`` policy,
        a write held for the caller's yes), or a result that asks for no reply
        (`voice_agent.guidance.SAY_NOTHING_MORE`: the engine says what happens itself, as
        for a transfer; any words of the model's after it could only contradict them).
        The ledger keeps the outcome either way; a later generation still sees it."""
        self.awaiting_together.discard(call_id)
        if call_id in self.silent_calls:
            self.silent_calls.discard(call_id)
            return
        outcome = self.ledger.call(call_id).outcome
        if isinstance(outcome, le.ToolCallResolved) and says_nothing_more(outcome.result):
            self.ledger.append(
                le.Note(text=f"{call_id}: its result asks for no reply; no follow-up for it")
            )
            return
        self.news.add(call_id)

    def _next_response_id(self) -> str:
        return f"r{next(self._ids)}"

    # ================================================================ guards
    def is_current(self, ev: Any) -> bool:
        """The event belongs to the generation in flight (not a cancelled one)."""
        return self.gen is not None and getattr(ev, "response_id", None) == self.gen.response_id

    def has_news(self, ev: Any = None) -> bool:
        """There are outcomes to report and the mode (and the loop guard) allow reporting them now.

        An outcome that a still-pending call of the turn takes as an argument (the model
        named its future) is not reported on its own: the model already routed it, and a
        report now would only buy a "still checking" sentence that the chain's answer then
        queues behind. It is reported with the dependent call's outcome (or failure).
        """
        if not self.news or self._loop_guard_blocks():
            return False
        if self.call.ending is not None:
            return False  # the call is ending: no more answers, the goodbye is the last word
        if not self.policy.reports_partial_outcomes and self.awaiting_together:
            return False
        feeding = self._feeding_pending()
        return any(call_id not in feeding for call_id in self.news)

    def _feeding_pending(self) -> set[str]:
        """Calls whose outcome a pending, reported call of this turn waits for as an argument."""
        feeding: set[str] = set()
        for call_id in self.scheduler.pending():
            final = self.speculation.final_of(call_id) or call_id
            if final not in self.turn_calls or final in self.silent_calls:
                continue
            try:
                feeding.update(self.ledger.call(final).started.depends_on)
            except KeyError:
                continue
        return feeding

    def _next_round(self) -> int:
        """The tool round of a follow-up that would report the current news."""
        return 1 + max((self.call_round.get(c, 0) for c in self.news), default=0)

    def _loop_guard_blocks(self) -> bool:
        """Reporting the news would go past the loop guard: too many dependent tool rounds
        in this turn (a runaway loop), or far too many follow-up requests."""
        return (
            self._next_round() > self.config.max_followups
            or self.followups_in_turn >= self.config.max_followups * FOLLOWUP_CAP_FACTOR
        )

    def loop_guard_tripped(self, ev: Any = None) -> bool:
        """Outcomes wait that the loop guard will not report, the floor is free, and the
        caller has not been told yet in this turn."""
        return (
            bool(self.news)
            and self._loop_guard_blocks()
            and not self.loop_guard_told
            and self.gen is None
        )

    def tell_loop_guard(self, ev: Any = None) -> None:
        """Say that the plan stopped at the loop guard and offer a way forward (a new turn
        — "keep going" — reports the waiting outcomes with a fresh guard)."""
        self.loop_guard_told = True
        self.ledger.append(
            le.Note(
                text=f"loop guard: {len(self.news)} outcome(s) not reported in turn {self.turn_id}"
                f" (next tool round {self._next_round()}, max_followups="
                f"{self.config.max_followups}, {self.followups_in_turn} follow-ups so far)",
                level="warning",
            )
        )
        self.say(self.config.loop_guard_message, reason="canned")

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
        if self.gen is not None and self.gen.deferred_calls:
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

    def unheard(self, ev: TranscriptFinal) -> bool:
        """The caller spoke, but the speech recognition made out no words."""
        return ev.unheard and not ev.text.strip()

    def hold_due(self, ev: TimerFired) -> bool:
        return (
            self.holds.is_current(ev)
            and self._waiting_on_tools()
            and self.gen is None
            and not self.playing
        )

    def _waiting_on_tools(self) -> bool:
        """Some call of this turn has no outcome yet (an adopted one through its fork's call)."""
        for call_id in self.scheduler.pending():
            final = self.speculation.final_of(call_id) or call_id
            if final in self.turn_calls:
                return True
        return False

    # ================================================================ user side
    def begin_user_speech(self, ev: Any) -> None:
        self.holds.cancel()
        self.call.caller_active()

    def record_partial(self, ev: TranscriptPartial) -> None:
        self.holds.cancel()
        self.call.caller_active()
        self.speculation.note_held_back(self.turn_id + 1)
        if ev.text.strip():
            self.ledger.append(
                le.UserUtterance(turn_id=self.turn_id + 1, text=ev.text, final=False)
            )

    def record_backchannel(self, ev: Any) -> None:
        """The user said "mhm" (or the like) over the agent: record it; the agent goes on.

        Except while a read-back waits for a yes or no: "yes" over "shall I go ahead?" is
        the answer, not feedback, so it becomes the caller's turn.
        """
        pending = self.confirmations.pending
        if pending is not None and pending.asked:
            from .call_control import confirmation_answer

            if confirmation_answer(ev.text) != "other":
                self.ledger.append(le.Note(text=f"{ev.text!r} over the read-back answers it"))
                self._post(TranscriptFinal(text=ev.text))
                return
        self.ledger.append(
            le.Note(text=f"backchannel while the agent spoke: {ev.text!r} (not an interruption)")
        )

    def ask_to_repeat(self, ev: TranscriptFinal) -> None:
        """Real speech came out of the speech recognition empty: record the unheard turn and
        ask the caller to say it again (a spoken response: barge-in works as for any)."""
        self.ledger.append(
            le.Note(
                text="the caller spoke but the speech recognition heard no words; "
                "asked them to say it again",
                level="warning",
            )
        )
        self.say(self.config.unheard_phrase)

    def note_speech_end(self, ev: Any) -> None:
        """The VAD says the user stopped; the final transcript will follow."""

    def commit_user_turn(self, ev: TranscriptFinal) -> None:
        """Record the final transcript and start the turn's answer (forks stay open: the
        answer's calls adopt theirs)."""
        self.speculation.void_pause_forks()
        self.speculation.stop_streams()
        self._begin_turn(ev.text.strip())
        self._start_generation("user_turn")

    def _begin_turn(self, text: str) -> None:
        self.turn_id += 1
        self.scheduler.new_turn(self.turn_id)
        self.turn_calls.clear()
        self.followups_in_turn = 0
        self.call_round.clear()  # older calls' late outcomes start again at round 1
        self.said_in_turn = False
        self.long_wait_said = False
        self.said.clear()
        self.loop_guard_told = False
        self.silence.starts_now()  # the caller just spoke: their wait for the answer begins
        self.holds.new_turn()
        self.ledger.append(le.UserUtterance(turn_id=self.turn_id, text=text, final=True))

    # ---------------------------------------------------------------- forks
    def fork_due(self, ev: TranscriptPartial) -> bool:
        """The partial transcript's stable prefix grew enough for a fork (mode, policy, budget)."""
        return self.speculation.partial_fork_due(ev.text, self.turn_id + 1)

    def open_fork(self, ev: TranscriptPartial) -> None:
        """Speculate on the partial transcript: a held generation, reads started early."""
        self.speculation.open(ev.text, "partial", self.turn_id + 1, self._next_response_id())

    def can_preempt(self, ev: Any) -> bool:
        """The user paused on a transcript worth answering early (preemptive generation)."""
        return self.speculation.pause_fork_due(getattr(ev, "text", ""))

    def start_preemptive(self, ev: Any) -> None:
        """The user paused: fork on the early transcript (the fork on the early final)."""
        self.speculation.open(ev.text, "pause", self.turn_id + 1, self._next_response_id())

    def drop_preemptive(self, ev: Any = None) -> None:
        """The user went on after the pause: the early answer can no longer be adopted whole."""
        self.speculation.void_pause_forks()

    def discard_forks(self, ev: Any = None) -> None:
        """No turn came of the speech (an empty transcript): close its forks unadopted."""
        self.speculation.reconcile(self.turn_id + 1, "the turn produced no transcript")

    def matches_fork(self, ev: TranscriptFinal) -> bool:
        """The newest fork answers exactly the final transcript and nothing else happened."""
        return self.speculation.adoptable(ev.text) is not None

    def adopt_fork(self, ev: TranscriptFinal) -> None:
        """Commit the turn and make the fork's generation the turn's answer."""
        fork = self.speculation.adoptable(ev.text)
        assert fork is not None
        self._begin_turn(fork.basis)
        gen = fork.gen
        gen.turn_id = self.turn_id
        self.ledger.append(
            le.LlmRequestStarted(response_id=gen.response_id, reason="user_turn", mode=self.mode)
        )
        ahead = self.clock.now() - fork.opened_at
        self.ledger.append(
            le.Note(
                text=f"{gen.response_id}: fork {fork.fork_id} ({fork.trigger}) adopted whole; "
                f"it started {ahead:.3f}s before the turn ended"
            )
        )
        self.news.clear()
        self.gen = gen
        for event in self.speculation.take_whole(fork):
            self._post(event)

    def barge_in(self, ev: Any) -> None:
        """The user talks over the agent: stop audio, cancel the LLM, apply tool policies."""
        self._stop_talking()
        cancelled, silent = self.scheduler.on_interrupt()
        self.silent_calls.update(silent)
        self.awaiting_together.clear()

    # ================================================================ generation
    def start_followup(self, ev: Any = None) -> None:
        """Report tool outcomes: a new generation that sees them."""
        self.followups_in_turn += 1
        tool_round = self._next_round()
        self._start_generation("tool_results")
        assert self.gen is not None
        self.gen.tool_round = tool_round

    def can_batch(self, ev: Any) -> bool:
        """An outcome to report arrived while a follow-up has produced nothing yet."""
        gen = self.gen
        return (
            gen is not None
            and gen.reason == "tool_results"
            and gen.held is None
            and gen.streamed_chars == 0
            and not gen.pushed
            and not gen.call_ids
            and gen.restarts < MAX_BATCH_RESTARTS
            and getattr(ev, "call_id", None) in self.news
            and self.has_news()
        )

    def batch_into_followup(self, ev: Any) -> None:
        """Restart the silent follow-up so that one request reports every outcome so far
        (instead of one request per outcome)."""
        gen = self.gen
        assert gen is not None
        self.ledger.append(
            le.Note(
                text=f"{gen.response_id}: restarted before its first token to report "
                f"{getattr(ev, 'call_id', '?')} in the same request"
            )
        )
        tool_round = max(gen.tool_round, self._next_round())
        self._start_generation("tool_results")  # ends ``gen`` as cancelled
        assert self.gen is not None
        self.gen.tool_round = tool_round
        self.gen.restarts = gen.restarts + 1

    def maybe_followup(self, ev: Any = None) -> None:
        """Start a follow-up if the floor is free and there is news (audio queues behind)."""
        if self.news_and_floor():
            self.start_followup(ev)

    def _start_generation(self, reason: RequestReason) -> None:
        if self.gen is not None:
            self._end_generation(self.gen, "cancelled")
        gen = Generation(response_id=self._next_response_id(), reason=reason, turn_id=self.turn_id)
        self.gen = gen
        self.ledger.append(
            le.LlmRequestStarted(response_id=gen.response_id, reason=reason, mode=self.mode)
        )
        messages = self.ledger.render_messages(self.system_prompt)
        spec = self.config.speculation
        if (
            reason == "user_turn"
            and self.policy.fork_runs_reads
            and spec.drop_covered_preamble
            and not self.news  # with news to report, the leading text may be reporting it
            and self.speculation.has_started_calls(self.turn_id)
        ):
            gen.preamble = ""  # speculative results are in or coming: a filler may be needless
        self.news.clear()
        self._launch(gen, messages)

    def _prepare_held(self, gen: Generation) -> None:
        """A held preemptive answer (a pause fork) has more text: the output may get its
        first words ready, so that adopted at the turn's end it is heard at once."""
        fork = self.speculation.fork_of(gen)
        if not isinstance(self.output, SpeechPreparer) or fork is None or gen.held is None:
            return
        if fork.trigger == "pause":
            self.output.prepare("".join(e.text for e in gen.held if isinstance(e, LlmTextDelta)))

    def _launch(self, gen: Generation, messages: list[dict[str, Any]]) -> None:
        """Start ``gen``'s LLM stream as an owned task."""
        gen.task = self._spawn(
            self._generate(gen, messages, self.tools.openai_tools() or None),
            f"llm:{gen.response_id}",
        )

    async def _generate(
        self, gen: Generation, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> None:
        rid = gen.response_id

        def emit(event: Event) -> None:
            if gen.held is not None:
                self.speculation.held(gen, event)  # a fork: wait for its adoption
                if isinstance(event, LlmTextDelta):
                    self._prepare_held(gen)
            else:
                self._post(event)

        try:
            # Hold phrases count from the caller's silence: it may have begun before this
            # request (earlier audio ended, tools ran; where the policy holds the line, the
            # first hold counts from then), or begin later (speech still playing).
            hearing: Hearing = self.silence
            if not self.policy.holds_the_line:
                hearing = SilenceFrom(self.silence, self.clock.now())

            def record_fit(fit: FitResult) -> None:
                if gen.held is None:  # a fork's record would void its adoption; logged anyway
                    self.ledger.append(
                        le.Note(
                            text=f"{rid}: context fitted into {fit.estimated_tokens} estimated "
                            f"tokens ({fit.elided_turns} older turns elided into a digest, "
                            f"{fit.elided_blocks} blocks dropped, {fit.capped_contents} "
                            "contents cut); the ledger keeps everything"
                        )
                    )

            # (test doubles of the client take no on_fit)
            fit_kw: dict[str, Any] = (
                {"on_fit": record_fit} if isinstance(self.llm, LlmClient) else {}
            )
            stream = watch_silence(
                self.llm.stream(messages, tools, **fit_kw),
                self.clock,
                self._silence,
                hearing=hearing,
            )
            async for item in stream:
                if isinstance(item, SentencePaused):
                    if gen.held is None:
                        self._post(LlmStalled(response_id=rid, silent_s=item.silent_s, hold=False))
                elif isinstance(item, LlmQuiet):
                    if gen.held is None:  # a fork's silence is nobody's: the caller still talks
                        self._post(
                            LlmStalled(
                                response_id=rid,
                                silent_s=item.silent_s,
                                long_wait=item.long_wait,
                            )
                        )
                elif isinstance(item, TextDelta):
                    gen.streamed_chars += len(item.text)
                    emit(LlmTextDelta(response_id=rid, text=item.text))
                elif isinstance(item, ToolCallReady):
                    gen.streamed_chars += len(item.name) + len(item.arguments)
                    emit(
                        LlmToolCallIssued(
                            response_id=rid,
                            call_id=self._unique_call_id(item.call_id, rid),
                            name=item.name,
                            arguments=item.arguments,
                        )
                    )
                elif isinstance(item, StreamFinished):
                    tokens = (item.usage or {}).get("completion_tokens")
                    if isinstance(tokens, int):
                        gen.completion_tokens = tokens
                    emit(LlmTurnFinished(response_id=rid, finish_reason=item.finish_reason))
        except asyncio.CancelledError:
            raise
        except LlmError as exc:
            gen.failed = True
            emit(LlmFailed(response_id=rid, error=str(exc)))
        except Exception as exc:  # anything else from the client is still a failed request
            log.exception("LLM generation %s failed", rid)
            gen.failed = True
            emit(LlmFailed(response_id=rid, error=f"{type(exc).__name__}: {exc}"))

    def _end_generation(self, gen: Generation, how: EndReason, error: str | None = None) -> None:
        """The one place a generation ends, however it ends.

        Cancels its stream if still running, records its remaining text as
        planned, starts the calls the policy deferred (unless it was
        cancelled), records ``LlmResponseFinished``, closes its output, and —
        for a turn's answer — reconciles the turn's forks.
        """
        if gen.streaming:
            assert gen.task is not None
            gen.task.cancel()
        if gen.preamble is not None:
            if gen.call_ids and how != "cancelled" and gen.preamble.strip():
                self.ledger.append(
                    le.Note(
                        text=f"{gen.response_id}: leading text {spoken(gen.preamble)!r} not "
                        "spoken: every call it would cover adopted a finished speculative result"
                    )
                )
                gen.preamble = None
                if self.config.speculation.covered_ack and not gen.acked:
                    self.say(self.config.speculation.covered_ack, reason="canned")
            elif how in ("stop", "tool_calls"):
                self._release_preamble(gen)  # no call: it is the answer
            else:
                gen.preamble = None
        if how in ("stop", "tool_calls"):
            last = gen.repeats.finish(self.said)
            self._note_repeats(gen, last.repeats)
            if last.text or gen.withheld:  # the answer's last words (after a hold phrase)
                self._speak(gen, last.text)
        else:
            self._drop_withheld(gen, f"the answer ended ({how})")
        self._record_planned(gen, final=True)
        if gen.deferred_calls and how != "cancelled":
            self.awaiting_together.update(c.call_id for c in gen.deferred_calls)
            for call in gen.deferred_calls:  # all at once: gathered, in parallel
                self._start_call(call)
        gen.deferred_calls.clear()
        self.ledger.append(
            le.LlmResponseFinished(
                response_id=gen.response_id,
                finish_reason=how,
                error=error,
                completion_tokens=gen.tokens(),
            )
        )
        if gen.pushed and how != "cancelled":
            self._hand_over(gen.response_id, "", end=True)
        if self.gen is gen:
            self.gen = None
        self._ask_confirmation(gen, how)
        if gen.reason == "user_turn":
            reason = "the turn was answered" if how != "cancelled" else "the answer was cancelled"
            self.speculation.reconcile(gen.turn_id, reason)

    def _on_adopted_outcome(self, final_id: str) -> None:
        """An adopted call's outcome was already there when the answer claimed it."""
        self._outcome_arrived(final_id)

    def speak_delta(self, ev: LlmTextDelta) -> None:
        gen = self.gen
        assert gen is not None
        if not ev.text:
            return
        if gen.preamble is not None:
            gen.preamble += ev.text
            ack = self.config.speculation.covered_ack
            if ack and not gen.acked and gen.preamble.strip():
                # The caller hears something as soon as a plain answer would have started:
                # the short acknowledgement now, the held text later only if it is needed.
                gen.acked = True
                self.say(ack, reason="canned")
            now = self.clock.now()
            gen.preamble_since = gen.preamble_since if gen.preamble_since is not None else now
            if (
                now - gen.preamble_since >= self.config.speculation.preamble_hold_s
                or len(gen.preamble.split()) > PREAMBLE_MAX_WORDS
            ):
                self._release_preamble(gen)
            return
        self._push_text(gen, ev.text)

    def _release_preamble(self, gen: Generation) -> None:
        """Speak the held leading text after all (some call needs the wait it covers)."""
        text, gen.preamble = gen.preamble, None
        if text:
            self._push_text(gen, text)

    def _push_text(self, gen: Generation, text: str) -> None:
        """The model's text for the output, less the sentences an earlier generation of this
        turn said (:mod:`voice_agent.repeats`)."""
        passed = gen.repeats.push(text, self.said)
        self._note_repeats(gen, passed.repeats)
        if passed.text:
            self._speak(gen, passed.text)

    def _note_repeats(self, gen: Generation, repeats: list[str]) -> None:
        for sentence in repeats:
            self.ledger.append(
                le.Note(
                    text=f"{gen.response_id}: {spoken(sentence)!r} not said again: the caller "
                    "heard it earlier in this turn"
                )
            )

    def _speak(self, gen: Generation, text: str) -> None:
        """Hand ``text`` to the output (after the words taken back at a stall) and record
        the sentences it completes as planned."""
        text = gen.rejoin(text)  # a number a pause cut is said whole
        if gen.withheld:  # the sentence taken back at a stall goes on: said whole
            text, gen.withheld = gen.withheld + text, ""
        if not gen.pushed and not text.strip():
            return  # leading whitespace is not speech
        gen.pushed = True
        self.said_in_turn = True
        self._hand_over(gen.response_id, text)
        self.call.spoke_since_request = True
        self._record(gen, gen.plan(text))

    def _drop_withheld(self, gen: Generation, why: str) -> None:
        """The sentence taken back at a stall, and the one held while it might be a repeat,
        will not be said: record that, not a plan."""
        gen.withheld += gen.repeats.discard(self.said)
        if gen.withheld.strip():
            self.ledger.append(
                le.Note(
                    text=f"{gen.response_id}: unfinished sentence {spoken(gen.withheld)!r} "
                    f"not said: {why}"
                )
            )
        gen.withheld = ""

    def _record_planned(self, gen: Generation, *, final: bool) -> None:
        """Record complete sentences of ``gen``'s text as planned (all of it when ``final``)."""
        self._record(gen, gen.take_sentences(final=final))

    def _record(self, gen: Generation, sentences: list[str]) -> None:
        for sentence in sentences:
            self.ledger.append(le.AgentTextPlanned(response_id=gen.response_id, text=sentence))

    def _unique_call_id(self, call_id: str, response_id: str) -> str:
        """The model's call id, or a fresh one when this session already used it.

        Servers reuse ids across responses (``call_0`` in every response, a model
        repeating an earlier call verbatim); the ledger requires unique ids, so a
        reused one is renamed here, where the call enters the engine, and every
        later record and the rendered history use the new name.
        """
        taken = self._call_ids

        def used(cid: str) -> bool:
            base = cid.removesuffix(RESULT_SUFFIX)
            return any(c in taken or self._ledger_has_call(c) for c in {cid, base})

        fresh, n = call_id, 0
        while used(fresh):
            n += 1
            fresh = f"call_{response_id}_{n}"
        taken.add(fresh)
        return fresh

    def _ledger_has_call(self, call_id: str) -> bool:
        try:
            self.ledger.call(call_id)
        except KeyError:
            return False
        return True

    def issue_call(self, ev: LlmToolCallIssued) -> None:
        """A call is complete in the stream: start it now, or when the response ends
        (the policy says which)."""
        gen = self.gen
        assert gen is not None
        gen.call_ids.append(ev.call_id)
        self.turn_calls.add(ev.call_id)
        self.call_round[ev.call_id] = gen.tool_round
        if self.policy.defers_calls:
            gen.deferred_calls.append(ev)
        else:
            self._start_call(ev)

    def _start_call(self, ev: LlmToolCallIssued) -> None:
        """Adopt a fork's matching call, hold a write that needs the caller's yes, else start
        the call."""
        spec_id = self.speculation.claim(ev, self.turn_id)
        finished = spec_id is not None and self.ledger.call(spec_id).outcome is not None
        gen = self.gen
        if gen is not None and gen.preamble is not None and not finished:
            self._release_preamble(gen)  # this call still takes time: the filler covers it
        if spec_id is not None:
            if finished:
                self._on_adopted_outcome(ev.call_id)  # finished already: news at once
            return
        if self._needs_confirmation(ev.name) and self._hold_for_confirmation(ev):
            return
        self.scheduler.start(
            call_id=ev.call_id, response_id=ev.response_id, name=ev.name, arguments=ev.arguments
        )

    def finish_response(self, ev: LlmTurnFinished) -> None:
        """The stream ended: end the generation (its deferred calls start now)."""
        gen = self.gen
        assert gen is not None
        if ev.finish_reason == "length":
            self.ledger.append(
                le.Note(
                    text=f"{gen.response_id}: the response was cut at max_tokens",
                    level="warning",
                )
            )
        self._end_generation(gen, "tool_calls" if gen.call_ids else "stop")
        if ev.finish_reason == "length" and not gen.call_ids and gen.held is None:
            said = self.ledger.response(gen.response_id).planned_text
            if said and not said.rstrip("\"')]» ").endswith((".", "!", "?", "…")):
                # cut mid-sentence: the caller heard a fragment; close it and offer more
                self.say(self.config.cut_off_phrase, reason="canned")

    def answered_nothing(self, ev: LlmTurnFinished) -> bool:
        """The current generation ends with no text and no call, and nothing else will
        answer the caller: no call running, nothing to report, and either nothing said
        this turn or it was shown outcomes (a filler was said, the results came, and the
        model has nothing to say about them: the caller still waits for the answer)."""
        gen = self.gen
        return (
            self.is_current(ev)
            and gen is not None
            and gen.streamed_chars == 0
            and not gen.call_ids
            and (not self.said_in_turn or gen.reason == "tool_results")
            and not self.news
            and not self._waiting_on_tools()
            and not any(rid != gen.response_id for rid in self.playing)
        )

    def apologize_empty(self, ev: LlmTurnFinished) -> None:
        """An empty answer is not an answer: apologise, record it, keep the session alive."""
        self.apologize(
            LlmFailed(response_id=ev.response_id, error="the LLM returned an empty response")
        )

    def say_llm_hold(self, ev: LlmStalled) -> None:
        """The LLM is slow: say a hold phrase in its response, between sentences only.

        The stall watch times it from the caller's silence (``self.silence``): it comes
        once the caller has heard everything said so far (earlier responses too) and
        ``llm_hold_after_s`` more of nothing, never behind audio still playing. The
        unfinished sentence is taken back from the output first (:meth:`_withdraw`), so
        the phrase is said after the last complete sentence and the taken words, said
        again once the model goes on, are heard whole after it: "One moment. The order
        58213 is in processing." — never "The order / One moment. / 58213 is ...".

        When part of that sentence is already being said (the output's first chunk may
        end at a clause, "Sure,", to start audio sooner), the phrase is said anyway
        after that clause and the rest of the sentence is said whole after it ("Sure, /
        One moment. / let me check that for you."). Waiting for the sentence end
        instead would leave the caller in silence for as long as the model stalls (up
        to the deadline: 7.75 s before the apology for a dead model, 2.75 s for a slow
        one in bench/hold_phrases.py); a phrase after a clause is the lesser evil, and
        the stall watch already waited the normal hold time (``llm_hold_after_s``, then
        ``LLM_HOLD_AGAIN_S``), so silence never exceeds that cadence. The ledger notes it.
        A text output's printed clause stays in view: no phrase inside its sentence.

        A long wait (``ev.long_wait``) is owned up to once per caller turn (its follow-ups
        too), at the first such hold actually said: one that cannot be said passes the
        phrase on to the next.

        Not yet a hold (``not ev.hold``): the text paused just after a sentence's final
        mark (``SENTENCE_PAUSE_S``); the output says that sentence now instead of keeping
        it for a continuation, so the caller does not wait the hold time for it.
        """
        gen = self.gen
        assert gen is not None
        withdrawn = self._withdraw(gen)
        if not ev.hold:
            return
        if self.silence.since() > self.clock.now():
            # the pause completed a sentence the output held for its next words: the caller
            # hears it now, and the watch times the next hold from its end
            return
        if withdrawn.inside_sentence and withdrawn.visible:  # printed: the reader sees it go on
            self.ledger.append(
                le.Note(
                    text=f"{gen.response_id}: the LLM said nothing for {ev.silent_s:.1f}s "
                    "inside a sentence already printed; no hold phrase until it ends"
                )
            )
            return
        broken = withdrawn.inside_sentence
        if broken:
            self.ledger.append(
                le.Note(
                    text=f"{gen.response_id}: the LLM said nothing for {ev.silent_s:.1f}s "
                    "inside a sentence already being said; the hold phrase follows the "
                    "clause heard (waiting for the sentence end would leave the caller in "
                    "silence)"
                )
            )
        self._record_planned(gen, final=True)  # the sentences before the phrase
        long_wait = ev.long_wait and not self.long_wait_said
        self.long_wait_said = self.long_wait_said or long_wait
        phrase = self.config.llm_long_wait_phrase if long_wait else next(self._llm_hold_phrases)
        lead = "\n" if broken else " " if gen.pushed else ""  # a break after a clause
        gen.pushed = True
        self._hand_over(gen.response_id, lead + phrase + " ", hold=True)
        self.ledger.append(
            le.AgentTextPlanned(response_id=gen.response_id, text=phrase, canned=True)
        )
        taken = f"; the unfinished {spoken(gen.withheld)!r} follows it" if gen.withheld else ""
        self.ledger.append(
            le.Note(
                text=f"{gen.response_id}: the LLM said nothing for {ev.silent_s:.1f}s; "
                f"hold phrase {phrase!r}{taken}"
            )
        )

    def _withdraw(self, gen: Generation) -> Withdrawn:
        """The answer's text pauses: take its unfinished sentence back from the output.

        The sentence begun waits in ``gen.withheld``, out of the text to be recorded as
        planned: it is pushed again before the next text (:meth:`_speak`), or
        dropped with a note if the answer fails or is cancelled (nobody heard any of it).
        """
        if not gen.pushed:
            return Withdrawn()
        left = self._unplayed_s()
        taken = self.output.withdraw(gen.response_id)  # a sentence it completes is said now
        self.silence.handed_over(added=self._unplayed_s() > left)
        self._record(gen, gen.take_back(taken.text, heard=not taken.visible))
        gen.withheld += taken.text
        return taken

    def apologize(self, ev: LlmFailed) -> None:
        """The LLM failed after retries: say so, record why, keep the session alive."""
        gen = self.gen
        assert gen is not None
        self.ledger.append(
            le.Note(text=f"LLM request {gen.response_id} failed: {ev.error}", level="error")
        )
        # the apology follows the last sentence said, not the words of one left unfinished;
        # after a clause already said it starts a new line (a text output marks the break:
        # "Your order has —" / "Sorry, ..."), never glued to the clause
        broken = self._withdraw(gen).inside_sentence
        self._drop_withheld(gen, "the answer failed")
        self._record_planned(gen, final=True)
        text = ("\n" if broken else " " if gen.pushed else "") + self.config.apology
        gen.pushed = True
        self._hand_over(gen.response_id, text)
        self.ledger.append(
            le.AgentTextPlanned(response_id=gen.response_id, text=self.config.apology, canned=True)
        )
        self._end_generation(gen, "error", ev.error)

    # ================================================================ playout
    def playout_started(self, ev: PlayoutStarted) -> None:
        self.holds.cancel()

    def record_played(self, ev: PlayoutFinished) -> None:
        if self.playing.pop(ev.response_id, None) is None:
            return  # already recorded (e.g. cut off by a barge-in)
        if not self.playing:
            self.silence.starts_now()  # all of it heard, now
        self.ledger.append(
            le.AgentTextPlayed(
                response_id=ev.response_id, text=spoken(ev.heard), interrupted=ev.interrupted
            )
        )

    # ================================================================ holding
    def arm_hold(self, ev: Any = None) -> None:
        """Silence while the turn's tools run: after ``hold_after_s`` a hold phrase (if the
        policy holds the line). Outcomes held back by the loop guard are said at once."""
        self.holds.cancel()
        if self.loop_guard_tripped():
            self.tell_loop_guard()
            return
        if self.policy.holds_the_line and self._waiting_on_tools():
            self.holds.arm()
        self._floor_quiet()

    def say_hold(self, ev: TimerFired) -> None:
        """Say a short canned hold phrase (no LLM round trip: it must be instant)."""
        self.say(self.holds.next_phrase(), reason="canned")

    def say(self, text: str, *, reason: RequestReason = "canned") -> str:
        """Speak a fixed text as its own response (greetings, hold phrases): the engine's
        own words, planned as ``canned`` (the model's context shows them apart)."""
        rid = self._next_response_id()
        self.ledger.append(le.LlmRequestStarted(response_id=rid, reason=reason, mode=self.mode))
        self.ledger.append(le.AgentTextPlanned(response_id=rid, text=text, canned=True))
        self.ledger.append(
            le.LlmResponseFinished(response_id=rid, finish_reason="stop", error=None)
        )
        self._hand_over(rid, text, end=True)
        self.call.spoke_since_request = True
        return rid

    # ================================================================ the call (issue 8)
    def start_call(self) -> None:
        """The session began: start the call's length limit and count the caller's silence."""
        self.call.start()
        self._floor_quiet()

    def key_pressed(self, ev: DtmfReceived) -> None:
        """A keypad key: collect it; a finished entry becomes the caller's turn."""
        self.holds.cancel()
        answer_keys = "12" if self.confirmations.pending is not None else ""
        entry = self.call.press(ev.digit, answer_keys=answer_keys)
        if entry is not None:
            self._keypad_turn(entry)

    def keypad_due(self, ev: TimerFired) -> bool:
        """The caller stopped typing: the pending entry is complete."""
        return self.call.keypad_due(ev)

    def finish_keypad_entry(self, ev: TimerFired) -> None:
        entry = self.call.expire_entry()
        if entry is not None:
            self._keypad_turn(entry)

    def _keypad_turn(self, entry: str) -> None:
        self.ledger.append(le.Note(text=f"keypad entry: {entry or '#'}"))
        self._post(TranscriptFinal(text=self.call.keypad_text(entry)))

    def idle_due(self, ev: TimerFired) -> bool:
        """The caller has been silent with nothing pending (the idle timer's latest firing)."""
        return self.call.idle_due(ev) and self.is_idle()

    def idle_prompt(self, ev: TimerFired) -> None:
        """Ask whether the caller is still there; the second time, say goodbye and end."""
        self._drop_confirmation("the caller stayed silent")
        self.say(self.call.idle_step())

    def limit_due(self, ev: TimerFired) -> bool:
        return self.call.limit_due(ev)

    def call_limit_reached(self, ev: TimerFired) -> None:
        """The call's time limit: a warning first, then a goodbye that ends the call."""
        self.say(self.call.limit_step())
        self._floor_quiet()

    def request_call_action(self, ev: CallActionRequested) -> None:
        """A tool asked for a transfer, a hang-up or DTMF: record it; it happens when due."""
        self.ledger.append(le.Note(text=f"call action requested by {ev.call_id or 'the engine'}: "
                                   f"{ev.action!r}"))  # fmt: skip
        first = self.call.request(ev.action)
        if self._said_in_response_of(ev.call_id):
            self.call.spoke_since_request = True  # "Goodbye!" came with the end_call call
        if first:
            self.say(first)
        self._floor_quiet()

    def _caller_closed(self) -> bool:
        """Whether the caller's last words closed the conversation (`caller_closes`, with
        what the agent said before them): only then may a tool hang up. A refusal is
        noted in the ledger; the tool tells the model to answer instead."""
        caller = agent = ""
        for message in reversed(self.ledger.render_messages()):
            text = message.get("content")
            if not isinstance(text, str) or not text.strip():
                continue
            if message.get("role") == "user" and not caller:
                caller = text
            elif message.get("role") == "assistant" and caller:
                agent = text
                break
        closed = caller_closes(caller, agent)
        if not closed:
            self.ledger.append(le.Note(text="hang-up refused: the caller's last words "
                                       "did not end the conversation"))  # fmt: skip
        return closed

    def _said_in_response_of(self, call_id: str) -> bool:
        try:
            rid = self.ledger.call(call_id).started.response_id
        except (KeyError, AttributeError):
            return False
        return any(
            e.type == "AgentTextPlanned" and e.response_id == rid for e in self.ledger.entries
        )

    def call_action_failed(self, ev: CallActionFailed) -> None:
        """A transfer did not go through: tell the caller, the call goes on."""
        self.ledger.append(le.Note(text=f"call action failed: {ev.error}", level="error"))
        self.call.transfer_failed()
        self.say(self.config.call.transfer_failed)

    def _floor_quiet(self) -> None:
        """Nothing runs and nothing plays: end the call if due, else count the caller's silence."""
        if self.gen is not None or self.playing:
            return
        if self.call.due():
            if isinstance(self.call.ending, HangUp) and not self.call.spoke_since_request:
                self.say(self.config.call.goodbye)  # the model ended without a goodbye
                return
            self._spawn(self._end_call(), "call-action")
        elif self.is_idle():
            self.call.floor_quiet()

    async def _end_call(self) -> None:
        ending = self.call.ending
        done, reason, detail = await self.call.carry_out()
        if not done and isinstance(ending, Transfer):
            self._post(CallActionFailed(action=ending, error=detail))
            return
        if self.call.provider_error:
            self.ledger.append(le.Note(text=f"hang-up failed at the provider: "
                                       f"{self.call.provider_error}", level="warning"))  # fmt: skip
        self._post(SessionEnded(reason=reason, detail=detail))

    # ---------------------------------------------------------------- confirmed writes
    def _needs_confirmation(self, name: str) -> bool:
        spec = self.scheduler.spec_of(name)
        if spec is None or spec.kind != "write":
            return False
        return spec.needs_confirmation or self.config.call.confirm_writes

    def _hold_for_confirmation(self, ev: LlmToolCallIssued) -> bool:
        """Answer the model's write with "awaiting confirmation" and hold it (False: its
        arguments are invalid, so the scheduler answers it with the reason)."""
        spec = self.scheduler.spec_of(ev.name)
        assert spec is not None
        try:
            pending = self.confirmations.hold(ev.call_id, spec, ev.arguments, self.turn_id)
        except ValueError:
            return False
        self.silent_calls.add(ev.call_id)
        self.scheduler.answer(
            call_id=ev.call_id,
            response_id=ev.response_id,
            name=ev.name,
            arguments=ev.arguments,
            result=pending.answer(),
        )
        self.ledger.append(le.Note(text=f"{ev.call_id}: {ev.name} held for the caller's "
                                   f"confirmation: {pending.read_back}"))  # fmt: skip
        return True

    def _ask_confirmation(self, gen: Any, how: str) -> None:
        pending = self.confirmations.pending
        if pending is None or pending.asked or pending.call_id not in gen.call_ids:
            return
        if how == "cancelled":
            self._drop_confirmation("the caller interrupted before the read-back")
            return
        pending.asked = True
        self.say(pending.question())

    def _drop_confirmation(self, why: str) -> None:
        pending = self.confirmations.take()
        if pending is not None:
            self.ledger.append(
                le.Note(text=f"{pending.call_id}: {pending.spec.name} not run: {why}")
            )

    def answers_confirmation(self, ev: TranscriptFinal) -> bool:
        """A read-back is waiting for this answer."""
        pending = self.confirmations.pending
        return pending is not None and pending.asked and bool(ev.text.strip())

    def resolve_confirmation(self, ev: TranscriptFinal) -> None:
        """The caller answered the read-back: yes runs the write once, no drops it, anything
        else drops it and is a new turn."""
        from .call_control import confirmation_answer

        text = ev.text.strip()
        answer = confirmation_answer(_keypad_digits(text) or text)
        if answer == "other":
            self._drop_confirmation("the caller said something else")
            self.commit_user_turn(ev)
            return
        pending = self.confirmations.take()
        assert pending is not None
        self.speculation.reconcile(self.turn_id + 1, "the caller answered a read-back")
        self._begin_turn(text)
        if answer == "no":
            self.ledger.append(le.Note(text=f"{pending.call_id}: {pending.spec.name} declined "
                                       "by the caller; not run"))  # fmt: skip
            self._start_generation("user_turn")
            return
        rid = self.say(self.config.call.confirmed_phrase)
        call_id = f"{pending.call_id}-confirmed"
        self.turn_calls.add(call_id)
        self.ledger.append(le.Note(text=f"{pending.call_id}: {pending.spec.name} confirmed by "
                                   f"the caller; running it as {call_id}"))  # fmt: skip
        self.scheduler.start(
            call_id=call_id, response_id=rid, name=pending.spec.name, arguments=pending.arguments
        )

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
        """Void a pause fork and the hold timer, cut the audio (recording what was heard),
        end the generation in flight as cancelled."""
        self.speculation.void_pause_forks()
        self.holds.cancel()
        heard = self.output.interrupt()
        for rid in list(self.playing):
            self.ledger.append(
                le.AgentTextPlayed(
                    response_id=rid, text=spoken(heard.get(rid, "")), interrupted=True
                )
            )
        self.playing.clear()
        self.silence.starts_now()  # cut off: the caller hears nothing more of it
        if self.gen is not None:
            self._end_generation(self.gen, "cancelled")

    def shutdown(self, ev: Any) -> None:
        self.call.aclose()
        self._drop_confirmation("the call ended")
        self._stop_talking()
        self.speculation.reconcile(self.turn_id + 1, "the session ended")
        self.ledger.append(le.SessionEnded(reason=getattr(ev, "reason", "ended")))
        self._end_recorded = True

    async def aclose(self) -> None:
        """Cancel every owned task and running tool (idempotent). A session closed without
        a ``SessionEnded`` (Ctrl-C, SIGTERM: the agent's task was cancelled) gets one,
        after the outcomes of the calls that were running (hostile7)."""
        if self.closed:
            return
        self.closed = True
        try:
            await self.scheduler.aclose()
        finally:  # also when interrupted again meanwhile (hostile8): the end is recorded
            if not getattr(self, "_end_recorded", False):
                self._end_recorded = True
                try:
                    self.ledger.append(le.SessionEnded(reason="interrupted"))
                except Exception as exc:  # a closed ledger: nothing more can be recorded
                    log.warning("could not record the session's end: %s", exc)
            tasks = list(self._tasks)
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

    def is_settled(self) -> bool:
        """No generation streaming (a finished, held fork counts as settled) and no running
        tool call: only playout may be going on."""
        return (
            self.gen is None and not self.speculation.streaming() and not self.scheduler.pending()
        )

    def is_idle(self) -> bool:
        """No generation, no open fork, nothing playing, no running call whose result will
        be reported."""
        return (
            self.gen is None
            and not self.speculation.forks
            and not self.playing
            and not any(c not in self.silent_calls for c in self.scheduler.pending())
            and not (self.news and not self._loop_guard_blocks())
        )


# Guards the table uses that read only the event (kept here for one import).
def is_outcome(ev: Event) -> bool:
    return isinstance(ev, ToolCallResolved | ToolCallFailed)


def _llm_is_local(where: str, llm: Any) -> bool:
    """A fork's LLM request runs on this machine: configured so, or (``auto``) the client's
    endpoint is a loopback address (the embedded model's server)."""
    if where != "auto":
        return where == "local"
    base_url = getattr(getattr(llm, "config", None), "base_url", None)
    if not isinstance(base_url, str):
        return False
    host = (urlsplit(base_url).hostname or "").lower()
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _keypad_digits(text: str) -> str:
    """The digits of a keypad turn ("(typed on the keypad) 1" -> "1"), else ""."""
    prefix = "(typed on the keypad) "
    return text[len(prefix) :].strip() if text.startswith(prefix) else ""
