"""An OpenAI-compatible chat-completions server around one local GGUF model.

Run::

    python -m voice_agent.local_llm.server --model NAME_OR_PATH \\
        --host 127.0.0.1 --port 0 --threads 2 --ctx 4096

When ready it prints exactly one line ``LISTENING http://HOST:PORT/v1`` on
stdout. Endpoints: ``GET /v1/models``, ``GET /health``,
``POST /v1/chat/completions`` (``stream`` true or false).

Prompts use the model's own ChatML template (`chat_format`); with tools, the
reply is grammar-constrained (`grammar`) and tool calls leave as standard
``tool_calls`` (`reply`), so the client needs no special case. A streamed
request with ``"return_progress": true`` (llama.cpp's field) also gets, at
most every `PROGRESS_INTERVAL_S` while the model evaluates tokens, a chunk
with no choice and ``"progress": {"tokens": n, "cpu_ms": m}`` (tokens the
model evaluated and CPU time this process used since the request came),
sent only when the model worked since the last report: a client tells a
model slowed by a busy machine from a stalled one. One
generation runs at a time (others wait); a client that disconnects mid-stream
stops decoding before the next token. With ``--exit-on-stdin-eof`` the
server stops as soon as its parent ends, however it ends, even while the
model is still loading (`voice_agent.parent_watch`): it never outlives the
agent or benchmark that started it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from voice_agent.local_llm.chat_format import ChatFormatError, render_messages
from voice_agent.local_llm.engine import (
    DEFAULT_DECODE_PATH,
    LlamaEngine,
    PromptTooLongError,
)
from voice_agent.local_llm.errors import LocalLlmError
from voice_agent.local_llm.grammar import GrammarError, build_tool_grammar, check_grammar
from voice_agent.local_llm.models import resolve_model
from voice_agent.local_llm.output_parser import ToolCallStreamParser
from voice_agent.local_llm.protocol import (
    BadRequest,
    ChatRequest,
    chunk,
    completion,
    completion_id,
    error_body,
    parse_chat_request,
    timings,
    usage,
)
from voice_agent.local_llm.reply import ReplyAssembler
from voice_agent.local_llm.respond import Responder
from voice_agent.parent_watch import exit_with_parent

log = logging.getLogger("voice_agent.local_llm.server")

LISTENING_PREFIX = "LISTENING "
#: Seconds a stopping server (SIGTERM) gives in-flight requests before it cancels them
#: (whoever stops it does not want their answers; a generation may take minutes).
SHUTDOWN_GRACE_S = 0.5
#: Seconds after SIGTERM by which the process exits however far its graceful stop got:
#: a prompt's evaluation in the model cannot be interrupted, and at load 18-20 one held
#: the process past the launcher's 5 s grace (it was killed).
EXIT_DEADLINE_S = 2.0
#: Seconds between two progress reports of a streamed request that asked for them (a
#: client's stall deadline is several seconds; a report costs one small write).
PROGRESS_INTERVAL_S = 0.5
#: Share of one core this process must have used in an interval to count as working:
#: the model on a machine at load 20 still gets ~10 % of a core; an idle server uses
#: well under 1 % (its event loop).
MIN_BUSY_SHARE = 0.02
_ENGINE_KEY = web.AppKey("engine", LlamaEngine)


def build_app(engine: LlamaEngine) -> web.Application:
    """The aiohttp application serving `engine` (which the caller owns and closes)."""
    app = web.Application(client_max_size=8 * 1024 * 1024)  # bytes; long histories fit
    app[_ENGINE_KEY] = engine
    app.router.add_get("/health", _health)
    app.router.add_get("/v1/models", _models)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    return app


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "model": request.app[_ENGINE_KEY].name})


async def _models(request: web.Request) -> web.Response:
    name = request.app[_ENGINE_KEY].name
    return web.json_response(
        {
            "object": "list",
            "data": [{"id": name, "object": "model", "created": 0, "owned_by": "local"}],
        }
    )


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    engine = request.app[_ENGINE_KEY]
    try:
        chat = parse_chat_request(await request.json())
        render_messages(chat.messages, chat.tools or None)  # a malformed history fails here
        if chat.tools:
            _check_tools(chat)
    except json.JSONDecodeError:
        return web.json_response(error_body("the body is not valid JSON"), status=400)
    except (BadRequest, ChatFormatError, GrammarError) as exc:
        return web.json_response(error_body(str(exc)), status=400)
    parser = ToolCallStreamParser(bare_json_calls=bool(chat.tools))
    reply = ReplyAssembler(parser)
    responder = Responder(engine, chat, reply)
    if chat.stream:
        return await _stream(request, engine, chat, responder)
    return await _complete(engine, chat, responder)


def _check_tools(chat: ChatRequest) -> None:
    """Reject bad tools or tool_choice before anything is generated (400, not a broken stream)."""
    grammar = build_tool_grammar(chat.tools, chat.tool_choice, chat.parallel_tool_calls)
    check_grammar(grammar)


async def _complete(engine: LlamaEngine, chat: ChatRequest, responder: Responder) -> web.Response:
    reply = responder.reply

    async def on_text(piece: str) -> bool:
        _, go_on = reply.feed(piece)
        return go_on

    try:
        stats = await responder.run(on_text)
    except PromptTooLongError as exc:
        return web.json_response(error_body(str(exc)), status=400)
    reply.finish()
    _prefill_follow_up(engine, responder)
    body = completion(
        completion_id(),
        engine.name,
        reply.text,
        reply.calls,
        reply.finish_reason(stats.finish_reason),
        stats.prompt_tokens,
        stats.completion_tokens,
    )
    return web.json_response(body)


async def _stream(
    request: web.Request, engine: LlamaEngine, chat: ChatRequest, responder: Responder
) -> web.StreamResponse:
    reply = responder.reply
    cid, created = completion_id(), int(time.time())
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)

    async def send(payload: dict[str, Any] | str) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        await response.write(f"data: {data}\n\n".encode())

    async def on_text(piece: str) -> bool:
        deltas, go_on = reply.feed(piece)
        for delta in deltas:
            await send(chunk(cid, created, engine.name, delta))
        return go_on

    reporter = (
        asyncio.get_running_loop().create_task(_report_progress(engine, cid, created, send))
        if chat.return_progress
        else None
    )
    try:
        await send(chunk(cid, created, engine.name, {"role": "assistant", "content": ""}))
        stats = await responder.run(on_text)
        if reporter is not None:
            reporter.cancel()
        for delta in reply.finish():
            await send(chunk(cid, created, engine.name, delta))
        await send(chunk(cid, created, engine.name, {}, reply.finish_reason(stats.finish_reason)))
        if chat.include_usage:
            body = chunk(cid, created, engine.name, {})
            body["choices"] = []
            body["usage"] = usage(stats.prompt_tokens, stats.completion_tokens)
            body["timings"] = timings(
                stats.first_token_s,
                stats.total_s,
                stats.completion_tokens,
                str(stats.extra.get("decode_path", "")),
            )
            plan = responder.plan
            body["timings"]["decision"] = plan.decision
            body["timings"]["decision_ms"] = (
                None if plan.decision_s is None else round(plan.decision_s * 1e3, 1)
            )
            body["timings"]["asked_for_missing"] = plan.asked
            await send(body)
        await send("[DONE]")
        await response.write_eof()
        _prefill_follow_up(engine, responder)
    except ConnectionResetError:
        log.info("client went away mid-stream; generation stopped")
    except PromptTooLongError as exc:
        await send({"error": error_body(str(exc))["error"]})
    finally:
        if reporter is not None:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
    return response


async def _report_progress(
    engine: LlamaEngine, cid: str, created: int, send: Callable[[dict[str, Any]], Awaitable[None]]
) -> None:
    """Every `PROGRESS_INTERVAL_S`, a progress report if the model worked since the last one:
    it evaluated tokens, or this process used `MIN_BUSY_SHARE` of a core (a prompt's
    evaluation is one call that counts its tokens only when it returns, seconds later
    on a busy machine)."""
    start_tokens = tokens = engine.evaluated_tokens
    start_cpu = cpu = time.process_time()
    while True:
        await asyncio.sleep(PROGRESS_INTERVAL_S)
        now_tokens, now_cpu = engine.evaluated_tokens, time.process_time()
        worked = now_tokens > tokens or now_cpu - cpu >= MIN_BUSY_SHARE * PROGRESS_INTERVAL_S
        tokens, cpu = now_tokens, now_cpu
        if worked:
            body = chunk(cid, created, engine.name, {})
            body["choices"] = []
            body["progress"] = {
                "tokens": now_tokens - start_tokens,
                "cpu_ms": round((now_cpu - start_cpu) * 1e3),
            }
            await send(body)


#: Off until measured on a quiet machine: interleaved with the same code without it
#: (1.5B, 17 lookups and writes, load 2-4), first audio moved by a median of +8 ms, but 3 of 17
#: answers came 0.8-9.4 s later, as in quick6's run at load 8-13 (+4.3 s median on 8).
#: ``VOICE_AGENT_PREFILL_FOLLOW_UP=1`` turns it on (for that measurement).
PREFILL_FOLLOW_UP = os.environ.get("VOICE_AGENT_PREFILL_FOLLOW_UP") == "1"


def _prefill_follow_up(engine: LlamaEngine, responder: Responder) -> None:
    """When the reply sent calls, evaluate what the request with their results will start
    with while the tools run (a demo tool takes 0.4-1 s; the call and its result's head
    are ~30 tokens the next request need not evaluate before its first word)."""
    if not PREFILL_FOLLOW_UP:
        return
    prefix = responder.follow_up_prefix()
    if prefix:
        engine.prefill_soon(prefix)


# -- process entry point ---------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="registry name or path to a .gguf file")
    parser.add_argument("--name", help="model id reported to clients (default: --model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096, help="context window in tokens")
    parser.add_argument(
        "--decode-path",
        choices=("lowlevel", "generate"),
        default=DEFAULT_DECODE_PATH,
        help="decoding loop (see voice_agent.local_llm.engine); for benchmarks and diagnosis",
    )
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when the parent ends: stdin closes or the parent changes (set by the launcher)",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Load the model, serve until SIGTERM/SIGINT, then clean up."""
    path = await asyncio.to_thread(resolve_model, args.model)
    engine = await asyncio.to_thread(
        LlamaEngine.load, path, args.name or args.model, args.threads, args.ctx, args.decode_path
    )
    runner = web.AppRunner(
        build_app(engine),
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )
    await runner.setup()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        site = web.TCPSite(runner, args.host, args.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        print(f"{LISTENING_PREFIX}http://{host}:{port}/v1", flush=True)
        await stopping.wait()
        _exit_after(EXIT_DEADLINE_S)
    finally:
        await runner.cleanup()
        if engine.busy:
            # a generation is still in the model (an evaluation cannot be interrupted):
            # freeing it under the worker would crash it; the process exit frees it
            log.info("stopping while the model is still evaluating; not waiting for it")
        else:
            engine.close()


def _exit_after(seconds: float) -> None:
    """End this process `seconds` from now if its graceful stop has not (a daemon thread:
    the interpreter's exit would otherwise wait for a decoding thread in the model)."""

    def force() -> None:
        threading.Event().wait(seconds)
        with contextlib.suppress(OSError, ValueError):
            print(f"stopping took longer than {seconds:g}s; exiting now", file=sys.stderr)
            sys.stderr.flush()
        os._exit(0)

    threading.Thread(target=force, name="exit-deadline", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.exit_on_stdin_eof:
        # First, before the model is assembled or loaded (seconds to minutes).
        exit_with_parent()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        asyncio.run(serve(args))
    except LocalLlmError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
