"""Streaming chat completions from any OpenAI-compatible endpoint.

:meth:`LlmClient.stream` yields text deltas as they arrive and each tool call
as soon as its arguments are complete JSON (not at the end of the response),
so the scheduler can start it while the model keeps generating. It assembles
tool-call deltas by index and copes with servers that repeat the function name
in every delta, that send no call id, or that send the name in pieces.

Retries: a request that fails before anything was yielded (connection error,
timeout, 408/409/429/5xx, no first chunk within ``first_token_timeout_s``) is
retried with exponential backoff; once output has been yielded a failure is
raised as :class:`LlmError` (what was said cannot be unsaid). Cancelling the
consuming task closes the HTTP stream at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import openai

from .config import LlmConfig

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class LlmError(RuntimeError):
    """The LLM request failed; ``retryable`` says whether trying again could help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


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
    """The response ended; ``finish_reason`` as the server said it."""

    finish_reason: str
    usage: dict[str, Any] | None = None


StreamItem = TextDelta | ToolCallReady | StreamFinished


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
        except json.JSONDecodeError:
            return False


class ToolCallAssembler:
    """Turns streamed ``tool_calls`` deltas into complete calls, as early as possible."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}
        self._ids: set[str] = set()

    def feed(self, deltas: Sequence[Any]) -> list[ToolCallReady]:
        """Add one chunk's tool-call deltas; return the calls that became complete."""
        ready: list[ToolCallReady] = []
        for d in deltas:
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

    def finish(self) -> list[ToolCallReady]:
        """The stream ended: every call not yet emitted is complete now."""
        ready: list[ToolCallReady] = []
        for call in self._calls.values():
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
        return [ToolCallReady(call_id, call.name, call.arguments or "{}")]


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS
    return isinstance(
        exc,
        openai.APIConnectionError | openai.APITimeoutError | httpx.TransportError | TimeoutError,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code} from the LLM endpoint: {exc.message}"
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return f"cannot reach the LLM endpoint ({type(exc).__name__})"
    if isinstance(exc, TimeoutError | openai.APITimeoutError):
        return "the LLM endpoint timed out"
    return f"{type(exc).__name__}: {exc}"


class LlmClient:
    """An ``openai.AsyncOpenAI`` wrapper with streaming assembly, timeouts and retries."""

    def __init__(self, config: LlmConfig, *, client: openai.AsyncOpenAI | None = None) -> None:
        if config.base_url is None and client is None:
            raise ValueError("LlmConfig.base_url is not set (start the local model first)")
        self.config = config
        self._client = client or openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key.get_secret_value() or "none",
            max_retries=0,  # retries are ours: only before the first yielded item
            timeout=httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s),
        )
        self._sleep = asyncio.sleep

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
        kwargs: dict[str, Any] = {"model": self.config.model, "messages": messages, "max_tokens": 1}
        if tools:
            kwargs["tools"] = tools
        try:
            await self._client.chat.completions.create(**kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("LLM prewarm failed: %s", _describe(exc))

    async def stream(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        tool_choice: str | dict[str, Any] | None = None,
    ) -> AsyncIterator[StreamItem]:
        """Stream one response: text deltas, complete tool calls, then :class:`StreamFinished`."""
        attempt = 0
        while True:
            yielded = False
            try:
                async for item in self._stream_once(messages, tools, tool_choice):
                    yielded = True
                    yield item
                return
            except asyncio.CancelledError:
                raise
            except LlmError as exc:
                if yielded or not exc.retryable or attempt >= self.config.max_retries:
                    raise
                error: BaseException = exc
            except Exception as exc:
                if yielded or not _is_retryable(exc) or attempt >= self.config.max_retries:
                    raise LlmError(_describe(exc), retryable=_is_retryable(exc)) from exc
                error = exc
            delay = self.config.retry_backoff_s * (2**attempt)
            attempt += 1
            log.warning(
                "LLM request failed (%s); retry %d in %.2fs", _describe(error), attempt, delay
            )
            await self._sleep(delay)

    async def _stream_once(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        tool_choice: str | dict[str, Any] | None,
    ) -> AsyncIterator[StreamItem]:
        kwargs: dict[str, Any] = {
            "model": self.config.model,
            "messages": messages,
            "stream": True,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if tools:
            kwargs["tools"] = tools
            kwargs["tool_choice"] = tool_choice or "auto"
            if self.config.parallel_tool_calls:
                kwargs["parallel_tool_calls"] = True
        if self.config.extra_body:
            kwargs["extra_body"] = dict(self.config.extra_body)
        stream = await self._client.chat.completions.create(**kwargs)
        assembler = ToolCallAssembler()
        text_tail = ""  # the last character of text streamed so far
        finish_reason = "stop"
        usage: dict[str, Any] | None = None
        try:
            iterator = stream.__aiter__()
            first = True
            while True:
                try:
                    if first:
                        async with asyncio.timeout(self.config.first_token_timeout_s):
                            chunk = await iterator.__anext__()
                        first = False
                    else:
                        chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise LlmError(
                        f"no response from the LLM within {self.config.first_token_timeout_s:.1f}s",
                        retryable=True,
                    ) from None
                if getattr(chunk, "usage", None):
                    usage = chunk.usage.model_dump() if hasattr(chunk.usage, "model_dump") else None
                for choice in chunk.choices or []:
                    delta = choice.delta
                    if delta is not None:
                        if delta.content:
                            text_tail = delta.content[-1]
                            yield TextDelta(delta.content)
                        if delta.tool_calls:
                            if text_tail and not text_tail.isspace():
                                # Text before a tool call is a finished segment: a
                                # boundary lets the speech output voice its last
                                # sentence now instead of after the calls' JSON.
                                text_tail = " "
                                yield TextDelta(" ")
                            for ready in assembler.feed(delta.tool_calls):
                                yield ready
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
            for ready in assembler.finish():
                yield ready
            yield StreamFinished(finish_reason, usage)
        finally:
            await stream.close()
