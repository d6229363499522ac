"""CPU slots on a real ``tesengine serve``: cancel wakes the queue, big requests are clamped."""

from __future__ import annotations

from collections.abc import Callable

import requests

from tests.fixtures.tes_server import ServedTes
from tests.security.support import create, get, sh, system_logs, wait_final
from tests.support import wait_until


def _cancel(served: ServedTes, task_id: str) -> None:
    resp = requests.post(f"{served.api}/tasks/{task_id}:cancel", timeout=10)
    resp.raise_for_status()


def _state(served: ServedTes, task_id: str) -> str:
    state: str = get(served, task_id)["state"]
    return state


def test_canceling_a_waiting_task_starts_the_tasks_behind_it(
    serve_tes: Callable[..., ServedTes],
) -> None:
    served = serve_tes(runtime="local", args=["--max-tasks", "2"])
    a = create(served, {"executors": [sh("sleep 25")]})
    wait_until(lambda: _state(served, a) == "RUNNING", timeout=10, what="A to run")
    big = {"executors": [sh("true")], "resources": {"cpu_cores": 64}}
    b = create(served, big)
    c = create(served, {"executors": [sh("true")]})
    assert _state(served, c) == "QUEUED"  # behind B, which waits for both slots
    _cancel(served, b)
    # C fits in the slot A leaves free: it must not wait for A's 25 s.
    assert wait_final(served, c, timeout=8)["state"] == "COMPLETE"
    assert _state(served, a) == "RUNNING"
    assert _state(served, b) == "CANCELED"
    _cancel(served, a)
    assert wait_final(served, a, timeout=10)["state"] == "CANCELED"


def test_more_cpu_cores_than_the_server_has_run_on_all_of_them(
    serve_tes: Callable[..., ServedTes],
) -> None:
    served = serve_tes(runtime="local", args=["--max-tasks", "2"])
    doc = wait_final(
        served,
        create(served, {"executors": [sh("true")], "resources": {"cpu_cores": 64}}),
        timeout=15,
    )
    assert doc["state"] == "COMPLETE"
    logs = system_logs(doc)
    assert "resources.cpu_cores: 64 is more than this server's 2 CPU slots" in logs, logs
