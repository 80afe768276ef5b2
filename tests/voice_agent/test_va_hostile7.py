"""Faults found by the session-7 hostile review (shapes no earlier suite tried).

The agent runs on ``AutojumpClock`` against the real OpenAI client over HTTP to
a scripted server on 127.0.0.1; the chat command and the ledger file are the
real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_va_llm_reliability import APOLOGY, HOLDS, run_call, then_answer

from fsm import ManualClock
from ledger import JsonlSink, Ledger, load_jsonl, mask_url_secrets
from ledger import entries as le
from voice_agent.bench.fault_server import FaultServer, answer
from voice_agent.config import AgentConfig, Config, ConfigError, load_config, render_system_prompt
from voice_agent.scheduler import (
    MAX_ERROR_CHARS,
    MAX_RESULT_CHARS,
    SESSION_END_WRITE_GRACE_S,
    ToolScheduler,
)
from voice_agent.tools import ToolRegistry
from voice_agent.transports.files import run_files
from voice_agent.transports.livekit_settings import LiveKitSettingsError, settings_from_env
from voice_agent.transports.text import run_chat
from voice_agent.voice.wavio import WavError

LONE = "\udcff"  # what Python's surrogateescape makes of an undecodable byte 0xff


def test_a_lone_surrogate_in_what_the_caller_said_does_not_poison_the_session():
    """'hi <0xff> there' typed on a terminal in the C.UTF-8 locale: every later request of
    the session failed to encode ('surrogates not allowed') and got the apology."""
    call = run_call(answer("Your order ships on Friday."), [f"hi {LONE} there", "where is it?"])
    for turn in (0, 1):
        heard = [text for _, text in call.heard(turn)]
        assert heard == ["Your order ships on Friday."], (turn, heard)
    assert not [e for e in call.entries("Note") if e.level == "error"]
    sent = call.server.requests[-1]["messages"]
    assert any("hi \ufffd there" in str(m.get("content")) for m in sent), sent


def test_half_a_surrogate_pair_from_the_server_does_not_poison_the_session():
    """A server escaping half a UTF-16 pair in its JSON ('\\ud83d'): the text reached the
    ledger and every later request failed to encode."""
    chunk = {"choices": [{"index": 0, "delta": {"content": "Sure \\ud83d."}}]}
    first = [
        ("headers",),
        ("role",),
        ("raw", b"data: " + json.dumps(chunk).replace("\\\\", "\\").encode() + b"\n\n"),
        ("finish", "stop"),
        ("done",),
    ]

    def plan(index: int, body: dict) -> list:
        return first if index == 0 else answer("We open at nine.")

    call = run_call(plan, ["hello", "when do you open?"])
    assert [text for _, text in call.heard(1)] == ["We open at nine."]
    assert APOLOGY not in [text for _, text in call.heard(0)]
    assert not [e for e in call.entries("Note") if e.level == "error"]


def test_the_session_file_keeps_an_entry_holding_a_lone_surrogate(tmp_path: Path):
    """The entry used to be refused (UnicodeEncodeError out of the sink: a traceback, the
    caller's utterance missing from the file); now it is written with U+FFFD for the
    undecodable character."""
    path = tmp_path / "s.jsonl"
    sink = JsonlSink(path)
    sink.write(le.UserUtterance(seq=1, t=0.0, turn_id=1, text=f"hi {LONE} there", final=True))
    sink.write(le.UserUtterance(seq=2, t=1.0, turn_id=2, text="next", final=True))
    sink.close()
    path.read_bytes().decode("utf-8")  # strict: the file is UTF-8
    texts = [e.text for e in load_jsonl(path)]  # type: ignore[union-attr]
    assert texts == ["hi \ufffd there", "next"]


def _chat_config(base_url: str, ledger_dir: Path) -> Config:
    """A chat against the fault server at `base_url`, its session file in `ledger_dir`."""
    return load_config(
        environ={},
        overrides={
            "llm": {"base_url": base_url, "model": "m", "max_retries": 0},
            "ledger": {"persist": True, "directory": str(ledger_dir)},
        },
    )


def test_chat_reads_bytes_its_encoding_cannot_decode(tmp_path: Path):
    """A Latin-1 line piped into `voice-agent chat` under a strict UTF-8 locale ended the
    chat with 'unexpected error: ExceptionGroup'; the next line was never answered."""

    async def main() -> str:
        async with FaultServer(answer("Your order ships on Friday.")) as server:
            config = _chat_config(server.base_url, tmp_path)
            stdin = io.TextIOWrapper(
                io.BytesIO(b"caf\xe9 au lait\nwhere is my order?\n"), encoding="utf-8"
            )
            out = io.StringIO()
            assert await run_chat(config, stdin=stdin, stdout=out) == 0
            return out.getvalue()

    printed = asyncio.run(main())
    assert printed.count("agent> Your order ships on Friday.") == 2, printed
    assert "you> caf\ufffd au lait" in printed
    (session,) = tmp_path.glob("*.jsonl")
    said = [e.text for e in load_jsonl(session) if isinstance(e, le.UserUtterance)]
    assert said == ["caf\ufffd au lait", "where is my order?"]


# --- configuration -------------------------------------------------------------------


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
@pytest.mark.parametrize(
    "field", ["llm:\n  stall_timeout_s", "agent:\n  llm_deadline_s", "worker:\n  wait_timeout_s"]
)
def test_a_number_that_is_not_finite_is_refused_at_start(tmp_path: Path, field: str, value: str):
    """`.inf` for a deadline was accepted: the chat then ended mid-call with 'unexpected
    error: ValueError: cannot convert float NaN to integer' (or never timed out)."""
    with pytest.raises(ConfigError, match="finite number"):
        load_config(_yaml(tmp_path, f"{field}: {value}\n"), environ={})


def test_environment_references_in_a_config_file_are_expanded(tmp_path: Path):
    path = _yaml(
        tmp_path,
        "llm:\n  base_url: ${MY_LLM}/v1\n  api_key: ${NO_KEY:-none}\n  max_retries: ${RETRIES}\n"
        "agent:\n  persona: $${persona}\n  company: ${EMPTY:-Acme}\n",
    )
    env = {"MY_LLM": "http://127.0.0.1:9", "RETRIES": "4", "EMPTY": ""}
    config = load_config(path, environ=env)
    assert config.llm.base_url == "http://127.0.0.1:9/v1"
    assert config.llm.api_key is not None and config.llm.api_key.get_secret_value() == "none"
    assert config.llm.max_retries == 4
    assert (config.agent.persona, config.agent.company) == ("${persona}", "Acme")


def test_an_unset_environment_reference_names_the_variable_and_the_field(tmp_path: Path):
    """`api_key: ${OPENAI_KEY}` with the variable unset was sent as the literal text
    '${OPENAI_KEY}' (a 401 at the first turn, an apology); it fails at start now."""
    path = _yaml(tmp_path, "llm:\n  api_key: ${H7_UNSET_KEY}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={"OTHER": "x"})
    message = str(raised.value)
    assert "llm.api_key" in message and "H7_UNSET_KEY is not set" in message
    with pytest.raises(ConfigError, match="not a valid reference"):
        load_config(_yaml(tmp_path, "agent:\n  persona: ${not a name}\n"), environ={})


def test_a_prompt_file_that_is_not_utf8_is_a_configuration_error(tmp_path: Path):
    """It ended `voice-agent chat` with 'unexpected error: UnicodeDecodeError'."""
    prompt = tmp_path / "prompt.md"
    prompt.write_bytes("Vous êtes {persona}.\n".encode("latin-1"))
    config = load_config(_yaml(tmp_path, f"agent:\n  prompt_file: {prompt}\n"), environ={})
    with pytest.raises(ConfigError, match=r"agent.prompt_file: .*line 1: not UTF-8"):
        render_system_prompt(config.agent)


def test_a_validator_message_does_not_repeat_the_value(tmp_path: Path):
    with pytest.raises(ConfigError) as raised:
        load_config(_yaml(tmp_path, "llm:\n  base_url: ftp://example.invalid\n"), environ={})
    assert str(raised.value).count("ftp://example.invalid") == 1, str(raised.value)


# --- the LLM endpoint ------------------------------------------------------------------

BLANKS_FOREVER = [("headers",), ("role",)] + [
    step for _ in range(400) for step in (("text", " \n"), ("sleep", 0.3))
]


def test_a_model_emitting_only_whitespace_gets_hold_phrases_then_the_apology():
    """Whitespace every 0.3 s restarted the hold phrases' count and was a sign of life:
    the caller heard nothing for 30 s, then the apology."""
    call = run_call(then_answer(BLANKS_FOREVER), ["Where is my order 5?", "When do you open?"])
    heard = call.heard(0)
    times = [0.0] + [t for t, _ in heard]
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 3.0, heard
    assert [text for _, text in heard][:3] == list(HOLDS[:3])
    assert heard[-1][1] == APOLOGY and heard[-1][0] <= AgentConfig().llm_deadline_s + 0.5
    assert [text for _, text in call.heard(1)] == ["We open at nine."]


@pytest.mark.parametrize(
    "delta",
    [
        {"content": 5},
        {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": 5, "arguments": "{}"}}]},
        {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "a", "arguments": {}}}]},
    ],
)
def test_a_chunk_with_a_field_of_the_wrong_type_is_a_malformed_chunk(delta):
    """A number where the protocol has text failed as "AttributeError: 'int' object has no
    attribute 'encode'" (the apology came, the ledger said nothing useful)."""
    chunk = {"choices": [{"index": 0, "delta": delta}]}
    fault = [
        ("headers",),
        ("role",),
        ("raw", b"data: " + json.dumps(chunk).encode() + b"\n\n"),
        ("finish", "stop"),
        ("done",),
    ]
    call = run_call(then_answer(fault), ["Where is my order 5?", "When do you open?"])
    (error,) = [e for e in call.entries("Note") if e.level == "error"]
    assert "malformed chunk from the LLM endpoint" in error.text and "not text" in error.text
    assert [text for _, text in call.heard(0)] == [APOLOGY]
    assert [text for _, text in call.heard(1)] == ["We open at nine."]


