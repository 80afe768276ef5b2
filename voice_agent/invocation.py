"""How to tell the user to run this program again, in a form that works when pasted.

After ``make run`` the command lives in ``.venv/bin/`` and is not on the
PATH, so a message saying "type ``voice-agent chat``" would fail when
copied. `command()` names the program as the user can actually type it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from pathlib import Path

PROGRAM = "voice-agent"
#: The options every command takes (cli._add_common), as (attribute, flag).
COMMON_OPTIONS = (
    ("config", "--config"),
    ("mode", "--mode"),
    ("base_url", "--base-url"),
    ("model", "--model"),
    ("local_model", "--local-model"),
)


def _shortest(path: Path) -> str:
    absolute = str(path.resolve())
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return absolute
    if not relative.startswith(".."):
        return relative if os.sep in relative else f".{os.sep}{relative}"
    return absolute


def command() -> str:
    """``voice-agent`` when that name on the PATH is this program, else its path.

    The path is relative to the current directory when that is shorter
    (``.venv/bin/voice-agent`` from the repository's root).
    """
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is None or script.name != PROGRAM:
        candidate = Path(sys.executable).parent / PROGRAM  # run as `python -m voice_agent.cli`
        script = candidate if candidate.is_file() else None
    if script is None:
        return f"{Path(sys.executable).name} -m voice_agent.cli"
    on_path = shutil.which(PROGRAM)
    if on_path and os.path.realpath(on_path) == os.path.realpath(script):
        return PROGRAM
    return _shortest(script)


def repeated_options(args: argparse.Namespace) -> str:
    """The common options the user gave (`COMMON_OPTIONS`, ``--no-persist``), shell-quoted
    with a leading space, so a suggested command keeps them: without a microphone, the
    console started with ``--config configs/customer_service_phone.yaml`` suggests ``chat
    --config configs/customer_service_phone.yaml``, not the demo agent's ``chat``."""
    words: list[str] = []
    for attribute, flag in COMMON_OPTIONS:
        value = getattr(args, attribute, None)
        if value:
            words += [flag, shlex.quote(str(value))]
    if getattr(args, "no_persist", False):
        words.append("--no-persist")
    return "".join(f" {w}" for w in words)
