"""The ``voice-agent`` command.

``voice-agent`` alone starts the voice console (microphone and speaker) on the
embedded defaults; ``voice-agent chat`` is the same agent over text. See
``voice-agent --help`` for the rest (bench, ledger show, fsm, models, config).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, load_config


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {}
    if getattr(args, "mode", None):
        over.setdefault("agent", {})["mode"] = args.mode
    if getattr(args, "base_url", None):
        over.setdefault("llm", {})["base_url"] = args.base_url
    if getattr(args, "model", None):
        over.setdefault("llm", {})["model"] = args.model
    if getattr(args, "local_model", None):
        over.setdefault("local_llm", {})["model"] = args.local_model
    if getattr(args, "no_persist", False):
        over.setdefault("ledger", {})["persist"] = False
    return over


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, overrides=_overrides(args))


def _add_common(p: argparse.ArgumentParser, *, sub: bool = True) -> None:
    # On subcommands the defaults are suppressed so that options given before
    # the subcommand are not overwritten by the subparser's defaults.
    d: dict[str, Any] = {"default": argparse.SUPPRESS} if sub else {}
    p.add_argument("--config", "-c", help="a YAML config file or the name of one in configs/", **d)
    p.add_argument("--mode", choices=["sync", "async", "speculative"], help="agent mode", **d)
    p.add_argument(
        "--base-url", help="OpenAI-compatible endpoint (default: the embedded local model)", **d
    )
    p.add_argument(
        "--model", help="model name at --base-url (the API key comes from OPENAI_API_KEY)", **d
    )
    p.add_argument("--local-model", help="embedded model: a registry name or a .gguf path", **d)
    p.add_argument("--no-persist", action="store_true", help="do not write the session ledger", **d)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voice-agent",
        description="An asynchronous real-time voice agent (FSM, tool futures, a shared ledger).",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0)
    _add_common(parser, sub=False)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("chat", help="talk to the agent by typing")
    _add_common(p)

    p = sub.add_parser("console", help="talk through the microphone and speaker")
    _add_common(p)
    p.add_argument("--input-device", help="input device index or name substring")
    p.add_argument("--output-device", help="output device index or name substring")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")

    p = sub.add_parser("run", help="answer a recorded call: WAV in, WAV out")
    _add_common(p)
    p.add_argument("--input", "-i", required=True, help="the caller's audio (WAV)")
    p.add_argument("--output", "-o", required=True, help="where to write the agent's audio (WAV)")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="pace input in real time (default: as fast as possible)",
    )
    p.add_argument(
        "--keys",
        metavar="T:KEYS[,T:KEYS]",
        help='keypad presses on the input\'s timeline, e.g. "4.0:4417#,21:1" (seconds:keys)',
    )

    p = sub.add_parser(
        "livekit",
        help="serve calls in LiveKit rooms (LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET)",
    )
    lk = p.add_subparsers(dest="livekit_command", required=True)
    for name, text in [
        ("start", "register a worker; the server dispatches rooms (production)"),
        ("dev", "register a worker in development mode (verbose, no load limit)"),
        ("connect", "join one room directly, without dispatch"),
    ]:
        q = lk.add_parser(name, help=text)
        _add_common(q)
        q.add_argument("--room", required=name == "connect", help="the room to join (connect)")
        q.add_argument(
            "--max-calls", type=int, help="concurrent calls per worker (default: worker.max_calls)"
        )
        q.add_argument(
            "--agent-name", default="", help="explicit dispatch name (empty: every new room)"
        )
        q.add_argument(
            "--skip-check", action="store_true", help="do not check the credentials at start-up"
        )

    p = sub.add_parser("phone", help="phone calls over a provider's media stream (Twilio, Telnyx)")
    ph = p.add_subparsers(dest="phone_command", required=True)
    q = ph.add_parser(
        "serve", help="serve the media-stream WebSocket endpoint (TLS: a reverse proxy)"
    )
    _add_common(q)
    q.add_argument("--host", help="interface to listen on (phone.host, default 127.0.0.1)")
    q.add_argument("--port", type=int, help="port (phone.port, default 8765)")
    q.add_argument("--path", help="WebSocket path (phone.path, default /media)")
    q.add_argument("--max-calls", type=int, help="concurrent calls (worker.max_calls)")

    p = sub.add_parser("say", help="speak a text into a WAV file (a caller's question for `run`)")
    _add_common(p)
    p.add_argument("text", help="what the caller says")
    p.add_argument("--output", "-o", required=True, help="the WAV file to write")

    p = sub.add_parser("bench", help="run benchmark scenarios against the oracle LLM")
    p.add_argument(
        "scenarios",
        nargs="*",
        help="scenario YAML files or folders of them (default: bench/scenarios)",
    )
    p.add_argument("--modes", default="sync,async", help="comma-separated modes to compare")
    p.add_argument("--json", dest="json_out", help="write results as JSON here")
    p.add_argument("--out", default="out/bench", help="directory for timeline pictures")
    p.add_argument("--repeat", type=int, default=1, help="runs per scenario and mode")
    p.add_argument("--schema", action="store_true", help="print the scenario JSON schema and exit")
    p.add_argument(
        "--realtime",
        action="store_true",
        help="run on real time (default: virtual time, a scenario takes milliseconds)",
    )
    p.add_argument(
        "--no-warmup", action="store_true", help="skip the untimed warm-up run before timing"
    )

    p = sub.add_parser("ledger", help="inspect recorded sessions")
    lsub = p.add_subparsers(dest="ledger_command", required=True)
    ps = lsub.add_parser("show", help="print a session readably (a directory: list its sessions)")
    ps.add_argument("file", help="a session file (.jsonl), or a sessions directory")
    ps.add_argument("--messages", action="store_true", help="print the LLM context as rendered")

    p = sub.add_parser("fsm", help="print a transition table (the agent's by default)")
    p.add_argument("--mermaid", action="store_true")
    p.add_argument(
        "--machine",
        choices=("agent", "voice_input"),
        default="agent",
        help="voice_input: what the audio input does with one speech segment",
    )

    sub.add_parser("models", help="list the installed models (speech and LLM)")

    p = sub.add_parser("config", help="print the effective configuration (secrets masked)")
    _add_common(p)
    return parser


def _cmd_ledger_show(args: argparse.Namespace) -> int:
    from fsm import MonotonicClock
    from ledger import Ledger, LedgerError, format_directory, format_session, load_jsonl

    path = Path(args.file)
    if path.is_dir():  # the sessions directory: list its sessions (hostile8)
        print(format_directory(path))
        return 0
    if not path.is_file():
        what = "is not a regular file" if path.exists() else "no such file or directory"
        print(
            f"voice-agent: {path}: {what} (give a session file, or the sessions directory "
            "to list its sessions)",
            file=sys.stderr,
        )
        return 2
    try:
        entries = load_jsonl(path)
    except LedgerError as exc:
        print(f"voice-agent: {exc}", file=sys.stderr)
        return 2
    print(format_session(entries))
    if args.messages:
        ledger = Ledger.from_entries(entries, MonotonicClock())
        print(json.dumps(ledger.render_messages(None), indent=2, ensure_ascii=False))
    return 0


def _cmd_fsm(args: argparse.Namespace) -> int:
    if getattr(args, "machine", "agent") == "voice_input":
        from .voice.utterance_fsm import UTTERANCE_MACHINE as machine
    else:
        from .agent_fsm import AGENT_MACHINE as machine

    print(machine.to_mermaid() if args.mermaid else machine.to_markdown())
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    rows: list[tuple[str, str, str, str]] = []
    try:
        from peripherals.models import list_models

        for m in list_models():
            size = f"{m.size_bytes / 1e6:.0f} MB" if m.size_bytes else "-"
            rows.append((m.kind, m.name, size, str(m.path)))
    except ImportError as exc:
        rows.append(("speech", "(voice extras not installed)", "-", str(exc)))
    try:
        from .local_llm.models import list_local_models

        for row in list_local_models():
            rows.append(("llm", row["name"], row["size"], row["where"]))
    except ImportError as exc:
        rows.append(("llm", "(local-llm extra not installed)", "-", str(exc)))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:>{width[2]}}  {r[3]}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    config = _config(args)
    data = config.model_dump(mode="json")
    data["llm"]["api_key"] = (
        "***" if config.llm.api_key.get_secret_value() not in ("", "none") else "(none)"
    )
    if data["llm"].get("base_url"):
        from ledger import mask_url_secrets

        data["llm"]["base_url"] = mask_url_secrets(data["llm"]["base_url"])
    import yaml

    print(yaml.safe_dump(data, sort_keys=False))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench.runner import main as bench_main

    return bench_main(args)


def _cmd_chat(args: argparse.Namespace) -> int:
    from .transports.text import run_chat

    return asyncio.run(run_chat(_config(args)))


def _cmd_console(args: argparse.Namespace) -> int:
    from .transports.console import main as console_main

    return console_main(_config(args), args)


def _cmd_livekit(args: argparse.Namespace) -> int:
    from .transports.livekit_worker import WorkerOptions
    from .transports.livekit_worker import main as livekit_main

    options = WorkerOptions(max_calls=args.max_calls, agent_name=args.agent_name)
    return livekit_main(
        _config(args),
        args.livekit_command,
        room=args.room,
        options=options,
        skip_check=args.skip_check,
    )


def _cmd_phone(args: argparse.Namespace) -> int:
    from .transports.phone_server import main as phone_main

    return phone_main(_config(args), args)


def _cmd_run(args: argparse.Namespace) -> int:
    from .transports.files import main as files_main

    return files_main(_config(args), args)


def _cmd_say(args: argparse.Namespace) -> int:
    from .say import say_to_wav

    try:
        seconds = asyncio.run(say_to_wav(_config(args), args.text, Path(args.output)))
    except (OSError, ValueError) as exc:
        print(f"voice-agent: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({seconds:.1f} s)")
    return 0


COMMANDS = {
    "chat": _cmd_chat,
    "console": _cmd_console,
    "run": _cmd_run,
    "livekit": _cmd_livekit,
    "phone": _cmd_phone,
    "say": _cmd_say,
    "bench": _cmd_bench,
    "ledger": _cmd_ledger_show,
    "fsm": _cmd_fsm,
    "models": _cmd_models,
    "config": _cmd_config,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status.

    Called without ``argv`` (the ``voice-agent`` script, ``python -m
    voice_agent.cli``) this is where the process ends: threads a tool left
    running get a short grace, then are named and the process ends anyway
    (``voice_agent.process_end``). Called with ``argv`` (from Python, tests) the
    caller owns the process and only the status is returned.
    """
    import threading

    from .process_end import end_process, ending_loops

    before = set(threading.enumerate())
    if argv is None:
        _terminate_as_interrupt()
        _open_closed_standard_streams()
    with ending_loops():
        status = _run_command(argv)
    return end_process(status, before) if argv is None else status


