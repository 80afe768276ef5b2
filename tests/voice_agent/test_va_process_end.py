"""The ``voice-agent`` process ends after its session, whatever threads its tools left running."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import voice_agent
from voice_agent import process_end
from voice_agent.bench.oracle import OracleServer
from voice_agent.bench.scenario import Scenario
from voice_agent.process_end import end_process, ending_loops

# A generous bound for a process to start, talk and end on a busy 2-core machine (wall
# seconds): the fixed process ends in a few seconds; the defect it guards against is a
# process that never ends.
PROCESS_BOUND_S = 120.0

TOOLS = '''
import asyncio, threading, time
from voice_agent.tools import ToolRegistry

registry = ToolRegistry()


def _watch_forever():
    while True:
        time.sleep(0.05)


@registry.tool
async def start_monitor() -> dict:
    """Start watching the line."""
    threading.Thread(target=_watch_forever, name="line-monitor").start()  # non-daemon
    return {"started": True}


@registry.tool(timeout_s=0.5)
async def check_line() -> dict:
    """Check the line."""
    await asyncio.to_thread(_watch_forever)  # a default-executor job that never returns
    return {"ok": True}
'''


def _scenario() -> Scenario:
    tool = {"description": "x", "parameters": {"type": "object", "properties": {}}, "result": {}}
    return Scenario.model_validate(
        {
            "name": "stuck_threads",
            "oracle": {"ttft_ms": 10, "tokens_per_s": 200},
            "tools": [{"name": "start_monitor", **tool}, {"name": "check_line", **tool}],
            "turns": [
                {
                    "user": "Start the monitor and check the line.",
                    "calls": [
                        {"tool": "start_monitor", "arguments": {}},
                        {"tool": "check_line", "arguments": {}},
                    ],
                    "answer": [
                        {"say": "The monitor runs.", "needs": ["start_monitor"], "expect": ["runs"]}
                    ],
                }
            ],
        }
    )


@pytest.mark.realtime  # a process outside the test, on the wall clock
async def test_chat_ends_after_its_session_naming_the_threads_a_tool_left_running(
    tmp_path: Path,
) -> None:
    (tmp_path / "stuck_tools.py").write_text(TOOLS)
    sessions = tmp_path / "sessions"
    repo = Path(voice_agent.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(tmp_path)])}
    async with OracleServer(_scenario()) as oracle:
        config = tmp_path / "agent.yaml"
        config.write_text(
            json.dumps(
                {
                    "llm": {"base_url": oracle.base_url, "model": "oracle", "max_retries": 0},
                    "tools": {"modules": ["stuck_tools:registry"]},
                    "ledger": {"directory": str(sessions), "persist": True},
                }
            )
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voice_agent.cli", "chat", "-c", str(config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(
                process.communicate(b"Start the monitor and check the line.\n"),
                PROCESS_BOUND_S,
            )
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail(f"voice-agent chat did not end within {PROCESS_BOUND_S:g} s")
    stderr = err.decode()
    assert process.returncode == 0, stderr
    assert "The monitor runs." in out.decode()
    # the stuck thread and the stuck job are named: the tool, the thread, the code
    assert "thread 'line-monitor' started while tool start_monitor (call_" in stderr, stderr
    assert "job _watch_forever of tool check_line (call_" in stderr, stderr
    assert "_watch_forever (stuck_tools.py:" in stderr and "exiting without waiting" in stderr
    assert "Traceback" not in stderr
    # the ledger was complete before the process ended
    (ledger,) = sessions.glob("*.jsonl")
    entries = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert entries[-1]["type"] == "SessionEnded"
    outcomes = {e["type"] for e in entries if e["type"].startswith("ToolCall")}
    assert {"ToolCallResolved", "ToolCallTimedOut"} <= outcomes, outcomes


@pytest.fixture(autouse=True)
def _unfrozen_heap() -> Iterator[None]:
    """``end_process`` freezes the heap of the process it ends: not this one's for good."""
    yield
    gc.unfreeze()


