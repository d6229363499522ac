"""Issue 14, "Conventions": what ``docker``, ``gh`` and ``kubectl`` users expect of a CLI."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

import tesengine
from tesengine.cli import json_out
from tesengine.cli.main import SUBCOMMANDS
from tesengine.tes import models as wire
from tests.fixtures.tes_server import ServedTes
from tests.support import CLI_SCRIPT, config_file, user_env, wait_until
from tests.support import installed_cli as cli
from tests.test_cli_errors import post_task

(TESENGINE,) = CLI_SCRIPT


def test_version() -> None:
    result = subprocess.run([TESENGINE, "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert result.stdout.strip() == f"tesengine {tesengine.__version__}"


def test_verbosity_flags_after_the_subcommand(tmp_path: Path) -> None:
    # Group-readable with a secret-bearing URL: a WARNING that -q silences.
    url = "https://u:pw@tes.example.org"
    config = config_file(tmp_path, url, tmp_path / "s", mode=0o644)
    loud = cli("config", "check", str(config), cwd=tmp_path)
    assert loud.returncode == 0, loud.stderr
    assert "chmod 600" in loud.stderr
    quiet = cli("config", "check", str(config), "-q", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    verbose = cli("config", "show", str(config), "-v", cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr


def test_config_alone_prints_its_help(tmp_path: Path) -> None:
    result = cli("config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "check" in result.stdout and "show" in result.stdout
    assert result.stdout.startswith("usage: tesengine config")


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_help_shows_real_defaults(tmp_path: Path, command: str) -> None:
    result = cli(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "see README" not in result.stdout


def test_serve_help_gives_port_and_runtimes(tmp_path: Path) -> None:
    text = " ".join(cli("serve", "--help", cwd=tmp_path).stdout.split())
    assert "(default: 8000)" in text
    assert "bubblewrap" in text and "noop" in text and "docker" in text


def test_top_level_help_lists_every_subcommand(tmp_path: Path) -> None:
    result = cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for name, (_module, text) in SUBCOMMANDS.items():
        assert f"{name:<12} {text}" in result.stdout


IMPORTED = """
import sys
sys.argv = ["tesengine", *sys.argv[1:]]
from tesengine.cli import main
try:
    main.main()
except SystemExit:
    pass
heavy = ("aiohttp", "pydantic", "obstore", "rich", "tesengine.engine", "tesengine.config")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy)
print("MODULES:", *loaded)
"""


def _heavy_modules(*args: str, cwd: Path) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED, *args],
        cwd=cwd,
        env=user_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in reversed(result.stdout.splitlines()) if x.startswith("MODULES:"))
    return set(line.split()[1:])


def test_help_and_config_check_import_only_what_they_need(tmp_path: Path) -> None:
    assert _heavy_modules("--help", cwd=tmp_path) == set()
    assert _heavy_modules("run", "--help", cwd=tmp_path) >= {"tesengine.engine"}
    config = config_file(tmp_path, "http://127.0.0.1:1", tmp_path / "s")
    check = _heavy_modules("config", "check", str(config), cwd=tmp_path)
    assert "tesengine.config" in check
    assert not {"aiohttp", "obstore", "rich", "tesengine.engine"} & check


def test_import_tesengine_is_lazy_and_complete(tmp_path: Path) -> None:
    code = (
        "import sys; before = set(sys.modules); import tesengine; print(*set(sys.modules) - before)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=user_env(), capture_output=True, text=True, check=True
    )
    # not aiohttp, pydantic, even typing or importlib
    assert sorted(result.stdout.split()) == ["tesengine", "tesengine._lazy"]
    assert tesengine.__all__ == sorted(tesengine.__all__)
    assert set(tesengine.__all__) == {*tesengine._EXPORTS, "__version__"}
    assert _type_checking_imports() == tesengine._EXPORTS  # what mypy sees is what you get
    assert tesengine.__version__ == importlib.metadata.version("tesengine")
    for name in tesengine.__all__:
        assert getattr(tesengine, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tesengine.nope


def _type_checking_imports() -> dict[str, str]:
    """Name -> submodule (``.config``), from the TYPE_CHECKING imports of tesengine/__init__.py."""
    tree = ast.parse(Path(tesengine.__file__).read_text())
    (block,) = [
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    ]
    return {
        alias.name: "." * node.level + (node.module or "")
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def _state(served: ServedTes, task_id: str) -> str:
    with urllib.request.urlopen(f"{served.api}/tasks/{task_id}", timeout=10) as reply:
        return str(json.load(reply)["state"])


def test_logs_of_a_running_task_says_so(
    tmp_path: Path, serve_tes: Callable[..., ServedTes]
) -> None:
    served = serve_tes(args=["--noop-delay", "120"])
    task = wire.TesTask(name="slow", executors=[wire.Executor(image="a", command=["true"])])
    task_id = post_task(served, task)
    wait_until(lambda: _state(served, task_id) == "RUNNING", timeout=10, what="RUNNING")
    config = config_file(tmp_path, served.url, served.storage_dir)
    result = cli("logs", task_id, "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"task {task_id} is RUNNING" in result.stderr
    assert "==" not in result.stdout  # headers, if any, went to stderr


def test_status_json_and_run_json_share_one_format(tmp_path: Path, noop_tes: ServedTes) -> None:
    config = config_file(tmp_path, noop_tes.url, noop_tes.storage_dir)
    run = cli(
        "run", "--json", "--config", str(config), "--name", "same", "--", "true", cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    status = cli(
        "status", json.loads(run.stdout)["tasks"][0]["id"], "--json", "--config", str(config),
        cwd=tmp_path,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    ran, seen = json.loads(run.stdout), json.loads(status.stdout)
    assert set(ran) == set(seen) == {"ok", "tasks"}
    (ran_task,), (seen_task,) = ran["tasks"], seen["tasks"]
    assert tuple(ran_task) == tuple(seen_task) == json_out.KEYS
    for key in ("name", "id", "state", "exit_codes", "error"):
        assert ran_task[key] == seen_task[key], key
    assert seen["ok"] is True and seen_task["state"] == "COMPLETE"


def test_every_registered_subcommand_is_listed_in_help() -> None:
    """A sub-command a module registers but SUBCOMMANDS lacks would be missing from --help."""
    import argparse
    import importlib

    from tesengine.cli.main import COMMANDS, SUBCOMMANDS

    for module in COMMANDS:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"tesengine.cli.{module}").register(sub)
        for name in sub.choices:
            assert SUBCOMMANDS.get(name, ("",))[0] == module, name
