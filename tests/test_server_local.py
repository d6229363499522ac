"""``tesengine serve`` as a real subprocess: local (bubblewrap) runtime, py-tes as the client."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import tes

from tests.fixtures.s3 import S3Server
from tests.fixtures.tes_server import ServedTes
from tests.support import wait_until

FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def client(served: ServedTes) -> tes.HTTPClient:
    return tes.HTTPClient(served.url, timeout=10)


def run(served: ServedTes, task: tes.Task, timeout: float = 30.0) -> tes.Task:
    cli = client(served)
    task_id = cli.create_task(task)
    return wait_final(cli, task_id, timeout)


def wait_final(cli: tes.HTTPClient, task_id: str, timeout: float = 30.0) -> tes.Task:
    result: dict[str, Any] = {}

    def done() -> bool:
        result["task"] = cli.get_task(task_id, view="FULL")
        return result["task"].state in FINAL

    wait_until(done, timeout=timeout, what=f"task {task_id} to finish")
    return result["task"]


def sh(script: str, **kw: Any) -> tes.Executor:
    return tes.Executor(image="debian:stable", command=["sh", "-c", script], **kw)


def test_pytes_round_trip_with_inputs_and_outputs(local_tes: ServedTes) -> None:
    host_input = local_tes.work_dir.parent / "inputs" / "greeting.txt"
    host_input.write_text("hello from the host\n")
    out_url = (local_tes.storage_dir / "roundtrip" / "upper.txt").as_uri()
    task = tes.Task(
        name="roundtrip",
        tags={"suite": "local"},
        inputs=[
            tes.Input(url=host_input.as_uri(), path="/data/in/greeting.txt"),
            tes.Input(content="inline\n", path="/data/in/inline.txt"),
        ],
        outputs=[tes.Output(url=out_url, path="/data/out/upper.txt")],
        executors=[
            sh("cat /data/in/greeting.txt /data/in/inline.txt | tr a-z A-Z > /data/out/upper.txt"),
            sh("echo second; echo oops >&2; pwd", workdir="/data/out", env={"X": "1"}),
        ],
    )
    cli = client(local_tes)
    task_id = cli.create_task(task)
    done = wait_final(cli, task_id)
    assert done.state == "COMPLETE", done.logs
    assert (local_tes.storage_dir / "roundtrip" / "upper.txt").read_text() == (
        "HELLO FROM THE HOST\nINLINE\n"
    )
    log = done.logs[0]
    assert [e.exit_code for e in log.logs] == [0, 0]
    assert log.logs[1].stdout == "second\n/data/out\n" and log.logs[1].stderr == "oops\n"
    assert log.outputs[0].size_bytes == len("HELLO FROM THE HOST\nINLINE\n")
    listed = cli.list_tasks(view="MINIMAL")
    assert task_id in {t.id for t in listed.tasks}
    basic = cli.get_task(task_id, view="BASIC")
    assert basic.logs[0].logs[0].stdout is None
    cli.cancel_task(task_id)  # finished: idempotent, state unchanged
    assert cli.get_task(task_id, view="MINIMAL").state == "COMPLETE"


def test_sandbox_keeps_the_host_read_only(local_tes: ServedTes, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    script = (
        f"echo pwned > {victim}; echo $? ; echo x > /usr/x; echo $?; "
        "echo x > /etc/x; echo $?; cat /etc/shadow | wc -c; ls /root 2>&1 | head -1; "
        "echo ok > /tmp/scratch && cat /tmp/scratch"
    )
    done = run(local_tes, tes.Task(executors=[sh(script)]))
    assert done.state == "COMPLETE", done.logs
    lines = done.logs[0].logs[0].stdout.splitlines()
    assert lines[0] != "0" and lines[1] != "0" and lines[2] != "0", lines
    assert lines[3] == "0", "shadow is masked"
    assert lines[-1] == "ok"
    assert not victim.exists()


def test_stdin_volumes_and_env(local_tes: ServedTes) -> None:
    task = tes.Task(
        inputs=[tes.Input(content="b\na\n", path="/data/lines")],
        volumes=["/vol/shared"],
        executors=[
            sh("sort > /vol/shared/sorted", stdin="/data/lines"),
            sh('cat /vol/shared/sorted; echo "$GREETING"', env={"GREETING": "hi there"}),
        ],
    )
    done = run(local_tes, task)
    assert done.state == "COMPLETE", done.logs
    assert done.logs[0].logs[1].stdout == "a\nb\nhi there\n"


def test_missing_bubblewrap_says_how_to_install(tmp_path: Path) -> None:
    import asyncio

    from tesengine.server.runtime import RuntimeUnavailable
    from tesengine.server.runtime.local import LocalRuntime

    with pytest.raises(RuntimeUnavailable, match="apt-get install bubblewrap"):
        asyncio.run(LocalRuntime(bwrap=str(tmp_path / "no-bwrap")).check())


def test_file_inputs_outside_allowed_dirs_are_refused(local_tes: ServedTes) -> None:
    task = tes.Task(
        inputs=[tes.Input(url="file:///etc/shadow", path="/data/shadow")],
        executors=[sh("cat /data/shadow")],
    )
    with pytest.raises(requests.HTTPError) as info:
        client(local_tes).create_task(task)
    error = info.value.response.json()["error"]
    assert error.startswith("inputs[0].url: file:///etc/shadow is outside the directories")
    assert local_tes.storage_dir.resolve().as_uri() in error
    out = tes.Task(
        outputs=[tes.Output(url="file:///etc/evil", path="/data/o")],
        executors=[sh("echo x > /data/o")],
    )
    with pytest.raises(requests.HTTPError, match="400"):
        client(local_tes).create_task(out)
    assert not Path("/etc/evil").exists()


def test_ignore_error_and_executor_error(local_tes: ServedTes) -> None:
    task = tes.Task(executors=[sh("exit 3", ignore_error=True), sh("echo after")])
    done = run(local_tes, task)
    assert done.state == "COMPLETE"
    assert [e.exit_code for e in done.logs[0].logs] == [3, 0]
    task = tes.Task(executors=[sh("echo bad >&2; exit 4"), sh("echo never")])
    done = run(local_tes, task)
    assert done.state == "EXECUTOR_ERROR"
    assert [e.exit_code for e in done.logs[0].logs] == [4]
    assert done.logs[0].logs[0].stderr == "bad\n"


def test_wildcard_directory_and_stream_outputs(local_tes: ServedTes) -> None:
    base = local_tes.storage_dir / "wild"
    script = (
        "mkdir -p /out/d/sub; echo 1 > /out/a.txt; echo 22 > /out/b.txt; echo no > /out/c.log; "
        "echo deep > /out/d/sub/x; echo to-stdout"
    )
    task = tes.Task(
        outputs=[
            tes.Output(url=(base / "txt").as_uri(), path="/out/*.txt", path_prefix="/out/"),
            tes.Output(url=(base / "dir").as_uri(), path="/out/d", type="DIRECTORY"),
            tes.Output(url=(base / "stdout").as_uri(), path="/logs/stdout"),
        ],
        executors=[sh(script, stdout="/logs/stdout")],
    )
    done = run(local_tes, task)
    assert done.state == "COMPLETE", done.logs
    assert (base / "txt" / "a.txt").read_text() == "1\n"
    assert (base / "txt" / "b.txt").read_text() == "22\n"
    assert not (base / "txt" / "c.log").exists()
    assert (base / "dir" / "sub" / "x").read_text() == "deep\n"
    assert (base / "stdout").read_text() == "to-stdout\n"
    logged = {o.path: (o.url, o.size_bytes) for o in done.logs[0].outputs}
    assert logged["/out/b.txt"] == ((base / "txt" / "b.txt").as_uri(), 3)
    assert logged["/out/d/sub/x"][0] == (base / "dir" / "sub" / "x").as_uri()


def test_output_symlink_escaping_the_task_is_refused(local_tes: ServedTes) -> None:
    target = (local_tes.storage_dir / "escape").as_uri()
    task = tes.Task(
        outputs=[tes.Output(url=target, path="/out/link")],
        executors=[sh("ln -s /etc/hostname /out/link")],
    )
    done = run(local_tes, task)
    assert done.state == "SYSTEM_ERROR"
    assert not (local_tes.storage_dir / "escape").exists()


def test_missing_output_is_a_system_error(local_tes: ServedTes) -> None:
    task = tes.Task(
        outputs=[tes.Output(url=(local_tes.storage_dir / "m").as_uri(), path="/out/missing")],
        executors=[sh("true")],
    )
    done = run(local_tes, task)
    assert done.state == "SYSTEM_ERROR"
    assert any("/out/missing" in s for s in done.logs[0].system_logs)


def test_cancel_kills_a_running_sleep_within_2s(local_tes: ServedTes) -> None:
    cli = client(local_tes)
    task_id = cli.create_task(tes.Task(executors=[sh("sleep 60; echo never")]))

    def sleeping() -> bool:
        return ["sleep", "60"] in _descendants(local_tes.proc.pid)

    wait_until(sleeping, timeout=10, what="sleep 60 to start")
    assert cli.get_task(task_id).state == "RUNNING"
    cli.cancel_task(task_id)
    start = time.monotonic()
    wait_until(
        lambda: cli.get_task(task_id).state == "CANCELED" and not sleeping(),
        timeout=2.0,
        what="the canceled task and its processes to be gone",
    )
    assert time.monotonic() - start < 2.0
    assert cli.get_task(task_id, view="FULL").logs[0].end_time is not None


def _descendants(root: int) -> list[list[str]]:
    """Command lines of every live process below ``root`` (read from /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parents[int(stat.parent.name)] = int(fields[1])
    found: list[list[str]] = []
    for pid in parents:
        up = pid
        while up in parents and up != root:
            up = parents[up]
        if up == root and pid != root:
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            found.append([part.decode() for part in raw.split(b"\0") if part])
    return found


def test_s3_inputs_and_outputs(serve_tes: Any, moto_s3: S3Server, tmp_path: Path) -> None:
    import boto3

    from tests.fixtures.s3 import ACCESS_KEY, REGION, SECRET_KEY

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    s3.put_object(Bucket=moto_s3.bucket, Key="srv/in.txt", Body=b"from s3\n")
    s3.put_object(Bucket=moto_s3.bucket, Key="srv/dir/a/1.txt", Body=b"one\n")
    s3.put_object(Bucket=moto_s3.bucket, Key="srv/dir/2.txt", Body=b"two\n")
    served = serve_tes(runtime="local", env=moto_s3.env())
    task = tes.Task(
        inputs=[
            tes.Input(url=moto_s3.url("srv/in.txt"), path="/data/in.txt"),
            tes.Input(url=moto_s3.url("srv/dir"), path="/data/dir", type="DIRECTORY"),
        ],
        outputs=[tes.Output(url=moto_s3.url("srv/out.txt"), path="/data/out.txt")],
        executors=[sh("cat /data/in.txt /data/dir/a/1.txt /data/dir/2.txt > /data/out.txt")],
    )
    done = run(served, task)
    assert done.state == "COMPLETE", (done.logs, served.log())
    body = s3.get_object(Bucket=moto_s3.bucket, Key="srv/out.txt")["Body"].read()
    assert body == b"from s3\none\ntwo\n"


def test_sigterm_shuts_down_cleanly_and_restart_marks_running_tasks(serve_tes: Any) -> None:
    served = serve_tes(runtime="noop", args=["--noop-delay", "60"])
    cli = client(served)
    task_id = cli.create_task(tes.Task(name="long", executors=[sh("true")]))
    wait_until(lambda: cli.get_task(task_id).state == "RUNNING", timeout=10, what="RUNNING")
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=10) == 0
    assert "shutting down" in served.log()

    again = serve_tes(runtime="noop", args=["--work-dir", str(served.work_dir)])
    task = client(again).get_task(task_id, view="FULL")
    assert task.state == "SYSTEM_ERROR"
    assert any("shut down" in s for s in task.logs[0].system_logs)


