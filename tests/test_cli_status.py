"""``tesengine status`` and ``list`` of a real (embedded) run: internal outputs hidden,
server-supplied names shown with their control characters made visible on a terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli_embedded import on_a_terminal, tesengine

NAME = "n\x1b]0;pwned\x07m"
SHOWN = "n\\x1b]0;pwned\\x07m"


@pytest.fixture(scope="module")
def named_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(directory, task id) of a finished embedded run whose name holds escapes."""
    home = tmp_path_factory.mktemp("status")
    result = tesengine(home, "run", "--json", "--name", NAME, "--", "true")
    assert result.returncode == 0, result.stderr
    (task,) = json.loads(result.stdout)["tasks"]
    return home, str(task["id"])


def test_status_json_hides_the_engines_captured_logs_output(named_run: tuple[Path, str]) -> None:
    home, task_id = named_run
    status = tesengine(home, "status", "--json", task_id)
    assert status.returncode == 0, status.stderr
    (record,) = json.loads(status.stdout)["tasks"]
    assert record["name"] == NAME  # JSON carries the name as it is
    assert record["state"] == "COMPLETE"
    assert record["outputs"] == {}  # not the engine's /tesengine-logs


@pytest.mark.parametrize("command", ["status", "list"])
def test_status_and_list_make_name_escapes_visible_on_a_terminal(
    named_run: tuple[Path, str], command: str
) -> None:
    home, task_id = named_run
    code, shown = on_a_terminal(home, command, *([task_id] if command == "status" else []))
    assert code == 0, shown
    assert task_id in shown and SHOWN in shown, shown
    assert "\x1b]0;pwned" not in shown
    piped = tesengine(home, command, *([task_id] if command == "status" else []))
    assert NAME in piped.stdout  # a pipe gets the bytes as they are