# --- tools -----------------------------------------------------------------------------


class _HugeError(Exception):
    def __str__(self) -> str:
        return "x" * 3_000_000


@pytest.mark.parametrize(
    "outcome",
    ["a1" * 2_000_000, {"rows": [{"id": i, "text": "z" * 100} for i in range(40_000)]}, "raise"],
)
def test_a_tool_returning_megabytes_is_answered_and_the_ledger_keeps_a_bounded_head(
    tmp_path: Path, outcome
):
    """A 4 MB result (or 3 MB error text) went whole into the ledger, and the session
    file redacts every line on the event loop: 10 MB stalled the call for minutes."""
    tools = ToolRegistry()

    @tools.tool(name="lookup", description="Look an order up.", kind="read")
    async def lookup(order: str) -> object:
        if outcome == "raise":
            raise _HugeError
        return outcome

    def plan(index: int, body: dict) -> list:
        if any(m["role"] == "tool" for m in body["messages"]):
            return answer("Here it is.")
        call = ("call", 0, "c1", "lookup", '{"order": "5"}')
        return [("headers",), ("role",), call, ("finish", "tool_calls"), ("done",)]

    call = run_call(plan, ["Where is my order 5?"], tools=tools)
    assert [text for _, text in call.heard(0)][-1] == "Here it is."
    (done,) = [e for e in call.ledger.entries if e.type in ("ToolCallResolved", "ToolCallFailed")]
    if isinstance(done, le.ToolCallResolved):
        kept, limit = done.result, MAX_RESULT_CHARS
    else:
        kept, limit = done.error, MAX_ERROR_CHARS
    assert isinstance(kept, str) and len(kept) <= limit + 200
    assert f"characters; the first {limit:,} are kept]" in kept
    sink = JsonlSink(tmp_path / "s.jsonl")
    for entry in call.ledger.entries:
        sink.write(entry)
    sink.close()
    assert len(load_jsonl(tmp_path / "s.jsonl")) == len(call.ledger.entries)


