"""Streaming chat completions from any OpenAI-compatible endpoint.

:meth:`LlmClient.stream` yields text deltas as they arrive and each tool call
as soon as its arguments are complete JSON (not at the end of the response),
so the scheduler can start it while the model keeps generating. It assembles
tool-call deltas by index and copes with servers that repeat the function name
in every delta, that send no call id, or that send the name in pieces.

Progress: with ``progress`` on (the embedded model, or a llama.cpp server),
the request asks the endpoint to report its progress while it works
(``"return_progress": true``) and the endpoint sends chunks with no choice
and growing counts of the work done for the request (ours: ``"progress":
{"tokens": n, "cpu_ms": m}``; llama.cpp's: ``"prompt_progress":
{"processed": n}``). A report whose count grew is a sign of life, yielded as
:class:`Progressed` (not output: a failure after it may still be retried).
A count that does not grow, a keep-alive comment, an empty or role-only
chunk are not progress. So a model that is slow because the machine is busy
(a long prefill, a reply the server holds back while it writes a tool call)
is told from one that has stopped.

Deadlines, all on the injected clock (``fsm.fail_at``, so tests jump time):

- ``timeout_s``: the deadline for the response's first output (text or a
  tool call), from sending the request, retries and backoff included (not a
  per-read timeout: a server that sends keep-alives or progress forever
  without output still hits it). Once output began, the stall deadline and
  ``max_tokens`` bound the response: a healthy model that answers slowly is
  not cut off mid-answer;
- ``first_token_timeout_s``: no text, tool-call data or progress within this
  long of sending an attempt (headers, a role-only chunk or empty keep-alive
  chunks do not count) fails the attempt;
- ``stall_timeout_s``: once output or progress began, none for this long
  fails the request.

Retries: an attempt that fails before anything was yielded (connection error,
a deadline above, 408/409/429/5xx, a malformed or truncated stream) is retried
with exponential backoff, or after the server's ``Retry-After`` when it sends
one, as long as the whole-request deadline leaves time; once output has been
yielded a failure is raised as :class:`LlmError` (what was said cannot be
unsaid). Cancelling the consuming task closes the HTTP stream at once.

A stream is an answer only when it ends properly: a stream that closes
without a ``finish_reason`` (mid-sentence, or with nothing at all) raises
:class:`LlmError`. The response is capped on the client side at
``max_tokens`` (estimated) even if the server ignores the parameter; a capped
response ends with ``StreamFinished(finish_reason="length", truncated=True)``.

Context: every request is fitted into the model's window
(:func:`ledger.budget.fit_messages`; window from ``context_tokens``). A
context-length error from the server lowers the window this client assumes
(from the limit the error states, else to a fraction of what was sent) and
the request is retried at once, fitted again; the lowered window is kept for
every later request, so the error is not repeated turn after turn.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import openai

from fsm import Clock, MonotonicClock, fail_at
from ledger.budget import CHARS_PER_TOKEN, FitResult, fit_messages

from .config import LlmConfig

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class LlmError(RuntimeError):
    """The LLM request failed; ``retryable`` says whether trying again could help.

    ``retry_after_s`` is the delay the server asked for (``Retry-After``), if any.
    """

    def __init__(
        self, message: str, *, retryable: bool, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class LlmContextOverflow(LlmError):
    """The request did not fit the model's context window (the server said so).

    ``limit_tokens`` is the window the server stated, when its message says it.
    """

    def __init__(self, message: str, *, limit_tokens: int | None) -> None:
        super().__init__(message, retryable=False)
        self.limit_tokens = limit_tokens


@dataclass(frozen=True)
class TextDelta:
    """A piece of the response's text."""

    text: str


@dataclass(frozen=True)
class ToolCallReady:
    """A tool call whose arguments are complete."""

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class StreamFinished:
    """The response ended properly; ``finish_reason`` as the server said it.

    ``truncated`` is True when this client cut the response at ``max_tokens``
    (``finish_reason`` is then ``"length"``).
    """

    finish_reason: str
    usage: dict[str, Any] | None = None
    truncated: bool = False


