"""Start the local OpenAI-compatible server as a child process, and stop it.

Usage::

    async with LocalLlmServer() as llm:
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="local")
        await client.chat.completions.create(model=llm.model_name, ...)

The child runs ``python -m voice_agent.local_llm.server --port 0`` and
prints its address; the launcher reads it. The child's stdin is a pipe held
by the launcher, so the server also stops when this process ends, however it
ends (SIGTERM, Ctrl-C, SIGKILL), even during start-up
(`voice_agent.parent_watch`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import deque
from types import TracebackType

from voice_agent.local_llm.engine import DEFAULT_DECODE_PATH, DecodePath
from voice_agent.local_llm.errors import ServerStartError
from voice_agent.local_llm.models import DEFAULT_MODEL
from voice_agent.local_llm.server import LISTENING_PREFIX

#: Seconds between SIGTERM and SIGKILL when stopping the server.
_TERM_GRACE_S = 5.0
#: Lines of the child's stderr kept for error messages.
_STDERR_TAIL_LINES = 40


class LocalLlmServer:
    """An async context manager owning one server process.

    `base_url` ("http://127.0.0.1:PORT/v1") and `model_name` are valid
    between `__aenter__` and `aclose()`. `aclose()` is idempotent: SIGTERM,
    then SIGKILL after a grace period. A start-up failure raises
    `ServerStartError` with the tail of the child's stderr.

    `decode_path` picks the engine's decoding loop; leave it at the default
    except to benchmark or diagnose the fallback (`bench/local_llm.py`).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        threads: int = 2,
        ctx: int = 4096,
        startup_timeout_s: float = 120,
        decode_path: DecodePath = DEFAULT_DECODE_PATH,
    ) -> None:
        self.model = model
        self.threads = threads
        self.ctx = ctx
        self.startup_timeout_s = startup_timeout_s
        self.decode_path = decode_path
        self.model_name = model
        self._base_url: str | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._stderr_task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the server is not running (use `async with LocalLlmServer()`)")
        return self._base_url

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def __aenter__(self) -> LocalLlmServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Spawn the server and wait for its LISTENING line."""
        if self._process is not None:
            raise RuntimeError("already started")
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voice_agent.local_llm.server",
            "--model",
            self.model,
            "--name",
            self.model_name,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--threads",
            str(self.threads),
            "--ctx",
            str(self.ctx),
            "--decode-path",
            self.decode_path,
            "--exit-on-stdin-eof",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        try:
            async with asyncio.timeout(self.startup_timeout_s):
                self._base_url = await self._read_address()
        except TimeoutError:
            await self.aclose()
            raise ServerStartError(
                f"the local LLM server did not start within {self.startup_timeout_s} s; "
                f"stderr:\n{self.stderr_tail()}"
            ) from None
        except BaseException:
            await self.aclose()
            raise

    async def _read_address(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        while line := await self._process.stdout.readline():
            text = line.decode(errors="replace").strip()
            if text.startswith(LISTENING_PREFIX):
                return text[len(LISTENING_PREFIX) :]
        code = await self._process.wait()
        if self._stderr_task is not None:
            await self._stderr_task  # collect the last words
        raise ServerStartError(
            f"the local LLM server exited with code {code} during start-up; "
            f"stderr:\n{self.stderr_tail()}"
        )

    async def _drain_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        stderr = self._process.stderr  # (aclose forgets the process before this ends)
        while line := await stderr.readline():
            self._stderr_tail.append(line.decode(errors="replace").rstrip())

    def stderr_tail(self) -> str:
        """The last lines the server wrote to stderr."""
        return "\n".join(self._stderr_tail)

    async def aclose(self) -> None:
        """Stop the server (idempotent): SIGTERM, SIGKILL after a grace period."""
        process, self._process = self._process, None
        self._base_url = None
        if process is not None:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(_TERM_GRACE_S):
                        await process.wait()
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
            if process.stdin is not None:
                process.stdin.close()
        task, self._stderr_task = self._stderr_task, None
        if task is not None:
            try:
                async with asyncio.timeout(_TERM_GRACE_S):
                    await task
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def run_local_llm_server(model: str = DEFAULT_MODEL, threads: int = 2, ctx: int = 4096) -> int:
    """Blocking CLI helper: serve in the foreground until Ctrl-C; returns the exit code."""
    from voice_agent.local_llm.server import main

    return main(["--model", model, "--threads", str(threads), "--ctx", str(ctx)])
