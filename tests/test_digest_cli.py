"""``tesengine hash``: b3sum-like lines, per-path errors, exit status, progress bar."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from blake3 import blake3

from tesengine.cli import hash_cmd
from tesengine.cli.main import main
from tesengine.digest import EMPTY_DIRECTORY


def test_prints_hex_kind_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_bytes(b"hello world!")
    (tmp_path / "d").mkdir()
    status = main(["hash", "--cache-dir", str(tmp_path / "c"), str(tmp_path / "f"), "d"])
    out, err = capsys.readouterr()
    assert status == 2  # "d" is relative to the working directory, which lacks it: bad input
    assert out.splitlines() == [f"{blake3(b'hello world!').hexdigest()}  file  {tmp_path / 'f'}"]
    assert "tesengine: " in err and "d: no such file or directory" in err


def test_directory_line_and_success(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["hash", "--no-cache", "empty"]) == 0
    assert capsys.readouterr().out == f"{EMPTY_DIRECTORY.hex}  directory  empty\n"


def test_progress_bar_does_not_disturb_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hash_cmd, "PROGRESS_DELAY", 0.0)
    for i in range(50):
        (tmp_path / f"f{i}").write_bytes(bytes([i]) * 1000)
    paths = [str(tmp_path / f"f{i}") for i in range(50)]
    assert main(["hash", "--progress", "always", "--no-cache", *paths]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[2] for line in lines] == paths  # order of the arguments
    assert lines[7].split()[0] == blake3(bytes([7]) * 1000).hexdigest()


def test_exit_status_of_the_real_command(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "-m", "tesengine", "hash", "--no-cache", str(fifo)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2  # bad input, as the README's exit status table says
    assert proc.stdout == ""
    assert f"{fifo}: cannot hash a FIFO" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_thread_count_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash", "--threads", "0", "x"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
