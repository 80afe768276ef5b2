"""How to tell the user to run this program again, in a form that works when pasted.

After ``make run`` the command lives in ``.venv/bin/`` and is not on the
PATH, so a message saying "type ``voice-agent chat``" would fail when
copied. `command()` names the program as the user can actually type it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

PROGRAM = "voice-agent"


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
