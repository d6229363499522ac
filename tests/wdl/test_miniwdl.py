"""WDL workflows on the tesengine miniwdl backend against ``tesengine serve``, with parity.

Each workflow in ``workflows/`` runs with ``miniwdl run`` (a subprocess, the
backend found through its entry point) on a real ``tesengine serve`` (local
runtime), and on the host reference (``host_backend.py``); the outputs,
files by name and content, must be identical.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.s3 import S3Server
from tests.fixtures.tes_server import ServedTes
from tests.support import REPO, config_file, user_env, wait_until

pytest.importorskip("WDL", reason="miniwdl (pip install 'tesengine[miniwdl]')")

HERE = Path(__file__).parent
WORKFLOWS = HERE / "workflows"
RAW_NAME = "données brutes.txt"


def tesengine_cfg(tmp_path: Path, sprocket: Path) -> Path:
    cfg = tmp_path / "tesengine.cfg"
    cfg.write_text(
        f"[scheduler]\ncontainer_backend = tesengine\n[tesengine]\nconfig = {sprocket}\n"
    )
    return cfg


def miniwdl(
    backend: str,
    wdl: Path,
    run_dir: Path,
    args: list[str],
    *,
    cfg: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``miniwdl run`` on ``backend`` ("tesengine" or "host"), writing into ``run_dir``."""
    launcher = ["-m", "WDL"] if backend == "tesengine" else [str(HERE / "host_backend.py")]
    argv = [sys.executable, *launcher, "run", str(wdl), *args, "--dir", f"{run_dir}/."]
    if cfg is not None:
        argv += ["--cfg", str(cfg)]
    full = {**user_env(run_dir.parent / "cache"), **(env or {})}
    full["MINIWDL__SCHEDULER__CONTAINER_BACKEND"] = backend
    run_dir.mkdir(parents=True)
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=240, env=full, cwd=REPO, check=False
    )


def on_host(wdl: Path, run_dir: Path, args: list[str]) -> Future[subprocess.CompletedProcess[str]]:
    """The host reference run, in a thread: it overlaps the tesengine run it is compared with."""
    pool = ThreadPoolExecutor(1)
    future = pool.submit(miniwdl, "host", wdl, run_dir, args)
    pool.shutdown(wait=False)
    return future


def outputs(run_dir: Path) -> dict[str, Any]:
    """outputs.json with every file and directory replaced by its names and contents."""
    data = json.loads((run_dir / "outputs.json").read_text())
    return {key: _contents(value) for key, value in data.items()}


def _contents(value: Any) -> Any:
    if isinstance(value, list):
        return [_contents(v) for v in value]
    if isinstance(value, dict):
        return {k: _contents(v) for k, v in value.items()}
    if isinstance(value, str) and os.path.isabs(value) and os.path.exists(value):
        path = Path(value)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            return {
                "dir": path.name,
                "files": {str(p.relative_to(path)): p.read_text() for p in files},
            }
        return {"file": path.name, "text": path.read_text()}
    return value


def raw_input(tmp_path: Path) -> Path:
    raw = tmp_path / "in" / RAW_NAME
    raw.parent.mkdir()
    raw.write_text("zeta\nalpha\nmu\n")
    return raw


