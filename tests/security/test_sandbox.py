"""Hostile tasks against ``tesengine serve --runtime local`` (real bubblewrap).

Each test performs an attack from issue 13 for real and asserts it fails
safely: links planted by a task are never followed by the host, the
executor's environment never reaches bwrap, special files never block the
server, big tasks either run or fail early saying why, ambiguous
container paths are refused, and (as root) the sandbox is never the host's
root: no sysctl writes, no setuid-root files left on the host.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.fixtures.tes_server import ServedTes
from tests.security.support import (
    answers_within,
    create,
    get,
    post,
    run,
    sh,
    system_logs,
    wait_final,
)
from tests.support import require, wait_until


@pytest.fixture
def secret(tmp_path: Path) -> str:
    """A host file's content, in a directory the sandbox cannot see; returns the token."""
    token = f"HOST-SECRET-{uuid.uuid4().hex}"
    (tmp_path / "secret.txt").write_text(token + "\n")
    return token


# -- 1. links the task plants are never followed by the host ---------------------------


def test_own_stdout_turned_into_a_link_is_not_read(
    hostile: ServedTes, tmp_path: Path, secret: str
) -> None:
    target = tmp_path / "secret.txt"
    doc = run(hostile, {"executors": [sh(f"rm -f /out/o; ln -s {target} /out/o", stdout="/out/o")]})
    text = json.dumps(doc)
    assert secret not in text
    assert "symbolic link" in doc["logs"][0]["logs"][0]["stdout"], doc


