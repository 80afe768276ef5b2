"""Bad input, storage faults and secrets through the real CLI: exit status, what it printed, when.

    PYTHONPATH=. .venv/bin/python bench/bad_input.py [--json out.json] [--only NAME]
        [--loop-lag | --write-ahead | --signals]

Each case runs ``python -m voice_agent.cli ...`` in a subprocess (with the
``PYTHONPATH`` given to this script, so the same file measures any revision)
and records the exit status, whether a Python traceback was printed, the last
line of stderr, the wall time to exit, and for the secret cases whether the
secret appears in anything printed or persisted. Used for the before/after
figures of issue 10 (items 1.7, 1.8, 1.10) and of the session-7 and session-8 hostile
reviews (the cases after "session 7"/"session 8" below; docs/reliability_tools.md).
``--loop-lag`` measures only how long the event loop stops while the session file
takes a 2 MB tool result (session 8); ``--write-ahead`` a write called while that
result is masked, ``--signals`` SIGTERM/SIGHUP to a chat (session 9). The LLM endpoint is a closed port
on 127.0.0.1 (no model is needed: every case fails or succeeds before a turn).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

DEAD_LLM = "http://127.0.0.1:9/v1"  # nothing listens on the discard port


def _pcm16(path: Path, rate: int, seconds: float = 1.0) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.zeros(int(rate * seconds), dtype=np.int16).tobytes())


def _zero_rate(path: Path) -> None:
    _pcm16(path, 16000)
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", 0)  # sample rate field of the fmt chunk
    data[28:32] = struct.pack("<I", 0)  # byte rate
    path.write_bytes(bytes(data))


def _odd_truncated(path: Path) -> None:
    _pcm16(path, 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1001])  # cut at an odd byte, header claims more


def _sox_24bit(path: Path) -> bool:
    src = path.with_suffix(".src.wav")
    _pcm16(src, 16000)
    result = subprocess.run(["sox", str(src), "-b", "24", str(path)], capture_output=True)
    return result.returncode == 0


def run(args: list[str], env: dict[str, str], stdin: bytes = b"", timeout: float = 240) -> dict:
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "voice_agent.cli", *args],
            input=stdin,
            capture_output=True,
            env=env,
            timeout=timeout,
        )
        code = done.returncode
        out = done.stdout.decode(errors="replace")
        err = done.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired as exc:
        code = None
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return {
        "exit": code,
        "traceback": "Traceback (most recent call last)" in err,
        "stderr_last": lines[-1][:220] if lines else "",
        "stderr_first": lines[0][:220] if lines else "",
        "seconds": round(time.monotonic() - t0, 2),
        "stdout": out,
        "stderr": err,
    }


def cases(work: Path) -> dict[str, dict[str, Any]]:
    tools = work / "tools"
    tools.mkdir()
    (tools / "syntax_tools.py").write_text("def broken(:\n    pass\n")
    (tools / "raising_tools.py").write_text("raise RuntimeError('backend not configured')\n")
    (tools / "dupe_tools.py").write_text(
        "from voice_agent.tools import ToolRegistry\n"
        "registry = ToolRegistry()\n"
        "@registry.tool\n"
        "async def get_order_status(order_id: str) -> dict:\n"
        "    '''Shadowing the demo tool.'''\n"
        "    return {}\n"
    )
    latin1 = work / "latin1.yaml"
    latin1.write_bytes("agent:\n  persona: Ren\xe9e\n".encode("latin-1"))
    good = work / "good.wav"
    _pcm16(good, 16000)
    odd = work / "odd.wav"
    _odd_truncated(odd)
    zero = work / "zero_rate.wav"
    _zero_rate(zero)
    bit24 = work / "sox24.wav"
    have_sox = _sox_24bit(bit24)
    sessions = work / "sessions"
    secret_url = "https://alice:s3cr3tpw@llm.example.invalid/v1?api-key=KEY123456"
    chat = ["chat", "--base-url", DEAD_LLM]
    run_wav = ["run", "--base-url", DEAD_LLM, "--no-persist"]
    out = str(work / "out.wav")
    c: dict[str, dict[str, Any]] = {
        "tools module with a syntax error": {
            "args": chat + ["--no-persist"],
            "env": {"VOICE_AGENT__TOOLS__MODULES": "[syntax_tools:registry]"},
        },
        "tools module raising at import": {
            "args": chat + ["--no-persist"],
            "env": {"VOICE_AGENT__TOOLS__MODULES": "[raising_tools:registry]"},
        },
        "duplicate tool name": {
            "args": chat + ["--no-persist"],
            "env": {
                "VOICE_AGENT__TOOLS__MODULES": "[voice_agent.demo_tools:registry, dupe_tools:registry]"
            },
        },
        "non-UTF-8 config file": {"args": ["config", "--config", str(latin1)], "env": {}},
        "VOICE_AGENT__VOICE__SAMPLE_RATE=0": {
            "args": run_wav + ["-i", str(good), "-o", out],
            "env": {"VOICE_AGENT__VOICE__SAMPLE_RATE": "0"},
        },
        "WAV truncated at an odd byte": {"args": run_wav + ["-i", str(odd), "-o", out], "env": {}},
        "WAV with sample rate 0": {"args": run_wav + ["-i", str(zero), "-o", out], "env": {}},
        "a directory as input": {"args": run_wav + ["-i", str(work), "-o", out], "env": {}},
        "unwritable output path": {
            "args": run_wav + ["-i", str(good), "-o", "/proc/no/such/dir/out.wav"],
            "env": {},
        },
        "valid: all-digit OPENAI_API_KEY": {
            "args": ["config"],
            "env": {"OPENAI_API_KEY": "12345678"},
        },
        "valid: all-digit VOICE_AGENT__LLM__API_KEY with a leading 0": {
            "args": ["config"],
            "env": {"VOICE_AGENT__LLM__API_KEY": "0123456"},
        },
        "sessions directory is a file": {
            "args": chat,
            "env": {"VOICE_AGENT__LEDGER__DIRECTORY": str(good / "sessions")},
        },
        "secret in base URL: voice-agent config": {
            "args": ["config", "--base-url", secret_url],
            "env": {},
            "secret": ["s3cr3tpw", "KEY123456"],
        },
        "secret in base URL: chat banner and session file": {
            "args": ["chat", "--base-url", secret_url],
            "env": {"VOICE_AGENT__LEDGER__DIRECTORY": str(sessions)},
            "secret": ["s3cr3tpw", "KEY123456"],
            "files": sessions,
        },
    }
    if have_sox:
        c["valid: 24-bit WAV with an extensible header (sox)"] = {
            "args": run_wav + ["-i", str(bit24), "-o", out],
            "env": {},
        }
    # session 7 (hostile7): faults nobody had tried
    latin_prompt = work / "latin_prompt.md"
    latin_prompt.write_bytes("Vous \xeates {persona}.\n".encode("latin-1"))
    (work / "prompt.yaml").write_text(f"agent:\n  prompt_file: {latin_prompt}\n")
    (work / "unset.yaml").write_text("llm:\n  api_key: ${H7_UNSET_KEY}\n")
    (work / "inf.yaml").write_text("agent:\n  llm_deadline_s: .inf\n")
    c.update(
        {
            "chat: a Latin-1 line on stdin, strict UTF-8 locale": {
                "args": chat + ["--no-persist"],
                "env": {"PYTHONIOENCODING": "utf-8:strict"},
                "stdin": "caf\xe9\nwhere is my order?\n".encode("latin-1"),
            },
            "chat: a Latin-1 line on stdin, C.UTF-8 locale (surrogateescape)": {
                "args": chat + ["--no-persist"],
                "env": {"LC_ALL": "C.UTF-8"},
                "stdin": "caf\xe9\nwhere is my order?\n".encode("latin-1"),
            },
            "config: ${VAR} unset": {"args": ["--config", str(work / "unset.yaml"), "config"]},
            "config: .inf for a deadline": {
                "args": ["--config", str(work / "inf.yaml")] + chat + ["--no-persist"],
                "stdin": b"where is my order?\n",
            },
            "a prompt file that is not UTF-8": {
                "args": ["--config", str(work / "prompt.yaml")] + chat + ["--no-persist"],
            },
            "LIVEKIT_URL with user:password@": {
                "args": ["--base-url", DEAD_LLM, "livekit", "connect", "--room", "x"],
                "env": {
                    "LIVEKIT_URL": "wss://bob:hunter2pw@127.0.0.1:9",
                    "LIVEKIT_API_KEY": "key",
                    "LIVEKIT_API_SECRET": "secret",
                },
                "secret": ["hunter2pw"],
            },
        }
    )
    # session 8 (hostile8)
    recorded = work / "recorded"
    recorded.mkdir()
    (recorded / "20261126T150718Z-f01527.jsonl").write_text(
        '{"type": "SessionStarted", "seq": 0, "t": 0.0, "session_id": "20261126T150718Z-f01527",'
        ' "started_at": "2026-11-26T15:07:18+00:00", "meta": {"transport": "text"}}\n'
        '{"type": "SessionEnded", "seq": 1, "t": 1.0, "reason": "user quit"}\n'
    )
    binary = work / "photo.jsonl"
    binary.write_bytes(bytes(range(256)) * 40)
    c.update(
        {
            "s8: ledger show DIRECTORY": {"args": ["ledger", "show", str(recorded)]},
            "s8: ledger show a file that is not a ledger": {
                "args": ["ledger", "show", str(binary)]
            },
            "s8: ledger show /dev/null": {"args": ["ledger", "show", os.devnull]},
        }
    )
    # session 9 (hostile9)
    (work / "bad_syntax.yaml").write_text("agent:\n  persona: [Ren\n  mode: sync\n")
    (work / "latin_scenario.yaml").write_bytes(
        'name: x\nturns:\n  - user: "caf\xe9"\n'.encode("latin-1")
    )
    (tools / "badname_tools.py").write_text(
        "from voice_agent.tools import ToolRegistry\n"
        "registry = ToolRegistry()\n"
        "@registry.tool(name='look up order')\n"
        "async def lookup(order_id: str) -> dict:\n"
        '    """Look an order up."""\n'
        "    return {}\n"
    )
    c.update(
        {
            "s9: bench scenario with a YAML syntax error": {
                "args": ["bench", str(work / "bad_syntax.yaml")]
            },
            "s9: --config with a YAML syntax error (chat)": {
                "args": ["--config", str(work / "bad_syntax.yaml")] + chat + ["--no-persist"]
            },
            "s9: bench scenario that is not UTF-8": {
                "args": ["bench", str(work / "latin_scenario.yaml")]
            },
            "s9: a tool named 'look up order'": {
                "args": chat + ["--no-persist"],
                "env": {"VOICE_AGENT__TOOLS__MODULES": "[badname_tools:registry]"},
            },
        }
    )
    for case in c.values():
        case["env"] = {**case.get("env", {}), "PYTHONPATH_EXTRA": str(tools)}
    return c


def signal_chat(signum: int, env: dict[str, str], work: Path) -> dict[str, Any]:
    """`voice-agent chat` sent ``signum`` once its session began, its input left open as a
    terminal's would be (session 9): exit status, seconds to exit, what it printed on
    stderr, and how its session file ends."""
    import signal as signals

    sessions = work / f"signal-{signum}"
    env = {**env, "VOICE_AGENT__LEDGER__DIRECTORY": str(sessions)}
    child = subprocess.Popen(
        [sys.executable, "-m", "voice_agent.cli", "chat", "--base-url", DEAD_LLM],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert child.stdout is not None and child.stderr is not None
    path = None
    for raw in child.stdout:
        if raw.startswith(b"ledger: "):
            path = Path(raw.decode().split(" ", 1)[1].strip())
            break
    t0 = time.monotonic()
    child.send_signal(signum)
    try:
        child.wait(60)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    seconds = time.monotonic() - t0
    err = child.stderr.read().decode(errors="replace")
    last = "(no session file)"
    if path is not None and path.exists():
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        last = lines[-1]["type"] + (f"({lines[-1]['reason']})" if "reason" in lines[-1] else "")
    return {
        "signal": signals.Signals(signum).name,
        "exit": child.returncode,
        "seconds": round(seconds, 2),
        "session_file_ends_with": last,
        "stderr_lines": len(err.strip().splitlines()),
        "stderr_first": (err.strip().splitlines() or [""])[0][:160],
    }


# session 9 (hostile9): a write called while a 2 MB tool result is being masked (the real
# masker, its helper process): how long the write waits, whether its intent was in the
# file when its tool ran, and the event loop's longest stall meanwhile.
WRITE_AHEAD_SCRIPT = '''
import asyncio, json, tempfile, time
from pathlib import Path
from fsm import MonotonicClock
from ledger import JsonlSink, Ledger
from ledger import entries as le
from voice_agent.scheduler import ToolScheduler
from voice_agent.tools import ToolRegistry

path = Path(tempfile.mkdtemp()) / "s.jsonl"
seen = {}
registry = ToolRegistry()

@registry.tool(kind="read")
async def statement(account: str) -> str:
    """2 MB of text."""
    return "a1" * 1_000_000

@registry.tool(kind="write")
async def refund(order_id: str) -> dict:
    """Refund an order."""
    seen["tool_started_s"] = time.perf_counter() - seen["t0"]
    seen["intent_in_file_when_tool_ran"] = '"call_2"' in path.read_text()
    return {"refunded": order_id}

async def main():
    ledger = Ledger("s", MonotonicClock(), sinks=[JsonlSink(path)])
    sched = ToolScheduler(registry, ledger, lambda e: None, MonotonicClock())
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    lags, done = [], asyncio.Event()
    async def tick():
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t - 0.005)
    ticker = asyncio.ensure_future(tick())
    sched.start(call_id="call_1", response_id="r1", name="statement", arguments='{"account": "A"}')
    while ledger.call("call_1").status == "pending":
        await asyncio.sleep(0.005)
    seen["t0"] = time.perf_counter()
    sched.start(call_id="call_2", response_id="r1", name="refund", arguments='{"order_id": "5"}')
    while ledger.call("call_2").status == "pending":
        await asyncio.sleep(0.005)
    done.set()
    await ticker
    await sched.aclose()
    await asyncio.to_thread(ledger.close)
    print(json.dumps({"write_waited_s": round(seen["tool_started_s"], 2),
                      "intent_in_file_when_tool_ran": seen["intent_in_file_when_tool_ran"],
                      "max_loop_stall_ms": round(max(lags) * 1000)}))

asyncio.run(main())
'''


def write_ahead(env: dict[str, str]) -> dict[str, Any]:
    """A write called behind a 2 MB result's masking (hostile9)."""
    done = subprocess.run(
        [sys.executable, "-c", WRITE_AHEAD_SCRIPT], capture_output=True, env=env, timeout=600
    )
    if done.returncode != 0:
        return {"error": done.stderr.decode(errors="replace")[-500:]}
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


