"""The TES v1.1 HTTP API (aiohttp.web), served at ``/ga4gh/tes/v1`` and ``/v1``.

Client input never causes a 500: a bad body or parameter is a 400 with
``{"error": "..."}`` naming the field, an unknown task a 404. Responses carry
exactly the fields the spec's views allow.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import InvalidTask, TaskStoreError
from ..storage import Storage
from ..storage.urls import join_url
from ..tes.models import API_PREFIXES, SUBMISSION_TAG, State, View
from . import dashboard
from .access import check_task_access
from .layout import check_input_layout
from .lifecycle import Services, add_system_log, move, new_task_doc, recover, run_task
from .list_query import encode_page_token, validate_list_query, validate_view
from .middleware import Handler, auth_middleware, error_middleware
from .runtime import Runtime, make_runtime
from .runtime.tasks_base import tasks_base
from .scheduler import Scheduler
from .staging_io import AllowedDirs
from .states import Event
from .store import TaskRecord, TaskStore
from .task_doc import TaskDoc
from .task_request import validate_task
from .views import matches, project

__all__ = ["ServerSettings", "create_app"]

log = logging.getLogger("tesengine.server")

MAX_BODY = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How a server runs. Credentials are left out of the repr.

    ``db_busy_timeout``: seconds a commit waits while another connection holds
    the task database's write lock; then the creation is refused with a 503.
    """

    work_dir: Path
    storage_url: str | None = None
    runtime: str = "local"
    max_tasks: int | None = None
    noop_delay: float = 0.0
    allow_dirs: tuple[Path, ...] = ()
    basic: tuple[str, str] | None = field(default=None, repr=False)
    bearer: str | None = field(default=None, repr=False)
    storage_config: Any = field(default=None, repr=False)
    keep_work: bool = False
    allow_private_urls: bool = False
    inputs_namespace: str | None = None
    db_busy_timeout: float = 5.0

    @property
    def resolved_storage_url(self) -> str:
        """``storage_url``, or a ``storage`` folder in the work directory."""
        return self.storage_url or (self.work_dir.resolve() / "storage").as_uri()

    @property
    def resolved_inputs_namespace(self) -> str:
        """Where no output may go: ``inputs_namespace``, or ``<storage>/inputs/``."""
        return self.inputs_namespace or join_url(self.resolved_storage_url, "inputs") + "/"


_SETTINGS = web.AppKey("settings", ServerSettings)


