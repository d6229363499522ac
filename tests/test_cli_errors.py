"""Issue 14, "Errors": one clear line for every mistake a newcomer makes (real console script)."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from tesengine.tes import TesClient, retry
from tesengine.tes import models as wire
from tesengine.tes.retry import RetryPolicy
from tests.fixtures.tes_server import ServedTes
from tests.support import CLI_SCRIPT, config_file, free_port, user_env
from tests.support import installed_cli as cli

(TESENGINE,) = CLI_SCRIPT


def one_line(result: subprocess.CompletedProcess[str], status: int = 2) -> str:
    """The single stderr line of a failed command (no traceback)."""
    assert result.returncode == status, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def post_task(served: ServedTes, task: wire.TesTask) -> str:
    request = urllib.request.Request(
        f"{served.api}/tasks",
        data=task.request_json(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(json.load(reply)["id"])


# --- an unreachable server ------------------------------------------------------------


def test_refused_on_first_contact_fails_within_seconds(tmp_path: Path) -> None:
    config = config_file(tmp_path, f"http://127.0.0.1:{free_port()}", tmp_path / "s")
    start = time.monotonic()
    result = cli("status", "abc", "--config", str(config), cwd=tmp_path)
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    assert elapsed < 8, elapsed  # was 43-52 s of retries
    assert "cannot reach the TES server (connection refused)" in result.stderr
    assert "stamina" not in result.stderr and "Traceback" not in result.stderr
    retries = [line for line in result.stderr.splitlines() if "retrying" in line]
    assert len(retries) <= 1  # two quick retries at most, one line per interval
    assert all(re.search(r"retrying GET http://\S+ \(attempt 2 of 9, in ", r) for r in retries)


@pytest.fixture
async def flaky_tes() -> AsyncIterator[Callable[[int], str]]:
    """A real HTTP TES stand-in whose first ``n`` answers per task are 503s."""
    failures: dict[str, int] = {}
    budget = {"n": 0}

    async def get_task(request: web.Request) -> web.Response:
        task_id = request.match_info["id"]
        failures[task_id] = failures.get(task_id, 0) + 1
        if failures[task_id] <= budget["n"]:
            return web.json_response({"error": "db down"}, status=503)
        doc = {"id": task_id, "state": "COMPLETE", "executors": []}
        return web.json_response(doc)

    app = web.Application()
    app.router.add_get("/ga4gh/tes/v1/tasks/{id}", get_task)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    def url(n: int) -> str:
        budget["n"] = n
        failures.clear()
        return f"http://127.0.0.1:{port}/ga4gh/tes/v1"

    yield url
    await runner.cleanup()


async def test_retry_lines_are_readable_and_throttled(
    flaky_tes: Callable[[int], str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.WARNING, logger="tesengine.tes")
    policy = RetryPolicy(retries=8, wait_initial=0.001, wait_max=0.002)
    monkeypatch.setattr(retry, "RETRY_LOG_INTERVAL", 0.0)  # every line: check their shape
    async with TesClient(flaky_tes(2), retry_policy=policy) as client:
        await client.get_task("t-1")
    lines = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    pattern = (
        r"retrying GET http://127\.0\.0\.1:\d+/ga4gh/tes/v1/tasks/t-1"
        r" \(attempt {n} of 9, in \d+\.\d s\): HTTP 503: db down"
        r"( \(\d+ more retries not shown\))?$"  # earlier tests' retries, in this process
    )
    assert len(lines) == 2
    for n, line in enumerate(lines, start=2):
        assert re.match(pattern.format(n=n), line), line
    assert "stamina.retry_scheduled" not in caplog.text

    # Fifty tasks retrying at once: at most one line per interval, then a count.
    caplog.clear()
    monkeypatch.setattr(retry, "RETRY_LOG_INTERVAL", 3600.0)
    async with TesClient(flaky_tes(3), retry_policy=policy) as client:
        for n in range(50):
            await client.get_task(f"many-{n}")
    shown = len([r for r in caplog.records if "retrying" in r.getMessage()])
    assert shown <= 1  # of 150 retries
    monkeypatch.setattr(retry, "RETRY_LOG_INTERVAL", 0.0)
    async with TesClient(flaky_tes(1), retry_policy=policy) as client:
        await client.get_task("after")
    last = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()][-1]
    assert last.endswith(f"({150 - shown} more retries not shown)"), last


# --- tracebacks where one line is promised --------------------------------------------


def test_serve_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(
            "serve", "--runtime", "noop", "--port", str(port), "--work-dir", str(tmp_path / "w"),
            cwd=tmp_path,
        )  # fmt: skip
    line = one_line(result)
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}: address already in use" in line


def _first_line_then_close(argv: list[str], cwd: Path) -> tuple[int, str]:
    """Like ``argv | head -1``: read one line, close the pipe, collect the exit status."""
    env = user_env(cwd / "cache")
    env.pop("PYTHONUNBUFFERED", None)  # a user's buffered stdout (unbuffered, a write may be cut)
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    stderr = proc.stderr.read()
    return proc.wait(timeout=60), stderr


def test_list_json_into_head_exits_quietly(tmp_path: Path, noop_tes: ServedTes) -> None:
    long_arg = "x" * 4096  # 120 tasks of 4 KiB each: far more than a pipe holds
    task = wire.TesTask(
        name="pipe-test", executors=[wire.Executor(image="a", command=["echo", long_arg])]
    )
    for _ in range(120):
        post_task(noop_tes, task)
    config = config_file(tmp_path, noop_tes.url, noop_tes.storage_dir)
    argv = [TESENGINE, "list", "--json", "--name-prefix", "pipe-test", "--limit", "120"]
    status, stderr = _first_line_then_close([*argv, "--config", str(config)], tmp_path)
    assert status == 141, stderr  # 128 + SIGPIPE, like `yes | head -1`
    assert stderr == ""


def test_logs_into_head_exits_quietly(tmp_path: Path, local_tes: ServedTes) -> None:
    config = config_file(tmp_path, local_tes.url, local_tes.storage_dir)
    run = cli("run", "--json", "--config", str(config), "--", "seq", "1", "300000", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    task_id = json.loads(run.stdout)["tasks"][0]["id"]
    argv = [TESENGINE, "logs", task_id, "--config", str(config)]
    status, stderr = _first_line_then_close(argv, tmp_path)
    assert status == 141, stderr
    assert "Traceback" not in stderr and "Error" not in stderr


# --- task files and flags -------------------------------------------------------------


TASK_FILE_TYPOS = """\
[[tasks]]
name = "a"
command = ["true"]
output = { x = "/out/x" }

