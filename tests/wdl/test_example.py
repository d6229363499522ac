"""examples/miniwdl runs as the README says: on the embedded server and on tesengine serve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.tes_server import ServedTes, bwrap_available
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


def test_example_runs_on_tesengine_serve_through_a_sprocket_toml(
    serve_tes: object, tmp_path: Path
) -> None:
    served: ServedTes = serve_tes(runtime="local")  # type: ignore[operator]
    sprocket = tmp_path / "sprocket.toml"
    text = (REPO / "examples" / "sprocket.toml").read_text()
    text = text.replace("http://127.0.0.1:8000", served.url)
    text = re.sub(r"file:///tmp/tesengine-example", served.storage_dir.as_uri(), text)
    sprocket.write_text(text.replace("interval = 2", "interval = 0.1"))
    outputs = run_example(tmp_path, {"MINIWDL__TESENGINE__CONFIG": str(sprocket)})
    assert outputs["wordcount.words"] == len(TEXT.read_text().split())