def test_the_process_ends_with_its_heap_frozen_so_exit_does_not_collect_it() -> None:
    """After a second Ctrl-C under load the interpreter spent 3-9 s collecting the heap of
    a command that was done (session 13)."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    status = end_process(130, set(threading.enumerate()), stderr=io.StringIO())
    assert status == 130
    assert gc.get_freeze_count() > 0  # the command's objects: left to the OS, not collected


def _stuck_thread(release: threading.Event, name: str) -> threading.Thread:
    thread = threading.Thread(target=release.wait, name=name)  # non-daemon
    thread.start()
    return thread


def test_a_thread_still_running_after_the_grace_is_named_and_the_process_ended() -> None:
    before = set(threading.enumerate())
    release = threading.Event()
    thread = _stuck_thread(release, "stuck-poller")
    exits: list[int] = []
    err = io.StringIO()
    try:
        status = end_process(3, before, stderr=err, grace_s=0.05, exit_now=exits.append)
    finally:
        release.set()
        thread.join()
    assert exits == [3] and status == 3
    assert "thread 'stuck-poller'" in err.getvalue()
    assert "in wait (threading.py:" in err.getvalue()  # where it is stuck
    assert "exiting without waiting" in err.getvalue()


def test_threads_that_finish_within_the_grace_are_waited_for_silently() -> None:
    before = set(threading.enumerate())
    thread = threading.Thread(target=time.sleep, args=(0.05,), name="short-job")
    thread.start()
    exits: list[int] = []
    err = io.StringIO()

    status = end_process(0, before, stderr=err, grace_s=60.0, exit_now=exits.append)

    assert status == 0 and exits == [] and err.getvalue() == ""
    assert not thread.is_alive()


def test_threads_running_before_the_command_are_not_its_leftovers() -> None:
    release = threading.Event()
    thread = _stuck_thread(release, "callers-own")
    before = set(threading.enumerate())
    exits: list[int] = []
    err = io.StringIO()
    try:
        status = end_process(0, before, stderr=err, grace_s=0.05, exit_now=exits.append)
    finally:
        release.set()
        thread.join()
    assert status == 0 and exits == [] and err.getvalue() == ""


def test_asyncio_run_returns_although_a_to_thread_job_never_does() -> None:
    """``asyncio.run`` joins its default executor on the way out: a job stuck for ever
    kept it from returning. Under `ending_loops` it waits at most the grace."""
    release = threading.Event()

    async def session() -> str:
        try:
            await asyncio.wait_for(asyncio.to_thread(release.wait), 0.01)
        except TimeoutError:
            return "timed out"
        return "returned"

    results: list[str] = []

    def command() -> None:
        with ending_loops(grace_s=0.05):
            results.append(asyncio.run(session()))

    runner = threading.Thread(target=command, daemon=True)
    runner.start()
    runner.join(PROCESS_BOUND_S)
    stuck = runner.is_alive()
    release.set()
    runner.join()
    assert not stuck, "asyncio.run did not return"
    assert results == ["timed out"]


def test_to_thread_jobs_run_on_a_bounded_pool_of_reused_threads(monkeypatch) -> None:
    """One job after another reuses one worker; many blocked at once hold at most the
    bound, and the jobs queued behind them run once workers are free."""
    monkeypatch.setattr(process_end, "MAX_JOB_WORKERS", 3)
    release = threading.Event()
    running: list[str] = []

    def blocked() -> str:
        running.append(threading.current_thread().name)
        release.wait(PROCESS_BOUND_S)
        return threading.current_thread().name

    def workers() -> int:
        return sum(t.name.startswith("asyncio-job") for t in threading.enumerate())

    async def session() -> tuple[set[threading.Thread], set[str], int]:
        one_by_one = {await asyncio.to_thread(threading.current_thread) for _ in range(10)}
        jobs = [asyncio.ensure_future(asyncio.to_thread(blocked)) for _ in range(8)]
        while len(running) < 3:  # every job is submitted by now (workers start on submit)
            await asyncio.sleep(0.01)
        at_once = workers()
        release.set()
        names = set(await asyncio.gather(*jobs))
        return one_by_one, names, at_once

    with ending_loops(grace_s=PROCESS_BOUND_S):
        one_by_one, names, at_once = asyncio.run(session())
    assert len(one_by_one) == 1, "each job after the first reused the idle worker"
    assert at_once == 3 and len(names) <= 3, (at_once, names)
    assert len(running) == 8, "the queued jobs ran once workers were free"


def test_a_signal_delivered_to_another_thread_wakes_the_idle_loop() -> None:
    """The OS may deliver SIGINT or SIGTERM to any thread (a tool's, the chat's reader);
    Python runs the handler on the main thread, which slept on in the idle loop's select
    until something else woke it: Ctrl-C went unanswered while a write ran. Now the loop
    wakes: the session is cancelled while the tool's thread still waits (session 12)."""
    import signal

    release = threading.Event()
    tool_waiting = threading.Event()
    outcome: list[str] = []

    def tool() -> None:
        tool_waiting.set()
        time.sleep(0.2)  # the loop is asleep in select by now
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # delivered to this thread
        release.wait(30.0)  # (before: the loop woke only when this wait ended)
        tool_waiting.clear()

    async def session() -> None:
        try:
            await asyncio.to_thread(tool)
        except asyncio.CancelledError:
            outcome.append("cancelled while the tool ran" if tool_waiting.is_set() else "late")
            raise
        outcome.append("the tool ended first")

    with ending_loops(grace_s=0.05), pytest.raises(KeyboardInterrupt):
        try:
            asyncio.run(session())
        finally:
            release.set()
    assert outcome == ["cancelled while the tool ran"]