# session 8 (hostile8): how long the event loop stops while the session file takes a large
# tool result. A ticker asks for a 5 ms sleep over and over; its worst lateness is the
# longest the loop was held. Run in a subprocess, so the revision on PYTHONPATH is measured.
LOOP_LAG_SCRIPT = """
import asyncio, json, sys, tempfile, time
from pathlib import Path
from fsm import MonotonicClock
from ledger import JsonlSink, Ledger, load_jsonl
from ledger import entries as le

RESULTS = {"2 MB of 'a1'": "a1" * 1_000_000, "2 MB of prose": "some words here. " * 120_000,
           "a 100-byte result (the ticker's own lateness)": "x" * 100}

async def one(result):
    directory = Path(tempfile.mkdtemp())
    sink = JsonlSink(directory / "s.jsonl")
    ledger = Ledger("s", MonotonicClock(), sinks=[sink])
    ledger.append(le.LlmRequestStarted(response_id="r1", reason="user_turn", mode="async"))
    ledger.append(le.ToolCallStarted(call_id="c1", response_id="r1", name="f", arguments="{}",
                                     kind="read"))
    lags, done = [], asyncio.Event()
    async def tick():
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - t - 0.005)
    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(0.1)
    t0 = time.perf_counter()
    ledger.append(le.ToolCallResolved(call_id="c1", result=result))
    appended = time.perf_counter() - t0
    for i in range(10):
        ledger.append(le.Note(text=f"after {i}"))
        await asyncio.sleep(0.01)
    while sink.pending:
        await asyncio.sleep(0.02)
    written = time.perf_counter() - t0
    done.set()
    await ticker
    sink.close()
    entries = load_jsonl(directory / "s.jsonl")
    return {"append_s": round(appended, 3), "written_s": round(written, 2),
            "max_loop_stall_ms": round(max(lags) * 1000), "in_order_once":
            [e.seq for e in entries] == list(range(len(ledger.entries)))}

async def main():
    print(json.dumps({name: await one(result) for name, result in RESULTS.items()}))

asyncio.run(main())
"""