def test_masking_url_secrets_is_linear_in_a_run_of_letters():
    """100 KB of letters or base64 took 18 s (quadratic backtracking in the URL
    scheme's pattern); 1 MB would take half an hour. Generous bound: 1 MB in 60 s."""
    blob = "Qm9vayBvbmU" * 100_000
    started = time.monotonic()
    assert mask_url_secrets(blob) == blob
    assert mask_url_secrets("?" + "key" * 300_000).startswith("?key")
    assert time.monotonic() - started < 60.0
    cases = {
        "see https://bob:pw@h/x?api_key=1&a=2": "see https://***@h/x?api_key=***&a=2",
        "z" * 40 + "https://u:p@h": "z" * 40 + "https://***@h",
    }
    for text, masked in cases.items():
        assert mask_url_secrets(text) == masked


# --- the session ends while a write runs ---------------------------------------------


def _write_registry(clock: ManualClock, takes_s: float, applied: list[str]) -> ToolRegistry:
    tools = ToolRegistry()

    @tools.tool(name="refund", description="Refund an order.", kind="write", timeout_s=60)
    async def refund(order: str) -> dict[str, str]:
        await clock.sleep(takes_s)
        applied.append(order)
        return {"refunded": order}

    return tools


@pytest.mark.parametrize("takes_s", [3.0, 3600.0])
async def test_a_write_in_flight_when_the_session_ends_is_awaited_or_said_unknown(takes_s):
    """The session's end cancelled a started write at once as 'session ended' while its
    backend went on (a phone caller hanging up mid-refund: the refund applied, the ledger
    said cancelled). Now its outcome is awaited for SESSION_END_WRITE_GRACE_S; one still
    running then is recorded as of unknown effect."""
    clock = ManualClock()
    applied: list[str] = []
    ledger = Ledger("s", clock)
    sched = ToolScheduler(_write_registry(clock, takes_s, applied), ledger, lambda e: None, clock)
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    sched.start(call_id="call_1", response_id="r1", name="refund", arguments='{"order": "5"}')
    for _ in range(4):
        await clock.advance(0.25)
    closing = asyncio.ensure_future(sched.aclose())
    while not closing.done():
        await clock.advance(0.5)
        assert clock.now() < 3 * SESSION_END_WRITE_GRACE_S, "aclose must end by itself"
    (outcome,) = [
        e for e in ledger.entries if e.type.startswith("ToolCall") and e.type[8:] != "Started"
    ]
    if takes_s < SESSION_END_WRITE_GRACE_S:
        assert applied == ["5"] and outcome.type == "ToolCallResolved"
    else:
        assert applied == [] and outcome.type == "ToolCallCancelled"
        assert "effect is unknown" in outcome.reason


