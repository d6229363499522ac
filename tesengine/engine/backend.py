""":class:`TesBackend`: the asyncio API a workflow runner embeds.

``submit`` validates a task completely, stages its local inputs (digest,
exists?, upload), builds the TES request with a unique output prefix, creates
the task and returns a :class:`TaskRun` at once; one poller coroutine per
task then resolves it, reading states from one shared
:class:`~tesengine.engine.batch.BatchStatus` (one tag-filtered listing per
interval) or per task, as ``polling`` says. Leaving ``async with`` cancels (or
leaves, per ``on_close``) what is still in flight and closes what the backend
created: a client, storage or status source passed in is the caller's to close.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import Any, Protocol, TypeVar, cast

from .._closing import AsyncClosing
from ..config import Config, load_config
from ..digest import Digester
from ..errors import NotReady
from ..storage import Stager, Storage, StorageLike
from ..tes import TesClient
from ..tes import models as wire
from ..testing import poll_interval
from .batch import ListingClient, status_source
from .events import EngineEvents, NullEvents, TransferProgress, emit
from .logs import TaskLogs, task_logs
from .outputs import OutputCache, RemoteDirectory, RemoteFile
from .poller import Sleep, StatusSource, poll
from .recover import recover
from .request import RUN_TAG, build_task, layout
from .run import Submission, TaskRun
from .spec import Task
from .validate import Plan, validate_all_off_loop, validate_off_loop

log = logging.getLogger("tesengine.engine")


class TaskClient(ListingClient, Protocol):
    """What a backend asks of its TES client; a :class:`~tesengine.tes.TesClient` is one.

    Pass your own (``TesBackend(config, client=...)``) to share one between
    backends or to stand in for a server; you close it, not the backend.
    """

    async def create_task(self, task: wire.TesTask) -> str: ...
    async def cancel_task(self, task_id: str) -> None: ...
    async def service_info(self) -> wire.ServiceInfo: ...


class _Closable(Protocol):
    async def aclose(self) -> None: ...


_R = TypeVar("_R", bound=_Closable)


class TesBackend(AsyncClosing):
    """Runs tasks on one TES server. Use as ``async with TesBackend(config) as backend``."""

    def __init__(
        self,
        config: Config,
        *,
        events: EngineEvents | None = None,
        progress: TransferProgress | None = None,
        client: TaskClient | None = None,
        storage: StorageLike | None = None,
        status: StatusSource | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.events: EngineEvents = events or NullEvents()
        self.run_tag = uuid.uuid4().hex
        self.preempted_retries = config.backend.preempted_retries
        cache = config.backend.resolved_cache_dir
        #: What this backend created, closed in reverse order; injected parts are the caller's.
        self._owned: list[Callable[[], Awaitable[None]]] = []
        self.client: TaskClient = client or self._own(TesClient.from_config(config))
        self.storage: StorageLike = storage or self._own(Storage(config.storage))
        self.digester = self._own(Digester.from_config(config.backend, progress=progress))
        self.stager = Stager(
            self.storage,
            self.digester,
            config.backend.inputs,
            concurrency=config.backend.staging_concurrency,
            progress=progress,
        )
        self.reader = OutputCache(self.storage, cache / "outputs")
        # Created last, closed first: its loop may be mid-request on the client.
        source = status or self._own(status_source(config.backend.polling, self.client, sleep))
        self._status = source
        self._sleep = sleep
        self._runs: set[TaskRun] = set()
        # Requests are built only once they may be sent: 100,000 submits at once
        # then wait as bare coroutines, not as built requests queued on the client.
        self._creating = asyncio.Semaphore(config.backend.max_concurrency)
        self._cancels: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str] | None = None, backend: str = "default", **kw: Any
    ) -> TesBackend:
        """A backend configured from a sprocket.toml (found as :func:`load_config` does)."""
        return cls(load_config(path, backend, **kw))

    @property
    def polling(self) -> str:
        """How task states are read now: ``batch``, ``per-task``, or ``probing``.

        ``probing`` (``polling = "auto"``) lasts until the first listing has
        shown whether the server honours tag filters.
        """
        return str(getattr(self._status, "mode", "per-task"))

    async def submit(self, task: Task) -> TaskRun:
        """Validate, stage and create ``task``; return its handle at once.

        Raises :class:`~tesengine.InvalidTask` before any upload or request
        when the task is malformed. Local inputs are checked (``stat``) in a
        worker thread, never on the event loop; for many tasks,
        :meth:`submit_many` validates them all in one pass.
        """
        self._check_open()
        plan = await validate_off_loop(task)
        (staged,) = await self._stage([plan])
        return self._track(self._run(plan, staged, await self._create(plan, staged)))

    async def submit_many(self, tasks: Sequence[Task]) -> list[TaskRun]:
        """Validate, stage and create every task; their handles, in the order given.

        All tasks are validated first (off the event loop), and one
        :class:`~tesengine.InvalidTask` names every bad one by index
        (``tasks[3]: ...``) before anything is uploaded or created. The local
        inputs of all tasks are then staged in one batch, and the tasks are
        created at most ``max_concurrency`` at a time. If a create fails, the
        tasks already created are cancelled and that error is raised.
        """
        self._check_open()
        plans = await validate_all_off_loop(tasks)
        staged = await self._stage(plans)
        # Every create runs to its end: one cancelled in flight might still
        # exist on the server, with nobody left to cancel it.
        created = await asyncio.gather(
            *(self._create(p, i) for p, i in zip(plans, staged, strict=True)),
            return_exceptions=True,
        )
        failed = next((c for c in created if isinstance(c, BaseException)), None)
        if failed is not None:
            for submission in created:
                if isinstance(submission, Submission):
                    self._status.unwatch(submission.task_id)
                    self.cancel_in_background(submission.task_id)
            raise failed
        return [
            self._track(self._run(plan, inputs, cast(Submission, submission)))
            for plan, inputs, submission in zip(plans, staged, created, strict=True)
        ]

    async def attach(self, task_id: str, outputs: Mapping[str, str] | None = None) -> TaskRun:
        """A handle for a task submitted earlier, possibly by another process.

        Outputs are recovered from the task's tags and declared outputs;
        ``outputs`` (name -> container path) selects and names them instead.
        Every output (and the prefix of the captured logs) must lie under this
        backend's ``outputs`` URL, else :class:`~tesengine.errors.UnsafeReply`:
        the server's word alone must not make the client read ``file:///``
        or someone else's bucket into its cache.
        """
        self._check_open()
        task = await self.client.get_task(task_id, wire.View.BASIC)
        submission = recover(task, outputs, self.config.backend.outputs)
        # Tasks of an earlier process carry its run tag: batched polling lists that one too.
        self._status.watch(submission.task_id, (task.tags or {}).get(RUN_TAG))
        return self._track(TaskRun(self, task.name or task_id, submission, None))

    async def logs(self, task_id: str) -> TaskLogs:
        """The stdout and stderr of every executor of ``task_id``.

        The full streams captured under the task's output prefix where they
        exist (the prefix must lie under this backend's ``outputs``), else the
        tails the server keeps; :attr:`ExecutorLogs.captured` says which.
        """
        self._check_open()
        return await task_logs(self.client, self.reader, self.config.backend.outputs, task_id)

    def remote_file(self, url: str) -> RemoteFile:
        """A lazy, cached view of any object URL this backend can read."""
        return RemoteFile(url, self.reader)

    def remote_directory(self, url: str) -> RemoteDirectory:
        """A lazy, cached view of every object under a URL prefix."""
        return RemoteDirectory(url, self.reader)

    async def cancel_remote(self, task_id: str) -> None:
        """Ask the server to cancel ``task_id``."""
        await self.client.cancel_task(task_id)

    def cancel_in_background(self, task_id: str) -> None:
        """Ask the server to cancel ``task_id`` without waiting; :meth:`aclose` waits for it."""
        self._background(self._cancel_logged(task_id))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def _cancel_created(self, create: asyncio.Future[str]) -> None:
        try:
            task_id = await create
        except Exception:  # never created: nothing to cancel
            return
        await self._cancel_logged(task_id)

    async def _cancel_logged(self, task_id: str) -> None:
        try:
            await self.cancel_remote(task_id)
        except Exception as exc:  # nobody awaits this task: say why here
            log.warning("could not cancel task %s: %s", task_id, exc)

    async def aclose(self) -> None:
        """Cancel or leave in-flight tasks (``on_close``), then close what this backend created."""
        if self._closed:
            return
        self._closed = True
        live = [run for run in self._runs if not run.done()]
        if live and self.config.backend.on_close == "cancel":
            results = await asyncio.gather(
                *(self.cancel_remote(r.id) for r in live), return_exceptions=True
            )
            for run, result in zip(live, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("could not cancel task %s on close: %s", run.id, result)
        for run in live:
            run.stop_polling()
        await asyncio.gather(*(run.wait_stopped() for run in live), *self._cancels)
        for close in reversed(self._owned):
            await _closed_quietly(close)

    # -- internals --------------------------------------------------------

    def _own(self, resource: _R) -> _R:
        self._owned.append(resource.aclose)
        return resource

    def _check_open(self) -> None:
        if self._closed:
            raise NotReady("this TesBackend is closed")

    async def _stage(self, plans: Sequence[Plan]) -> list[dict[str, str]]:
        """Stage the local inputs of every plan in one batch: container path -> URL, per plan."""
        items = [item for plan in plans for item in plan.local]
        results = await self.stager.stage_many([item.local for item in items]) if items else []
        for result in results:
            emit(self.events.input_staged, result)
        urls = iter(results)
        return [{item.container_path: next(urls).url for item in plan.local} for plan in plans]

    def _run(self, plan: Plan, staged: dict[str, str], submission: Submission) -> TaskRun:
        # A partial, not a closure: two objects per run in flight instead of five.
        return TaskRun(self, plan.task.name, submission, partial(self._create, plan, staged))

    async def _create(self, plan: Plan, staged: dict[str, str]) -> Submission:
        """Create one task, at most ``max_concurrency`` at a time per backend."""
        async with self._creating:
            where = layout(self.config.backend.outputs, plan.outputs, plan.task.name)
            request = build_task(plan, staged, where, {RUN_TAG: self.run_tag})
            create = asyncio.ensure_future(self.client.create_task(request))
            try:
                task_id = await asyncio.shield(create)
            except asyncio.CancelledError:
                # The server may have created it already (Ctrl-C mid-request):
                # let the request finish, then cancel what it made.
                self._background(self._cancel_created(create))
                raise
        self._status.watch(task_id, self.run_tag)
        return Submission(task_id, where.prefix, where.targets, where.logs_url)

    def _track(self, run: TaskRun) -> TaskRun:
        self._runs.add(run)
        emit(self.events.task_submitted, run)
        interval = poll_interval(self.config.backend.interval)
        run._start(poll(run, self._status, interval, self._sleep), self._runs.discard)
        return run


async def _closed_quietly(close: Callable[[], Awaitable[None]]) -> None:
    try:
        await close()
    except Exception as exc:  # one failing close must not leave the others open
        log.warning("error while closing: %s", exc)
