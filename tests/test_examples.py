"""The examples stay true: their configs load and the embedding program runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tesengine import load_config
from tests.fixtures.tes_server import bwrap_available, start_serve
from tests.support import REPO, require, stop_process, user_env

EXAMPLES = REPO / "examples"


@pytest.mark.parametrize("name", ["sprocket.toml", "funnel-s3.toml", "azure.toml"])
def test_example_configs_load(name: str) -> None:
    config = load_config(EXAMPLES / name)
    assert config.backend.type == "tes"
    assert config.backend.url.startswith(("http://", "https://"))


def test_fanout_example_runs_100_tasks(tmp_path: Path) -> None:
    require(bwrap_available(), "bubblewrap (bwrap) for the local runtime")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "fanout.py")],
        cwd=tmp_path,
        env=user_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    words = sum(3 + i for i in range(100))  # "line <i> has" + i times "word"
    assert result.stdout.strip() == f"100 tasks complete; {words} words in all"


def test_sprocket_example_runs_against_serve_as_its_comment_says(tmp_path: Path) -> None:
    """The commands in examples/sprocket.toml's comment, run as written (on a free port)."""
    require(bwrap_available(), "bubblewrap (bwrap) for the local runtime")
    example = EXAMPLES / "sprocket.toml"
    commands = [
        line.removeprefix("#").strip().split()
        for line in example.read_text().splitlines()
        if line.startswith("#   tesengine ")
    ]
    (serve, *serve_args), (run, *run_args) = commands
    assert (serve, run) == ("tesengine", "tesengine") and serve_args[0] == "serve"
    storage = Path(serve_args[serve_args.index("--storage") + 1].removeprefix("file://"))
    served = start_serve(tmp_path, runtime="local", args=serve_args[1:])
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tesengine", *run_args],
            cwd=REPO,
            env={**user_env(tmp_path), "TESENGINE_URL": served.url},  # port 0, not 8000
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        stop_process(served.proc)
        shutil.rmtree(storage, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