def test_link_from_an_earlier_executor_never_writes_the_host(
    hostile: ServedTes, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    task = {
        "executors": [
            sh(f"ln -s {victim} /out/w"),
            sh("echo PWNED", stdout="/out/w"),
        ]
    }
    doc = run(hostile, task)
    assert not victim.exists()
    assert doc["state"] == "SYSTEM_ERROR"
    assert "executors[1].stdout: /out/w is (or goes through) a symbolic link" in system_logs(doc)


def test_stdin_linked_to_a_host_file_is_not_read(
    hostile: ServedTes, tmp_path: Path, secret: str
) -> None:
    task = {
        "executors": [
            sh(f"ln -s {tmp_path / 'secret.txt'} /out/db"),
            sh("cat", stdin="/out/db"),
        ]
    }
    doc = run(hostile, task)
    assert secret not in json.dumps(doc)
    assert doc["state"] == "SYSTEM_ERROR"
    assert "executors[1].stdin: /out/db" in system_logs(doc)


def test_stream_through_a_linked_directory_is_refused(hostile: ServedTes, tmp_path: Path) -> None:
    task = {
        "executors": [
            sh(f"rmdir /out/d && ln -s {tmp_path} /out/d"),
            sh("echo PWNED", stderr="/out/d/planted.txt"),
        ]
    }
    doc = run(hostile, task)
    assert not (tmp_path / "planted.txt").exists()
    assert doc["state"] == "SYSTEM_ERROR"
    assert "executors[1].stderr: /out/d/planted.txt" in system_logs(doc)


def test_input_bind_source_swapped_for_a_link_is_refused(
    hostile: ServedTes, tmp_path: Path, secret: str
) -> None:
    # Renaming the parent of a bind's mount point works inside the sandbox, so the next
    # executor's bind source can be a link. bwrap 0.11 resolves the bind's destination
    # inside the new root, which kept this from leaking before; docker's daemon would
    # follow it. The server now refuses any bind source reached through a link.
    (tmp_path / "a").write_text((tmp_path / "secret.txt").read_text())
    task = {
        "inputs": [{"path": "/data/in/a", "content": "harmless\n"}],
        "executors": [
            sh(f"mv /data/in /data/old && ln -s {tmp_path} /data/in"),
            sh("cat /data/in/a"),
        ],
    }
    doc = run(hostile, task)
    assert secret not in json.dumps(doc)
    assert doc["state"] == "SYSTEM_ERROR"
    assert "executors[1]: cannot bind /data/in/a" in system_logs(doc)


# -- 2. the executor's env reaches only the sandboxed command ---------------------------

_PRELOAD_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *marker = getenv("MARKER");
    FILE *f = marker ? fopen(marker, "a") : NULL;
    if (f) { fputs("ran on the host\n", f); fclose(f); }
}
"""


def test_ld_preload_in_executor_env_does_not_run_in_bwrap(
    hostile: ServedTes, tmp_path: Path
) -> None:
    cc = shutil.which("cc") or shutil.which("gcc")
    require(cc is not None, "a C compiler (cc) to build the hostile LD_PRELOAD library")
    assert cc is not None
    source = tmp_path / "planted.c"
    source.write_text(_PRELOAD_C)
    lib = tmp_path / "planted.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(source)], check=True)
    marker = tmp_path / "marker.txt"
    env = {"LD_PRELOAD": str(lib), "MARKER": str(marker), "GREETING": "hello"}
    doc = run(hostile, {"executors": [sh('echo "$LD_PRELOAD|$GREETING"', env=env)]})
    assert not marker.exists(), "the task's LD_PRELOAD ran code on the host"
    assert doc["state"] == "COMPLETE", system_logs(doc)
    # Still the command's own environment inside the sandbox.
    assert doc["logs"][0]["logs"][0]["stdout"] == f"{lib}|hello\n"


# -- 4. FIFOs and special files never stop the server -----------------------------------


def test_fifo_at_a_later_stdout_does_not_block_the_server(serve_tes: object) -> None:
    served: ServedTes = serve_tes(runtime="local")  # type: ignore[operator]
    task_id = create(served, {"executors": [sh("mkfifo /out/f"), sh("echo hi", stdout="/out/f")]})
    doc = wait_final(served, task_id, timeout=20)
    assert answers_within(served, 2.0) < 2.0
    assert doc["state"] == "SYSTEM_ERROR"
    assert "executors[1].stdout: /out/f is not a regular file" in system_logs(doc)
    served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(timeout=10)


def test_fifos_at_own_stdout_do_not_exhaust_the_server(serve_tes: object) -> None:
    served: ServedTes = serve_tes(runtime="local", args=["--max-tasks", "8"])  # type: ignore[operator]
    fifo = {"executors": [sh("rm -f /out/f; mkfifo /out/f", stdout="/out/f")]}
    ids = [create(served, fifo) for _ in range(8)]
    for task_id in ids:
        requests.post(f"{served.api}/tasks/{task_id}:cancel", timeout=5)
    for task_id in ids:
        doc = wait_final(served, task_id, timeout=20)
        assert doc["state"] in {"COMPLETE", "CANCELED"}, system_logs(doc)
    started = time.monotonic()
    after = create(served, {"executors": [sh("echo still here")]})
    assert time.monotonic() - started < 5
    doc = wait_final(served, after, timeout=20)
    assert doc["logs"][0]["logs"][0]["stdout"] == "still here\n"


def test_cancel_ends_a_task_reading_a_fifo(hostile: ServedTes) -> None:
    # The executor itself blocks on its own FIFO: only the cancel can end it.
    task_id = create(hostile, {"executors": [sh("mkfifo /tmp/p && cat /tmp/p")]})
    wait_until(lambda: get(hostile, task_id)["state"] == "RUNNING", timeout=20, what="RUNNING")
    requests.post(f"{hostile.api}/tasks/{task_id}:cancel", timeout=5).raise_for_status()
    assert wait_final(hostile, task_id, timeout=10)["state"] == "CANCELED"


# -- 6. big tasks run, or fail early saying why -------------------------------------------


@pytest.mark.slow  # staging 10,000 content inputs takes ~10 s (one thread hop each)
def test_ten_thousand_inputs_run_and_stay_read_only(hostile: ServedTes) -> None:
    inputs = [{"path": f"/in/f{i:05d}", "content": f"{i}\n"} for i in range(10_000)]
    script = "ls /in | wc -l; cat /in/f09999; echo x > /in/f00000 2>/dev/null; echo $?"
    doc = run(hostile, {"inputs": inputs, "executors": [sh(script)]}, timeout=60)
    assert doc["state"] == "COMPLETE", system_logs(doc)
    lines = doc["logs"][0]["logs"][0]["stdout"].split()
    assert lines[:2] == ["10000", "9999"]
    assert lines[2] != "0", "inputs are bound read-only"


def test_argument_over_the_kernel_limit_is_a_system_error_before_staging(
    hostile: ServedTes,
) -> None:
    # Inside the storage root (so the create-time URL check lets it pass), but absent:
    # fetching it would fail and name it.
    never = (hostile.storage_dir / "never-fetched").as_uri()
    task = {
        "inputs": [{"path": "/in/never", "url": never}],
        "executors": [{"image": "x", "command": ["echo", "x" * 200_000]}],
    }
    doc = run(hostile, task)
    assert doc["state"] == "SYSTEM_ERROR"
    logs = system_logs(doc)
    assert "executors[0].command[1] is 200000 bytes" in logs and "MAX_ARG_STRLEN" in logs
    assert "never-fetched" not in logs, "refused before staging inputs"
    assert doc["logs"][0]["logs"] == []


def test_long_argument_vectors_run(hostile: ServedTes) -> None:
    big = ["y" * 1000] * 1500 + ["z" * 120_000]  # 1.6 MB in 1501 arguments
    task = {"executors": [{"image": "x", "command": ["sh", "-c", 'echo "$#"', "sh", *big]}]}
    doc = run(hostile, task)
    assert doc["state"] == "COMPLETE", system_logs(doc)
    assert doc["logs"][0]["logs"][0]["stdout"] == "1501\n"


# -- 7. ambiguous container paths are refused --------------------------------------------


@pytest.mark.parametrize(
    ("field", "executor", "inputs"),
    [
        ("inputs[0].path", sh("cat /etc/passwd"), [{"path": "/./etc/passwd", "content": "x"}]),
        ("executors[0].workdir", sh("touch planted", workdir="/./usr"), []),
        ("executors[0].stdout", sh("echo x", stdout="/etc//passwd"), []),
        ("inputs[0].path", sh("true"), [{"path": "/data/../etc/x", "content": "x"}]),
    ],
)
def test_dot_segments_are_refused(
    hostile: ServedTes, field: str, executor: dict[str, object], inputs: list[object]
) -> None:
    resp = post(hostile, {"inputs": inputs, "executors": [executor]})
    assert resp.status_code == 400, resp.text
    assert field in resp.text and "plain path" in resp.text