def _run_command(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    command = args.command or "console"
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _log_unraisable(args.verbose)
    try:
        return _dispatch(command, args)
    finally:
        sys.unraisablehook = previous_hook


def _log_unraisable(verbose: int) -> Any:
    """An error Python cannot raise (a tool's object whose ``__del__`` raises, a callback
    at garbage collection) is one warning line, not 'Exception ignored in' and a
    traceback on the user's terminal (the traceback with -vv) (hostile7)."""
    log = logging.getLogger("voice_agent")

    def hook(unraisable: Any) -> None:
        exc = unraisable.exc_value
        where = unraisable.err_msg or "Exception ignored in"
        log.warning(
            "%s %s: %s: %s",
            where,
            getattr(unraisable.object, "__qualname__", type(unraisable.object).__name__),
            type(exc).__name__,
            exc,
            exc_info=(unraisable.exc_type, exc, unraisable.exc_traceback) if verbose >= 2 else None,
        )

    return hook


def _dispatch(command: str, args: argparse.Namespace) -> int:
    from ledger import mask_url_secrets, redact_secrets

    if command == "console" and not hasattr(args, "list_devices"):
        args.input_device = args.output_device = None
        args.list_devices = False
    try:
        return COMMANDS[command](args)
    except ConfigError as exc:
        print(f"voice-agent: {mask_url_secrets(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last resort: a message and a status, never a bare traceback
        if isinstance(exc, BrokenPipeError) and _stdout_reader_left():
            return 141  # 128 + SIGPIPE: what the shell reports for a tool its pipe ended
        logging.getLogger("voice_agent").debug("unexpected error", exc_info=True)
        print(
            f"voice-agent: unexpected error: {type(exc).__name__}: {redact_secrets(str(exc))}"
            + ("" if args.verbose >= 2 else " (run with -vv for the traceback)"),
            file=sys.stderr,
        )
        return 1


def _open_closed_standard_streams() -> None:
    """A standard stream closed by whoever started the command (``<&-``, ``>&-``, a service
    manager without them): Python leaves ``sys.stdin``/``sys.stdout`` None and every
    command ended in "unexpected error: AttributeError: 'NoneType' object has no
    attribute 'isatty'" (hostile9). Each is opened on the null device, as a daemon's are:
    a closed input reads as empty (a chat ends at once, its session recorded), a closed
    output is discarded, which is said on standard error when there is one."""
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (the process's own)
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        if sys.stderr is not None:
            print(
                "voice-agent: standard output is closed: nothing will be shown "
                "(a session's record is in its ledger file)",
                file=sys.stderr,
            )
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115


def _terminate_as_interrupt() -> None:
    """SIGTERM (a service manager, ``kill``, a container's stop) and SIGHUP (the terminal
    closed; not when ``nohup`` ignores it) end a command as Ctrl-C does: the session
    closes, a write in flight gets its grace, the ledger records the end. Python's default
    ended the process at once, the ledger stopping mid-call (hostile7, hostile9)."""
    import signal

    from .process_end import ending_signals

    def terminate(signum: int, frame: Any) -> None:
        interrupt = signal.getsignal(signal.SIGINT)
        if callable(interrupt) and interrupt is not signal.default_int_handler:
            interrupt(signal.SIGINT, frame)  # asyncio.run's handler: cancel the main task
            return
        raise KeyboardInterrupt

    for signum in ending_signals():
        if signum != signal.SIGINT:
            with contextlib.suppress(ValueError, OSError):  # not the main thread: leave it
                signal.signal(signum, terminate)


def _stdout_reader_left() -> bool:
    """Standard output is a pipe whose reader has gone (``voice-agent fsm | head``): say
    nothing, as any Unix tool; the exit's flush then goes to /dev/null, not a traceback."""
    try:
        if not stat.S_ISFIFO(os.fstat(sys.stdout.fileno()).st_mode):
            return False
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        return False
    return True


class RedactingFormatter(logging.Formatter):
    """Log lines (tracebacks included) with card-like numbers and URL secrets masked."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        # The message (and its arguments) is masked, not the line's own timestamp: a
        # "2026-11-26 00:34:58" prefix reads like a digit run.
        from ledger import redact_secrets

        record.message = redact_secrets(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:  # type: ignore[no-untyped-def]  # noqa: N802
        from ledger import redact_secrets

        return redact_secrets(super().formatException(ei))


if __name__ == "__main__":
    sys.exit(main())
