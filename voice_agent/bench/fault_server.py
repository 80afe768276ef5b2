"""A misbehaving OpenAI-compatible LLM server on 127.0.0.1, for fault-injection tests.

``FaultServer(plan, clock=None)`` is an async context manager serving
``POST /v1/chat/completions`` at a port the OS chooses. For each request it
plays a *script*: a list of steps (below) chosen by ``plan`` — a fixed
script, a list of scripts used in turn (the last one repeats), or a callable
``(index, body) -> script`` (for faults that depend on the request, such as a
context-length limit).

Steps (tuples; the first item names the step):

- ``("status", code, body, headers)``: answer with an HTTP error (JSON body).
- ``("body", code, content_type, bytes)``: a whole non-streamed response
  (a JSON completion where SSE was asked for, an HTML error page).
- ``("headers",)``: send the SSE response headers.
- ``("role",)``: a chunk with ``{"role": "assistant", "content": ""}``.
- ``("text", s)``: a chunk with content ``s``.
- ``("call", index, call_id, name, arguments)``: a tool-call delta.
- ``("finish", reason)``: a chunk with ``finish_reason``.
- ``("usage",)``, ``("done",)``: the usage chunk, ``data: [DONE]``.
- ``("progress", n)``: a progress report with no choice, as the embedded
  server sends one when asked (``"progress": {"tokens": n}``).
- ``("prompt_progress", n)``: llama.cpp's report (``"prompt_progress":
  {"processed": n, ...}``).
- ``("raw", bytes)``: bytes as they are (malformed SSE, truncated JSON).
- ``("error_event", message)``: an ``{"error": ...}`` event in the stream.
- ``("sleep", s)``: wait ``s`` seconds on the server's clock.
- ``("stall",)``: stop sending and hold the connection open until the
  server closes (sets ``stalled``).
- ``("keepalive",)``: forever, every ``keepalive_s`` on the clock, an SSE
  comment and an empty-delta chunk (sets ``stalled`` after the first).
- ``("eof",)``: end the response cleanly (whatever was or was not sent).
- ``("abort",)``: reset the connection (no clean end).

A script that does not end with ``eof``/``stall``/``keepalive`` ends the
response cleanly after its last step. Every request body is kept in
``requests`` and its size in ``request_sizes``. The server binds 127.0.0.1
only and stops when the context exits (stalled handlers are released).

:data:`FAULTS` names the faults the reliability tests and
``bench/llm_faults.py`` inject.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from aiohttp import web

from fsm import Clock, MonotonicClock

__all__ = [
    "FAULTS",
    "FaultServer",
    "Script",
    "answer",
    "context_limited",
    "looping_model",
    "planning_model",
    "progressing",
    "words",
]

Step = tuple[Any, ...]
Script = list[Step]
Plan = Script | Sequence[Script] | Callable[[int, dict[str, Any]], Script]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-fault",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "faulty",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


def words(text: str) -> list[Step]:
    """``text`` as one ``("text", word)`` step per word (with its leading space)."""
    out: list[Step] = []
    for i, word in enumerate(text.split(" ")):
        out.append(("text", word if i == 0 else " " + word))
    return out


def progressing(seconds: float, every_s: float, *, start: int = 0, step: int = 32) -> Script:
    """Progress reports every ``every_s`` for ``seconds`` (a model busy with a long prefill)."""
    out: Script = []
    tokens = start
    for _ in range(round(seconds / every_s)):
        tokens += step
        out += [("sleep", every_s), ("progress", tokens)]
    return out


def answer(text: str) -> Script:
    """A well-behaved streamed answer."""
    return [("headers",), ("role",), *words(text), ("finish", "stop"), ("usage",), ("done",)]


ANSWER = "Your order has shipped and arrives on Friday."

FAULTS: dict[str, Script] = {
    # the server accepts the request and sends its headers, then nothing
    "headers_then_stall": [("headers",), ("stall",)],
    # nothing at all for 35 s, then a normal answer
    "slow_first_byte": [("sleep", 35.0), *answer(ANSWER)],
    # a role chunk (first byte) and then nothing
    "role_then_stall": [("headers",), ("role",), ("stall",)],
    # a few words, then the stream stalls
    "stall_after_text": [("headers",), ("role",), *words("Your order has"), ("stall",)],
    # SSE keep-alives (comments and empty deltas) forever
    "keepalive_forever": [("headers",), ("role",), ("keepalive",)],
    # keep-alives forever after some text
    "keepalive_after_text": [("headers",), ("role",), *words("Let me see."), ("keepalive",)],
    # a tool call's arguments stop half-way
    "stall_mid_tool_call": [
        ("headers",),
        ("role",),
        ("call", 0, "call_half", "get_order", '{"order_id": "12'),
        ("stall",),
    ],
    # a clean close mid-sentence: no finish_reason, no [DONE]
    "close_mid_sentence": [("headers",), ("role",), *words("Your order has"), ("eof",)],
    # headers, then a clean close with nothing sent
    "empty_close": [("headers",), ("eof",)],
    # a proper finish with no text and no calls
    "empty_answer": [("headers",), ("role",), ("finish", "stop"), ("done",)],
    # a data line that is not JSON
    "malformed_sse": [("headers",), ("role",), ("raw", b"data: {not json at all\n\n"), ("eof",)],
    # a chunk cut off mid-JSON, then the connection closes
    "truncated_json": [
        ("headers",),
        ("raw", b'data: {"id": "x", "choices": [{"index": 0, "delta": {"conte'),
        ("eof",),
    ],
    # an error event in the middle of the stream
    "error_event_mid_stream": [
        ("headers",),
        ("role",),
        *words("Your order"),
        ("error_event", "internal error while generating"),
    ],
    # the finish arrives but [DONE] never does
    "stall_after_finish": [("headers",), ("role",), *words(ANSWER), ("finish", "stop"), ("stall",)],
    # 6,000 words despite max_tokens
    "ignores_max_tokens": [
        ("headers",),
        ("role",),
        *words(" ".join(["blah"] * 6000)),
        ("finish", "stop"),
        ("done",),
    ],
    # overloaded: 429 with Retry-After: 2
    "rate_limited": [
        (
            "status",
            429,
            {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
            {"Retry-After": "2"},
        ),
    ],
    # overloaded for good: 503 forever
    "unavailable": [("status", 503, {"error": {"message": "overloaded"}}, {})],
}
"""Named fault scripts (each one request's behaviour)."""


def context_limited(
    limit_bytes: int, limit_tokens: int, ok: Script
) -> Callable[[int, dict[str, Any]], Script]:
    """A plan: a request whose JSON body exceeds ``limit_bytes`` gets OpenAI's 400
    context-length error (stating ``limit_tokens``); others get ``ok``."""

    def plan(index: int, body: dict[str, Any]) -> Script:
        size = len(json.dumps(body["messages"]))
        if size <= limit_bytes:
            return ok
        message = (
            f"This model's maximum context length is {limit_tokens} tokens. However, your "
            f"messages resulted in {size // 3} tokens. Please reduce the length of the messages."
        )
        error = {
            "message": message,
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
        return [("status", 400, {"error": error}, {})]

    return plan


class FaultServer:
    """Serves scripted faults over real HTTP on 127.0.0.1 (see the module docstring)."""

    def __init__(self, plan: Plan, *, clock: Clock | None = None, keepalive_s: float = 0.5) -> None:
        self._plan = plan
        self._clock = clock or MonotonicClock()
        self._keepalive_s = keepalive_s
        self.requests: list[dict[str, Any]] = []
        self.request_sizes: list[int] = []
        self.received = asyncio.Event()  # a request arrived (cleared by the test if it wants)
        self.stalled = asyncio.Event()  # a response reached a stall or keep-alive loop
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    def script_for(self, index: int, body: dict[str, Any]) -> Script:
        plan = self._plan
        if callable(plan):
            return plan(index, body)
        if plan and isinstance(plan[0], tuple):
            return list(plan)  # type: ignore[arg-type]
        scripts = list(plan)
        return list(scripts[min(index, len(scripts) - 1)])  # type: ignore[arg-type]

    async def __aenter__(self) -> FaultServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hold(self) -> None:
        self.stalled.set()
        await self._release.wait()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        index = len(self.requests)
        self.requests.append(body)
        self.request_sizes.append(len(raw))
        self.received.set()
        response: web.StreamResponse | None = None
        try:
            for step in self.script_for(index, body):
                kind = step[0]
                if kind == "status":
                    _, code, payload, headers = step
                    return web.json_response(payload, status=code, headers=headers)
                if kind == "body":
                    _, code, content_type, data = step
                    return web.Response(status=code, body=data, content_type=content_type)
                if kind == "sleep":
                    await self._clock.sleep(step[1])
                    continue
                if kind == "headers":
                    response = web.StreamResponse(
                        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
                    )
                    await response.prepare(request)
                    continue
                if kind == "stall" and response is None:  # accepted, never a header
                    await self._hold()
                    return web.Response(status=204)
                assert response is not None, f"step {kind!r} before ('headers',)"
                if kind == "role":
                    await response.write(_chunk({"role": "assistant", "content": ""}))
                elif kind == "text":
                    await response.write(_chunk({"content": step[1]}))
                elif kind == "call":
                    _, i, call_id, name, arguments = step
                    fn: dict[str, Any] = {"arguments": arguments}
                    delta: dict[str, Any] = {"index": i, "function": fn}
                    if call_id:
                        delta["id"] = call_id
                        delta["type"] = "function"
                    if name:
                        fn["name"] = name
                    await response.write(_chunk({"tool_calls": [delta]}))
                elif kind == "finish":
                    await response.write(_chunk({}, step[1]))
                elif kind == "usage":
                    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
                    await response.write(
                        f"data: {json.dumps({'id': 'x', 'object': 'chat.completion.chunk', 'created': 0, 'model': 'faulty', 'choices': [], 'usage': usage})}\n\n".encode()
                    )
                elif kind in ("progress", "prompt_progress"):
                    report = (
                        {"progress": {"tokens": step[1]}}
                        if kind == "progress"
                        else {"prompt_progress": {"total": 10**6, "cache": 0, "processed": step[1]}}
                    )
                    payload = {"id": "x", "object": "chat.completion.chunk", "created": 0,
                               "model": "faulty", "choices": [], **report}  # fmt: skip
                    await response.write(f"data: {json.dumps(payload)}\n\n".encode())
                elif kind == "done":
                    await response.write(b"data: [DONE]\n\n")
                elif kind == "raw":
                    await response.write(step[1])
                elif kind == "error_event":
                    await response.write(
                        f"data: {json.dumps({'error': {'message': step[1], 'type': 'server_error'}})}\n\n".encode()
                    )
                elif kind == "stall":
                    await self._hold()
                    return response
                elif kind == "keepalive":
                    first = True
                    while not self._release.is_set():
                        await response.write(b": keep-alive\n\n")
                        await response.write(_chunk({}))
                        if first:
                            self.stalled.set()
                            first = False
                        await self._clock.sleep(self._keepalive_s)
                    return response
                elif kind == "eof":
                    break
                elif kind == "abort":  # the connection is reset, no clean end
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                else:  # pragma: no cover - a typo in a test's script
                    raise ValueError(f"unknown fault step {kind!r}")
            if response is None:
                return web.Response(status=204)
            await response.write_eof()
            return response
        except (ConnectionResetError, ConnectionError):
            return response or web.Response(status=499)


def _turn_state(messages: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, bool]]:
    """Calls made since the last user message (name -> id) and which ids have an outcome."""
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    called: dict[str, str] = {}
    settled: dict[str, bool] = {}
    for m in messages[last_user + 1 :]:
        for tc in m.get("tool_calls") or []:
            fn = tc["function"]
            if fn["name"] == "get_result":  # a late outcome, reported by the engine
                settled[json.loads(fn["arguments"])["call_id"]] = True
            else:
                called.setdefault(fn["name"], tc["id"])
        if m.get("role") == "tool":
            status = json.loads(m["content"]).get("status") if m["content"].startswith("{") else ""
            if status != "pending":
                settled[m["tool_call_id"]] = True
    return called, settled


def planning_model(
    reads: Sequence[str], write: str, *, done: str = "All done.", ttft_s: float = 0.0
) -> Plan:
    """A model with a multi-step plan, for the loop-guard tests: it calls every read tool at
    once, then (once all of them are back) the write, then says ``done``. While results it
    needs are pending it returns an empty response (it waits), as a futures-aware model may.
    Each response starts ``ttft_s`` after the request (on the server's clock). Call ids are
    ``call_<name>_<user turn>``."""

    def plan(index: int, body: dict[str, Any]) -> Script:
        turn = sum(1 for m in body["messages"] if m.get("role") == "user")
        called, settled = _turn_state(body["messages"])
        head: list[Step] = [("sleep", ttft_s), ("headers",), ("role",)]

        def calls(names: Sequence[str]) -> list[Step]:
            return [("call", i, f"call_{n}_{turn}", n, "{}") for i, n in enumerate(names)]

        missing = [n for n in reads if n not in called]
        if missing:
            text = [] if called else words("Let me check.")
            return [*head, *text, *calls(missing), ("finish", "tool_calls"), ("done",)]
        if not all(settled.get(called[n]) for n in reads):
            return [*head, ("finish", "stop"), ("done",)]
        if write not in called:
            return [*head, *calls([write]), ("finish", "tool_calls"), ("done",)]
        if not settled.get(called[write]):
            return [*head, ("finish", "stop"), ("done",)]
        return [*head, *words(done), ("finish", "stop"), ("done",)]

    return plan


def looping_model(tool: str, *, done: str = "Here is everything.") -> Plan:
    """A runaway model: after every outcome it calls ``tool`` again, forever — until a new
    user turn says ``keep going``, when it answers ``done`` at once."""

    def plan(index: int, body: dict[str, Any]) -> Script:
        users = [m for m in body["messages"] if m.get("role") == "user"]
        head: list[Step] = [("headers",), ("role",)]
        if users and "keep going" in users[-1]["content"].lower():
            return [*head, *words(done), ("finish", "stop"), ("done",)]
        return [
            *head,
            ("call", 0, f"call_{index}", tool, "{}"),
            ("finish", "tool_calls"),
            ("done",),
        ]

    return plan