def loop_lag(env: dict[str, str]) -> dict[str, Any]:
    """The longest event-loop stall while the session file takes a 2 MB result (hostile8)."""
    done = subprocess.run(
        [sys.executable, "-c", LOOP_LAG_SCRIPT], capture_output=True, env=env, timeout=600
    )
    if done.returncode != 0:
        return {"error": done.stderr.decode(errors="replace")[-500:]}
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument(
        "--loop-lag", action="store_true", help="only the event-loop stall of a 2 MB tool result"
    )
    parser.add_argument(
        "--write-ahead",
        action="store_true",
        help="only a write called while a 2 MB result is masked (session 9)",
    )
    parser.add_argument(
        "--signals", action="store_true", help="only SIGTERM/SIGHUP to a chat (session 9)"
    )
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if args.write_ahead or args.signals:
        import signal as signals

        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if k != "OPENAI_BASE_URL"}
            if args.write_ahead:
                results["write behind a 2 MB result"] = write_ahead(env)
            if args.signals:
                for signum in (signals.SIGTERM, signals.SIGHUP):
                    results[f"chat: {signum.name}"] = signal_chat(signum, env, Path(tmp))
        for name, figures in results.items():
            print(f"{name:<32} {figures}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        return 0
    if args.loop_lag:
        results = loop_lag(dict(os.environ))
        for name, figures in results.items():
            print(f"{name:<48} {figures}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, case in cases(work).items():
            if args.only and args.only not in name:
                continue
            env = dict(os.environ)
            extra = case["env"].pop("PYTHONPATH_EXTRA")
            env.update(case["env"])
            env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), extra) if p)
            env.pop("OPENAI_BASE_URL", None)
            result = run(case["args"], env, stdin=case.get("stdin", b""))
            if "secret" in case:
                shown = result["stdout"] + result["stderr"]
                persisted = ""
                if case.get("files") and Path(case["files"]).is_dir():
                    persisted = "".join(p.read_text() for p in Path(case["files"]).glob("*.jsonl"))
                result["secret_printed"] = any(s in shown for s in case["secret"])
                result["secret_persisted"] = any(s in persisted for s in case["secret"])
            result["stdout_first"] = (result["stdout"].strip().splitlines() or [""])[0][:220]
            result["stderr_lines"] = len(result["stderr"].strip().splitlines())
            result.pop("stdout")
            result.pop("stderr")
            results[name] = result
            flags = " ".join(
                f"{k}={result[k]}" for k in ("secret_printed", "secret_persisted") if k in result
            )
            shown = result["stderr_last"] or result.get("stdout_first", "")
            print(
                f"{name:<58} exit={result['exit']} traceback={result['traceback']} "
                f"{result['seconds']:>6.2f}s {flags}\n    {shown}",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