# chain_1_2 is compared in test_chained_outputs_are_passed_as_urls_and_never_uploaded.
CASES = {
    "basics_1_0": lambda raw: [],
    "strings_1_1": lambda raw: [f"src={raw}"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_workflow_matches_the_host_backend(local_tes: ServedTes, tmp_path: Path, name: str) -> None:
    raw = raw_input(tmp_path)
    wdl = WORKFLOWS / f"{name}.wdl"
    cfg = tesengine_cfg(tmp_path, config_file(tmp_path, local_tes.url, local_tes.storage_dir))
    reference = on_host(wdl, tmp_path / "host", CASES[name](raw))
    ours = miniwdl("tesengine", wdl, tmp_path / "tes", CASES[name](raw), cfg=cfg)
    assert ours.returncode == 0, ours.stderr[-4000:]
    host = reference.result()
    assert host.returncode == 0, host.stderr[-4000:]
    assert outputs(tmp_path / "tes") == outputs(tmp_path / "host")
    assert outputs(tmp_path / "tes")  # something was compared


def test_chained_outputs_are_passed_as_urls_and_never_uploaded(
    local_tes: ServedTes, tmp_path: Path
) -> None:
    raw = raw_input(tmp_path)
    cfg = tesengine_cfg(tmp_path, config_file(tmp_path, local_tes.url, local_tes.storage_dir))
    inputs_dir = local_tes.storage_dir / "inputs"
    before = _objects(inputs_dir)
    reference = on_host(WORKFLOWS / "chain_1_2.wdl", tmp_path / "host", [f"raw={raw}"])
    done = miniwdl(
        "tesengine", WORKFLOWS / "chain_1_2.wdl", tmp_path / "tes", [f"raw={raw}"], cfg=cfg
    )
    assert done.returncode == 0, done.stderr[-4000:]
    uploaded = _objects(inputs_dir) - before
    # Only the workflow input and total's write_lines file are local: the
    # Directory and File outputs of `make` reach `count` and `consume` as URLs.
    assert {p.split("/")[0] for p in uploaded} == {"file"}, uploaded
    assert len(uploaded) <= 2, uploaded
    consume = _server_tasks(local_tes, "call-consume")
    assert consume and all("/outputs/" in i["url"] for i in consume[0]["inputs"]), consume
    host = reference.result()
    assert host.returncode == 0, host.stderr[-4000:]
    assert outputs(tmp_path / "tes") == outputs(tmp_path / "host")


def test_a_failing_task_reports_its_exit_code_and_stderr(
    local_tes: ServedTes, tmp_path: Path
) -> None:
    cfg = tesengine_cfg(tmp_path, config_file(tmp_path, local_tes.url, local_tes.storage_dir))
    wdl = WORKFLOWS / "fails_1_1.wdl"
    reference = on_host(wdl, tmp_path / "host", [])
    ours = miniwdl("tesengine", wdl, tmp_path / "tes", ["--verbose"], cfg=cfg)
    host = reference.result()
    assert ours.returncode == host.returncode != 0
    for run in (tmp_path / "tes", tmp_path / "host"):
        error = json.loads((run / "error.json").read_text())
        assert error["cause"]["error"] == "CommandFailed", error
        assert error["cause"]["exit_status"] == 7, error
        assert "disk on fire" in (run / "call-breaks" / "stderr.txt").read_text()
    # ...and with --verbose, miniwdl's log shows the task's stderr lines
    assert "the reason: disk on fire" in ours.stderr


def test_chained_workflow_on_s3_storage_uploads_only_local_inputs(
    moto_s3: S3Server, serve_tes: Any, tmp_path: Path
) -> None:
    import boto3

    _served, prefix, sprocket = s3_setup(moto_s3, serve_tes, tmp_path)
    raw = raw_input(tmp_path)
    reference = on_host(WORKFLOWS / "chain_1_2.wdl", tmp_path / "host", [f"raw={raw}"])
    done = miniwdl(
        "tesengine",
        WORKFLOWS / "chain_1_2.wdl",
        tmp_path / "tes",
        [f"raw={raw}"],
        cfg=tesengine_cfg(tmp_path, sprocket),
        env=moto_s3.env(),
    )
    assert done.returncode == 0, done.stderr[-4000:]
    client = boto3.client("s3", endpoint_url=moto_s3.endpoint, **_keys(moto_s3))
    listed = client.list_objects_v2(Bucket=moto_s3.bucket, Prefix=f"{prefix}/inputs/")
    keys = [o["Key"].removeprefix(f"{prefix}/inputs/") for o in listed.get("Contents", [])]
    assert {k.split("/")[0] for k in keys} == {"file"}, keys
    assert len(keys) == 2, keys  # the workflow input and one write_lines file
    host = reference.result()
    assert host.returncode == 0, host.stderr[-4000:]
    assert outputs(tmp_path / "tes") == outputs(tmp_path / "host")


def s3_setup(moto_s3: S3Server, serve_tes: Any, tmp_path: Path) -> tuple[ServedTes, str, Path]:
    """A local-runtime server reaching moto, and a sprocket.toml with storage in its bucket."""
    served = serve_tes(runtime="local", env=moto_s3.env())
    prefix = f"wdl-{tmp_path.name}"
    sprocket = tmp_path / "sprocket.toml"
    sprocket.write_text(
        "[run.backends.default]\n"
        f'type = "tes"\nurl = "{served.url}"\n'
        f'inputs = "{moto_s3.url(prefix + "/inputs")}"\n'
        f'outputs = "{moto_s3.url(prefix + "/outputs")}"\n'
        "interval = 0.05\n"
    )
    return served, prefix, sprocket


def test_url_inputs_reach_the_task_as_urls(
    moto_s3: S3Server, serve_tes: Any, tmp_path: Path
) -> None:
    import boto3

    served, prefix, sprocket = s3_setup(moto_s3, serve_tes, tmp_path)
    client = boto3.client("s3", endpoint_url=moto_s3.endpoint, **_keys(moto_s3))
    for key, body in [("data/names.txt", "ada\nbob\n"), ("data/ref/a.txt", "A\n"),
                      ("data/ref/sub/b.txt", "B\n")]:  # fmt: skip
        client.put_object(Bucket=moto_s3.bucket, Key=f"{prefix}/{key}", Body=body.encode())
    remote = moto_s3.url(f"{prefix}/data/names.txt")
    remote_dir = moto_s3.url(f"{prefix}/data/ref")
    done = miniwdl(
        "tesengine", WORKFLOWS / "urls_1_2.wdl", tmp_path / "tes",
        [f"remote={remote}", f"remote_dir={remote_dir}"],
        cfg=tesengine_cfg(tmp_path, sprocket), env=moto_s3.env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert outputs(tmp_path / "tes") == {
        "urls.lines": ["ada", "bob", "A", "B"],
        "urls.remote_lines": 2,
    }
    (task,) = _server_tasks(served, "call-show")
    assert sorted(i["url"] for i in task["inputs"]) == sorted([remote, remote_dir])
    listed = client.list_objects_v2(Bucket=moto_s3.bucket, Prefix=f"{prefix}/inputs/")
    assert not listed.get("Contents"), "a URL input was uploaded"


def _keys(server: S3Server) -> dict[str, str]:
    env = server.env()
    return {
        "region_name": env["AWS_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def _objects(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _all_tasks(served: ServedTes) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{served.api}/tasks?view=FULL&page_size=2047") as reply:
        return list(json.load(reply).get("tasks", []))


def _server_tasks(served: ServedTes, name: str) -> list[dict[str, Any]]:
    return [t for t in _all_tasks(served) if t.get("name") == name]


def test_ctrl_c_cancels_every_remote_task(local_tes: ServedTes, tmp_path: Path) -> None:
    cfg = tesengine_cfg(tmp_path, config_file(tmp_path, local_tes.url, local_tes.storage_dir))
    run_dir = tmp_path / "tes"
    run_dir.mkdir()
    argv = [sys.executable, "-m", "WDL", "run", str(WORKFLOWS / "naps_1_1.wdl"),
            "--dir", f"{run_dir}/.", "--cfg", str(cfg)]  # fmt: skip
    env = {**user_env(tmp_path / "cache"), "MINIWDL__SCHEDULER__CONTAINER_BACKEND": "tesengine"}
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)

    def naps(*states: str) -> list[dict[str, Any]]:
        found = [t for t in _all_tasks(local_tes) if str(t.get("name", "")).startswith("call-nap")]
        return found if found and all(t["state"] in states for t in found) else []

    try:
        wait_until(lambda: len(naps("RUNNING")) == 2, timeout=120, what="two naps RUNNING")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0
    # Nothing is left running on the server once miniwdl has exited.
    assert len(naps("CANCELED", "CANCELING")) == 2, _all_tasks(local_tes)
    wait_until(lambda: len(naps("CANCELED")) == 2, timeout=30, what="both naps CANCELED")
    assert "Traceback" not in err