@dataclass(frozen=True)
class Progressed:
    """The endpoint reported progress on this request: ``tokens`` it evaluated so far, and
    ``cpu_ms`` of computing (0 when the endpoint does not say).

    Not output (nothing to say): a sign of life for deadlines and watchdogs.
    """

    tokens: int
    cpu_ms: int = 0


StreamItem = TextDelta | ToolCallReady | StreamFinished | Progressed


def _count(report: dict[str, Any], key: str) -> int:
    value = report.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def progress_report(chunk: Any) -> Progressed | None:
    """The progress an endpoint reported in ``chunk``, if it reported any.

    Ours: ``"progress": {"tokens": n, "cpu_ms": m}``; llama.cpp's server
    (``return_progress``): ``"prompt_progress": {"processed": n, ...}``.
    """
    extra = getattr(chunk, "model_extra", None) or {}
    ours = extra.get("progress")
    if isinstance(ours, dict):
        return Progressed(_count(ours, "tokens"), _count(ours, "cpu_ms"))
    theirs = extra.get("prompt_progress")
    if isinstance(theirs, dict):
        return Progressed(_count(theirs, "processed"))
    return None


@dataclass
class _PartialCall:
    index: int
    call_id: str | None = None
    name: str = ""
    arguments: str = ""
    emitted: bool = False

    def add(self, call_id: str | None, name: str | None, arguments: str | None) -> None:
        if call_id and self.call_id is None:
            self.call_id = call_id
        if name:
            if not self.name:
                self.name = name
            elif name == self.name or self.name.endswith(name) and self.arguments:
                pass  # the server repeats the name in every delta
            elif name.startswith(self.name):
                self.name = name  # cumulative name
            elif not self.arguments:
                self.name += name  # the name arrives in pieces
        if arguments:
            self.arguments += arguments

    def complete_json(self) -> bool:
        """True when the arguments are a complete JSON object."""
        text = self.arguments.strip()
        if not text.endswith("}"):
            return False
        try:
            return isinstance(json.loads(text), dict)
        except ValueError:  # not JSON, or a number too long for Python to read (hostile9)
            return False


def _malformed(what: str, value: object) -> LlmError:
    return LlmError(
        f"malformed chunk from the LLM endpoint: {what} is {type(value).__name__}, not text",
        retryable=True,
    )


def _check_delta(d: Any) -> None:
    """A tool-call delta's fields have the types the protocol gives them, or LlmError (a
    number for a name reached ``str`` methods and failed as AttributeError)."""
    index = getattr(d, "index", None)
    if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
        raise _malformed("a tool call's index", index)
    fn = getattr(d, "function", None)
    for what, value in (
        ("a tool call's id", getattr(d, "id", None)),
        ("a tool call's name", getattr(fn, "name", None) if fn else None),
        ("a tool call's arguments", getattr(fn, "arguments", None) if fn else None),
    ):
        if value is not None and not isinstance(value, str):
            raise _malformed(what, value)


class ToolCallAssembler:
    """Turns streamed ``tool_calls`` deltas into complete calls, as early as possible."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}
        self._ids: set[str] = set()

    def feed(self, deltas: Sequence[Any]) -> list[ToolCallReady]:
        """Add one chunk's tool-call deltas; return the calls that became complete."""
        ready: list[ToolCallReady] = []
        for d in deltas:
            _check_delta(d)
            index = getattr(d, "index", None)
            if index is None:
                index = len(self._calls) if not self._calls else max(self._calls)
            fn = getattr(d, "function", None)
            call = self._calls.get(index)
            if call is None:
                # A new index means every earlier call is complete.
                for earlier in self._calls.values():
                    ready.extend(self._emit(earlier))
                call = self._calls[index] = _PartialCall(index)
            call.add(
                getattr(d, "id", None),
                getattr(fn, "name", None) if fn else None,
                getattr(fn, "arguments", None) if fn else None,
            )
            if call.name and call.complete_json():
                ready.extend(self._emit(call))
        return ready

    def finish(self, *, complete_only: bool = False) -> list[ToolCallReady]:
        """The stream ended: every call not yet emitted is complete now.

        With ``complete_only`` (the response was cut short), a call whose
        arguments are not complete JSON is dropped instead.
        """
        ready: list[ToolCallReady] = []
        for call in self._calls.values():
            if complete_only and not call.complete_json():
                continue
            ready.extend(self._emit(call))
        return ready

    def _emit(self, call: _PartialCall) -> list[ToolCallReady]:
        if call.emitted or not call.name:
            return []
        call.emitted = True
        call_id = call.call_id
        if not call_id or call_id in self._ids:
            call_id = f"call_{uuid.uuid4().hex[:12]}"
        self._ids.add(call_id)
        return [ToolCallReady(call_id, valid_text(call.name), valid_text(call.arguments or "{}"))]


