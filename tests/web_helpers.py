"""An aiohttp server on 127.0.0.1 for tests in any folder (the stand-in LLM endpoints,
providers' REST APIs, LiveKit's Twirp API). ``tests/`` is on ``sys.path`` through its
``conftest.py``, so ``from web_helpers import serving`` works from every test folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 (no access log); yields its base URL,
    ``http://127.0.0.1:PORT``; the server stops when the block ends."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
