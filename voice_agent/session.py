"""Everything a session needs, built from a :class:`Config`.

``open_session`` resolves the LLM endpoint (starting the embedded local model
when none is configured), loads the tools, opens the ledger with its JSONL
file, and yields an :class:`Agent` bound to the given speech output. Every
transport (text chat, audio console, file, LiveKit) goes through it, so they
all behave the same.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from fsm import Clock, MonotonicClock, TraceRecord
from ledger import JsonlSink, Ledger, LedgerError, check_directory, mask_url_secrets
from ledger import entries as le

from .agent import Agent
from .config import Config, ConfigError, LlmConfig
from .llm import LlmClient
from .output import SpeechOutput
from .tools import ToolRegistry, ToolSpec

log = logging.getLogger(__name__)


def load_tools(references: tuple[str, ...]) -> ToolRegistry:
    """Import ``module:attribute`` references (a ToolRegistry, a ToolSpec or a list of them).

    Any problem (a module that is missing, has a syntax error or raises while
    importing; a reference to something else; two tools with one name) is a
    :class:`ConfigError` naming the module, and the file and line where known.
    """
    registry = ToolRegistry()
    origin: dict[str, str] = {}
    for ref in references:
        module_name, _, attr = ref.partition(":")
        try:
            module = importlib.import_module(module_name)
        except SyntaxError as exc:
            where = f"{exc.filename}:{exc.lineno}" if exc.filename else module_name
            raise ConfigError(
                f"tools.modules: {module_name!r} has a syntax error at {where}: {exc.msg}"
            ) from None
        except ImportError as exc:
            raise ConfigError(f"tools.modules: cannot import {module_name!r}: {exc}") from None
        except Exception as exc:  # the module's own code raised while importing
            raise ConfigError(
                f"tools.modules: importing {module_name!r} raised "
                f"{type(exc).__name__}: {exc}{_raised_at(exc, module_name)}"
            ) from None
        obj = getattr(module, attr or "registry", None)
        if isinstance(obj, ToolRegistry):
            specs = list(obj)
        elif isinstance(obj, ToolSpec):
            specs = [obj]
        elif isinstance(obj, list | tuple) and all(isinstance(s, ToolSpec) for s in obj):
            specs = list(obj)
        else:
            raise ConfigError(
                f"tools.modules: {ref!r} is not a ToolRegistry, a ToolSpec or a list of ToolSpecs"
            )
        for spec in specs:
            if spec.name in origin:
                raise ConfigError(
                    f"tools.modules: two tools are named {spec.name!r} "
                    f"(in {origin[spec.name]!r} and {ref!r}); rename one"
                )
            try:
                registry.add(spec)
            except ValueError as exc:
                raise ConfigError(f"tools.modules: {ref!r}: {exc}") from None
            origin[spec.name] = ref
    return registry


def _raised_at(exc: BaseException, module_name: str) -> str:
    """`` (file:line)`` of the innermost frame of the module that raised, if any."""
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        if tb.tb_frame.f_globals.get("__name__") == module_name:
            where = f" ({code.co_filename}:{tb.tb_lineno})"
        tb = tb.tb_next
    return where


@asynccontextmanager
async def llm_endpoint(config: Config) -> AsyncIterator[LlmConfig]:
    """The LLM endpoint to use: the configured one, or the embedded local model (started here)."""
    if config.llm.base_url is not None:
        yield config.llm
        return
    from .local_llm.launcher import LocalLlmServer

    log.info("no LLM endpoint configured: starting the local model %s", config.local_llm.model)
    async with LocalLlmServer(
        model=config.local_llm.model,
        threads=config.local_llm.threads,
        ctx=config.local_llm.ctx,
        startup_timeout_s=config.local_llm.startup_timeout_s,
    ) as server:
        # The embedded server knows its own window: requests are fitted into it.
        yield config.llm.model_copy(
            update={
                "base_url": server.base_url,
                "model": server.model_name,
                # it reports progress while it works (a slow prefill is not a stall)
                "progress": config.llm.progress is not False,
                "context_tokens": min(
                    config.llm.context_tokens or config.local_llm.ctx, config.local_llm.ctx
                ),
            }
        )


@dataclass
class Session:
    """An open session: the agent and what it was built from."""

    agent: Agent
    ledger: Ledger
    llm_config: LlmConfig
    ledger_path: Path | None


@asynccontextmanager
async def open_session(
    config: Config,
    output: SpeechOutput,
    *,
    clock: Clock | None = None,
    tools: ToolRegistry | None = None,
    transport: str = "text",
    meta: Mapping[str, object] | None = None,
    on_transition: Callable[[TraceRecord], None] | None = None,
) -> AsyncIterator[Session]:
    """Build an agent for ``config`` speaking through ``output``; release everything on exit.

    ``meta`` is added to the ledger's ``SessionStarted`` (a phone call's ids);
    ``on_transition`` receives the agent FSM's transition notifications.
    """
    clock = clock or MonotonicClock()
    registry = tools if tools is not None else load_tools(config.tools.modules)
    session_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    directory: Path | None = None
    if config.ledger.persist:  # checked before anything starts: fail now, not mid-call
        try:
            directory = check_directory(config.ledger.directory)
        except LedgerError as exc:
            raise ConfigError(
                f"ledger.directory: {exc}; choose another directory (ledger.directory, "
                "VOICE_AGENT__LEDGER__DIRECTORY) or run with --no-persist"
            ) from None
    async with AsyncExitStack() as stack:
        llm_config = await stack.enter_async_context(llm_endpoint(config))
        sinks = []
        path: Path | None = None
        ledger_box: list[Ledger] = []

        def storage_status(text: str, level: Literal["info", "warning", "error"]) -> None:
            """A persistence fault (or recovery) becomes a note in the ledger itself."""
            if ledger_box:
                ledger_box[0].append(le.Note(text=text, level=level))

        if directory is not None:
            path = directory / f"{session_id}.jsonl"
            sink = JsonlSink(path, on_status=storage_status)
            stack.callback(sink.close)
            sinks.append(sink)
        ledger = Ledger(session_id, clock, sinks=sinks)
        ledger_box.append(ledger)
        ledger.append(
            le.SessionStarted(
                session_id=session_id,
                started_at=datetime.now(UTC).isoformat(),
                meta={
                    "mode": config.agent.mode,
                    "transport": transport,
                    "model": llm_config.model,
                    "endpoint": mask_url_secrets(llm_config.base_url or "") or None,
                    "tools": [spec.name for spec in registry],
                    **(meta or {}),
                },
            )
        )
        llm = LlmClient(llm_config, clock=clock)
        stack.push_async_callback(llm.aclose)
        agent = Agent(
            config.agent, llm, registry, output, ledger, clock, on_transition=on_transition
        )
        stack.push_async_callback(agent.aclose)
        prewarm = (
            config.llm.prewarm if config.llm.prewarm is not None else config.llm.base_url is None
        )
        if prewarm:
            await agent.prewarm()
        yield Session(agent=agent, ledger=ledger, llm_config=llm_config, ledger_path=path)
