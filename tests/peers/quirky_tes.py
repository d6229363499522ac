"""A TES server with the documented quirks of servers that cannot run here.

TESK needs Kubernetes, TES on Azure needs Azure Batch and Cosmos DB, and
Funnel could not be fetched (its module is not served by the Go module
proxy this machine reaches). Their behaviour, as read from their sources,
is a :class:`Profile` of this fake: an aiohttp server on loopback that
stores tasks in memory and "runs" them without containers.

Running: each read of a task (GET, or a listing that shows it) moves it one
step along QUEUED -> INITIALIZING -> RUNNING -> its outcome, decided at
creation from the executors' commands: ``exit N`` fails with exit code N
(stderr ``exit N``), ``sleep`` keeps it RUNNING until cancelled, anything
else exits 0. Every FILE input with a ``file://`` URL must exist (else
SYSTEM_ERROR), and on success each ``file://`` output gets the
concatenated bytes of the FILE inputs followed by ``<task name>\\n``; a
DIRECTORY output gets that as ``out.txt`` inside it. So a test can see that
inputs were staged and that one task's output fed the next.

Each quirk's comment cites the file of the peer's source it was read from.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import web

from tests.fixtures.proxy import serve_on_loopback

from .quirk_profiles import PROFILES, Profile

__all__ = ["PROFILES", "FakeTask", "Profile", "QuirkyTes"]

_FINAL = frozenset({"COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED"})
_STEPS = ("QUEUED", "INITIALIZING", "RUNNING")
_EXIT = re.compile(r"\bexit (\d+)")


@dataclass(slots=True)
class FakeTask:
    """One stored task: the request as posted plus what the fake made of it."""

    id: str
    doc: dict[str, Any]
    created: str
    outcome: str  # COMPLETE, EXECUTOR_ERROR, SYSTEM_ERROR, or RUNNING (never ends)
    codes: list[int]
    state: str = "QUEUED"
    logs: list[dict[str, Any]] = field(default_factory=list)
    system_logs: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in _FINAL


class QuirkyTes:
    """The fake server for one :class:`Profile`; ``async with`` starts it on loopback."""

    def __init__(self, profile: Profile, *, seed: int = 0) -> None:
        self.profile = profile
        self.tasks: dict[str, FakeTask] = {}
        self.order: list[str] = []  # creation order
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.creates = 0
        self.throttled = 0
        self.url = ""
        self._rng = random.Random(seed)
        self._counter = itertools.count(1)
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> QuirkyTes:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.url = await serve_on_loopback(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def count(self, method: str, pattern: str = "") -> int:
        """Requests seen with ``method`` whose path and query match ``pattern``."""
        return sum(1 for m, p in self.requests if m == method and re.search(pattern, p))

    # -- dispatch ---------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        p = self.profile
        if p.throttle_every and len(self.requests) % p.throttle_every == 0:
            # TES on Azure: DatabaseOverloadedExceptionMiddleware answers 429,
            # text/plain, and sets no Retry-After (microsoft/ga4gh-tes
            # src/TesApi.Web/Controllers/DatabaseOverloadedExceptionMiddleware.cs)
            self.throttled += 1
            return web.Response(status=429, text="The database is overloaded.")
        path = request.path
        longest = sorted(p.prefixes, key=len, reverse=True)
        prefix = next((x for x in longest if path.startswith(x + "/")), None)
        if prefix is None:
            return p.error(404, f"no route {path}")
        route = path.removeprefix(prefix)
        if route == "/service-info" and request.method == "GET":
            return web.json_response(p.service_info)
        if route == "/tasks" and request.method == "POST":
            return await self._create(request)
        if route == "/tasks" and request.method == "GET":
            return self._list(request)
        match = re.fullmatch(r"/tasks/([^/:]+)(:cancel)?", route)
        if match is None:
            return p.error(404, f"no route {path}")
        task_id = unquote(match.group(1))
        if not p.valid_id(task_id):
            return p.error(400, "Invalid ID")
        task = self.tasks.get(task_id)
        if task is None:
            return p.error(404, p.not_found(task_id))
        if match.group(2) and request.method == "POST":
            return self._cancel(task)
        if not match.group(2) and request.method == "GET":
            view = request.query.get("view", "")
            if view not in p.views:
                return p.error(400, f"Invalid view parameter value: {view}")
            self._step(task)
            return web.json_response(self._render(task, p.views[view]))
        return p.error(405, "method not allowed")

    # -- operations -------------------------------------------------------

    async def _create(self, request: web.Request) -> web.Response:
        try:
            doc = await request.json()
        except ValueError:
            return self.profile.error(400, "malformed JSON")
        if not isinstance(doc, dict) or not doc.get("executors"):
            return self.profile.error(400, "a task needs executors")
        self.creates += 1
        task_id = self.profile.new_id(self._rng, next(self._counter))
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        outcome, codes = _outcome(doc)
        task = FakeTask(task_id, doc, created, outcome, codes)
        self.tasks[task_id] = task
        self.order.append(task_id)
        return web.json_response({"id": task_id})

    def _list(self, request: web.Request) -> web.Response:
        p = self.profile
        query = request.query
        size_text = next((query[k] for k in p.page_size_params if k in query), None)
        size = p.default_page_size
        if size_text is not None:
            size = int(size_text) if size_text.lstrip("-").isdigit() else 0
            low, high = p.page_size_range
            if not low <= size <= high:
                if p.clamp_page_size:
                    size = min(max(size, 1), high)
                else:
                    return p.error(400, f"pageSize must be in {low}..{high}")
        view = query.get("view", "")
        if view not in p.views:
            return p.error(400, f"Invalid view parameter value: {view}")
        ids = self._filtered(request)
        start = p.decode_token(query.get(p.page_token_param, ""), ids)
        page = ids[start : start + size]
        for task_id in page:
            self._step(self.tasks[task_id])
        body: dict[str, Any] = {"tasks": [self._render(self.tasks[i], p.views[view]) for i in page]}
        more = start + size < len(ids)
        if more or (p.token_when_full and page and len(page) == size):
            body["next_page_token"] = p.encode_token(start + size, page)
        return web.json_response(p.shape_list(body))

    def _filtered(self, request: web.Request) -> list[str]:
        p = self.profile
        ids = list(reversed(self.order)) if p.newest_first else list(self.order)
        query = request.query
        if p.honours_tags:
            wanted = list(
                zip(query.getall("tag_key", []), query.getall("tag_value", []), strict=False)
            )
            ids = [
                i
                for i in ids
                if all(self.tasks[i].doc.get("tags", {}).get(k) == v for k, v in wanted)
            ]
        if p.name_prefix_param and (prefix := query.get(p.name_prefix_param)):
            ids = [i for i in ids if str(self.tasks[i].doc.get("name", "")).startswith(prefix)]
        return ids

    def _cancel(self, task: FakeTask) -> web.Response:
        if task.final:
            return self.profile.cancel_final(task.state)
        task.state = "CANCELED"
        return web.json_response({})

    # -- the simulated run ------------------------------------------------

    def _step(self, task: FakeTask) -> None:
        if task.final:
            return
        index = _STEPS.index(task.state)
        if index + 1 < len(_STEPS):
            task.state = _STEPS[index + 1]
        elif task.outcome != "RUNNING":
            self._finish(task)

    def _finish(self, task: FakeTask) -> None:
        data, missing = _read_inputs(task.doc)
        if missing:
            task.state = "SYSTEM_ERROR"
            task.system_logs.append(f"input not found: {missing}")
            task.logs = [_task_log(task, [], [])]
            return
        outputs = _write_outputs(task.doc, data) if task.outcome == "COMPLETE" else []
        task.state = task.outcome
        task.logs = [_task_log(task, self._executor_logs(task), outputs)]

    def _executor_logs(self, task: FakeTask) -> list[dict[str, Any]]:
        logs = []
        for index, code in enumerate(task.codes):
            stdout, stderr = "", f"exit {code}" if code else ""
            if self.profile.logs_as_urls:
                stdout, stderr = (
                    self.profile.log_url(task.id, index, s) for s in ("stdout", "stderr")
                )
            logs.append(
                {"exit_code": code, "stdout": stdout, "stderr": stderr,
                 "start_time": task.created, "end_time": task.created}
            )  # fmt: skip
        return logs

    def _render(self, task: FakeTask, view: str) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": task.id, "state": task.state}
        if view != "MINIMAL":
            doc = {**task.doc, **doc, "creation_time": task.created, "logs": _copy(task.logs)}
            if view == "BASIC":
                _strip_basic(doc)
        return self.profile.shape_task(doc, view, task.system_logs)


def _outcome(doc: Mapping[str, Any]) -> tuple[str, list[int]]:
    codes: list[int] = []
    for executor in doc["executors"]:
        command = " ".join(str(c) for c in executor.get("command", []))
        if "sleep" in command:
            return "RUNNING", codes
        found = _EXIT.search(command)
        code = int(found.group(1)) if found else 0
        codes.append(code)
        if code and not executor.get("ignore_error"):
            return "EXECUTOR_ERROR", codes
    return "COMPLETE", codes


def _local(url: str) -> Path | None:
    parts = urlsplit(url)
    return Path(unquote(parts.path)) if parts.scheme == "file" else None


def _read_inputs(doc: Mapping[str, Any]) -> tuple[bytes, str | None]:
    data = b""
    for item in doc.get("inputs") or []:
        path = _local(str(item.get("url", "")))
        if path is None:
            continue
        if item.get("type") == "DIRECTORY":
            if not path.is_dir():
                return data, item["url"]
        elif path.is_file():
            data += path.read_bytes()
        else:
            return data, item["url"]
    return data, None


def _write_outputs(doc: Mapping[str, Any], data: bytes) -> list[dict[str, Any]]:
    content = data + f"{doc.get('name', '')}\n".encode()
    written = []
    for item in doc.get("outputs") or []:
        path = _local(str(item.get("url", "")))
        if path is None:
            continue
        if item.get("type") == "DIRECTORY":
            path = path / "out.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(
            {"url": path.as_uri(), "path": item["path"], "size_bytes": str(len(content))}
        )
    return written


def _task_log(task: FakeTask, logs: list[dict[str, Any]], outputs: list[Any]) -> dict[str, Any]:
    return {
        "start_time": task.created,
        "end_time": task.created,
        "logs": logs,
        "outputs": outputs,
        "system_logs": list(task.system_logs),
    }


def _strip_basic(doc: dict[str, Any]) -> None:
    """TES 1.1 BASIC: no executor stdout/stderr, input content, or system logs."""
    for item in doc.get("inputs") or []:
        item.pop("content", None)
    for attempt in doc.get("logs") or []:
        attempt.pop("system_logs", None)
        for log in attempt.get("logs") or []:
            log.pop("stdout", None)
            log.pop("stderr", None)


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))
