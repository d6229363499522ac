"""``tesengine serve --runtime docker``: a task cannot add options to ``docker run``.

The docker runtime stays untested against a real daemon; here a fake ``docker``
on PATH records the argv the server runs, and each test sends a hostile task
to a real server and checks what reached the CLI.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.tes_server import ServedTes
from tests.security.support import post, run, sh, system_logs, wait_final

_FAKE_DOCKER = """#!{python}
import json, os, sys
with open(os.environ["FAKE_DOCKER_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1:2] == ["run"]:
    print("fake docker ran")
"""


@pytest.fixture
def docker_tes(tmp_path: Path, serve_tes: Callable[..., ServedTes]) -> tuple[ServedTes, Path]:
    """A server with ``--runtime docker`` whose ``docker`` is a recorder; (server, log)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    fake = bindir / "docker"
    fake.write_text(_FAKE_DOCKER.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "docker-argv.jsonl"
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "FAKE_DOCKER_LOG": str(log)}
    return serve_tes(runtime="docker", env=env), log


def _runs(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [argv for argv in calls if argv[:1] == ["run"]]


def test_image_that_is_an_option_is_refused(docker_tes: tuple[ServedTes, Path]) -> None:
    served, log = docker_tes
    doc = run(served, {"executors": [{"image": "--privileged", "command": ["id"]}]})
    assert doc["state"] == "SYSTEM_ERROR"
    assert "executors[0].image: '--privileged' is not a docker image reference" in system_logs(doc)
    assert _runs(log) == []


def test_command_options_stay_after_the_image(docker_tes: tuple[ServedTes, Path]) -> None:
    served, log = docker_tes
    task: dict[str, Any] = {
        "executors": [
            {
                "image": "alpine:3.20",
                "command": ["--volume=/:/host", "-v", "/:/h"],
                "env": {"X": "--privileged"},
                "workdir": "/work",
            }
        ]
    }
    doc = run(served, task)
    assert doc["state"] == "COMPLETE", system_logs(doc)
    (argv,) = _runs(log)
    end = argv.index("--")
    options, rest = argv[:end], argv[end + 1 :]
    assert rest == ["alpine:3.20", "--volume=/:/host", "-v", "/:/h"]
    assert "--privileged" not in options and not any(o.startswith("--volume") for o in options)
    assert "--env=X=--privileged" in options  # a value, glued to its flag
    assert "--network=none" in options


@pytest.mark.parametrize("path", ["/in/a:/etc/cron.d", "/in/a,source=/,target=/host", '/in/"x'])
def test_mount_paths_that_could_split_a_spec_are_refused(
    docker_tes: tuple[ServedTes, Path], path: str
) -> None:
    served, log = docker_tes
    task = {"inputs": [{"path": path, "content": "x"}], "executors": [sh("cat /in/a")]}
    resp = post(served, task)
    if resp.status_code == 400:  # refused at POST time: as safe
        assert _runs(log) == []
        return
    doc = wait_final(served, resp.json()["id"])
    assert doc["state"] == "SYSTEM_ERROR"
    assert "cannot be bound by docker" in system_logs(doc)
    assert _runs(log) == []
