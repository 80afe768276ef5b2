"""Session 9's hostile review: a write's intent reaches the session file before the write runs.

A large ledger entry (a tool's megabytes) is masked by the session file's writer thread
and every later entry queues behind it (hostile8). A write tool called meanwhile ran at
once: a process killed then (SIGKILL, the OOM killer, a power cut) left a session file
without the write's ``ToolCallStarted``, though its backend had applied it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fsm import MonotonicClock
from ledger import JsonlSink, Ledger, load_jsonl
from ledger import entries as le
from ledger.persist import INLINE_CHARS
from voice_agent.scheduler import ToolScheduler
from voice_agent.tools import ToolRegistry

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120.0  # a safety net for a broken implementation, never the measure of a test
BEFORE_FIX_S = 3.0  # how long the masking is held: before the fix the write ran within it

# A real ledger, session file and tool scheduler in a process of their own. The masking of
# large entries is a fake that stalls until the test creates "release" (masking 2 MB takes
# seconds to tens of seconds for real, depending on the text and the machine's load).
SCRIPT = r"""
import asyncio, sys, time
from pathlib import Path
from typing import Any
import pytest

from fsm import MonotonicClock
from ledger import JsonlSink, Ledger
from ledger import entries as le
from ledger.persist import INLINE_CHARS
from voice_agent.scheduler import ToolScheduler
from voice_agent.tools import ToolRegistry

work = Path(sys.argv[1])

def stalling_masker(text):  # fake: a slow masking, held until the test releases it
    if len(text) > INLINE_CHARS:
        (work / "masking").touch()
        while not (work / "release").exists():
            time.sleep(0.01)
    return text.replace("4111111111111111", "[card]")

registry = ToolRegistry()

