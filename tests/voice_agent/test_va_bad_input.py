"""Bad input gets a message and a non-zero exit, never a traceback; valid odd input is accepted."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from ledger import entries as le
from voice_agent import cli
from voice_agent.config import ConfigError, load_config
from voice_agent.session import load_tools, open_session
from voice_agent.voice.wavio import WavError, check_writable, read_wav

DEAD_LLM = "http://127.0.0.1:9/v1"


# ---------------------------------------------------------------- tools modules
@pytest.fixture
def tools_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def broken(:\n    pass\n", r"'va_bad_mod\w*' has a syntax error at .*:1"),
        (
            "x = 1\nraise RuntimeError('backend not configured')\n",
            r"raised RuntimeError: backend not configured \(.*:2\)",
        ),
        ("import no_such_module_xyz\n", r"cannot import 'va_bad_mod\w*'"),
        ("registry = 42\n", "is not a ToolRegistry"),
    ],
)
def test_a_broken_tools_module_is_a_config_error_naming_it(tools_dir, source, message):
    name = f"va_bad_mod{abs(hash(source)) % 10_000}"
    (tools_dir / f"{name}.py").write_text(source)
    with pytest.raises(ConfigError, match=message):
        load_tools((f"{name}:registry",))


def test_two_tools_with_one_name_are_a_config_error_naming_both_modules(tools_dir):
    (tools_dir / "va_dupe_tools.py").write_text(
        "from voice_agent.tools import ToolRegistry\n"
        "registry = ToolRegistry()\n"
        "@registry.tool\n"
        "async def get_order_status(order_id: str) -> dict:\n"
        "    '''Shadow.'''\n"
        "    return {}\n"
    )
    with pytest.raises(ConfigError, match="two tools are named 'get_order_status'.*rename one"):
        load_tools(("voice_agent.demo_tools:registry", "va_dupe_tools:registry"))


# ---------------------------------------------------------------- configuration
def test_a_config_file_that_is_not_utf8_is_reported_with_its_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("agent:\n  persona: Ren\xe9e\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"line 2: not UTF-8 text \(byte 0xe9\)"):
        load_config(path, environ={})


@pytest.mark.parametrize("rate", ["0", "-16000", "1000000"])
def test_an_impossible_sample_rate_from_the_environment_is_refused(rate):
    with pytest.raises(ConfigError, match="voice.sample_rate"):
        load_config(environ={"VOICE_AGENT__VOICE__SAMPLE_RATE": rate})


@pytest.mark.parametrize(
    "environ",
    [
        {"OPENAI_API_KEY": "12345678"},
        {"VOICE_AGENT__LLM__API_KEY": "12345678"},
        {"VOICE_AGENT__LLM__API_KEY": "0123456"},  # YAML would read 0123456 as octal 42798
    ],
)
def test_an_all_digit_api_key_from_the_environment_is_kept_as_text(environ):
    config = load_config(environ=environ)
    assert config.llm.api_key.get_secret_value() == next(iter(environ.values()))


def test_config_prints_the_base_url_without_its_secrets(capsys):
    url = "https://alice:s3cr3t@llm.example.invalid/v1?api-key=KEY123&x=1"
    assert cli.main(["config", "--base-url", url]) == 0
    out = capsys.readouterr().out
    assert "s3cr3t" not in out and "KEY123" not in out
    assert "https://***@llm.example.invalid/v1?api-key=***&x=1" in out


def test_the_cli_answers_a_non_utf8_config_with_status_2_and_no_traceback(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"agent:\n  persona: \xff\n")
    assert cli.main(["config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("voice-agent: ") and "Traceback" not in err


def test_log_lines_mask_cards_and_url_secrets():
    import logging

    formatter = cli.RedactingFormatter("%(message)s")
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "tool failed: %r at %s",
        ("card 4111 1111 1111 1111", "https://u:p@h/v1?token=abc"),
        None,
    )
    line = formatter.format(record)
    assert "4111 1111" not in line and "u:p@" not in line and "token=abc" not in line
    stamped = cli.RedactingFormatter("%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    line = stamped.format(record)
    assert "[redacted" in line and line[:4].isdigit(), line  # the timestamp stays readable
    try:
        raise ValueError("card 4111 1111 1111 1111")
    except ValueError:
        import sys

        record.exc_info, record.exc_text = sys.exc_info(), None
    assert "4111 1111" not in formatter.format(record)


# ---------------------------------------------------------------- sessions directory
async def test_an_unusable_sessions_directory_fails_before_anything_starts(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    config = load_config(
        environ={"VOICE_AGENT__LEDGER__DIRECTORY": str(a_file / "sessions")},
        overrides={"llm": {"base_url": DEAD_LLM}},
    )
    from voice_agent.output import TextOutput

    with pytest.raises(ConfigError, match="ledger.directory: cannot create .*--no-persist"):
        async with open_session(config, TextOutput(io.StringIO())):
            pass


async def test_the_session_metadata_holds_the_endpoint_without_secrets(tmp_path):
    from ledger import load_jsonl
    from voice_agent.output import TextOutput

    url = "https://alice:s3cr3t@llm.example.invalid/v1?api-key=KEY123"
    config = load_config(
        environ={"VOICE_AGENT__LEDGER__DIRECTORY": str(tmp_path)},
        overrides={"llm": {"base_url": url, "prewarm": False}},
    )
    async with open_session(config, TextOutput(io.StringIO())) as session:
        started = session.ledger.entries[0]
        path = session.ledger_path
    assert isinstance(started, le.SessionStarted)
    assert "s3cr3t" not in json.dumps(started.meta) and "KEY123" not in json.dumps(started.meta)
    assert path is not None
    assert "s3cr3t" not in path.read_text() and load_jsonl(path)[0].type == "SessionStarted"


# ---------------------------------------------------------------- WAV input and output
def _pcm16(path: Path, rate: int = 16000, seconds: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    ints = (x * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(ints, channels).tobytes())
    return x


def _extensible_24bit(path: Path, x: np.ndarray, rate: int) -> None:
    """A WAVE_FORMAT_EXTENSIBLE 24-bit mono file, byte for byte as sox writes one."""
    ints = np.clip(np.round(x * (1 << 23)), -(1 << 23), (1 << 23) - 1).astype("<i4")
    pcm = b"".join(int(v).to_bytes(4, "little", signed=True)[:3] for v in ints)
    subformat_pcm = struct.pack("<IHH8s", 1, 0, 0x10, bytes.fromhex("800000aa00389b71"))
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, rate, rate * 3, 3, 24, 22, 24, 4) + subformat_pcm
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(pcm)) + pcm + (b"\0" if len(pcm) % 2 else b"")
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_a_24bit_wav_with_an_extensible_header_is_read(tmp_path):
    x = _pcm16(tmp_path / "src.wav", 22050)
    _extensible_24bit(tmp_path / "ext24.wav", x, 22050)
    y, rate = read_wav(tmp_path / "ext24.wav")
    assert rate == 22050 and len(y) == len(x)
    assert np.max(np.abs(y - x)) < 1e-4


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
def test_a_24bit_wav_written_by_sox_is_read(tmp_path):
    x = _pcm16(tmp_path / "src.wav", 16000, channels=2)
    subprocess.run(
        ["sox", str(tmp_path / "src.wav"), "-b", "24", str(tmp_path / "sox24.wav")], check=True
    )
    assert (tmp_path / "sox24.wav").read_bytes()[20:22] == b"\xfe\xff"  # extensible
    y, rate = read_wav(tmp_path / "sox24.wav")
    assert rate == 16000 and len(y) == len(x) and np.max(np.abs(y - x)) < 1e-3


def test_a_wav_cut_at_an_odd_byte_is_read_up_to_its_last_whole_frame(tmp_path):
    x = _pcm16(tmp_path / "a.wav")
    data = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:-1001])
    y, rate = read_wav(tmp_path / "cut.wav")
    assert rate == 16000 and len(y) == len(x) - 501
    assert np.max(np.abs(y - x[: len(y)])) < 1e-4


def _with_rate(path: Path, rate: int) -> None:
    data = bytearray(path.read_bytes())
    data[24:28] = struct.pack("<I", rate)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _with_rate(p, 0), "unusable sample rate 0 Hz"),
        (lambda p: p.write_bytes(b"ID3\x03not a wav at all"), "not a PCM WAV file"),
        (lambda p: p.write_bytes(p.read_bytes()[:30]), "format chunk|no audio data"),
    ],
)
def test_an_unusable_wav_is_a_wav_error_saying_why(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    _pcm16(path)
    make(path)
    with pytest.raises(WavError, match=message):
        read_wav(path)


def test_a_directory_or_a_missing_file_as_input_is_a_wav_error(tmp_path):
    with pytest.raises(WavError, match="is a directory"):
        read_wav(tmp_path)
    with pytest.raises(WavError, match="no such file"):
        read_wav(tmp_path / "missing.wav")


def test_an_unwritable_output_is_found_before_the_call_runs(tmp_path):
    with pytest.raises(WavError, match="is a directory"):
        check_writable(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WavError, match="cannot write the output there"):
        check_writable(blocker / "out.wav")
    assert check_writable(tmp_path / "new" / "out.wav") == tmp_path / "new" / "out.wav"
    assert not (tmp_path / "new" / "out.wav").exists()  # the check leaves nothing behind


def test_voice_agent_run_rejects_an_unwritable_output_at_once(tmp_path, capsys):
    good = tmp_path / "in.wav"
    _pcm16(good)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status = cli.main(
        [
            "run",
            "--base-url",
            DEAD_LLM,
            "--no-persist",
            "-i",
            str(good),
            "-o",
            str(blocker / "o.wav"),
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and "cannot write the output there" in err and "Traceback" not in err


async def test_a_full_disk_mid_session_becomes_a_note_and_the_file_catches_up(
    tmp_path, monkeypatch
):
    import errno
    import os

    from ledger import entries as le
    from ledger import load_jsonl
    from voice_agent.output import TextOutput

    config = load_config(
        environ={"VOICE_AGENT__LEDGER__DIRECTORY": str(tmp_path)},
        overrides={"llm": {"base_url": DEAD_LLM, "prewarm": False}},
    )
    real_write = os.write
    full = {"on": False}

    def write(fd, data):
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr("ledger.persist.os.write", write)
    async with open_session(config, TextOutput(io.StringIO())) as session:
        full["on"] = True
        session.ledger.append(le.UserUtterance(turn_id=1, text="while the disk is full"))
        full["on"] = False
        session.ledger.append(le.UserUtterance(turn_id=2, text="after"))
        path = session.ledger_path
    notes = [e.text for e in session.ledger.entries if isinstance(e, le.Note)]
    assert any("No space left" in n and "the call goes on" in n for n in notes)
    assert any("nothing was lost" in n for n in notes)
    assert path is not None
    assert len(load_jsonl(path)) == len(session.ledger.entries)


def test_output_piped_into_a_reader_that_left_ends_quietly(tmp_path: Path) -> None:
    """``voice-agent fsm | head -1``: the reader leaves before the output is written; the
    command says nothing more (no "unexpected error", no traceback) and reports SIGPIPE."""
    import os
    import sys

    root = Path(__file__).resolve().parents[2]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone
    try:
        done = subprocess.run(
            [sys.executable, "-m", "voice_agent.cli", "fsm"],
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
    finally:
        os.close(write_end)
    assert done.stderr == "" and done.returncode == 141, (done.returncode, done.stderr)
