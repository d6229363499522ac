"""Helpers for the process scenarios: configs on disk, a blocking look at server states."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections import Counter
from pathlib import Path

from tests.fixtures.tes_server import ServedTes
from tests.support import user_env


def write_sprocket_toml(path: Path, url: str, storage: Path, interval: float = 0.2) -> Path:
    """A sprocket.toml for ``url`` with inputs and outputs under ``storage``."""
    path.write_text(
        "[run.backends.default]\n"
        'type = "tes"\n'
        f'url = "{url}"\n'
        f'inputs = "{(storage / "inputs").as_uri()}"\n'
        f'outputs = "{(storage / "outputs").as_uri()}"\n'
        f"interval = {interval}\n"
        f'cache_dir = "{path.parent / "cache"}"\n'
    )
    return path


def server_states(served: ServedTes) -> Counter[str]:
    """How many tasks the server has in each state (read directly, blocking)."""
    url = f"{served.api}/tasks?view=MINIMAL&page_size=1000"
    with urllib.request.urlopen(url, timeout=5) as resp:  # loopback only
        doc = json.load(resp)
    return Counter(task["state"] for task in doc.get("tasks", []))


def task_state(served: ServedTes, task_id: str) -> str:
    """One task's state on the server."""
    with urllib.request.urlopen(f"{served.api}/tasks/{task_id}", timeout=5) as resp:
        return str(json.load(resp)["state"])


def clean_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a fresh user process: no tesengine settings, a private cache."""
    return user_env(tmp_path / "xdg-cache")


PYTHON = sys.executable
