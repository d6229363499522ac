"""The embedded default as users meet it: concurrent runs, crashes, task commands, gc.

Every test runs the real console script in subprocesses that share one fresh
cache home (so one ``~/.cache/tesengine/embedded``) and have no configuration.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import run_cli, user_env, wait_until

PYTHON = sys.executable


def env_of(tmp_path: Path) -> dict[str, str]:
    return user_env(tmp_path / "cache")


def root_of(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "tesengine" / "embedded"


def tesengine(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, cwd=tmp_path, env=env_of(tmp_path), timeout=timeout)


def start(tmp_path: Path, *args: str, log: str) -> subprocess.Popen[bytes]:
    """``tesengine ARGS`` in the background, stdout and stderr into files named ``log``."""
    out = (tmp_path / f"{log}.out").open("wb")
    err = (tmp_path / f"{log}.err").open("wb")
    with out, err:
        return subprocess.Popen(
            [PYTHON, "-m", "tesengine", *args],
            cwd=tmp_path,
            env=env_of(tmp_path),
            stdout=out,
            stderr=err,
        )


def listed(tmp_path: Path, *args: str) -> list[tuple[str, str, str]]:
    """``tesengine list`` as (id, state, name) rows."""
    result = tesengine(tmp_path, "list", *args)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    return [(row[0], row[1], row[2] if len(row) > 2 else "") for row in rows]


def running(tmp_path: Path, name: str) -> str | None:
    """The id of the task ``name`` once a live run's server says it is RUNNING, else None.

    Asks the servers over HTTP (their URLs are in ``runs/*/url``): polling with a
    CLI process per check would cost seconds each.
    """
    for url_file in (root_of(tmp_path) / "runs").glob("*/url"):
        query = urllib.parse.urlencode({"name_prefix": name, "view": "MINIMAL"})
        try:
            url = url_file.read_text().strip()
            token = (url_file.parent / "token").read_text().strip()
            request = urllib.request.Request(
                f"{url}/ga4gh/tes/v1/tasks?{query}", headers={"Authorization": f"Bearer {token}"}
            )
            with urllib.request.urlopen(request, timeout=5) as reply:
                tasks = json.load(reply).get("tasks", [])
        except (OSError, ValueError):
            continue  # the run is starting or ending
        for task in tasks:
            if task["state"] == "RUNNING":
                return str(task["id"])
    return None


def task_file(path: Path, prefix: str, count: int) -> Path:
    path.write_text(
        "".join(
            f'[[tasks]]\nname = "{prefix}{i}"\n'
            f'command = ["sh", "-c", "sleep 0.3; echo {prefix}{i} > /out/o.txt"]\n'
            'outputs = { o = "/out/o.txt" }\n\n'
            for i in range(count)
        )
    )
    return path


@pytest.mark.slow  # several CLI processes, ~2 s each on a loaded 2-core machine
def test_two_concurrent_runs_are_independent_and_both_succeed(tmp_path: Path) -> None:
    procs = [
        start(tmp_path, "run", "--file", str(task_file(tmp_path / f"{p}.toml", p, 6)), log=p)
        for p in ("a", "b")
    ]
    for proc, name in zip(procs, ("a", "b"), strict=True):
        assert proc.wait(timeout=120) == 0, (tmp_path / f"{name}.err").read_text()
    for name in ("a", "b"):
        out = (tmp_path / f"{name}.out").read_text()
        for i in range(6):
            assert f"{name}{i}: COMPLETE" in out
            assert f"| {name}{i}" in out  # each read its own output, not the other's
    runs = sorted((root_of(tmp_path) / "runs").iterdir())
    assert len(runs) == 2  # one server work directory per process
    rows = listed(tmp_path)
    assert sorted(name for _, _, name in rows) == sorted(f"{p}{i}" for p in "ab" for i in range(6))
    assert {state for _, state, _ in rows} == {"COMPLETE"}


@pytest.mark.slow  # several CLI processes, ~2 s each on a loaded 2-core machine
def test_a_killed_run_never_breaks_the_next_one(tmp_path: Path) -> None:
    victim = start(tmp_path, "run", "--name", "victim", "--", "sleep", "60", log="victim")
    try:
        wait_until(lambda: running(tmp_path, "victim") is not None, what="victim RUNNING")
        task_id = running(tmp_path, "victim")
        assert task_id is not None
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    after = tesengine(tmp_path, "run", "--name", "after", "--", "echo", "fine")
    assert after.returncode == 0, after.stderr
    assert after.stdout == "fine\n"
    status = tesengine(tmp_path, "status", task_id, "--json")
    assert status.returncode == 0, status.stderr
    # settled, not left RUNNING
    assert json.loads(status.stdout)["tasks"][0]["state"] == "SYSTEM_ERROR"
    logs = tesengine(tmp_path, "logs", task_id, "--json")
    assert logs.returncode == 0, logs.stderr
    runs = sorted((root_of(tmp_path) / "runs").iterdir())
    assert len(runs) == 2
    assert not any((run / "work" / "tasks").exists() for run in runs)  # sandboxes removed


@pytest.mark.slow  # several CLI processes, ~2 s each on a loaded 2-core machine
def test_task_commands_find_a_finished_runs_tasks(tmp_path: Path) -> None:
    result = tesengine(tmp_path, "run", "--json", "--name", "hello", "--", "echo", "hi there")
    assert result.returncode == 0, result.stderr
    (task,) = json.loads(result.stdout)["tasks"]
    status = tesengine(tmp_path, "status", task["id"])
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"{task['id']}  COMPLETE  hello")
    logs = tesengine(tmp_path, "logs", task["id"])
    assert logs.returncode == 0, logs.stderr
    assert "hi there\n" in logs.stdout
    assert (task["id"], "COMPLETE", "hello") in listed(tmp_path, "--state", "COMPLETE")
    assert listed(tmp_path, "--state", "RUNNING") == []
    missing = tesengine(tmp_path, "status", "nosuch")
    assert missing.returncode == 1
    assert "no task 'nosuch' in the embedded store" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_cancel_reaches_a_live_embedded_run(tmp_path: Path) -> None:
    proc = start(tmp_path, "run", "--name", "sleeper", "--", "sleep", "60", log="sleeper")
    try:
        wait_until(lambda: running(tmp_path, "sleeper") is not None, what="sleeper RUNNING")
        task_id = running(tmp_path, "sleeper")
        assert task_id is not None
        cancel = tesengine(tmp_path, "cancel", task_id)
        assert cancel.returncode == 0, cancel.stderr
        assert proc.wait(timeout=30) == 1  # the run saw its task canceled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "CANCELED" in (tmp_path / "sleeper.err").read_text()
    status = tesengine(tmp_path, "status", task_id, "--json")
    assert json.loads(status.stdout)["tasks"][0]["state"] == "CANCELED"