def test_crash_restart_marks_running_tasks(serve_tes: Any) -> None:
    served = serve_tes(runtime="noop", args=["--noop-delay", "60"])
    cli = client(served)
    task_id = cli.create_task(tes.Task(name="crash", executors=[sh("true")]))
    wait_until(lambda: cli.get_task(task_id).state == "RUNNING", timeout=10, what="RUNNING")
    # The RUNNING state rides on a write-behind commit: wait until it is on disk.
    wait_until(lambda: _stored_state(served, task_id) == "RUNNING", timeout=5, what="commit")
    served.proc.kill()
    served.proc.wait()
    again = serve_tes(runtime="noop", args=["--work-dir", str(served.work_dir)])
    task = client(again).get_task(task_id, view="FULL")
    assert task.state == "SYSTEM_ERROR"
    assert any("restarted while the task was RUNNING" in s for s in task.logs[0].system_logs)


def _stored_state(served: ServedTes, task_id: str) -> str | None:
    import json
    import sqlite3

    db = sqlite3.connect(served.work_dir / "tasks.sqlite3")
    try:
        row = db.execute("SELECT doc FROM tasks WHERE id = ?", (task_id,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0])["state"] if row else None


def test_bad_requests_are_400_over_the_wire(noop_tes: ServedTes) -> None:
    resp = requests.post(f"{noop_tes.api}/tasks", json={"executors": [{"image": "x"}]}, timeout=5)
    assert resp.status_code == 400
    assert "executors[0].command" in resp.json()["error"]
    with pytest.raises(requests.HTTPError):
        client(noop_tes).get_task("does-not-exist")


def test_serve_refuses_open_remote_bind(tmp_path: Path) -> None:
    import subprocess
    import sys

    argv = [sys.executable, "-m", "tesengine", "serve", "--host", "0.0.0.0", "--port", "0"]
    argv += ["--runtime", "noop", "--work-dir", str(tmp_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "non-loopback" in done.stderr and "--allow-remote-without-auth" in done.stderr


def test_serve_without_credentials_warns_that_anyone_may_run_tasks(noop_tes: ServedTes) -> None:
    wait_until(lambda: "warning: no credentials" in noop_tes.log_path.read_text(), timeout=10)
    assert "every local user" in noop_tes.log_path.read_text()
