"""The examples stay true: their configs load and the embedding program runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tesengine import load_config
from tests.fixtures.tes_server import bwrap_available
from tests.support import REPO, require, user_env

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
