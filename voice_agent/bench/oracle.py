"""A scripted, OpenAI-compatible oracle LLM served over real HTTP.

``OracleServer(scenario, clock=None)`` is an async context manager serving
``POST /v1/chat/completions`` (streaming SSE and non-streaming) and
``GET /v1/models`` on 127.0.0.1 at a port the OS chooses; ``base_url`` is the
``.../v1`` URL an OpenAI client takes. What it answers is decided by
``oracle_script.plan_reply`` from the received messages only.

Timing model: the first token is sent ``ttft_ms`` after the request arrived;
then tokens follow at ``tokens_per_s``. Text and tool calls (name and
argument JSON) all cost tokens (``scenario.count_tokens``). A streamed piece
is sent when its last token is produced. A non-streaming response is sent
when its last token would have been.

Every request and response is recorded in ``exchanges`` with clock
timestamps (received, first token, finished), for the timeline.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

from voice_agent.bench._clock import Clock, MonotonicClock, sleep_until
from voice_agent.bench.oracle_script import OracleReply, plan_reply
from voice_agent.bench.scenario import Scenario, count_tokens

MODEL_ID = "oracle"


@dataclass
class OracleExchange:
    """One request and the oracle's response to it (clock seconds)."""

    index: int
    received_at: float
    stream: bool
    messages: list[dict[str, Any]]
    turn_index: int | None = None
    text: str = ""
    calls: list[dict[str, str]] = field(default_factory=list)  # {"id", "name", "arguments"}
    note: str = ""
    first_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: str = ""
    cancelled: bool = False  # the client went away before the end

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready summary (without the request messages)."""
        return {
            "index": self.index,
            "turn_index": self.turn_index,
            "received_at": self.received_at,
            "first_token_at": self.first_token_at,
            "finished_at": self.finished_at,
            "stream": self.stream,
            "text": self.text,
            "calls": self.calls,
            "finish_reason": self.finish_reason,
            "cancelled": self.cancelled,
            "note": self.note,
        }


@dataclass(frozen=True)
class _Piece:
    tokens: int
    delta: dict[str, Any]


class OracleServer:
    """The oracle HTTP server; use ``async with``. Not reusable after exit."""

    def __init__(self, scenario: Scenario, clock: Clock | None = None) -> None:
        self._scenario = scenario
        self._clock: Clock = clock or MonotonicClock()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._next_call = 0
        self.exchanges: list[OracleExchange] = []

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` (only while running)."""
        if self._port is None:
            raise RuntimeError("OracleServer is not running; use 'async with'")
        return f"http://127.0.0.1:{self._port}/v1"

    async def __aenter__(self) -> OracleServer:
        if self._runner is not None:
            raise RuntimeError("OracleServer already started")
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop serving (idempotent)."""
        runner, self._runner = self._runner, None
        self._port = None
        if runner is not None:
            await runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "bench"}],
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        received_at = self._clock.now()
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "request body is not JSON")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return _error(400, "'messages' must be a list")
        stream = bool(body.get("stream"))
        exchange = OracleExchange(len(self.exchanges), received_at, stream, messages)
        self.exchanges.append(exchange)
        reply = plan_reply(self._scenario, messages)
        exchange.turn_index, exchange.text, exchange.note = reply.turn_index, reply.text, reply.note
        exchange.calls = self._assign_ids(reply)
        exchange.finish_reason = "tool_calls" if exchange.calls else "stop"
        pieces = self._pieces(reply, exchange.calls)
        completion_id = f"chatcmpl-oracle-{exchange.index}"
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return await self._stream(request, exchange, pieces, completion_id, include_usage)
        return await self._complete(exchange, pieces, completion_id)

    def _assign_id(self, name: str, arguments: str) -> dict[str, str]:
        self._next_call += 1
        return {"id": f"call_{self._next_call}", "name": name, "arguments": arguments}

    def _assign_ids(self, reply: OracleReply) -> list[dict[str, str]]:
        """Ids for the reply's calls; ``"@call:<expected id>"`` markers in arguments become
        the id given to that call of the same reply (a future named before it resolved)."""
        out: list[dict[str, str]] = []
        ids: dict[str, str] = {}
        for call in reply.calls:
            arguments = call.arguments
            for expected, call_id in ids.items():
                arguments = arguments.replace(f'"@call:{expected}"', json.dumps(call_id))
            assigned = self._assign_id(call.name, arguments)
            ids[call.expected_id] = assigned["id"]
            out.append(assigned)
        return out

    def _split(self, text: str) -> list[str]:
        if self._scenario.oracle.tokenizer == "words":
            return re.findall(r"\s*\S+\s*", text) if text.strip() else ([text] if text else [])
        return [text[i : i + 4] for i in range(0, len(text), 4)]

    def _cost(self, text: str) -> int:
        return count_tokens(text, self._scenario.oracle.tokenizer)

    def _pieces(self, reply: OracleReply, calls: list[dict[str, str]]) -> list[_Piece]:
        pieces = [_Piece(max(1, self._cost(p)), {"content": p}) for p in self._split(reply.text)]
        for index, call in enumerate(calls):
            head = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": ""},
            }
            pieces.append(_Piece(max(1, self._cost(call["name"])), {"tool_calls": [head]}))
            for part in self._split(call["arguments"]):
                delta = {"tool_calls": [{"index": index, "function": {"arguments": part}}]}
                pieces.append(_Piece(max(1, self._cost(part)), delta))
        return pieces

    def _piece_deadlines(self, exchange: OracleExchange, pieces: list[_Piece]) -> list[float]:
        timing = self._scenario.oracle
        start = exchange.received_at + timing.ttft_ms / 1000.0
        deadlines, produced = [], 0
        for piece in pieces:
            produced += piece.tokens
            deadlines.append(start + (produced - 1) / timing.tokens_per_s)
        return deadlines or [start]

    async def _stream(
        self,
        request: web.Request,
        exchange: OracleExchange,
        pieces: list[_Piece],
        completion_id: str,
        include_usage: bool,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": MODEL_ID,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        deadlines = self._piece_deadlines(exchange, pieces)
        try:
            for i, (piece, deadline) in enumerate(zip(pieces, deadlines, strict=False)):
                await sleep_until(self._clock, deadline)
                delta = {"role": "assistant", **piece.delta} if i == 0 else piece.delta
                await response.write(chunk(delta))
                if exchange.first_token_at is None:
                    exchange.first_token_at = self._clock.now()
            if not pieces:
                await sleep_until(self._clock, deadlines[0])
                exchange.first_token_at = self._clock.now()
                await response.write(chunk({"role": "assistant", "content": ""}))
            await response.write(chunk({}, exchange.finish_reason))
            if include_usage:
                usage = {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": MODEL_ID,
                    "choices": [],
                    "usage": self._usage(exchange, pieces),
                }
                await response.write(f"data: {json.dumps(usage)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionError:
            exchange.cancelled = True
        finally:
            exchange.finished_at = self._clock.now()
        return response

    async def _complete(
        self, exchange: OracleExchange, pieces: list[_Piece], completion_id: str
    ) -> web.Response:
        await sleep_until(self._clock, self._piece_deadlines(exchange, pieces)[-1])
        exchange.first_token_at = exchange.finished_at = self._clock.now()
        message: dict[str, Any] = {"role": "assistant", "content": exchange.text or None}
        if exchange.calls:
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in exchange.calls
            ]
        elif message["content"] is None:
            message["content"] = ""
        return web.json_response(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": 0,
                "model": MODEL_ID,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": exchange.finish_reason}
                ],
                "usage": self._usage(exchange, pieces),
            }
        )

    def _usage(self, exchange: OracleExchange, pieces: list[_Piece]) -> dict[str, int]:
        prompt = sum(self._cost(json.dumps(m)) for m in exchange.messages)
        completion = sum(p.tokens for p in pieces)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "code": None}},
        status=status,
    )