[[tasks]]
name = "b"
command = ["true"]
inputs = { "/in/x" = 5 }
"""


def test_task_file_errors_name_the_key_and_suggest(tmp_path: Path) -> None:
    (tmp_path / "tasks.toml").write_text(TASK_FILE_TYPOS)
    config = config_file(tmp_path, f"http://127.0.0.1:{free_port()}", tmp_path / "s")
    result = cli("run", "--config", str(config), "--file", "tasks.toml", cwd=tmp_path)
    line = one_line(result)
    assert "tasks[0].output: unknown key (did you mean 'outputs'?)" in line
    assert (
        "tasks[1].inputs['/in/x']: expected a path, a URL, or"
        ' { from = "<task>.outputs.<name>" }' in line
    )
    assert "Extra inputs" not in line and "valid string" not in line
    assert not (tmp_path / "s").exists()  # nothing uploaded


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--input", "a.txt=/in/x", "--input", "b.txt=/in/x"],
            "--input: container path '/in/x' given twice ('a.txt' and 'b.txt')",
        ),
        (
            ["--output", "o=/out/a", "--output", "o=/out/b"],
            "--output: name 'o' given twice ('/out/a' and '/out/b')",
        ),
    ],
)
def test_duplicate_flags_are_errors(tmp_path: Path, flags: list[str], message: str) -> None:
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
    config = config_file(tmp_path, f"http://127.0.0.1:{free_port()}", tmp_path / "s")
    result = cli("run", "--config", str(config), *flags, "--", "true", cwd=tmp_path)
    assert message in one_line(result)


def test_list_state_names_the_valid_states(tmp_path: Path) -> None:
    line = one_line(cli("list", "--state", "bogus", cwd=tmp_path))
    assert "unknown state 'bogus'" in line
    assert all(state.value in line for state in wire.State)


def test_list_tag_without_equals(tmp_path: Path) -> None:
    assert "'foo': expected K=V" in one_line(cli("list", "--tag", "foo", cwd=tmp_path))


def test_stage_unsupported_scheme_like_run(tmp_path: Path) -> None:
    line = one_line(cli("stage", "ftp://user:hunter2@x/y", cwd=tmp_path))
    assert "unsupported URL scheme 'ftp' (use abfs, abfss, az, azure, file, gs, http," in line
    assert "hunter2" not in line


# --- the server's answers, in words -----------------------------------------------------


def test_status_of_an_unknown_task(tmp_path: Path, noop_tes: ServedTes) -> None:
    config = config_file(tmp_path, noop_tes.url, noop_tes.storage_dir)
    line = one_line(cli("status", "nosuch", "--config", str(config), cwd=tmp_path), 1)
    assert line == f"tesengine: no task 'nosuch' on {noop_tes.url}"


def test_wrong_password_names_url_scheme_and_user(
    tmp_path: Path, serve_tes: Callable[..., ServedTes]
) -> None:
    served = serve_tes(args=["--basic", "u:right-password"])
    auth = '[run.backends.default.auth]\ntype = "basic"\nusername = "u"\npassword = "wrong-pw"\n'
    config = config_file(tmp_path, served.url, served.storage_dir, auth=auth)
    line = one_line(cli("list", "--config", str(config), cwd=tmp_path), 1)
    assert line == (
        f"tesengine: the server refused the credentials for {served.url} (basic auth, user 'u')"
    )
    assert "wrong-pw" not in line


def test_unreadable_input_is_a_bad_task(tmp_path: Path, noop_tes: ServedTes) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ok.txt").write_text("fine")
    os.symlink("loop", data / "loop")  # unreadable even for root: ELOOP
    config = config_file(tmp_path, noop_tes.url, noop_tes.storage_dir)
    result = cli(
        "run", "--config", str(config), "--input", "data=/in/d", "--", "true", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr  # like a missing input, not 1
    assert "loop" in result.stderr and "Traceback" not in result.stderr