# The prewarm request evaluates the whole prompt prefix cold, before any call: allow it
# this many request timeouts (unit: multiples of llm.timeout_s).
PREWARM_TIMEOUT_FACTOR = 4
# A server that sends its finish_reason and then neither usage nor [DONE] is done
# all the same: wait this long (seconds) for the usage chunk, then finish.
FINISH_GRACE_S = 1.0
# Characters per token when capping a response's text (English prose averages ~4
# with BPE tokenisers; the chunk count is used too when it is larger).
RESPONSE_CHARS_PER_TOKEN = 4.0
# Tokens kept free in the context window besides max_tokens and the tools' schemas
# (chat-template overhead the estimate does not see).
CONTEXT_MARGIN_TOKENS = 64
# Without a stated limit, a context-length error lowers the assumed window to this
# fraction of the estimated size of the request that overflowed.
OVERFLOW_SHRINK = 0.7

_CONTEXT_ERROR = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|too many tokens|prompt is too long"
    r"|the context holds|exceeds? the (available )?context|reduce the length",
    re.IGNORECASE,
)
_CONTEXT_LIMIT = re.compile(
    r"(?:maximum context length is|context (?:window|size|length)(?: is| of)?|"
    r"the context holds|n_ctx\W{1,4})\D{0,4}(\d{3,7})",
    re.IGNORECASE,
)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` with every lone surrogate (U+D800-U+DFFF) replaced by U+FFFD.

    Lone surrogates are not text UTF-8 can carry: they come from bytes a
    terminal or pipe could not decode (Python's ``surrogateescape``), from a
    server's JSON escaping half a pair (``"\\ud83d"``), or from a tool. One in a
    message made every later request of the session fail to encode.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


def valid_json(value: Any) -> Any:
    """``value`` (JSON-like) with :func:`valid_text` applied to every string in it."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_text(k) if isinstance(k, str) else k: valid_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [valid_json(v) for v in value]
    return value


def _error_text(exc: BaseException) -> str:
    parts = [str(getattr(exc, "message", "") or exc)]
    body = getattr(exc, "body", None)
    if body is not None:
        try:
            parts.append(json.dumps(body))
        except (TypeError, ValueError):
            parts.append(str(body))
    return " ".join(parts)


def _context_overflow(exc: BaseException) -> LlmContextOverflow | None:
    """The server's error says the prompt did not fit its context window."""
    if not isinstance(exc, openai.APIError):
        return None
    if isinstance(exc, openai.APIStatusError) and exc.status_code not in (400, 413, 422):
        return None
    text = _error_text(exc)
    if "context_length_exceeded" not in text and not _CONTEXT_ERROR.search(text):
        return None
    match = _CONTEXT_LIMIT.search(text)
    limit = int(match.group(1)) if match else None
    return LlmContextOverflow(
        f"the request did not fit the model's context window ({getattr(exc, 'message', exc)})",
        limit_tokens=limit,
    )


def _retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked to wait (``retry-after-ms`` / ``Retry-After``), if it said."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())  # an HTTP date is wall-clock time


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS
    if isinstance(exc, openai.APIError):
        return True  # an error event in the stream, a malformed chunk: the server may recover
    return isinstance(
        exc,
        openai.APIConnectionError
        | openai.APITimeoutError
        | httpx.TransportError
        | TimeoutError
        | json.JSONDecodeError,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code} from the LLM endpoint: {exc.message}"
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return f"cannot reach the LLM endpoint ({type(exc).__name__})"
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return "the LLM endpoint timed out"
    if isinstance(exc, json.JSONDecodeError):
        return f"the LLM endpoint sent a malformed chunk ({exc.msg})"
    if isinstance(exc, openai.APIError):
        return f"the LLM endpoint reported an error mid-stream: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _as_llm_error(exc: BaseException) -> LlmError:
    if isinstance(exc, LlmError):
        return exc
    overflow = _context_overflow(exc)
    if overflow is not None:
        return overflow
    return LlmError(_describe(exc), retryable=_is_retryable(exc), retry_after_s=_retry_after(exc))


def _grew(before: Progressed | None, now: Progressed) -> bool:
    """``now`` reports more work than ``before`` (a repeated count is no progress)."""
    if before is None:
        return now.tokens > 0 or now.cpu_ms > 0
    return now.tokens > before.tokens or now.cpu_ms > before.cpu_ms


@dataclass
class _Attempt:
    """What one attempt has done so far."""

    started: float
    yielded: bool = False  # output reached the consumer: no retry possible
    progressed_at: float | None = None  # last text / tool-call data / progress from the server
    output: bool = False  # text or tool-call data arrived (the request deadline is met)
    progress: Progressed | None = None  # the endpoint's last report that grew


class LlmClient:
    """An ``openai.AsyncOpenAI`` wrapper with streaming assembly, deadlines, caps and retries.

    ``clock`` times every deadline and backoff (default: real time); tests and
    the virtual-time bench inject theirs.
    """

    def __init__(
        self,
        config: LlmConfig,
        *,
        client: openai.AsyncOpenAI | None = None,
        clock: Clock | None = None,
    ) -> None:
        if config.base_url is None and client is None:
            raise ValueError("LlmConfig.base_url is not set (start the local model first)")
        self.config = config
        self._client = client or openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key.get_secret_value() or "none",
            max_retries=0,  # retries are ours: only before the first yielded item
            # A per-read backstop on wall time; the request's deadlines are ours, on the clock.
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
        )
        if client is None:
            # (turn7) openai imports its chat resources and their response types on first use:
            # ~1 s of CPU at load 12, which a process's first request paid, i.e. the first
            # caller's first answer (its preemptive request went out 0.4-1.1 s after the early
            # transcript in bench/turn_latency.py). Paid here, when the session is set up.
            self._client.chat.completions  # noqa: B018
        self.clock: Clock = clock or MonotonicClock()
        self._window: int | None = config.context_tokens
        self.last_fit: FitResult | None = None
        """How the last request was fitted into the context window (for the record)."""

    @property
    def context_window(self) -> int | None:
        """The context window (tokens) requests are fitted into; lowered by overflow errors."""
        return self._window

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        await self._client.close()

    async def prewarm(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> None:
        """Send a one-token request so the server caches the prompt prefix (system + tools).

        Worth it for a local server with a KV cache: the first real turn then
        starts in a fraction of a second instead of evaluating the whole prefix.
        Failures are logged, never raised: the real request will report them.
        """
        kwargs: dict[str, Any] = {
            "model": self.config.model,
            "messages": self._sendable(messages),
            "max_tokens": 1,
        }
        if tools:
            kwargs["tools"] = tools
        try:
            # Start-up, not the caller's time: a cold prefix on a slow machine may take a
            # while, so the deadline is PREWARM_TIMEOUT_FACTOR request timeouts.
            allowed_s = PREWARM_TIMEOUT_FACTOR * self.config.timeout_s
            deadline = self.clock.now() + allowed_s
            # The HTTP client's per-read backstop (timeout_s) would end it first: a
            # non-streamed answer sends nothing until the whole prefix is evaluated (at
            # load 18-20 the 1.5B's took longer than 30 s, so every turn evaluated it).
            kwargs["timeout"] = httpx.Timeout(allowed_s, connect=self.config.connect_timeout_s)
            async with fail_at(self.clock, deadline):
                await self._client.chat.completions.create(**kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("LLM prewarm failed: %s", _describe(exc))

    def prompt_budget(self, tools: list[dict[str, Any]] | None) -> int | None:
        """Tokens the messages may use: the window minus the response and the tools' schemas."""
        if self._window is None:
            return None
        tools_tokens = int(len(json.dumps(tools)) / CHARS_PER_TOKEN) if tools else 0
        return max(1, self._window - self.config.max_tokens - tools_tokens - CONTEXT_MARGIN_TOKENS)

    def fit(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> FitResult:
        """``messages`` fitted into the context budget (unchanged when the window is unknown)."""
        return fit_messages(messages, self.prompt_budget(tools))

    def _learn_overflow(self, error: LlmContextOverflow, sent_tokens: int) -> None:
        before = self._window
        if error.limit_tokens is not None and (before is None or error.limit_tokens < before):
            self._window = error.limit_tokens
        else:
            shrunk = int(sent_tokens * OVERFLOW_SHRINK) + self.config.max_tokens
            self._window = shrunk if before is None else min(before, shrunk)
        if self._window == before:  # the estimate was right but the server still refused
            self._window = int(before * OVERFLOW_SHRINK) if before else None
        log.warning(
            "LLM context overflow (%s); assuming a %s-token window from now on",
            error,
            self._window,
        )

    async def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        tool_choice: str | dict[str, Any] | None = None,
        on_fit: Callable[[FitResult], None] | None = None,
    ) -> AsyncIterator[StreamItem]:
        """Stream one response: text deltas, complete tool calls, then :class:`StreamFinished`;
        :class:`Progressed` between them when the endpoint reports progress.

        ``on_fit`` is called with the :class:`~ledger.budget.FitResult` of each
        attempt whose messages had to be fitted into the context window (for
        the record; it must not raise).

        Raises :class:`LlmError` when the request fails (after retries, or
        once something was yielded), including when a deadline passes or the
        stream ends without a proper finish.
        """
        clock = self.clock
        request_deadline = clock.now() + self.config.timeout_s
        attempt = 0
        refitted = False
        while True:
            fitted = self.fit(messages, tools)
            self.last_fit = fitted
            if fitted.changed:
                log.info(
                    "context fitted to %s tokens: %d old turns, %d blocks elided, %d contents cut",
                    fitted.estimated_tokens,
                    fitted.elided_turns,
                    fitted.elided_blocks,
                    fitted.capped_contents,
                )
                if on_fit is not None:
                    on_fit(fitted)
            state = _Attempt(started=clock.now())
            try:
                async for item in self._stream_once(
                    fitted.messages, tools, tool_choice, state, request_deadline
                ):
                    if not isinstance(item, Progressed):
                        state.yielded = True
                    yield item
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = _as_llm_error(exc)
                if state.yielded:
                    raise error from exc
                if isinstance(error, LlmContextOverflow):
                    if refitted:
                        raise error from exc
                    refitted = True
                    self._learn_overflow(error, fitted.estimated_tokens)
                    if self._window is None:
                        raise error from exc
                    continue  # at once: nothing transient to wait for
                if not error.retryable or attempt >= self.config.max_retries:
                    raise error from exc
                delay = self.config.retry_backoff_s * (2**attempt)
                if error.retry_after_s is not None:
                    delay = error.retry_after_s
                left = request_deadline - clock.now()
                if delay >= left:
                    raise LlmError(
                        f"{error} (a retry in {delay:.1f}s would pass the request's "
                        f"{self.config.timeout_s:.1f}s deadline)",
                        retryable=False,
                    ) from exc
            attempt += 1
            log.warning("LLM request failed (%s); retry %d in %.2fs", error, attempt, delay)
            await clock.sleep(delay)

    def _sendable(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages as this endpoint takes them: without `name` when it rejects the key
        (``message_names``)."""
        if self.config.message_names:
            return messages
        return [{k: v for k, v in m.items() if k != "name"} for m in messages]

    def _kwargs(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        tool_choice: str | dict[str, Any] | None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.config.model,
            "messages": valid_json(self._sendable(messages)),
            "stream": True,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = tool_choice or "auto"
            if self.config.parallel_tool_calls:
                kwargs["parallel_tool_calls"] = True
        extra = dict(self.config.extra_body)
        if self.config.progress:
            extra.setdefault("return_progress", True)
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def _wait_deadline(self, state: _Attempt, request_deadline: float) -> tuple[float, str]:
        """When the next chunk must have come by, and what it means if it has not."""
        cfg = self.config
        if state.progressed_at is None:
            limit = state.started + cfg.first_token_timeout_s
            reason = f"no response from the LLM within {cfg.first_token_timeout_s:.1f}s"
        else:
            limit = state.progressed_at + cfg.stall_timeout_s
            reason = f"the LLM stream stalled for {cfg.stall_timeout_s:.1f}s"
        if state.output:
            return limit, reason  # the answer is under way: stalls and max_tokens bound it
        if request_deadline <= limit:
            return request_deadline, f"the LLM request took longer than {cfg.timeout_s:.1f}s"
        return limit, reason

    async def _stream_once(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        tool_choice: str | dict[str, Any] | None,
        state: _Attempt,
        request_deadline: float,
    ) -> AsyncIterator[StreamItem]:
        clock = self.clock
        deadline, reason = self._wait_deadline(state, request_deadline)
        try:
            async with fail_at(clock, deadline):
                stream = await self._client.chat.completions.create(
                    **self._kwargs(messages, tools, tool_choice)
                )
        except TimeoutError:
            raise LlmError(reason, retryable=True) from None
        assembler = ToolCallAssembler()
        text_tail = ""  # the last character of text streamed so far
        finish_reason: str | None = None
        finished_at = 0.0
        usage: dict[str, Any] | None = None
        cap = self.config.max_tokens
        chunks = 0  # text / argument pieces received (≈ tokens for most servers)
        chars = 0
        truncated = False
        try:
            iterator = stream.__aiter__()
            while not truncated:
                if finish_reason is not None:
                    deadline, reason = finished_at + FINISH_GRACE_S, ""
                else:
                    deadline, reason = self._wait_deadline(state, request_deadline)
                try:
                    async with fail_at(clock, deadline):
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if finish_reason is not None:
                        break  # finished; the usage chunk / [DONE] never came
                    raise LlmError(reason, retryable=True) from None
                if getattr(chunk, "usage", None):
                    usage = chunk.usage.model_dump() if hasattr(chunk.usage, "model_dump") else None
                reported = progress_report(chunk)
                if (
                    reported is not None
                    and finish_reason is None
                    and _grew(state.progress, reported)
                ):
                    state.progress = reported
                    state.progressed_at = clock.now()
                    yield reported
                for choice in chunk.choices or []:
                    delta = choice.delta
                    if delta is not None and finish_reason is None and not truncated:
                        if delta.content:
                            if not isinstance(delta.content, str):
                                raise _malformed("the content", delta.content)
                            text = valid_text(delta.content)
                            state.progressed_at = clock.now()
                            state.output = True
                            chunks += 1
                            allowed = int(cap * RESPONSE_CHARS_PER_TOKEN) - chars
                            if chunks > cap or len(text) > allowed:
                                text = text[: max(0, allowed)] if chunks <= cap else ""
                                truncated = True
                            chars += len(text)
                            if text:
                                text_tail = text[-1]
                                yield TextDelta(text)
                        if delta.tool_calls and not truncated:
                            for d in delta.tool_calls:
                                _check_delta(d)
                            state.progressed_at = clock.now()
                            state.output = True
                            pieces = sum(
                                len(getattr(getattr(d, "function", None), "arguments", "") or "")
                                for d in delta.tool_calls
                            )
                            chunks += 1
                            chars += pieces
                            if chunks > cap or chars > cap * RESPONSE_CHARS_PER_TOKEN:
                                truncated = True  # the call being written is dropped below
                            else:
                                if text_tail and not text_tail.isspace():
                                    # Text before a tool call is a finished segment: a
                                    # boundary lets the speech output voice its last
                                    # sentence now instead of after the calls' JSON.
                                    text_tail = " "
                                    yield TextDelta(" ")
                                for ready in assembler.feed(delta.tool_calls):
                                    yield ready
                    if choice.finish_reason and finish_reason is None and not truncated:
                        finish_reason = choice.finish_reason
                        finished_at = clock.now()
            if truncated:
                log.warning("LLM response cut at max_tokens=%d on the client side", cap)
                for ready in assembler.finish(complete_only=True):
                    yield ready
                yield StreamFinished("length", usage, truncated=True)
                return
            if finish_reason is None:
                said = f"after {chars} characters" if chars else "before any output"
                raise LlmError(f"the LLM stream ended without finishing ({said})", retryable=True)
            for ready in assembler.finish():
                yield ready
            yield StreamFinished(finish_reason, usage)
        finally:
            await stream.close()
