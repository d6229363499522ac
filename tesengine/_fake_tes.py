"""An in-memory TES v1.1 server behind :class:`~tesengine.testing.MockTransport`.

Exported as :class:`tesengine.testing.FakeTes`; see there.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from .tes.models import READ_ONLY_TASK_FIELDS, State, View
from .tes.transport import Request, Response

__all__ = ["FakeTes", "Fault"]

_FINAL = frozenset(s.value for s in State if s.is_final)


@dataclass
class Fault:
    """Answer the next request to ``route`` with ``status`` (and ``body``), or raise ``exc``.

    ``route`` is one of ``info``, ``create``, ``list``, ``get``, ``cancel``.
    With ``after``, the fake handles the request first and then fails: the
    server acted but the client never heard (a reset after a POST).
    """

    method: str
    route: str
    status: int = 0
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    exc: BaseException | None = None
    after: bool = False


@dataclass
class FakeTes:
    """A TES server in memory: a handler for :class:`~tesengine.testing.MockTransport`.

    Tasks are plain dicts in :attr:`tasks`, numbered ``task-1``, ``task-2``...
    in creation order; they start QUEUED and move only when told to
    (:meth:`set_state`) or, with ``lifecycle``, one step along it each time
    they are read, by GET or in a listing (``lifecycle=(State.RUNNING,
    State.COMPLETE)``). Listing honours
    ``name_prefix``, ``state``, tag pairs (unless ``ignore_filters``, as some
    servers do), views and page tokens. Every request is kept in
    :attr:`requests` with its route; :attr:`faults` fail the next matching ones.
    """

    base: str = "http://tes.test/ga4gh/tes/v1"
    lifecycle: Sequence[State] = ()
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, Request]] = field(default_factory=list)
    ignore_filters: bool = False
    page_size: int = 100
    in_flight: int = 0
    max_in_flight: int = 0

    def count(self, method: str, route: str) -> int:
        """How many ``method`` requests reached ``route``."""
        return sum(1 for r, req in self.requests if (req.method, r) == (method, route))

    def posted(self) -> list[dict[str, Any]]:
        """The body of every CreateTask request, parsed."""
        return [req.json() for r, req in self.requests if r == "create"]

    def set_state(self, task_id: str, state: State, *, exit_code: int | None = None) -> None:
        """Move a task to ``state``; a final state also gets a task log (with ``exit_code``)."""
        task = self.tasks[task_id]
        task["state"] = State(state).value
        if task["state"] in _FINAL and not task.get("logs"):
            logs = [{} if exit_code is None else {"exit_code": exit_code}]
            task["logs"] = [{"logs": logs, "outputs": [], "system_logs": []}]

    async def __call__(self, request: Request) -> Response:
        route, task_id = self._route(request)
        self.requests.append((route, request))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            for _ in range(3):  # let other requests in, so that concurrency shows
                await asyncio.sleep(0)
            fault = next(
                (f for f in self.faults if (f.method, f.route) == (request.method, route)), None
            )
            if fault is None:
                return self._answer(route, task_id, request)
            self.faults.remove(fault)
            answered = self._answer(route, task_id, request) if fault.after else None
            if fault.exc is not None:
                raise fault.exc
            if answered is not None and not fault.status:
                return answered
            return _reply(fault.status, fault.body, fault.headers)
        finally:
            self.in_flight -= 1

    def _route(self, request: Request) -> tuple[str, str]:
        if not request.url.startswith(self.base + "/"):
            return "unknown", ""
        path = request.url[len(self.base) :].partition("?")[0]
        if path == "/service-info":
            return "info", ""
        if path == "/tasks":
            return ("create" if request.method == "POST" else "list"), ""
        if path.startswith("/tasks/") and path.endswith(":cancel"):
            return "cancel", unquote(path[len("/tasks/") : -len(":cancel")])
        if path.startswith("/tasks/") and "/" not in path[len("/tasks/") :]:
            return "get", unquote(path[len("/tasks/") :])
        return "unknown", ""

    def _answer(self, route: str, task_id: str, request: Request) -> Response:
        if route == "info":
            return Response.of_json({"id": "fake", "name": "fake", "storage": []})
        if route == "create":
            return self._create(request)
        if route == "list":
            return self._list(request)
        if route == "unknown":
            return _reply(404, {"error": f"{request.method} {request.path}: no such route"})
        if task_id not in self.tasks:
            return _reply(404, {"error": f"task {task_id} not found"})
        return self._cancel(task_id) if route == "cancel" else self._get(task_id, request)

    def _cancel(self, task_id: str) -> Response:
        if self.tasks[task_id]["state"] not in _FINAL:
            self.set_state(task_id, State.CANCELED)
        return Response.of_json({})

    def _get(self, task_id: str, request: Request) -> Response:
        self._advance(task_id)
        view = dict(request.query).get("view", "MINIMAL")
        return Response.of_json(_in_view(self.tasks[task_id], view))

    def _create(self, request: Request) -> Response:
        try:
            task = request.json()
        except ValueError:
            return _reply(400, {"error": "the body is not JSON"})
        if not isinstance(task, dict) or not task.get("executors"):
            return _reply(400, {"error": "a task needs at least one executor"})
        task_id = f"task-{len(self.tasks) + 1}"
        clean = {k: v for k, v in task.items() if k not in READ_ONLY_TASK_FIELDS}
        self.tasks[task_id] = {**clean, "id": task_id, "state": State.QUEUED.value}
        return Response.of_json({"id": task_id})

    def _advance(self, task_id: str) -> None:
        states = [State(s).value for s in self.lifecycle]
        now = self.tasks[task_id]["state"]
        if now in _FINAL or not states:
            return
        step = states.index(now) + 1 if now in states else 0
        if step < len(states):
            self.set_state(task_id, State(states[step]), exit_code=0)

    def _list(self, request: Request) -> Response:
        pairs = request.query
        query = dict(pairs)
        found = list(self.tasks.values())
        if not self.ignore_filters:
            keys = [v for k, v in pairs if k == "tag_key"]
            values = [v for k, v in pairs if k == "tag_value"]
            for key, value in zip(keys, values, strict=False):
                found = [t for t in found if (t.get("tags") or {}).get(key) == value]
            prefix = query.get("name_prefix", "")
            found = [t for t in found if str(t.get("name") or "").startswith(prefix)]
            if "state" in query:
                found = [t for t in found if t["state"] == query["state"]]
        size = int(query.get("page_size") or self.page_size)
        start = int(query.get("page_token") or 0)
        view = query.get("view", "MINIMAL")
        page = found[start : start + size]
        for task in page:
            self._advance(task["id"])
        doc: dict[str, Any] = {"tasks": [_in_view(t, view) for t in page]}
        if start + size < len(found):
            doc["next_page_token"] = str(start + size)
        return Response.of_json(doc)


def _in_view(task: dict[str, Any], view: str) -> dict[str, Any]:
    """The task as a server shows it in ``view`` (the spec's MINIMAL, BASIC and FULL)."""
    if view == View.MINIMAL:
        return {"id": task["id"], "state": task["state"]}
    shown = copy.deepcopy(task)
    if view == View.BASIC:
        for log in shown.get("logs") or []:
            log.pop("system_logs", None)
            for executor_log in log.get("logs") or []:
                executor_log.pop("stdout", None)
                executor_log.pop("stderr", None)
        for item in shown.get("inputs") or []:
            item.pop("content", None)
    return shown


def _reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    raw = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else None
    if raw is None:
        return Response.of_json(body, status, headers)
    return Response(status, headers or {}, raw)