TOOLS_MODULE = '''
import os, time
from voice_agent.tools import ToolRegistry
registry = ToolRegistry()
LOG = os.environ["H7_WRITES"]

@registry.tool(kind="write", timeout_s=60)
def refund(order: str) -> dict:
    """Refund an order."""
    with open(LOG, "a") as f:
        f.write("start\\n")
    for _ in range(600):  # until the test has sent its signal (at most 60 s)
        if os.path.exists(LOG + ".go"):
            break
        time.sleep(0.1)
    with open(LOG, "a") as f:
        f.write("applied\\n")
    return {"refunded": order}
'''


def _refund_plan(index: int, body: dict) -> list:
    if any(m["role"] == "tool" for m in body["messages"]):
        return answer("Your refund is done.")
    call = ("call", 0, "call_1", "refund", '{"order": "5"}')
    return [("headers",), ("role",), call, ("finish", "tool_calls"), ("done",)]


@contextlib.asynccontextmanager
async def refund_chat_mid_write(
    tmp_path: Path,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path, Path]]:
    """`voice-agent chat` (a real process, Ctrl-C as the default SIGINT) asked for a refund,
    yielded once the refund tool has started: (the process, the tool's log, the sessions)."""
    (tmp_path / "h7_tools.py").write_text(TOOLS_MODULE)
    writes = tmp_path / "writes.log"
    sessions = tmp_path / "sessions"
    async with FaultServer(_refund_plan) as server:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", ""), "."]),
            "H7_WRITES": str(writes),
            "VOICE_AGENT__LEDGER__DIRECTORY": str(sessions),
            "VOICE_AGENT__TOOLS__MODULES": "[h7_tools:registry]",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voice_agent.cli", "--base-url", server.base_url, "chat",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(b"Please refund order 5.\n")
        await proc.stdin.drain()
        async with asyncio.timeout(120):
            while not writes.exists():
                await asyncio.sleep(0.05)
        yield proc, writes, sessions


@pytest.mark.realtime  # a real process and its signals: the wall clock
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_mid_write_applies_it_once_and_the_ledger_says_so(tmp_path: Path, sig):
    """SIGTERM killed `voice-agent chat` at once: the ledger stopped at the write's intent
    (no outcome, no end) whether or not the backend applied it; Ctrl-C recorded the write
    as 'cancelled' and no end. Now SIGTERM ends the session as Ctrl-C does, and either
    waits for the write in flight, records its outcome and the session's end."""
    async with refund_chat_mid_write(tmp_path) as (proc, writes, sessions):
        proc.send_signal(sig)
        await asyncio.sleep(0.5)
        (tmp_path / "writes.log.go").touch()
        async with asyncio.timeout(120):
            printed, _ = await proc.communicate()
    assert writes.read_text().split() == ["start", "applied"], printed.decode()
    (session,) = sessions.glob("*.jsonl")
    entries = load_jsonl(session)
    kinds = [e.type for e in entries]
    assert kinds.count("ToolCallResolved") == 1, (kinds, printed.decode())
    assert kinds[-1] == "SessionEnded" and entries[-1].reason == "interrupted"  # type: ignore[union-attr]
    assert "Traceback" not in printed.decode()


# --- newcomers' commands ---------------------------------------------------------------


