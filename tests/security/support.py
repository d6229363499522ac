"""Hostile tasks against a real ``tesengine serve``: post raw JSON, wait for the end."""

from __future__ import annotations

import time
from typing import Any

import requests

from tests.fixtures.tes_server import ServedTes
from tests.support import wait_until

FINAL = {"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"}


def sh(script: str, **kw: Any) -> dict[str, Any]:
    """An executor running ``script`` with ``sh -c``."""
    return {"image": "debian:stable", "command": ["sh", "-c", script], **kw}


def post(served: ServedTes, task: dict[str, Any], timeout: float = 10.0) -> requests.Response:
    """POST ``task`` to the server; the raw response."""
    return requests.post(f"{served.api}/tasks", json=task, timeout=timeout)


def create(served: ServedTes, task: dict[str, Any]) -> str:
    """POST ``task``; its id (the POST must succeed)."""
    resp = post(served, task)
    assert resp.status_code == 200, resp.text
    task_id: str = resp.json()["id"]
    return task_id


def get(served: ServedTes, task_id: str) -> dict[str, Any]:
    """The task's FULL view."""
    resp = requests.get(f"{served.api}/tasks/{task_id}", params={"view": "FULL"}, timeout=10)
    resp.raise_for_status()
    doc: dict[str, Any] = resp.json()
    return doc


def wait_final(served: ServedTes, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Poll until the task is final; its FULL view."""
    seen: dict[str, Any] = {}

    def done() -> bool:
        seen["doc"] = get(served, task_id)
        return seen["doc"]["state"] in FINAL

    wait_until(done, timeout=timeout, what=f"task {task_id} to finish")
    return seen["doc"]


def run(served: ServedTes, task: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Create ``task`` and wait for its final FULL view."""
    return wait_final(served, create(served, task), timeout)


def system_logs(doc: dict[str, Any]) -> str:
    """Every system log line of the task, joined."""
    return "\n".join(line for log in doc.get("logs", []) for line in log.get("system_logs", []))


def answers_within(served: ServedTes, seconds: float) -> float:
    """Seconds ``GET /service-info`` took (it must answer within ``seconds``)."""
    start = time.monotonic()
    resp = requests.get(f"{served.api}/service-info", timeout=seconds)
    resp.raise_for_status()
    return time.monotonic() - start
