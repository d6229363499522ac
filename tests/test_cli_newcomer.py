"""A newcomer's first mistakes, on the real console script: each is one line on
stderr naming the flag and the offending value, exit status 2, no traceback,
and nothing started, uploaded or submitted for a command that cannot succeed."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from tests.support import CLI_SCRIPT, user_env
from tests.support import installed_cli as cli
from tests.test_cli_errors import one_line

EMBEDDED_NOTE = "embedded local TES server"


def embedded_root(tmp_path: Path) -> Path:
    """Where a run with no configuration keeps its servers (``user_env``'s cache)."""
    return tmp_path / "cache" / "tesengine" / "embedded"


# --- tesengine run: checked before the embedded server starts ---------------------------


@pytest.mark.parametrize("where", ["under-a-file", "a-file"])
def test_download_dir_that_cannot_be_made_fails_before_anything_starts(
    tmp_path: Path, where: str
) -> None:
    (tmp_path / "afile").write_text("not a directory\n")
    dest = "afile/out" if where == "under-a-file" else "afile"
    line = one_line(cli("run", "--download", dest, "--", "echo", "hi", cwd=tmp_path))
    assert line.startswith(f"tesengine: --download {dest}: ")
    assert "afile is not a directory" in line or line.endswith("not a directory")
    assert not embedded_root(tmp_path).exists()  # no server, so nothing submitted


def test_bad_input_fails_before_the_embedded_server_starts(tmp_path: Path) -> None:
    absent = tmp_path / "absent.txt"
    result = cli("run", "--input", f"{absent}=/in/x", "--", "cat", "/in/x", cwd=tmp_path)
    line = one_line(result)
    where = "task 'tesengine-run': inputs['/in/x']"
    assert line == f"tesengine: {where}: local path does not exist: {absent}"
    assert EMBEDDED_NOTE not in result.stderr
    assert not embedded_root(tmp_path).exists()


def test_a_task_file_with_one_bad_task_runs_none(tmp_path: Path) -> None:
    (tmp_path / "text.txt").write_text("a b c\n")
    (tmp_path / "tasks.toml").write_text(
        '[[tasks]]\nname = "good"\ncommand = ["cat", "/in/t"]\ninputs = { "/in/t" = "text.txt" }\n'
        'outputs = { o = "/out/o/" }\n'
        '[[tasks]]\nname = "later"\ncommand = ["ls", "/in/o"]\n'
        'inputs = { "/in/o" = { from = "good.outputs.o" } }\n'
        '[[tasks]]\nname = "bad"\ncommand = ["cat", "/in/x"]\ninputs = { "/in/x" = "absent" }\n'
    )
    result = cli("run", "--file", "tasks.toml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and EMBEDDED_NOTE not in result.stderr
    head, problem = result.stderr.strip().splitlines()  # the other two tasks are fine
    assert head == "tesengine: 1 of 3 tasks are invalid; none was submitted:"
    assert problem.startswith("  tasks[2]: task 'bad': inputs['/in/x']: local path does not exist")
    assert not embedded_root(tmp_path).exists()  # "good" was not run: nothing uploaded


def test_a_mistyped_option_is_blamed_on_its_command_with_the_one_meant(tmp_path: Path) -> None:
    line = one_line(cli("run", "--inptu", "x=/in/x", "--", "true", cwd=tmp_path))
    assert line == (
        "tesengine run: error: unrecognized arguments: --inptu"
        " (did you mean --input?) (see tesengine run --help)"
    )
    line = one_line(cli("config", "check", "--bakend", "x", cwd=tmp_path))
    assert "tesengine config check: error: unrecognized arguments: --bakend" in line
    assert "(did you mean --backend?)" in line


# --- tesengine serve: its flags, checked before the work dir is made --------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("foo://bar", "unsupported URL scheme 'foo'"),
        ("http://example.org/x", "unsupported URL scheme 'http'"),  # read-only
        ("s3://", "no bucket in URL"),
        ("/tmp/x", "not a URL (a local folder is written file:///tmp/x)"),
    ],
)
def test_serve_storage_that_cannot_be_used(tmp_path: Path, url: str, why: str) -> None:
    result = cli("serve", "--port", "0", "--storage", url, cwd=tmp_path, timeout=30)
    line = one_line(result)
    assert line.startswith(f"tesengine: --storage {url}: ")
    assert why in line
    assert not (tmp_path / "tesengine-server").exists()


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["--work-dir", "afile/w"], "tesengine: --work-dir afile/w: afile is not a directory"),
        (["--storage", "file://{tmp}/afile/s"], "tesengine: --storage {tmp}/afile/s: "),
        (["--allow-dir", "{tmp}/absent"], "tesengine: --allow-dir {tmp}/absent: not a directory"),
        (["--port", "99999"], "tesengine serve: error: argument --port: 99999: a port is 0-65535"),
        (["--prot", "1"], "tesengine serve: error: unrecognized arguments: --prot 1 (did you"),
    ],
)
def test_serve_flags_that_cannot_work_name_the_flag(
    tmp_path: Path, args: list[str], start: str
) -> None:
    (tmp_path / "afile").write_text("not a directory\n")
    given = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    line = one_line(cli("serve", "--port", "0", *given, cwd=tmp_path, timeout=30))
    assert line.startswith(start.replace("{tmp}", str(tmp_path))), line


def test_serve_says_where_its_work_dir_is(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [*CLI_SCRIPT, "serve", "--port", "0", "--runtime", "noop"],
        cwd=tmp_path,
        env=user_env(tmp_path / "cache"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(60, proc.kill)  # a silent server must not hang the suite
    watchdog.start()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith("tesengine serve: listening on http://")
        line = proc.stderr.readline()
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(timeout=30)
    work = tmp_path / "tesengine-server"
    assert line.startswith(f"  work dir: {work} (created), storage: {(work / 'storage').as_uri()}")


# --- stage, hash, list ------------------------------------------------------------------


def test_stage_without_a_config_says_to_give_one(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    line = one_line(cli("stage", "f", cwd=tmp_path, env=user_env(tmp_path / "cache")))
    assert line.startswith("tesengine: no configuration found (searched --config, ")
    assert "give --config FILE" in line


def test_hash_of_a_missing_path_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    result = cli("hash", "f", str(tmp_path / "absent"), cwd=tmp_path)
    assert one_line(result) == f"tesengine: {tmp_path / 'absent'}: no such file or directory"
    assert result.stdout.endswith("  file  f\n")  # the other path is still hashed


def test_list_limit_must_be_positive(tmp_path: Path) -> None:
    line = one_line(cli("list", "--limit", "0", cwd=tmp_path))
    assert line.startswith("tesengine list: error: argument --limit: 0: must be at least 1")
