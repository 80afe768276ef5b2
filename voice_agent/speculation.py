"""Speculation: forks on non-final transcripts, reconciled at the end of the turn.

A **fork** is a held generation on a transcript that is not final yet: the
stable prefix of a partial transcript while the user speaks (``trigger:
partial``), or the early transcript at the user's pause (``trigger: pause``,
what other frameworks call preemptive generation). It is one mechanism:

- **Opening** (:meth:`Speculator.partial_fork_due`, :meth:`Speculator.open`):
  a partial fork opens when the stable prefix has grown by enough new words
  since the last fork, optionally only when the new words hold something a
  call could use (a number, a name), rate-limited, within the turn's budget
  (forks, fork tokens, speculative tool-seconds). Its prompt is the ledger's
  rendering plus the basis as the user's message, followed by a note saying
  the transcript is partial. A newer fork supersedes the older ones: their
  generations are cancelled; their calls are kept for matching until the turn
  ends (or cancelled, by policy).
- **What a fork does**: its stream is held (nothing is spoken, nothing reaches
  the model). Where the mode lets forks run reads, each ``read`` call starts
  at once as a speculative future (``ToolCallStarted`` with the fork id); a
  ``write`` call is never executed — only its intent is recorded, and the
  scheduler refuses it whatever its caller asks. Speculative outcomes are not
  news: they never trigger a follow-up and never reach the model unless
  adopted.
- **Reconciliation**: if the final transcript equals the newest fork's basis
  and nothing but partial transcripts and speculation happened since it
  opened, the fork is adopted whole (:meth:`Speculator.adoptable`): its held
  stream becomes the turn's answer. Otherwise the answer runs on the final
  transcript, and each call it makes is matched (:meth:`Speculator.claim`)
  against the forks' calls — same tool, arguments equal after canonicalising
  them by the tool's schema (``5``/``5.0``, ``"4417"``/``4417`` where the
  schema makes them the same), futures named by id mapped through earlier
  adoptions. A match adopts the speculative future, running or finished. When
  the turn's answer ends (however it ends), :meth:`Speculator.reconcile`
  records ``ForkAdopted`` for forks with adopted calls, ``ForkDiscarded`` with
  the reason for the rest, and cancels every speculative call nobody adopted.

The rendered context after an adoption is exactly what it would be had the
call started at the end of the turn: the ledger's final call shares the
speculative call's future, speculative calls are never rendered.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fsm import Clock, Event
from ledger import Ledger
from ledger import entries as le

from .compute import CpuGauge, ProcStatGauge
from .config import SpeculationConfig
from .events import ForkAdopted, ForkDiscarded, ForkOpened, LlmToolCallIssued, LlmTurnFinished
from .generation import Generation, spoken
from .modes import ModePolicy
from .scheduler import ToolScheduler
from .tools import ToolRegistry, ToolSpec

Trigger = Literal["partial", "pause"]

PARTIAL_NOTE = (
    "The caller is still speaking: the last user message is a partial transcript and may "
    "still change. Only look up what it already names; never change anything."
)
"""The note a partial fork's prompt carries after the partial transcript, in the user's
message (a system message there would break chat templates that allow one only first)."""

# Ledger entries that may appear after a fork opened without voiding its adoption whole
# (besides partial transcripts and speculative calls): speculation's own records.
_NEUTRAL = (le.ForkOpened, le.ForkAdopted, le.ForkDiscarded, le.Note)

_NUMBER_WORDS = frozenset(
    "zero oh one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty "
    "ninety hundred thousand".split()
)
_NOT_NAMES = frozenset({"I", "I'm", "I'd", "I'll", "I've", "OK", "Okay"})


def _words(text: str) -> list[str]:
    return text.split()


def callworthy(words: list[str], *, sentence_start: bool) -> bool:
    """The words hold something a call could take: a digit, a number word or a name.

    A name is a capitalised word that does not start a sentence (``I`` and
    ``OK`` are not names).
    """
    previous_ends = sentence_start
    for word in words:
        bare = word.strip(".,!?;:\"'()")
        if any(ch.isdigit() for ch in bare) or bare.lower() in _NUMBER_WORDS:
            return True
        if bare[:1].isupper() and not previous_ends and bare not in _NOT_NAMES:
            return True
        previous_ends = word.endswith((".", "!", "?"))
    return False


# ---------------------------------------------------------------- canonical arguments
def _canonical_value(value: Any, schema: dict[str, Any] | None) -> Any:
    """``value`` normalised the way the schema says values compare."""
    types = _types(schema)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "string" in types and not types & {"number", "integer"}:
            return _number_text(value)
        return _number(value)
    if isinstance(value, str):
        text = " ".join(value.split())
        if types & {"number", "integer"}:
            try:
                return _number(float(text))
            except ValueError:
                return text
        return text
    if isinstance(value, list):
        item = schema.get("items") if isinstance(schema, dict) else None
        return [_canonical_value(v, item if isinstance(item, dict) else None) for v in value]
    if isinstance(value, dict):
        props = (schema or {}).get("properties", {}) if isinstance(schema, dict) else {}
        return {k: _canonical_value(v, props.get(k)) for k, v in sorted(value.items())}
    return value


def _types(schema: dict[str, Any] | None) -> set[str]:
    if not isinstance(schema, dict):
        return set()
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    out: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key, []) or []:
            out |= _types(option)
    return out


def _number(value: float) -> float | int:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return value


def _number_text(value: float) -> str:
    return str(_number(value))


def canonical_arguments(
    spec: ToolSpec | None, arguments: str, rename: Callable[[str], str] = lambda s: s
) -> str | None:
    """The call's arguments as canonical JSON (None when they are not a JSON object).

    Strings naming a future are passed through ``rename`` first, so a
    speculative call's reference to another speculative call compares equal
    to the final call's reference to the call that adopted it.
    """
    try:
        data = json.loads(arguments)
    except (ValueError, TypeError):  # ValueError: also a number too long to read (hostile9)
        return None
    if not isinstance(data, dict):
        return None
    data = {k: rename(v) if isinstance(v, str) else v for k, v in data.items()}
    schema = spec.parameters if spec is not None else None
    return json.dumps(_canonical_value(data, schema), sort_keys=True)


# ---------------------------------------------------------------- records
@dataclass
class SpeculativeCall:
    """A call a fork started (or, for a write, only intended)."""

    call_id: str  # the speculative id in the ledger ("" for an intent never started)
    fork_id: str
    name: str
    arguments: str
    canonical: str | None
    started_at: float
    llm_call_id: str = ""  # the call's id in the fork's stream
    claimed_by: str | None = None  # the final call adopting it
    reused: str = ""  # not started: an earlier fork's identical call (its speculative id)


@dataclass
class Fork:
    """One speculative fork of a user turn."""

    fork_id: str
    basis: str
    trigger: Trigger
    turn_id: int  # the turn it speculates on (the conversation's next turn)
    gen: Generation
    opened_at: float
    ledger_len: int  # ledger size when it opened
    calls: list[SpeculativeCall] = field(default_factory=list)
    superseded: bool = False
    voided: bool = False  # the user went on after a pause fork
    whole: bool = False  # adopted whole: its generation became the turn's answer


@dataclass
class TurnBudget:
    """What the forks of one turn have spent."""

    forks: int = 0
    tokens: int = 0
    held_back: int = 0  # partials that would have opened a fork but for the CPU
    last_opened_at: float = -math.inf
    last_basis: str = ""


class Speculator:
    """Opens, holds, matches and closes the forks of a conversation.

    ``launch(gen, messages)`` starts a held generation (the conversation owns
    the task); ``post`` tells the agent's table about forks (ignored there:
    the floor does not change).
    """

    def __init__(
        self,
        *,
        policy: ModePolicy,
        config: SpeculationConfig,
        preemptive: bool,
        local_llm: bool = False,
        gauge: CpuGauge | None = None,
        scheduler: ToolScheduler,
        tools: ToolRegistry,
        ledger: Ledger,
        clock: Clock,
        post: Callable[[Event], None],
        launch: Callable[[Generation, list[dict[str, Any]]], None],
        system_prompt: str,
    ) -> None:
        self.policy = policy
        self.config = config
        self.preemptive = preemptive
        self.local_llm = local_llm  # a fork's LLM request runs on this machine's cores
        self.gauge: CpuGauge = gauge if gauge is not None else ProcStatGauge()
        self.held_back: str | None = None  # why the last partial opened no fork (CPU), if so
        self.scheduler = scheduler
        self.tools = tools
        self.ledger = ledger
        self.clock = clock
        self._post = post
        self._launch = launch
        self._system_prompt = system_prompt
        self.forks: list[Fork] = []  # open forks, oldest first
        self._by_call: dict[str, SpeculativeCall] = {}  # speculative id → record (open forks)
        self._adopted: dict[str, str] = {}  # speculative id → final id, recorded in the ledger
        self._budget: dict[int, TurnBudget] = {}
        self._count = 0

    # ------------------------------------------------------------ queries
    def final_of(self, call_id: str) -> str | None:
        """The final call adopting this speculative call (claimed or recorded), else None."""
        record = self._by_call.get(call_id)
        if record is not None and record.claimed_by is not None:
            return record.claimed_by
        return self._adopted.get(call_id)

    def is_speculative(self, call_id: str) -> bool:
        return call_id in self._by_call or call_id in self._adopted

    def streaming(self) -> bool:
        """Some fork's generation is still running."""
        return any(f.gen.streaming for f in self.forks)

    def has_started_calls(self, turn_id: int) -> bool:
        """Some open fork of the turn started a call (its result may make a filler needless)."""
        return any(
            c.call_id and c.claimed_by is None
            for f in self.forks
            if f.turn_id <= turn_id
            for c in f.calls
        )

    def budget(self, turn_id: int) -> TurnBudget:
        return self._budget.setdefault(turn_id, TurnBudget())

    # ------------------------------------------------------------ opening
    def partial_fork_due(self, text: str, turn_id: int) -> bool:
        """A partial transcript's stable prefix grew enough for a new fork (policy and budget)."""
        if not self.policy.forks_on_partials:
            return False
        words = _words(text)
        budget = self.budget(turn_id)
        cfg = self.config
        if budget.forks >= cfg.max_forks_per_turn or budget.tokens >= cfg.max_fork_tokens_per_turn:
            return False
        if self.clock.now() - budget.last_opened_at < cfg.min_interval_s:
            return False
        before = _words(budget.last_basis)
        if words[: len(before)] == before:
            new = words[len(before) :]
            at_start = not before or before[-1].endswith((".", "!", "?"))
        else:  # the recogniser revised what it had committed: everything counts as new
            new, at_start = words, True
        if len(new) < cfg.min_new_words:
            return False
        if cfg.callworthy_only and not callworthy(new, sentence_start=at_start):
            return False
        self.held_back = self._compute_held_back(budget)
        return self.held_back is None

    def _compute_held_back(self, budget: TurnBudget) -> str | None:
        """Why a fork whose LLM runs on this machine must not open now, or None.

        Its generation would take the cores the ASR decodes on: at most
        ``local_max_forks_per_turn``, one generation at a time, and none while
        the machine is busier than ``max_cpu_busy``. A remote LLM costs this
        machine next to nothing: never held back.
        """
        if not self.local_llm:
            return None
        cfg = self.config
        if budget.forks >= cfg.local_max_forks_per_turn:
            return f"local LLM: {budget.forks} fork(s) this turn already"
        if self.streaming():
            return "local LLM: a fork's generation still runs"
        busy = self.gauge.busy()
        if busy > cfg.max_cpu_busy:
            return f"local LLM: CPU {busy:.0%} busy (max_cpu_busy {cfg.max_cpu_busy:.0%})"
        return None

    def note_held_back(self, turn_id: int) -> None:
        """Record (once per turn) that a due fork was held back for the CPU."""
        why, self.held_back = self.held_back, None
        budget = self.budget(turn_id)
        if why is None:
            return
        budget.held_back += 1
        if budget.held_back == 1:
            self.ledger.append(le.Note(text=f"fork held back: {why}"))

    def pause_fork_due(self, text: str) -> bool:
        return self.preemptive and bool(text.strip())

    def open(self, text: str, trigger: Trigger, turn_id: int, response_id: str) -> Fork:
        """Open a fork on ``text``; older forks of the turn are superseded."""
        basis = spoken(text)
        for older in self.forks:
            self._supersede(older)
        self._count += 1
        fork_id = f"f{self._count}"
        gen = Generation(response_id=response_id, reason="user_turn", turn_id=turn_id, held=[])
        fork = Fork(
            fork_id=fork_id,
            basis=basis,
            trigger=trigger,
            turn_id=turn_id,
            gen=gen,
            opened_at=self.clock.now(),
            ledger_len=0,
        )
        budget = self.budget(turn_id)
        budget.forks += 1
        budget.last_opened_at = fork.opened_at
        budget.last_basis = basis
        self.ledger.append(
            le.ForkOpened(fork_id=fork_id, transcript=basis, trigger=trigger, turn_id=turn_id)
        )
        fork.ledger_len = len(self.ledger.entries)
        self.forks.append(fork)
        messages = self.ledger.render_messages(self._system_prompt)
        content = f"{basis}\n\n{PARTIAL_NOTE}" if trigger == "partial" else basis
        messages.append({"role": "user", "content": content})
        self._launch(gen, messages)
        self._post(ForkOpened(fork_id=fork_id))
        return fork

    def stop_streams(self) -> None:
        """The answer on the final transcript starts: forks' generations still streaming are
        cancelled (their text can no longer be used, and a local model serves one request at
        a time); their calls stay for matching. A fork adopted whole is not streaming here."""
        for fork in self.forks:
            if fork.gen.streaming and fork.gen.held is not None:
                assert fork.gen.task is not None
                fork.gen.task.cancel()

    def void_pause_forks(self) -> None:
        """The user went on after a pause: a pause fork can no longer be adopted whole."""
        for fork in self.forks:
            if fork.trigger == "pause" and not fork.voided:
                fork.voided = True
                self._supersede(fork)

    def _supersede(self, fork: Fork) -> None:
        if fork.superseded:
            return
        fork.superseded = True
        if fork.gen.streaming:
            assert fork.gen.task is not None
            fork.gen.task.cancel()
        if not self.config.keep_superseded_calls:
            for call in fork.calls:
                if call.call_id and call.claimed_by is None:
                    self.scheduler.cancel(
                        call.call_id, f"discarded: fork {fork.fork_id} superseded"
                    )

    # ------------------------------------------------------------ the held stream
    def fork_of(self, gen: Generation) -> Fork | None:
        for fork in self.forks:
            if fork.gen is gen:
                return fork
        return None

    def held(self, gen: Generation, event: Event) -> None:
        """A fork's stream produced ``event``: keep it; start a read call speculatively."""
        assert gen.held is not None
        gen.held.append(event)
        fork = self.fork_of(gen)
        if fork is None:
            return
        if isinstance(event, LlmTurnFinished):
            self.budget(fork.turn_id).tokens += gen.tokens()
        elif isinstance(event, LlmToolCallIssued):
            self._speculate(fork, event)

    def _speculate(self, fork: Fork, ev: LlmToolCallIssued) -> None:
        spec = self.scheduler.spec_of(ev.name)
        canonical = canonical_arguments(spec, ev.arguments)
        record = SpeculativeCall(
            call_id="",
            fork_id=fork.fork_id,
            name=ev.name,
            arguments=ev.arguments,
            canonical=canonical,
            started_at=self.clock.now(),
            llm_call_id=ev.call_id,
        )
        fork.calls.append(record)
        if not self.policy.fork_runs_reads or fork.superseded:
            return  # the calls wait for the fork's adoption like any call of the answer
        if spec is None or canonical is None:
            return  # an unknown tool or malformed arguments: nothing worth starting early
        if spec.kind == "write":
            self.ledger.append(
                le.Note(
                    text=f"fork {fork.fork_id} intends {ev.name}({ev.arguments}): a write, "
                    "never executed from a fork"
                )
            )
            return
        if self._tool_seconds(fork.turn_id) >= self.config.max_tool_seconds_per_turn:
            self.ledger.append(
                le.Note(
                    text=f"fork {fork.fork_id}: speculative tool-seconds spent; {ev.name} waits"
                )
            )
            return
        arguments = self._rename_refs(ev.arguments, fork)
        same = self._live_match(ev.name, canonical_arguments(spec, arguments), fork.turn_id)
        if same is not None:
            # An earlier fork of the turn already runs (or ran) this very read: share it
            # instead of running it again; the answer's call adopts that one.
            record.reused = same.call_id
            return
        record.call_id = f"{fork.fork_id}.{ev.call_id}"
        record.arguments = arguments
        self._by_call[record.call_id] = record
        self.scheduler.start(
            call_id=record.call_id,
            response_id=fork.gen.response_id,
            name=ev.name,
            arguments=record.arguments,
            speculative=True,
            fork_id=fork.fork_id,
        )

    def _live_match(self, name: str, canonical: str | None, turn_id: int) -> SpeculativeCall | None:
        """A started, unclaimed, not cancelled speculative call of the turn with these
        canonical arguments (finished ones first), else None."""
        if canonical is None:
            return None
        found = [
            record
            for fork in self.forks
            if fork.turn_id == turn_id
            for record in fork.calls
            if record.call_id
            and record.claimed_by is None
            and record.name == name
            and canonical_arguments(self.scheduler.spec_of(name), record.arguments) == canonical
            and not self._cancelled(record.call_id)
        ]
        finished = [r for r in found if self._finished(r.call_id)]
        candidates = finished or found
        return candidates[-1] if candidates else None

    def _finished(self, call_id: str) -> bool:
        try:
            return self.ledger.call(call_id).outcome is not None
        except KeyError:
            return False

    def _rename_refs(self, arguments: str, fork: Fork) -> str:
        """A fork's call naming an earlier call of the same fork names its speculative id
        (or the earlier fork's call it reuses)."""
        ids = {c.llm_call_id: c.call_id or c.reused for c in fork.calls if c.call_id or c.reused}
        if not ids:
            return arguments
        try:
            data = json.loads(arguments)
        except (ValueError, TypeError):  # ValueError: also a number too long to read
            return arguments
        if not isinstance(data, dict):
            return arguments
        renamed = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in data.items()}
        return json.dumps(renamed) if renamed != data else arguments

    def _as_final(self, value: str) -> str:
        """A reference to a speculative future, read as the id of the final call adopting it."""
        record = self._by_call.get(value)
        if record is not None and record.claimed_by is not None:
            return record.claimed_by
        return self._adopted.get(value, value)

    def _tool_seconds(self, turn_id: int) -> float:
        now = self.clock.now()
        return sum(
            now - c.started_at
            for f in self.forks
            if f.turn_id == turn_id
            for c in f.calls
            if c.call_id
        )

    # ------------------------------------------------------------ reconciliation
    def adoptable(self, final_text: str) -> Fork | None:
        """The newest fork, if it answers exactly ``final_text`` and nothing else happened."""
        if not self.forks:
            return None
        fork = self.forks[-1]
        if fork.superseded or fork.voided or fork.gen.failed or fork.basis != spoken(final_text):
            return None
        since = self.ledger.entries[fork.ledger_len :]
        for entry in since:
            if isinstance(entry, le.UserUtterance) and not entry.final:
                continue
            if isinstance(entry, _NEUTRAL):
                continue
            if isinstance(entry, le.ToolCallStarted) and entry.speculative:
                continue
            if self.is_speculative(getattr(entry, "call_id", "")):
                continue
            return None
        return fork

    def take_whole(self, fork: Fork) -> list[Event]:
        """Adopt ``fork`` whole: its generation becomes the turn's answer; returns its held
        events (later ones are posted directly)."""
        fork.whole = True
        held, fork.gen.held = fork.gen.held or [], None
        return held

    def claim(self, ev: LlmToolCallIssued, turn_id: int) -> str | None:
        """Adopt a fork's call matching the answer's call ``ev``: record the final call
        bound to the speculative future. Returns the speculative id, or None."""
        spec = self.scheduler.spec_of(ev.name)
        canonical = canonical_arguments(spec, ev.arguments)
        if canonical is None:
            return None
        matches = [
            record
            for fork in reversed(self.forks)  # the newest speculation first
            if fork.turn_id <= turn_id
            for record in fork.calls
            if record.call_id
            and record.claimed_by is None
            and record.name == ev.name
            and canonical_arguments(spec, record.arguments, self._as_final) == canonical
            and not self._cancelled(record.call_id)
        ]
        if not matches:
            return None
        # A finished result answers sooner than a running one of a newer fork (the same
        # read with the same arguments); otherwise the newest.
        record = next((r for r in matches if self._finished(r.call_id)), matches[0])
        record.claimed_by = ev.call_id
        self.scheduler.adopt(
            call_id=ev.call_id,
            response_id=ev.response_id,
            name=ev.name,
            arguments=ev.arguments,
            speculative_call_id=record.call_id,
        )
        return record.call_id

    def _cancelled(self, call_id: str) -> bool:
        try:
            view = self.ledger.call(call_id)
        except KeyError:
            return True
        return view.status == "cancelled"

    def reconcile(self, turn_id: int, reason: str) -> list[tuple[str, str]]:
        """Close the forks of turns up to ``turn_id``: record adoptions, discard the rest.

        Returns the adopted ``(final id, speculative id)`` pairs.
        """
        adopted_pairs: list[tuple[str, str]] = []
        closing = [f for f in self.forks if f.turn_id <= turn_id]
        self.forks = [f for f in self.forks if f.turn_id > turn_id]
        for fork in closing:
            if fork.gen.streaming:
                assert fork.gen.task is not None
                fork.gen.task.cancel()
            adopted = {c.claimed_by: c.call_id for c in fork.calls if c.claimed_by}
            for call in fork.calls:
                if call.call_id and call.claimed_by is None:
                    self.scheduler.cancel(call.call_id, f"discarded: {reason}")
                self._by_call.pop(call.call_id, None)
            tokens = fork.gen.tokens()
            if adopted or fork.whole:
                self.ledger.append(
                    le.ForkAdopted(
                        fork_id=fork.fork_id,
                        adopted=adopted,
                        whole=fork.whole,
                        completion_tokens=tokens,
                    )
                )
                self._adopted.update({s: f for f, s in adopted.items()})
                adopted_pairs += list(adopted.items())
                self._post(ForkAdopted(fork_id=fork.fork_id))
            else:
                if any(c.call_id for c in fork.calls):
                    why = reason
                elif any(c.reused for c in fork.calls):
                    why = f"{reason} (its calls shared an earlier fork's)"
                else:
                    why = f"{reason} (no calls)"
                self.ledger.append(
                    le.ForkDiscarded(fork_id=fork.fork_id, reason=why, completion_tokens=tokens)
                )
                self._post(ForkDiscarded(fork_id=fork.fork_id))
        return adopted_pairs