@pytest.mark.slow  # several CLI processes, ~2 s each on a loaded 2-core machine
def test_gc_removes_finished_runs_outputs_and_stale_downloads(tmp_path: Path) -> None:
    done = tesengine(
        tmp_path, "run", "--name", "old", "--output", "n=/out/n.txt", "--", "sh", "-c",
        "echo 1 > /out/n.txt",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    root = root_of(tmp_path)
    assert any((root / "storage" / "outputs").iterdir())
    assert any((root / "cache" / "outputs" / "files").iterdir())
    kept = tesengine(tmp_path, "gc", "--older-than", "1d")
    assert kept.returncode == 0, kept.stderr
    assert "removed 0 finished run(s)" in kept.stdout
    assert len(list((root / "runs").iterdir())) == 1
    live = start(tmp_path, "run", "--name", "live", "--", "sleep", "60", log="live")
    try:
        wait_until(lambda: running(tmp_path, "live") is not None, what="live RUNNING")
        dry = tesengine(tmp_path, "gc", "--dry-run")
        # n.txt, and the executor's stdout and stderr that run printed
        assert "would remove 1 finished run(s) (1 tasks), 3 cached download(s)" in dry.stdout
        assert len(list((root / "runs").iterdir())) == 2
        gc = tesengine(tmp_path, "gc")
        assert gc.returncode == 0, gc.stderr
        assert "removed 1 finished run(s) (1 tasks), 3 cached download(s)" in gc.stdout
        assert not any(p.name.startswith("old-") for p in (root / "storage" / "outputs").iterdir())
        assert not any((root / "cache" / "outputs" / "files").iterdir())
        assert running(tmp_path, "live") is not None  # the live run was not touched
        assert len(list((root / "runs").iterdir())) == 1
    finally:
        live.send_signal(signal.SIGINT)
        live.wait(timeout=30)
    bad = tesengine(tmp_path, "gc", "--older-than", "soon")
    assert bad.returncode == 2
    assert "--older-than 'soon': expected N, Ns, Nm, Nh or Nd" in bad.stderr


HOSTILE = r"printf 'a\033]0;pwned\007b\033[2Jc\n'"


def on_a_terminal(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run ``tesengine ARGS`` with stdout and stderr on a pseudo-terminal."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [PYTHON, "-m", "tesengine", *args],
        cwd=tmp_path,
        env=env_of(tmp_path),
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_logs_make_escapes_visible_on_a_terminal_only(tmp_path: Path) -> None:
    result = tesengine(tmp_path, "run", "--json", "--", "sh", "-c", HOSTILE)
    assert result.returncode == 0, result.stderr
    (task,) = json.loads(result.stdout)["tasks"]
    piped = tesengine(tmp_path, "logs", task["id"])
    assert "a\x1b]0;pwned\x07b\x1b[2Jc\n" in piped.stdout  # a file gets the bytes as they are
    status, shown = on_a_terminal(tmp_path, "logs", task["id"])
    assert status == 0, shown
    assert "a\\x1b]0;pwned\\x07b\\x1b[2Jc\r\n" in shown  # the tty adds the \r
    assert "\x1b]0;pwned" not in shown and "\x1b[2J" not in shown


def test_failure_tail_makes_escapes_visible_on_a_terminal(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.json"  # JSON: the shell escapes need no TOML quoting
    command = ["sh", "-c", f"{HOSTILE} >&2; exit 4"]
    tasks.write_text(json.dumps({"tasks": [{"name": "t", "command": command}]}))
    status, shown = on_a_terminal(tmp_path, "run", "--file", str(tasks))
    assert status == 1, shown
    assert "stderr | a\\x1b]0;pwned\\x07b\\x1b[2Jc" in shown
    assert "\x1b]0;pwned" not in shown
    # One task given by flags: its full stderr is printed, made visible the same way.
    status, shown = on_a_terminal(tmp_path, "run", "--", "sh", "-c", f"{HOSTILE} >&2; exit 4")
    assert status == 1, shown
    assert "a\\x1b]0;pwned\\x07b\\x1b[2Jc" in shown
    assert "\x1b]0;pwned" not in shown


def test_make_visible_escapes_every_control_but_newline_and_tab() -> None:
    from tesengine.cli.safe_text import make_visible

    text = "a\tb\nc\x1b[31md\x07e\x00f\x7fg\x9bh\u202ei\u00e9"
    assert make_visible(text) == "a\tb\nc\\x1b[31md\\x07e\\x00f\\x7fg\\x9bh\\u202ei\u00e9"


def test_a_live_embedded_server_refuses_other_local_users(tmp_path: Path) -> None:
    """Loopback is shared by every local user: the run's server wants its own token."""
    victim = start(tmp_path, "run", "--name", "mine", "--", "sleep", "60", log="mine")
    try:
        wait_until(lambda: running(tmp_path, "mine") is not None, what="task RUNNING")
        (run,) = [p.parent for p in (root_of(tmp_path) / "runs").glob("*/url")]
        url = (run / "url").read_text().strip()
        assert (run / "token").stat().st_mode & 0o077 == 0  # the owner's secret alone
        hostile = urllib.request.Request(
            f"{url}/ga4gh/tes/v1/tasks",
            data=json.dumps({"executors": [{"image": "x", "command": ["id"]}]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(hostile, timeout=10)
        assert refused.value.code == 401
        # The owner's own commands find the token and reach the live server.
        assert [row[2] for row in listed(tmp_path)] == ["mine"]
        token = (run / "token").read_text().strip()
    finally:
        victim.kill()
        victim.wait()
    printed = (tmp_path / "mine.err").read_text() + (tmp_path / "mine.out").read_text()
    assert len(token) > 30 and token not in printed