class TesService:
    """The server's state: task store, scheduler, runtime and storage."""

    def __init__(self, settings: ServerSettings, runtime: Runtime, io: Storage | None) -> None:
        self.settings = settings
        self.runtime = runtime
        self.io = io
        self.store = TaskStore(
            settings.work_dir / "tasks.sqlite3", busy_timeout=settings.db_busy_timeout
        )
        roots = [*settings.allow_dirs]
        storage_url = settings.resolved_storage_url
        if storage_url.startswith("file://"):
            roots.append(Path(storage_url.removeprefix("file://")))
        self.allowed = AllowedDirs.of(
            roots,
            protected=(settings.resolved_inputs_namespace,),
            allow_private_urls=settings.allow_private_urls,
        )
        self._tasks_base = tasks_base(settings.work_dir, getattr(runtime, "sandbox_user", None))
        self.services = Services(
            self.store, runtime, io, self.allowed, self._tasks_base.path, settings.keep_work
        )
        capacity = settings.max_tasks or os.cpu_count() or 1
        self.scheduler = Scheduler(capacity, self._run)

    async def _run(self, record: TaskRecord) -> None:
        # The run changes the document: hold it whole (read back if it was shrunk).
        await self.store.pin(record)
        try:
            if record.state is State.QUEUED:  # not canceled while it was read back
                await run_task(record, self.services)
        finally:
            self.store.unpin(record)

    async def start(self) -> None:
        """Check the runtime, load stored tasks and queue the unfinished ones again."""
        await self.runtime.check()
        await asyncio.to_thread(self._check_database)
        await asyncio.to_thread(self._prepare_dirs)
        for record in await self.store.open():
            if recover(self.store, record):
                self.scheduler.submit(record)

    def _check_database(self) -> None:
        # An empty file where tasks have run means the database was truncated
        # or replaced: starting would silently forget every task.
        db = self.settings.work_dir / "tasks.sqlite3"
        tasks = self.settings.work_dir / "tasks"
        if db.is_file() and db.stat().st_size == 0 and tasks.is_dir() and any(tasks.iterdir()):
            raise TaskStoreError(
                f"the task database {db} is empty (0 bytes) but {tasks} holds task directories:"
                " the database was truncated or replaced; restore it, or move the work"
                " directory away to start afresh"
            )

    def _prepare_dirs(self) -> None:
        # No task runs yet: whatever a previous run left in tasks/ is stale.
        shutil.rmtree(self.settings.work_dir / "tasks", ignore_errors=True)
        self._tasks_base.path.mkdir(parents=True, exist_ok=True)
        storage_url = self.settings.resolved_storage_url
        if storage_url.startswith("file://"):
            Path(storage_url.removeprefix("file://")).mkdir(parents=True, exist_ok=True)

    async def stop(self) -> None:
        """Cancel running tasks (they end SYSTEM_ERROR), then commit and close."""
        await self.scheduler.close()
        await self.store.close()
        if self.io is not None:
            await self.io.aclose()
        await asyncio.to_thread(self._tasks_base.close)

    def service_info(self) -> dict[str, Any]:
        """The GA4GH service-info document."""
        storage = [self.settings.resolved_storage_url]
        storage += [root.as_uri() for root in self.allowed.roots if root.as_uri() not in storage]
        return {
            "id": "org.tesengine.local",
            "name": "tesengine local TES server",
            "type": {"group": "org.ga4gh", "artifact": "tes", "version": "1.1.0"},
            "description": self.runtime.describe(),
            "organization": {"name": "tesengine", "url": "https://pypi.org/project/tesengine/"},
            "version": _version(),
            "environment": self.runtime.name,
            "storage": storage,
            "tesResources_backend_parameters": [],
        }

    # -- handlers -------------------------------------------------------------

    async def get_service_info(self, request: web.Request) -> web.Response:
        """GET /service-info."""
        return _json(self.service_info())

    async def create_task(self, request: web.Request) -> web.Response:
        """POST /tasks: validate, store durably, queue; 200 with the id."""
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise InvalidTask(f"body: not valid JSON ({exc})") from None
        valid = validate_task(body)
        if self.runtime.stages_files:  # the noop runtime touches no URL
            check_task_access(valid.doc, self.allowed)
            check_input_layout(valid.doc)
        # A client that retried a POST which had in fact arrived sends the same
        # submission tag again: answer with the task it already created.
        tag = (valid.doc.get("tags") or {}).get(SUBMISSION_TAG)
        existing = await self.store.find_submission(tag) if tag else None
        if existing is not None:
            return _json({"id": existing.id})
        # Shielded: a client that hangs up must not leave a committed task unqueued.
        doc = new_task_doc(valid)
        self._note_clamped(doc)
        record = await asyncio.shield(self._create(doc))
        return _json({"id": record.id})

    def _note_clamped(self, doc: TaskDoc) -> None:
        # More cores than the server has would wait forever: the task gets them all.
        cores = (doc.get("resources") or {}).get("cpu_cores")
        capacity = self.scheduler.capacity
        if isinstance(cores, int) and cores > capacity:
            add_system_log(
                doc,
                f"resources.cpu_cores: {cores} is more than this server's {capacity}"
                f" CPU slots (--max-tasks); the task runs with all {capacity}",
            )

    async def _create(self, doc: TaskDoc) -> TaskRecord:
        record = await self.store.add(doc)
        self.scheduler.submit(record)
        return record

    async def get_task(self, request: web.Request) -> web.Response:
        """GET /tasks/{id}."""
        view = validate_view(request.query.get("view"))
        record = self._record(request)
        return _json(project(await self._doc(record, view), view))

    async def list_tasks(self, request: web.Request) -> web.Response:
        """GET /tasks with filters and paging, newest first."""
        query = request.query
        q = validate_list_query(query, query.getall("tag_key", []), query.getall("tag_value", []))
        tasks: list[Mapping[str, Any]] = []
        last_seq: int | None = None
        more = False
        for record in self.store.newest_first(q.after_seq):
            summary = record.summary
            if not matches(summary, name_prefix=q.name_prefix, state=q.state, tags=q.tags):
                continue
            if len(tasks) == q.page_size:
                more = True
                break
            tasks.append(project(await self._doc(record, q.view), q.view))
            last_seq = record.seq
        body: dict[str, Any] = {"tasks": tasks}
        if more and last_seq is not None:
            body["next_page_token"] = encode_page_token(last_seq)
        return _json(body)

    async def cancel_task(self, request: web.Request) -> web.Response:
        """POST /tasks/{id}:cancel; a finished task is left as it is."""
        record = self._record(request)
        if record.state.is_final:
            return _json({})
        await self.store.pin(record)  # set_state changes the full document
        try:
            self._cancel(record)
        finally:
            self.store.unpin(record)
        return _json({})

    def _cancel(self, record: TaskRecord) -> None:
        before = record.state
        after = move(self.store, record, Event.CANCEL)
        if after is State.CANCELED:  # it was queued: whatever waited behind it may start
            self.scheduler.withdraw(record.id)
        elif after is State.CANCELING and before is not State.CANCELING:
            # The run ends CANCELED once its processes are gone; with no run, at once.
            stopping = self.scheduler.cancel(record.id)
            if not stopping:
                move(self.store, record, Event.STOPPED)

    async def _doc(self, record: TaskRecord, view: View) -> TaskDoc:
        # Only FULL needs what a shrunk record keeps on disk.
        return await self.store.load(record) if view is View.FULL else record.summary

    def _record(self, request: web.Request) -> TaskRecord:
        task_id = request.match_info["id"]
        record = self.store.get(task_id)
        if record is None:
            raise web.HTTPNotFound(reason=f"task {task_id[:200]!r} not found")
        return record


