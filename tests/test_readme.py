"""The README's Python examples import only what exists, and the API example runs for real."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, user_env

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def test_readme_has_python_examples() -> None:
    assert BLOCKS


@pytest.mark.parametrize("source", BLOCKS)
def test_readme_python_block(source: str) -> None:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tesengine"):
            module = importlib.import_module(node.module or "")
            missing = [a.name for a in node.names if not hasattr(module, a.name)]
            assert not missing, f"README imports missing names from {node.module}: {missing}"


def api_example() -> str:
    (source,) = [block for block in BLOCKS if "embedded_backend()" in block]
    return source


def test_readme_api_example_runs_on_the_embedded_backend(tmp_path: Path) -> None:
    """The example as written, in a folder holding the files it names, with no config."""
    (tmp_path / "reads.txt").write_text("r1\nr2\nr3\n")
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "genome.fa").write_text(">chr1\nACGT\n")
    script = tmp_path / "example.py"
    script.write_text(api_example())
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=user_env(tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    # n.txt read through the cache, then the declared directory's files, then
    # the second task's stdout: it ran to the end (it was awaited, not cancelled).
    assert lines[0] == "3"
    assert "/results/ref/genome.fa" in lines[2]
    assert [line for line in lines[3:] if line] == ["3"]
    runs = list((tmp_path / "cache" / "tesengine" / "embedded" / "runs").iterdir())
    assert len(runs) == 1


def test_readme_python_examples_pass_mypy_strict(tmp_path: Path) -> None:
    """What an embedder copies type-checks: e.g. an output read without a cast."""
    for index, source in enumerate(BLOCKS):
        (tmp_path / f"readme_{index}.py").write_text(source)
    cache = ("--cache-dir", str(tmp_path / ".mypy_cache"))
    mypy = [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", *cache]
    result = subprocess.run(
        [*mypy, str(tmp_path)],
        cwd=REPO,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
