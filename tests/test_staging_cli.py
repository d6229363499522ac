"""``tesengine stage`` as a user runs it: a real process, a real S3 server, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from blake3 import blake3

from tests.fixtures.s3 import S3Server

TESENGINE = [sys.executable, "-c", "from tesengine.cli.main import entry; entry()"]
#: Repeated runs of one stage: a few by default (each is a process start, ~1 s on a
#: loaded machine); ``nox -s faults`` (FAULTS_FULL=1) runs the full 30.
RUNS = 30 if os.environ.get("FAULTS_FULL", "") == "1" else 5


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=60, check=False)


def _setup(tmp_path: Path, server: S3Server) -> tuple[dict[str, str], Path, str]:
    inputs = server.url(f"cli-{uuid.uuid4().hex[:8]}")
    config = tmp_path / "sprocket.toml"
    config.write_text(
        "[run.backends.default]\n"
        'type = "tes"\n'
        'url = "http://127.0.0.1:1"\n'
        f'inputs = "{inputs}"\n'
        f'outputs = "{server.url("out")}"\n'
        f'cache_dir = "{tmp_path / "cache"}"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TESENGINE_"))}
    env.update(server.env())  # endpoint and credentials from the standard variables only
    return env, config, inputs


def test_stage_prints_url_and_status_and_exits_0_every_time(
    tmp_path: Path, rclone_s3: S3Server
) -> None:
    env, config, inputs = _setup(tmp_path, rclone_s3)
    data = os.urandom(2048)
    (tmp_path / "input.bin").write_bytes(data)
    expected = f"{inputs}/file/{blake3(data).hexdigest()}"
    argv = [*TESENGINE, "stage", "--config", str(config), "input.bin", "s3://other/x"]
    statuses = []
    outputs = []
    for _ in range(RUNS):
        proc = run(argv, tmp_path, env)
        statuses.append(proc.returncode)
        outputs.append(proc.stdout.decode())
    assert statuses == [0] * RUNS, [o for o in outputs if o][:3]
    assert outputs[0] == f"{expected}\tuploaded\tinput.bin\ns3://other/x\turl\ts3://other/x\n"
    assert set(outputs[1:]) == {
        f"{expected}\tpresent\tinput.bin\ns3://other/x\turl\ts3://other/x\n"
    }


def test_stage_missing_input_exits_2_with_one_line(tmp_path: Path, moto_s3: S3Server) -> None:
    env, config, _ = _setup(tmp_path, moto_s3)
    argv = [*TESENGINE, "stage", "--config", str(config), "no-such-file"]
    proc = run(argv, tmp_path, env)
    assert proc.returncode == 2  # a bad input, like run (issue 14)
    assert proc.stdout == b""
    lines = proc.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines  # one line, no traceback
    assert lines[0].startswith(f"tesengine: {tmp_path / 'no-such-file'}: ")
    assert "no such file" in lines[0].lower()
