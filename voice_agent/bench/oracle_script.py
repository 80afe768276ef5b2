"""The oracle's decision: given the chat messages it received, what to say
and which calls to make. Pure (no I/O, no time); the HTTP server in
``oracle.py`` adds the timing model.

The oracle answers ONLY from the received messages:

1. The current turn is the scenario turn whose text matches the last user
   message (exact after normalisation; else the turn that starts with it — a
   speculative partial transcript). Everything after that message is "this
   turn so far".
2. Outcomes are read from tool messages: ``{"status": "pending", ...}`` is a
   placeholder; ``{"status": "resolved", "result": ...}`` / ``failed`` /
   ``timed_out`` / ``cancelled`` envelopes (directly or through a
   ``get_result`` call naming the future) are outcomes; any other content is
   a plain result (the conventional protocol), except ``{"error": ...}``
   which is a failure.
3. Calls: every expected call of the turn not yet issued after the user
   message whose arguments can be filled (``template.render``) is emitted,
   all in one response (parallel calls).
4. Facts: every unsaid fact whose needed outcomes are present is said, in
   script order, together. A needed call that failed with no ``on: failure``
   fact (``when: failure``) to cover it gets a generic apology.
5. Waiting: with nothing to say or call while calls are pending, the oracle
   says the filler (if not yet said), else the hold sentence — unless the last
   thing it said this turn was already the filler or the hold sentence and no
   outcome arrived since, in which case it returns an empty response. So it
   never produces wait-sentences faster than outcomes arrive.
6. When it emits calls and has said nothing this turn, the filler comes first
   (text, then tool calls, in one response).
7. A partial transcript (the last user message carries the agent's partial
   note: a speculative fork) is matched like the final one. A call whose
   arguments cannot be filled from it yet is made anyway when the scenario
   says the model errs that way: with ``partial_arguments`` (an early wrong
   guess), or ``hasty`` (a several-word value sent as far as it was heard).
8. Futures: when the system prompt says calls may name pending futures and
   ``reference_futures`` is on, an argument that is exactly another call's
   result (``{{calls.X.result}}`` or its field of the argument's name) takes
   X's id instead of waiting — X's pending tool_call id, or, when X is made in
   the same response, the ``@call:X`` marker the server replaces with the id
   it assigns X.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peripherals.wer import word_error_rate
from voice_agent.bench.scenario import ExpectedCall, Scenario
from voice_agent.bench.template import (
    Unavailable,
    normalize_text,
    parse_expression,
    render,
    render_arguments,
)
from voice_agent.modes import FUTURES_NOTE
from voice_agent.speculation import PARTIAL_NOTE

_ENVELOPE_STATUSES = {"pending", "resolved", "failed", "timed_out", "cancelled"}
_FAILED_STATUSES = {"failed", "timed_out", "cancelled"}
GET_RESULT_TOOL = "get_result"
UNMATCHED_REPLY = "Sorry, I didn't catch that."


@dataclass(frozen=True)
class PlannedCall:
    """A call the oracle decided to make (the server assigns its id)."""

    expected_id: str
    name: str
    arguments: str  # JSON text as sent to the client (``"@call:<expected id>"`` markers name
    # another call of the same reply; the server replaces them with that call's id)


@dataclass(frozen=True)
class OracleReply:
    """What to answer: ``text`` (may be empty) then ``calls``."""

    text: str
    calls: tuple[PlannedCall, ...] = ()
    turn_index: int | None = None
    note: str = ""


@dataclass
class _Outcome:
    status: str  # pending | resolved | failed
    result: Any = None
    error: str = ""


@dataclass
class _Context:
    """What the received messages say, indexed."""

    issued: list[tuple[int, str, str, Any]] = field(
        default_factory=list
    )  # (msg idx, id, name, args)
    outcomes: dict[str, _Outcome] = field(default_factory=dict)  # tool_call id → latest outcome
    outcome_positions: list[int] = field(default_factory=list)  # msg idx of non-pending outcomes
    aliases: dict[str, str] = field(default_factory=dict)  # future name → tool_call id


def message_text(message: dict[str, Any]) -> str:
    """The text of a chat message (string content or text parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _match_key(text: str) -> str:
    return normalize_text(re.sub(r"[^\w\s]", " ", text.replace("'", "")))


# A transcript within this word error rate of a turn's text is that turn: speech
# recognition says "Where's" for "Where is", drops a "the", mishears one word.
FUZZY_MATCH_MAX_WER = 0.4


def _closest(keys: list[str], said: str) -> list[int]:
    """The turns nearest to ``said`` by word error rate, if near enough."""
    scored = [(word_error_rate(k, said), i) for i, k in enumerate(keys) if k]
    if not scored:
        return []
    best = min(score for score, _ in scored)
    if best > FUZZY_MATCH_MAX_WER:
        return []
    return [i for score, i in scored if score == best]


def match_turn(scenario: Scenario, messages: list[dict[str, Any]]) -> int | None:
    """Scenario turn index of the last user message, or None."""
    last: int | None = None
    previous = -1
    keys = [_match_key(t.user) for t in scenario.turns]
    for message in messages:
        if message.get("role") != "user":
            continue
        said = _match_key(message_text(message))
        candidates = [i for i, k in enumerate(keys) if k == said]
        if not candidates and said:
            candidates = [i for i, k in enumerate(keys) if k.startswith(said)]
        if not candidates and said:
            candidates = _closest(keys, said)
        if not candidates:
            last = None
            continue
        later = [i for i in candidates if i > previous]
        last = later[0] if later else candidates[0]
        previous = last
    return last


def _parse_content(content: str) -> Any:
    try:
        return json.loads(content)
    except (json.JSONDecodeError, TypeError):
        return content


def _outcome_from(value: Any) -> _Outcome:
    if isinstance(value, dict) and value.get("status") in _ENVELOPE_STATUSES:
        status = value["status"]
        if status == "resolved":
            return _Outcome("resolved", result=value.get("result"))
        if status in _FAILED_STATUSES:
            return _Outcome("failed", error=str(value.get("error") or status))
        return _Outcome("pending")
    if isinstance(value, dict) and set(value) == {"error"}:
        return _Outcome("failed", error=str(value["error"]))
    return _Outcome("resolved", result=value)


def _index(messages: list[dict[str, Any]]) -> _Context:
    ctx = _Context()
    get_result_target: dict[str, str] = {}  # get_result tool_call id → referenced future
    for pos, message in enumerate(messages):
        role = message.get("role")
        if role == "assistant":
            for call in message.get("tool_calls") or []:
                fn = call.get("function") or {}
                args = _parse_content(fn.get("arguments") or "{}")
                if fn.get("name") == GET_RESULT_TOOL and isinstance(args, dict):
                    get_result_target[call.get("id", "")] = str(args.get("call_id", ""))
                else:
                    ctx.issued.append((pos, call.get("id", ""), fn.get("name", ""), args))
        elif role == "tool":
            call_id = message.get("tool_call_id", "")
            value = _parse_content(message_text(message))
            outcome = _outcome_from(value)
            if call_id in get_result_target:
                target = get_result_target[call_id]
                call_id = ctx.aliases.get(target, target)
            elif (
                isinstance(value, dict) and value.get("status") == "pending" and value.get("future")
            ):
                ctx.aliases[str(value["future"])] = call_id
            ctx.outcomes[call_id] = outcome
            if outcome.status != "pending":
                ctx.outcome_positions.append(pos)
    return ctx


class _Resolver:
    """Maps expected call ids to issued tool calls and their outcomes."""

    def __init__(
        self, scenario: Scenario, turn_index: int, user_pos: int, ctx: _Context, user_text: str
    ):
        self._scenario = scenario
        self._turn_index = turn_index
        self._user_pos = user_pos
        self._ctx = ctx
        self._user_text = user_text
        self._current = {c.call_id for c in scenario.turns[turn_index].calls}

    def result_of(self, call_id: str) -> Any:
        outcome = self.outcome(call_id)
        if outcome is None or outcome.status != "resolved":
            raise Unavailable(f"no result for {call_id!r}")
        return outcome.result

    def render(self, value: Any) -> Any:
        return render(value, result_of=self.result_of, user_text=self._user_text)

    def arguments(self, call: ExpectedCall) -> dict[str, Any]:
        """``call``'s arguments as the model sends them: filled, typed by the tool's schema."""
        schema = self._scenario.tool(call.tool).parameters
        return render_arguments(
            call.arguments, schema, result_of=self.result_of, user_text=self._user_text
        )

    def issued_id(self, call: ExpectedCall) -> str | None:
        """tool_call id under which ``call`` was issued (with its values, or naming the
        futures it needs), or None."""
        forms = []
        for make in (self.arguments, self.future_arguments):
            try:
                forms.append(make(call))
            except Unavailable:
                continue
        if not forms:
            return None
        earliest = self._user_pos if call.call_id in self._current else -1
        for pos, tool_call_id, name, args in reversed(self._ctx.issued):
            if pos > earliest and name == call.tool and args in forms:
                return tool_call_id
        return None

    def future_arguments(
        self, call: ExpectedCall, planned: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """``call``'s arguments with each argument that is another call's result replaced by
        that call's future: its issued id, or ``@call:<id>`` when it is in ``planned``.
        Raises Unavailable when no argument names a future or one cannot be named."""
        named = False
        arguments: dict[str, Any] = {}
        for key, value in call.arguments.items():
            ref = _result_ref(key, value)
            if ref is None:
                arguments[key] = value
                continue
            if ref in planned:
                arguments[key] = f"@call:{ref}"
            else:
                issued = self.issued_id(self._scenario.call(ref))
                if issued is None:
                    raise Unavailable(f"{ref!r} is neither issued nor planned")
                arguments[key] = issued
            named = True
        if not named:
            raise Unavailable("no argument names another call's result")
        schema = self._scenario.tool(call.tool).parameters
        return render_arguments(
            arguments, schema, result_of=self.result_of, user_text=self._user_text
        )

    def outcome(self, call_id: str) -> _Outcome | None:
        """Latest outcome of an expected call; None when not issued."""
        tool_call_id = self.issued_id(self._scenario.call(call_id))
        if tool_call_id is None:
            return None
        return self._ctx.outcomes.get(tool_call_id, _Outcome("pending"))


def plan_reply(scenario: Scenario, messages: list[dict[str, Any]]) -> OracleReply:
    """Decide the reply to ``messages`` (see the module docstring)."""
    messages, partial = _without_partial_note(messages)
    futures_known = any(
        m.get("role") == "system" and FUTURES_NOTE in message_text(m) for m in messages
    )
    user_positions = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not user_positions:
        return OracleReply(text="", note="no user message")
    user_pos = user_positions[-1]
    turn_index = match_turn(scenario, messages)
    if turn_index is None:
        return OracleReply(text=UNMATCHED_REPLY, note="user message matches no turn")
    turn = scenario.turns[turn_index]
    ctx = _index(messages)
    user_text = " ".join(message_text(messages[i]) for i in user_positions)
    resolver = _Resolver(scenario, turn_index, user_pos, ctx, user_text)

    said_messages = [
        (pos, message_text(m))
        for pos, m in enumerate(messages)
        if pos > user_pos and m.get("role") == "assistant" and message_text(m).strip()
    ]
    said = normalize_text(" ".join(text for _, text in said_messages))

    def already_said(sentence: str) -> bool:
        return normalize_text(sentence) in said

    calls: list[PlannedCall] = []
    last_user = message_text(messages[user_pos])
    for call in turn.calls:
        if resolver.issued_id(call) is not None:
            continue
        planned = frozenset(c.expected_id for c in calls)
        arguments = _plan_arguments(
            scenario, call, resolver, partial=partial, heard=last_user,
            futures=futures_known, planned=planned,
        )  # fmt: skip
        if arguments is not None:
            calls.append(PlannedCall(call.call_id, call.tool, json.dumps(arguments)))

    sentences = _ready_sentences(scenario, turn_index, resolver, already_said)
    pending = any(
        (o := resolver.outcome(c.call_id)) is not None and o.status == "pending" for c in turn.calls
    ) or any(
        (o := resolver.outcome(n)) is not None and o.status == "pending"
        for fact in turn.answer
        for n in fact.needs
    )
    filler_due = turn.filler is not None and not already_said(turn.filler)

    if calls:
        if not said and not sentences and filler_due:
            sentences.insert(0, turn.filler or "")
        return OracleReply(" ".join(sentences), tuple(calls), turn_index)
    if sentences:
        return OracleReply(" ".join(sentences), (), turn_index)
    if not pending:
        return OracleReply("", (), turn_index, note="nothing left to say")
    if filler_due:
        return OracleReply(turn.filler or "", (), turn_index, note="filler while pending")
    waits = [normalize_text(s) for s in (turn.filler, scenario.oracle.hold_sentence) if s]
    if said_messages:
        last_pos, last_text = said_messages[-1]
        last_was_wait = any(normalize_text(last_text).endswith(w) for w in waits)
        changed = any(pos > last_pos for pos in ctx.outcome_positions)
        if last_was_wait and not changed:
            return OracleReply("", (), turn_index, note="still waiting, nothing changed")
    return OracleReply(scenario.oracle.hold_sentence, (), turn_index, note="hold while pending")


def _ready_sentences(
    scenario: Scenario, turn_index: int, resolver: _Resolver, already_said: Callable[[str], bool]
) -> list[str]:
    """Unsaid facts whose needed outcomes are present, in script order, plus
    a generic apology per failed call that no failure fact covers."""
    turn = scenario.turns[turn_index]
    sentences: list[str] = []
    covered_failures = {n for f in turn.answer if f.on_failure for n in f.needs}
    apologies: list[str] = []
    for fact in turn.answer:
        outcomes = [resolver.outcome(n) for n in fact.needs]
        statuses = {o.status if o else "not_issued" for o in outcomes}
        if not fact.on_failure:
            ready = statuses <= {"resolved"}
            for need, o in zip(fact.needs, outcomes, strict=True):
                if o is not None and o.status == "failed" and need not in covered_failures:
                    tool = scenario.call(need).tool.replace("_", " ")
                    apology = f"I'm sorry, the {tool} request failed."
                    if apology not in apologies and not already_said(apology):
                        apologies.append(apology)
        else:
            ready = "failed" in statuses and statuses <= {"resolved", "failed"}
        if not ready:
            continue
        try:
            sentence = str(resolver.render(fact.say))
        except Unavailable:
            continue
        if not already_said(sentence):
            sentences.append(sentence)
    return sentences + apologies


def _without_partial_note(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """The messages with the agent's partial-transcript note removed from the last user
    message, and whether it was there (the request is a speculative fork)."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        return messages, False
    last = messages[users[-1]]
    text = message_text(last)
    if PARTIAL_NOTE not in text:
        return messages, False
    out = list(messages)
    out[users[-1]] = {**last, "content": text.replace(PARTIAL_NOTE, "").strip()}
    return out, True


def _result_ref(argument: str, value: Any) -> str | None:
    """The call id when ``value`` is exactly ``{{calls.X.result}}`` or
    ``{{calls.X.result.<argument>}}`` (what a future stands for), else None."""
    if not isinstance(value, str):
        return None
    m = re.fullmatch(r"\s*\{\{\s*(.*?)\s*\}\}\s*", value)
    if m is None:
        return None
    try:
        ref = parse_expression(m.group(1))
    except ValueError:
        return None
    call_id = getattr(ref, "call_id", None)
    path = getattr(ref, "path", None)
    if call_id is None or path not in ((), (argument,)):
        return None
    return str(call_id)


def _plan_arguments(
    scenario: Scenario,
    call: ExpectedCall,
    resolver: _Resolver,
    *,
    partial: bool,
    heard: str,
    futures: bool,
    planned: frozenset[str],
) -> dict[str, Any] | None:
    """The arguments the oracle sends for ``call`` now, or None when it waits."""
    try:
        return resolver.arguments(call)
    except Unavailable:
        pass
    schema = scenario.tool(call.tool).parameters
    if partial:
        guesses: list[dict[str, Any]] = []
        if call.partial_arguments is not None:
            guesses.append(call.partial_arguments)
        hasty = call.hasty if call.hasty is not None else scenario.oracle.hasty
        if hasty:
            guesses.append(_as_heard(call.arguments, heard))
        for guess in guesses:
            try:
                return render_arguments(
                    guess, schema, result_of=resolver.result_of, user_text=heard
                )
            except Unavailable:
                continue
    refer = (
        call.reference_futures
        if call.reference_futures is not None
        else scenario.oracle.reference_futures
    )
    if futures and refer:
        try:
            return resolver.future_arguments(call, planned)
        except Unavailable:
            pass
    return None


_USER_TEMPLATE = re.compile(r"\{\{\s*user:(.*?)\s*\}\}")


def _as_heard(value: Any, heard: str) -> Any:
    """``value`` with each ``{{user:X}}`` not yet heard in full replaced by the part of X
    the transcript ends with (its first words): what a hasty model sends."""
    if isinstance(value, dict):
        return {k: _as_heard(v, heard) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_heard(v, heard) for v in value]
    if not isinstance(value, str):
        return value
    said = normalize_text(heard).split()

    def prefix(match: re.Match[str]) -> str:
        words = match.group(1).split()
        keys = [normalize_text(w) for w in words]
        for k in range(len(words) - 1, 0, -1):
            if said[-k:] == keys[:k]:
                return "{{user:" + " ".join(words[:k]) + "}}"
        return match.group(0)

    return _USER_TEMPLATE.sub(prefix, value)