def test_the_loop_leaves_the_wakeup_fd_as_it_found_it() -> None:
    """Outside the loop no wake-up socket stays registered (the next loop, or code that is
    not ours, starts from none), and one set by other code is neither replaced nor removed."""
    import signal
    import socket

    async def nothing() -> None:
        await asyncio.sleep(0)

    with ending_loops():
        asyncio.run(nothing())
    assert signal.set_wakeup_fd(-1) == -1
    theirs, other = socket.socketpair()
    theirs.setblocking(False)
    try:
        signal.set_wakeup_fd(theirs.fileno())
        with ending_loops():
            asyncio.run(nothing())
        assert signal.set_wakeup_fd(-1) == theirs.fileno()
    finally:
        theirs.close()
        other.close()


def test_a_second_ctrl_c_is_taken_between_callbacks_so_every_cleanup_runs() -> None:
    """``asyncio.run`` raises KeyboardInterrupt for a second Ctrl-C at whatever line the
    main thread runs: a session's cleanup code was cut mid-way (its task ending with the
    interrupt, whoever awaited it waiting for ever). Now the interrupt is taken between the
    loop's callbacks: the code running when it arrived goes on to its next await, then every
    task is cancelled and its cleanup (awaits included) runs, and the command still ends
    with KeyboardInterrupt."""
    import signal

    steps: list[str] = []

    async def session() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C: the session is cancelled
        try:
            await asyncio.sleep(PROCESS_BOUND_S)
        except asyncio.CancelledError:
            steps.append("closing")
            os.kill(os.getpid(), signal.SIGINT)  # the second, while the cleanup runs
            for _ in range(1000):  # the handler has had its chance to run by now
                pass
            steps.append("the line after the second Ctrl-C ran")
            try:
                await asyncio.sleep(0)
            finally:
                await asyncio.sleep(0)  # an await in a cleanup, as closing a session has
                steps.append("the cleanup's await returned")
            raise

    with ending_loops(grace_s=0.05), pytest.raises(KeyboardInterrupt):
        asyncio.run(session())
    assert steps == [
        "closing",
        "the line after the second Ctrl-C ran",
        "the cleanup's await returned",
    ]