def test_a_livekit_url_with_credentials_is_refused_without_echoing_them():
    """`LIVEKIT_URL=wss://user:pw@host` ended `voice-agent livekit` with 'unexpected
    error: ValueError: Cannot combine AUTHORIZATION header with AUTH argument ...'."""
    env = {
        "LIVEKIT_URL": "wss://bob:hunter2@lk.example.invalid/?token=SEKRET",
        "LIVEKIT_API_KEY": "key",
        "LIVEKIT_API_SECRET": "secret",
    }
    with pytest.raises(LiveKitSettingsError) as raised:
        settings_from_env(env)
    message = str(raised.value)
    assert raised.value.variable == "LIVEKIT_URL" and "user name or password" in message
    assert "hunter2" not in message and "SEKRET" not in message


UNRAISABLE_TOOLS = """
from voice_agent.tools import ToolRegistry
registry = ToolRegistry()

class Handle:
    def __del__(self):
        raise RuntimeError("handle closed twice")
    def __repr__(self):
        return "Handle()"

@registry.tool(kind="read")
async def lookup(order: str) -> object:
    '''Look an order up.'''
    return Handle()
"""


def _lookup_plan(index: int, body: dict) -> list:
    if any(m["role"] == "tool" for m in body["messages"]):
        return answer("It has shipped.")
    call = ("call", 0, "call_1", "lookup", '{"order": "5"}')
    return [("headers",), ("role",), call, ("finish", "tool_calls"), ("done",)]


@pytest.mark.realtime  # a real process: the wall clock
async def test_an_error_python_cannot_raise_is_one_warning_line_not_a_traceback(tmp_path):
    """A tool's object whose __del__ raises printed 'Exception ignored in: ...' and a
    traceback on the user's terminal."""
    (tmp_path / "h7_unraisable.py").write_text(UNRAISABLE_TOOLS)
    async with FaultServer(_lookup_plan) as server:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", ""), "."]),
            "VOICE_AGENT__TOOLS__MODULES": "[h7_unraisable:registry]",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voice_agent.cli", "--no-persist", "--base-url",
            server.base_url, "chat",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        async with asyncio.timeout(120):
            out, err = await proc.communicate(b"Where is order 5?\n")
    printed = out.decode() + err.decode()
    assert "It has shipped." in printed
    assert "Traceback" not in printed, printed
    assert "handle closed twice" in err.decode()  # said, in one line


@pytest.mark.parametrize("how", ["same path", "another spelling", "a symlink"])
async def test_run_refuses_an_output_that_is_its_input(tmp_path: Path, how: str):
    """`voice-agent run -i call.wav -o call.wav` replaced the caller's recording with the
    agent's audio (exit 0): the input was lost."""
    import wave

    recording = tmp_path / "call.wav"
    with wave.open(str(recording), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x01\x00" * 16000)
    before = recording.read_bytes()
    output = {
        "same path": recording,
        "another spelling": tmp_path / "." / "call.wav",
        "a symlink": tmp_path / "link.wav",
    }[how]
    if how == "a symlink":
        output.symlink_to(recording)
    config = load_config(environ={}, overrides={"llm": {"base_url": "http://127.0.0.1:9/v1"}})
    with pytest.raises(WavError, match="is the input too"):
        await run_files(config, recording, output)
    assert recording.read_bytes() == before


class _PipeClosedAfter(io.StringIO):
    """A standard output whose reader goes away after ``lines`` lines (`| head -n`)."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.left = lines

    def write(self, text: str) -> int:
        if self.left <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.left -= text.count("\n")
        return super().write(text)


@pytest.mark.parametrize("lines", [0, 3])
def test_chat_ends_quietly_when_its_output_reader_goes_away(tmp_path: Path, lines: int):
    """`voice-agent chat | head -3`: BrokenPipeError inside the agent's actions, a dozen
    logged tracebacks, then 'unexpected error: ExceptionGroup' (exit 1) or a chat that
    never ended (killed by `timeout` after 120 s)."""

    async def main() -> int:
        async with FaultServer(answer("Your order ships on Friday.")) as server:
            config = _chat_config(server.base_url, tmp_path)
            stdin = io.StringIO("where is my order?\nand again?\nand once more?\n")
            return await asyncio.wait_for(run_chat(config, stdin, _PipeClosedAfter(lines)), 60)

    assert asyncio.run(main()) == 141
    (session,) = tmp_path.glob("*.jsonl")
    end = load_jsonl(session)[-1]
    assert isinstance(end, le.SessionEnded) and end.reason == "output closed"
