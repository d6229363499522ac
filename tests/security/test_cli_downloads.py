"""``--download DIR`` never writes outside DIR, whatever the task is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tes_server import ServedTes
from tests.support import run_cli
from tests.test_cli_run import user_env, write_config


@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs-escape", "..", "a/b"])
def test_task_name_cannot_lead_downloads_out_of_the_directory(
    tmp_path: Path, noop_tes: ServedTes, name: str
) -> None:
    config = write_config(tmp_path, noop_tes)
    dest = tmp_path / "deep" / "dl"
    result = run_cli(
        "run", "--config", str(config), "--name", name, "--output", "k=/out/authorized_keys",
        "--download", str(dest), "--", "true",
        cwd=tmp_path, env=user_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "must be a plain file name" in result.stderr and "Traceback" not in result.stderr
    # Refused before anything was submitted or written.
    assert not list(tmp_path.rglob("authorized_keys"))
    assert not Path("/tmp/abs-escape").exists()
    listed = run_cli("list", "--config", str(config), cwd=tmp_path, env=user_env(tmp_path))
    assert name not in listed.stdout


def test_task_file_name_cannot_lead_downloads_out(tmp_path: Path, noop_tes: ServedTes) -> None:
    config = write_config(tmp_path, noop_tes)
    tasks = tmp_path / "evil.toml"
    tasks.write_text(
        '[[tasks]]\nname = "ok"\ncommand = ["true"]\n'
        '[[tasks]]\nname = "../up"\ncommand = ["true"]\noutputs = { k = "/out/k" }\n'
    )
    result = run_cli(
        "run", "--config", str(config), "--file", str(tasks), "--download", "dl",
        cwd=tmp_path, env=user_env(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "tasks[1].name '../up'" in result.stderr
    assert not (tmp_path / "up").exists() and not (tmp_path / "dl").exists()