_SERVICE = web.AppKey("service", TesService)


def _version() -> str:
    # From the installed metadata, not the package root: the server never imports it.
    try:
        return importlib.metadata.version("tesengine")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def create_app(settings: ServerSettings, *, runtime: Runtime | None = None) -> web.Application:
    """The aiohttp application; tasks start and stop with the app's lifecycle."""
    middlewares: list[Any] = [error_middleware]
    if settings.basic is not None or settings.bearer is not None:
        # The dashboard's static page holds no data; its API calls are authenticated.
        middlewares.append(dashboard.shell_exempt(auth_middleware(settings.basic, settings.bearer)))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)
    app[_SETTINGS] = settings
    chosen = runtime or make_runtime(settings.runtime, noop_delay=settings.noop_delay)

    async def lifecycle(app: web.Application) -> Any:
        # A server never borrows the machine's instance credentials for a client.
        io = Storage(settings.storage_config, ambient_credentials=False)
        service = TesService(settings, chosen, io)
        app[_SERVICE] = service
        await service.start()
        yield
        await service.stop()

    app.cleanup_ctx.append(lifecycle)
    for prefix in API_PREFIXES:
        app.router.add_get(f"{prefix}/service-info", _bound("get_service_info"))
        app.router.add_get(f"{prefix}/tasks", _bound("list_tasks"))
        app.router.add_post(f"{prefix}/tasks", _bound("create_task"))
        app.router.add_post(prefix + "/tasks/{id}:cancel", _bound("cancel_task"))
        app.router.add_get(prefix + "/tasks/{id}", _bound("get_task"))
    dashboard.add_routes(app)
    return app


def _bound(name: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        method: Handler = getattr(request.app[_SERVICE], name)
        return await method(request)

    handler.__name__ = name
    return handler
