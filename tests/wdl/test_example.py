"""examples/miniwdl runs as the README says, on the embedded server.

(Its other path, a sprocket.toml named by ``[tesengine] config``, is what
every workflow in test_miniwdl.py runs through.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.tes_server import bwrap_available
from tests.support import REPO, require, user_env

pytest.importorskip("WDL", reason="miniwdl (pip install 'tesengine[miniwdl]')")

EXAMPLE = REPO / "examples" / "miniwdl"
TEXT = REPO / "examples" / "wordcount" / "text.txt"


def run_example(tmp_path: Path, extra_env: dict[str, str]) -> dict[str, object]:
    require(bwrap_available(), "bubblewrap (bwrap) for the local runtime")
    argv = [sys.executable, "-m", "WDL", "run", str(EXAMPLE / "wordcount.wdl"), f"text={TEXT}",
            "--cfg", str(EXAMPLE / "miniwdl.cfg"), "--dir", f"{tmp_path}/run/."]  # fmt: skip
    (tmp_path / "run").mkdir()
    done = subprocess.run(
        argv, env={**user_env(tmp_path / "cache"), **extra_env}, cwd=REPO,
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return dict(json.loads((tmp_path / "run" / "outputs.json").read_text()))


def test_example_runs_on_the_embedded_server(tmp_path: Path) -> None:
    outputs = run_example(tmp_path, {})
    assert outputs["wordcount.words"] == len(TEXT.read_text().split())
    assert len(outputs["wordcount.per_chunk"]) == 5  # type: ignore[arg-type]