@registry.tool(kind="read")
async def fetch_statement(account: str) -> str:
    '''A long statement.'''
    return "line of the statement. " * (INLINE_CHARS // 4)

@registry.tool(kind="write", timeout_s=600)
def refund(order_id: str) -> dict:
    '''Refund an order.'''
    (work / "applied").write_text(order_id)  # the backend has applied it
    time.sleep(600)  # the process is killed before it reports
    return {"refunded": order_id}

async def main():
    ledger = Ledger("s9", MonotonicClock(), sinks=[JsonlSink(work / "s.jsonl", stalling_masker)])
    sched = ToolScheduler(registry, ledger, lambda event: None, MonotonicClock())
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    sched.start(call_id="call_1", response_id="r1", name="fetch_statement",
                arguments='{"account": "A1"}')
    while ledger.call("call_1").status == "pending":
        await asyncio.sleep(0.01)
    sched.start(call_id="call_2", response_id="r1", name="refund",
                arguments='{"order_id": "58213"}')
    await asyncio.sleep(600)

asyncio.run(main())
"""


def _held_masker(
    release: threading.Event, entered: threading.Event | None = None
) -> Callable[[str], str]:
    """A fake of the session file's masking: a large entry's is held until `release` is set
    (`entered` is set when it starts)."""

    def stalling_masker(text: str) -> str:
        if len(text) > INLINE_CHARS:
            if entered is not None:
                entered.set()
            release.wait(WAIT_S)
        return text

    return stalling_masker


def _statement_and_refund(on_refund: Callable[[str], object]) -> ToolRegistry:
    """A read whose result is large (its masking is slow) and a write that calls
    `on_refund` with the order when it runs."""
    registry = ToolRegistry()

    @registry.tool(kind="read")
    async def fetch_statement(account: str) -> str:
        """A long statement."""
        return "line of the statement. " * (INLINE_CHARS // 4)

    @registry.tool(kind="write")
    async def refund(order_id: str) -> dict[str, str]:
        """Refund an order."""
        on_refund(order_id)
        return {"refunded": order_id}

    return registry


def _wait_for(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.02)
    return path.exists()


def test_sigkill_never_leaves_an_applied_write_without_its_intent_in_the_file(
    tmp_path: Path,
) -> None:
    """Before: the refund ran while its ToolCallStarted waited behind the statement's
    masking; SIGKILL then left a file whose last entry was the read's start: the refund
    applied, no trace of it. Now the write waits until its intent is handed to the OS
    (the masking's stall delays the write, not the event loop), so the file killed at
    the moment the backend applied it holds the write's start and intent note."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert _wait_for(tmp_path / "masking", WAIT_S), child.stderr
        ran_while_masking = _wait_for(tmp_path / "applied", BEFORE_FIX_S)
        (tmp_path / "release").touch()
        assert _wait_for(tmp_path / "applied", WAIT_S), "the write never ran"
        child.send_signal(signal.SIGKILL)
        child.wait(WAIT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    lines = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    started = [e for e in lines if e["type"] == "ToolCallStarted"]
    assert [e["call_id"] for e in started] == ["call_1", "call_2"], [e["type"] for e in lines]
    assert started[1]["name"] == "refund" and started[1]["kind"] == "write"
    assert any(e["type"] == "Note" and "call_2: write intent" in e["text"] for e in lines)
    # the statement (the large entry) is in the file before the write's start, in order
    assert [e["seq"] for e in lines] == list(range(len(lines)))
    assert not ran_while_masking, "the write ran while its intent was not in the file"
    # and `voice-agent ledger show` says what a reader must know (before: "1 pending")
    from ledger.show import format_session

    shown = format_session(load_jsonl(tmp_path / "s.jsonl")).splitlines()
    assert shown[-1].startswith("write with no outcome: refund (call_2, intent ")
    assert "may have been applied: check before repeating it" in shown[-1]


async def _pending(ledger: Ledger, call_id: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while ledger.call(call_id).status == "pending":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_a_write_ended_while_it_waits_for_its_intent_is_known_not_applied(
    tmp_path: Path,
) -> None:
    """The session ends while the refund waits for its intent to reach the file: its
    tool never runs, the ledger says cancelled (not "its effect is unknown") and the
    write book knows nothing was done (a later turn may run it again)."""
    entered, release = threading.Event(), threading.Event()
    stalling_masker = _held_masker(release, entered)
    applied: list[str] = []
    registry = _statement_and_refund(applied.append)

    ledger = Ledger(
        "s9", MonotonicClock(), sinks=[JsonlSink(tmp_path / "s.jsonl", stalling_masker)]
    )
    sched = ToolScheduler(registry, ledger, lambda event: None, MonotonicClock())
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    sched.start(
        call_id="call_1", response_id="r1", name="fetch_statement", arguments='{"account": "A"}'
    )
    await _pending(ledger, "call_1")
    sched.start(
        call_id="call_2", response_id="r1", name="refund", arguments='{"order_id": "58213"}'
    )
    try:
        assert await asyncio.to_thread(entered.wait, WAIT_S)
        for _ in range(20):  # the loop runs on while the write waits
            await asyncio.sleep(0.01)
        assert applied == [] and ledger.call("call_2").status == "pending"
        await sched.aclose()
    finally:
        release.set()
    call = ledger.call("call_2")
    assert call.status == "cancelled" and "unknown" not in (call.error or "")
    assert applied == []
    (intent,) = sched.writes.intents()
    assert sched.writes.state(intent.key) == "failed"
    await asyncio.to_thread(ledger.close)


async def test_a_write_waiting_for_its_intent_runs_once_when_the_file_has_it(
    tmp_path: Path,
) -> None:
    release = threading.Event()
    path = tmp_path / "s.jsonl"
    stalling_masker = _held_masker(release)
    seen_in_file: list[bool] = []
    registry = _statement_and_refund(
        lambda _order: seen_in_file.append('"call_2"' in path.read_text())
    )

    ledger = Ledger("s9", MonotonicClock(), sinks=[JsonlSink(path, stalling_masker)])
    sched = ToolScheduler(registry, ledger, lambda event: None, MonotonicClock())
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    sched.start(
        call_id="call_1", response_id="r1", name="fetch_statement", arguments='{"account": "A"}'
    )
    await _pending(ledger, "call_1")
    sched.start(
        call_id="call_2", response_id="r1", name="refund", arguments='{"order_id": "58213"}'
    )
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert seen_in_file == []
    release.set()
    await _pending(ledger, "call_2")
    assert seen_in_file == [True] and ledger.call("call_2").status == "resolved"
    await sched.aclose()
    await asyncio.to_thread(ledger.close)
    assert [e.seq for e in load_jsonl(path)] == list(range(len(ledger)))


# -- a YAML file with a syntax error names the file and the line (every loading path) ----

BROKEN_YAML = "agent:\n  persona: [Ren\n  mode: sync\n"


@pytest.mark.parametrize(
    "command",
    [
        ["bench", "{file}"],
        ["--config", "{file}", "config"],
        ["--config", "{file}", "chat", "--no-persist"],
        ["--config", "{file}", "run", "-i", "in.wav", "-o", "out.wav"],
        ["--config", "{file}", "console"],
        ["--config", "{file}", "phone", "serve"],
    ],
    ids=["bench", "config", "chat", "run", "console", "phone serve"],
)
def test_a_yaml_syntax_error_is_one_line_naming_the_file_line_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """Before: PyYAML's six lines ("in "<unicode string>", line 3, column 4" and a
    caret); the bench's also without "voice-agent:". Now one line, exit 2."""
    from voice_agent import cli

    path = tmp_path / "bad.yaml"
    path.write_text(BROKEN_YAML)
    status = cli.main([part.format(file=path) for part in command])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert err == (
        f"voice-agent: {path}: line 3, column 7: not valid YAML: expected ',' or ']', "
        "but got ':' (while parsing a flow sequence at line 2, column 12)"
    )


def test_a_scenario_that_is_not_utf8_is_a_message_not_an_unexpected_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "voice-agent: unexpected error: UnicodeDecodeError: 'utf-8' codec can't
    decode byte 0xe9 ...", exit 1."""
    from voice_agent import cli

    path = tmp_path / "latin.yaml"
    path.write_bytes('name: x\nturns:\n  - user: "caf\xe9"\n'.encode("latin-1"))
    assert cli.main(["bench", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"voice-agent: {path}: line 3: not UTF-8 text (byte 0xe9); save the file as UTF-8"


# -- SIGTERM / SIGHUP end `voice-agent chat` as Ctrl-C does ------------------------------


def _chat(tmp_path: Path, *, ignore_hangup: bool = False) -> tuple[subprocess.Popen[bytes], Path]:
    """A real `voice-agent chat` (its LLM a closed port: no turn is taken) waiting for input
    on a pipe that stays open; returns it once its session file exists."""
    sessions = tmp_path / "sessions"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "VOICE_AGENT__LEDGER__DIRECTORY": str(sessions),
    }
    env.pop("OPENAI_BASE_URL", None)

    def hangup_disposition() -> None:
        # Set either way: a suite itself run under `nohup` (or from a service that ignores
        # SIGHUP) hands the ignored disposition down, and the chat rightly keeps it.
        signal.signal(signal.SIGHUP, signal.SIG_IGN if ignore_hangup else signal.SIG_DFL)

    child = subprocess.Popen(
        [sys.executable, "-m", "voice_agent.cli", "chat", "--base-url", "http://127.0.0.1:9/v1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=hangup_disposition,
    )
    assert child.stdout is not None
    for raw in child.stdout:  # the banner, then "ledger: PATH"
        if raw.startswith(b"ledger: "):
            return child, Path(raw.decode().split(" ", 1)[1].strip())
    child.kill()
    raise AssertionError(f"the chat ended before its session began: {child.stderr!r}")


def _entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_ends_the_chat_with_its_session_ended_and_nothing_on_the_terminal(
    tmp_path: Path, signum: int
) -> None:
    """Before: SIGHUP (the terminal closed) killed the chat at once: the session file
    ended at SessionStarted ("no end recorded"); SIGTERM recorded the end but the chat's
    own stdin read was named as a leftover "job TextIOWrapper.readline" after 3 s of
    waiting. Now both end as Ctrl-C does: SessionEnded(interrupted), exit 130, stderr
    quiet."""
    child, path = _chat(tmp_path)
    try:
        child.send_signal(signum)
        child.wait(WAIT_S)  # its standard input still open, as a terminal's would be
        assert child.stderr is not None
        err = child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    entries = _entries(path)
    assert entries[-1]["type"] == "SessionEnded" and entries[-1]["reason"] == "interrupted"
    assert child.returncode == 130
    assert err.decode().strip() == "", err.decode()


def test_a_chat_started_under_nohup_keeps_running_after_sighup(tmp_path: Path) -> None:
    """SIGHUP ignored by the parent (`nohup voice-agent chat < script`) stays ignored."""
    child, path = _chat(tmp_path, ignore_hangup=True)
    try:
        child.send_signal(signal.SIGHUP)
        assert child.stdin is not None
        child.stdin.write(b"/quit\n")  # still reading: it ends when asked
        child.stdin.flush()
        child.communicate(timeout=WAIT_S)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0
    assert _entries(path)[-1]["reason"] == "end of input"


# -- a tool result Python cannot write as text -------------------------------------------


def test_a_tool_returning_an_integer_too_long_for_text_is_answered_not_silence() -> None:
    """Before: a result holding an int of more than 4,300 digits (Python's limit for int
    to text; a bignum, a bug) made every rendering of the messages raise ValueError: a
    traceback ("start_followup failed"), the agent stuck thinking, silence for good. Now
    the number is a short text saying what it was; the turn and the next are answered."""
    from test_va_llm_reliability import run_call

    from voice_agent.bench.fault_server import answer

    tools = ToolRegistry()

    @tools.tool(kind="read")
    async def lookup(order_id: str) -> object:
        """Look an order up."""
        return {"balance": 10**5000, 7 * 10**4400: "key", "order": order_id}

    def plan(index: int, body: dict[str, Any]) -> list[Any]:
        users = [m for m in body["messages"] if m["role"] == "user"]
        if any(m["role"] == "tool" for m in body["messages"]) or len(users) > 1:
            return answer("Done.")
        call = ("call", 0, "call_1", "lookup", '{"order_id": "5"}')
        return [("headers",), ("role",), call, ("finish", "tool_calls"), ("done",)]

    call = run_call(plan, ["look up my order", "and the next one?"], tools=tools)
    assert call.ledger.transcript().count("agent: Done.") == 2, call.ledger.transcript()
    result = call.ledger.call("call_1").result
    assert isinstance(result, dict) and result["order"] == "5"
    assert str(result["balance"]).startswith("<an integer of about 5,00")  # 5,001 digits
    assert any(key.startswith("<an integer of about 4,40") for key in result)  # 4,401
    json.dumps(call.ledger.render_messages("system"))


@pytest.mark.parametrize("name", ["look up order", "x" * 65, "commande_réglée", "orders.lookup"])
def test_a_tool_name_servers_refuse_is_a_config_error_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Before: accepted; an OpenAI-compatible server answers every request listing it
    with 400 (the name must match ^[A-Za-z0-9_-]{1,64}$): each turn an apology."""
    from voice_agent.config import ConfigError
    from voice_agent.session import load_tools

    module = f"h9_tools_{abs(hash(name))}"
    (tmp_path / f"{module}.py").write_text(
        "from voice_agent.tools import ToolRegistry\n"
        "registry = ToolRegistry()\n"
        f"@registry.tool(name={name!r})\n"
        "async def lookup(order_id: str) -> dict:\n"
        "    '''Look an order up.'''\n"
        "    return {}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as raised:
        load_tools((f"{module}:registry",))
    message = str(raised.value)
    assert "letters, digits, '_' or '-'" in message and "rename it" in message
    assert f"{module}.py:3" in message  # where the tool is declared


def test_sighup_ends_commands_unless_it_was_ignored_when_they_started() -> None:
    """`voice-agent phone serve` and the LiveKit worker stop on what `ending_signals`
    lists (their loops' handlers), the other commands through the CLI's handler (the
    chat tests above): SIGHUP is listed, except under `nohup` (ignored at start)."""
    from voice_agent.process_end import ending_signals

    previous = signal.getsignal(signal.SIGHUP)
    try:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        assert ending_signals() == [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert ending_signals() == [signal.SIGINT, signal.SIGTERM]
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize(
    "declaration",
    [
        '@registry.tool(description="Look an order up (caf\\udce9).")\n'
        "async def lookup(order_id: str) -> dict:\n",
        "@registry.tool\n"
        "async def lookup(order_id: Annotated[str, Field(description='n\\udce9')]) -> dict:\n"
        "    '''Look an order up.'''\n",
    ],
    ids=["description", "parameter description"],
)
def test_a_tool_whose_text_is_not_unicode_is_a_config_error_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, declaration: str
) -> None:
    """Before: a lone surrogate in a tool's description (text decoded with
    surrogateescape, a "\\udce9" escape) made every request fail to encode ("surrogates
    not allowed"): each turn of the call an apology. Now: exit 2 at start, naming it."""
    from voice_agent.config import ConfigError
    from voice_agent.session import load_tools

    module = f"h9_surrogate_{len(declaration)}"
    (tmp_path / f"{module}.py").write_text(
        "from typing import Annotated\n"
        "from pydantic import Field\n"
        "from voice_agent.tools import ToolRegistry\n"
        "registry = ToolRegistry()\n" + declaration + "    return {}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as raised:
        load_tools((f"{module}:registry",))
    assert "U+DCE9, a lone surrogate" in str(raised.value)


async def test_a_result_container_the_tool_broke_resolves_as_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: a dict subclass whose items() raises failed the call as "internal error"
    and logged a traceback blaming the scheduler ("broke in the scheduler")."""

    class Broken(dict):  # type: ignore[type-arg]
        def items(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("items broke")

    registry = ToolRegistry()

    @registry.tool(kind="read")
    async def lookup(order_id: str) -> object:
        """Look an order up."""
        return Broken(order=order_id)

    ledger = Ledger("s9", MonotonicClock())
    sched = ToolScheduler(registry, ledger, lambda event: None, MonotonicClock())
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    sched.start(call_id="call_1", response_id="r1", name="lookup", arguments='{"order_id": "5"}')
    await _pending(ledger, "call_1")
    await sched.aclose()
    call = ledger.call("call_1")
    assert call.status == "resolved" and call.result == "{'order': '5'}"
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_a_call_whose_arguments_hold_a_number_too_long_to_read_fails_with_a_reason() -> None:
    """Before (a `max_tokens` large enough to let it through): the model's call with a
    5,000-digit number made the stream's parsing raise ValueError (json reads at most
    4,300 digits): the whole response failed, the caller got the generic apology. Now
    the call fails with a reason the model reads, and the model answers."""
    from test_va_llm_reliability import run_call

    from voice_agent.bench.fault_server import answer

    tools = ToolRegistry()

    @tools.tool(kind="read")
    async def lookup(order_id: str) -> dict[str, bool]:
        """Look an order up."""
        return {"ok": True}

    huge = '{"order_id": ' + "1" * 5000 + "}"

    def plan(index: int, body: dict[str, Any]) -> list[Any]:
        if any(m["role"] == "tool" for m in body["messages"]):
            return answer("That number is too long; please read it again.")
        call = ("call", 0, "call_1", "lookup", huge)
        return [("headers",), ("role",), call, ("finish", "tool_calls"), ("done",)]

    call = run_call(plan, ["look up my order"], tools=tools, llm={"max_tokens": 20000})
    failed = call.entries("ToolCallFailed")
    assert len(failed) == 1 and "number too long to read" in failed[0].error
    assert "agent: That number is too long" in call.ledger.transcript()
    assert not [e for e in call.entries("LlmResponseFinished") if e.finish_reason == "error"]


@pytest.mark.parametrize("closed", [0, 1], ids=["stdin closed", "stdout closed"])
def test_a_chat_started_with_a_standard_stream_closed_runs_and_records_its_session(
    tmp_path: Path, closed: int
) -> None:
    """Before: `voice-agent chat <&-` (or `>&-`, a service started without them) ended in
    "unexpected error: AttributeError: 'NoneType' object has no attribute 'isatty'"
    ('write'), exit 1, no session. Now a closed input reads as empty and a closed output
    is discarded (said on stderr): the session runs and its file ends with its end."""
    sessions = tmp_path / "sessions"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "VOICE_AGENT__LEDGER__DIRECTORY": str(sessions),
    }
    env.pop("OPENAI_BASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "voice_agent.cli", "chat", "--base-url", "http://127.0.0.1:9/v1"],
        input=None if closed == 0 else b"/quit\n",
        stdout=None if closed == 1 else subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=lambda: os.close(closed),
        timeout=WAIT_S,
    )
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "unexpected error" not in err
    if closed == 1:
        assert "standard output is closed" in err
    (session,) = sessions.glob("*.jsonl")
    assert _entries(session)[-1]["reason"] == "end of input"


def test_on_virtual_time_a_write_waiting_for_its_intent_is_not_jumped_past() -> None:
    """The bench runs on `AutojumpClock` with a session file: the write's wait for the
    writer thread must not let the idle loop jump virtual time to its next timer (here a
    30 s one), or the bench's timings would depend on it. A guard (it held before this
    session's change too: time stands still at 0.0 while the writer works)."""
    from fsm import AutojumpClock

    clock = AutojumpClock()
    release = threading.Event()
    stalling_masker = _held_masker(release)  # released in 0.3 s
    order: list[str] = []
    registry = _statement_and_refund(lambda _order: order.append("refund ran"))

    async def main(path: Path) -> None:
        ledger = Ledger("s9", clock, sinks=[JsonlSink(path, stalling_masker)])
        sched = ToolScheduler(registry, ledger, lambda event: None, clock)
        ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))

        async def timer() -> None:
            await asyncio.sleep(30)
            order.append("30 s timer")

        sentinel = asyncio.ensure_future(timer())
        sched.start(call_id="call_1", response_id="r1", name="fetch_statement", arguments="{}")
        while ledger.call("call_1").status == "pending":
            await asyncio.sleep(0.01)
        sched.start(
            call_id="call_2", response_id="r1", name="refund", arguments='{"order_id": "5"}'
        )
        settled = asyncio.Event()  # no polling: the loop is idle but for the 30 s timer
        ledger.subscribe(
            lambda e: (
                settled.set()
                if getattr(e, "call_id", "") == "call_2" and e.type != "ToolCallStarted"
                else None
            )
        )
        threading.Timer(0.3, release.set).start()
        if ledger.call("call_2").status == "pending":
            await settled.wait()
        await sentinel
        await sched.aclose()
        ledger.close()

    try:
        clock.run(main(Path(tempfile.mkdtemp()) / "s.jsonl"))
    finally:
        release.set()
    assert order == ["refund ran", "30 s timer"]


def test_the_chats_loop_drops_only_the_users_own_interrupt_from_its_error_report() -> None:
    """A second Ctrl-C during asyncio.run's shutdown printed "Task exception was never
    retrieved" and a traceback (CI, session 9); other unretrieved errors are still told."""
    from voice_agent.transports.text import _quiet_on_the_users_signal

    loop = asyncio.new_event_loop()
    told: list[dict[str, Any]] = []
    loop.default_exception_handler = told.append  # type: ignore[method-assign,assignment]
    try:
        for exc in (KeyboardInterrupt(), SystemExit(130), ValueError("a bug")):
            _quiet_on_the_users_signal(loop, {"message": "never retrieved", "exception": exc})
    finally:
        loop.close()
    assert [type(c["exception"]) for c in told] == [ValueError]
