"""``voice-agent livekit start|dev|connect``: settings fail at once, and the worker's call limit."""

from __future__ import annotations

import io
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from livekit import agents, api

from voice_agent.admission import Admission
from voice_agent.cli import main as cli_main
from voice_agent.config import load_config
from voice_agent.transports.livekit_settings import settings_from_env
from voice_agent.transports.livekit_worker import WorkerOptions, build_server, main

SECRET = "super-secret-value-0123456789abcdef"


@pytest.fixture
def refusing_server() -> Iterator[str]:
    """A Twirp endpoint on 127.0.0.1 that refuses every token (401 unauthenticated)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"code": "unauthenticated", "msg": "invalid token"}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server_without_workers() -> Iterator[str]:
    """Answers the server API (ListRooms: no rooms) but has no worker endpoint (404 on /agent)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = api.ListRoomsResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(command: str, env: dict[str, str], **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    config = load_config(None, environ={})
    code = main(config, command, environ=env, stdout=out, stderr=err, **kw)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


async def _another_entrypoint(ctx: agents.JobContext) -> None:
    """A second session entry point (never run)."""


@pytest.mark.parametrize("command", ["start", "dev", "connect"])
def test_a_missing_variable_exits_2_naming_it(command: str) -> None:
    code, _, err = run(command, {"LIVEKIT_URL": "wss://x.livekit.cloud"}, room="r")
    assert code == 2
    assert "LIVEKIT_API_KEY" in err


def test_refused_credentials_exit_2_naming_both_variables_and_never_the_secret(
    refusing_server: str,
) -> None:
    env = {
        "LIVEKIT_URL": refusing_server,
        "LIVEKIT_API_KEY": "APIkey",
        "LIVEKIT_API_SECRET": SECRET,
    }
    code, out, err = run("start", env)
    assert code == 2
    assert "LIVEKIT_API_KEY/LIVEKIT_API_SECRET" in err and "refused" in err
    assert SECRET not in err + out


def test_an_unreachable_url_exits_2_naming_it() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "LIVEKIT_URL": f"ws://127.0.0.1:{port}",
        "LIVEKIT_API_KEY": "k",
        "LIVEKIT_API_SECRET": SECRET,
    }
    code, _, err = run("dev", env)
    assert code == 2
    assert err.startswith("voice-agent livekit dev: LIVEKIT_URL: cannot reach")


def test_a_worker_that_cannot_register_exits_1_naming_the_url(server_without_workers: str) -> None:
    env = {
        "LIVEKIT_URL": server_without_workers,
        "LIVEKIT_API_KEY": "k",
        "LIVEKIT_API_SECRET": SECRET,
    }
    options = WorkerOptions(http_host="127.0.0.1", http_port=0, max_retry=1)
    config = load_config(None, environ={}, overrides={"llm": {"base_url": "http://127.0.0.1:9/v1"}})
    out, err = io.StringIO(), io.StringIO()
    code = main(config, "start", options=options, environ=env, stdout=out, stderr=err)
    assert code == 1
    assert err.getvalue().startswith("voice-agent livekit start: LIVEKIT_URL: the worker could not")
    assert SECRET not in err.getvalue() + out.getvalue()


def test_connect_needs_a_room_and_max_calls_must_be_positive() -> None:
    env = {
        "LIVEKIT_URL": "wss://x.livekit.cloud",
        "LIVEKIT_API_KEY": "k",
        "LIVEKIT_API_SECRET": SECRET,
    }
    assert run("connect", env, room=None, skip_check=True)[0] == 2
    code, _, err = run("start", env, options=WorkerOptions(max_calls=0), skip_check=True)
    assert code == 2 and "--max-calls" in err


def test_the_cli_wires_the_livekit_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    assert cli_main(["livekit", "start"]) == 2
    with pytest.raises(SystemExit):
        cli_main(["livekit", "connect"])  # argparse: --room is required


def test_the_worker_refuses_calls_beyond_its_limit_and_queue_and_reports_its_load() -> None:
    calls = Admission(2)
    assert calls.load() == 0.0
    assert calls.try_enter() and calls.try_enter()
    assert calls.load() == 1.0  # at the threshold: the server stops dispatching here
    assert not calls.try_enter() and not calls.can_take()  # no queue: on_request rejects
    calls.leave()
    assert calls.load() == 0.5 and calls.try_enter()
    queued = Admission(1, max_waiting=1)
    assert queued.try_enter() and queued.can_take() and queued.load() == 0.5  # still dispatched to


def test_build_server_is_an_agent_server_with_the_settings_and_an_rtc_session() -> None:
    settings = settings_from_env(
        {
            "LIVEKIT_URL": "wss://x.livekit.cloud",
            "LIVEKIT_API_KEY": "k",
            "LIVEKIT_API_SECRET": SECRET,
        }
    )
    server = build_server(load_config(None, environ={}), settings, WorkerOptions(agent_name="s"))
    assert isinstance(server, agents.AgentServer)
    with pytest.raises(RuntimeError, match="only one rtc_session"):
        server.rtc_session(_another_entrypoint)  # ours is registered already
