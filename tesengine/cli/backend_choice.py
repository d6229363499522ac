"""The CLI's choice of backend: the configured one, else the embedded default.

``run`` starts an embedded server per process (see :mod:`tesengine.local_runs`);
``status``, ``logs``, ``list`` and ``cancel`` with no configuration read the
embedded store: a live run's tasks through its server (so ``cancel`` reaches
it), a finished run's straight from its task database.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..config import CONFIG_ENV, DEFAULT_FILES, Config, find_config_file, load_config
from ..errors import TaskNotFound

if TYPE_CHECKING:
    from ..local_runs import RunDir
    from ..tes import TesClient, View
    from ..tes import models as wire

#: Every place a configuration is looked for, in order (for the one-line note).
SEARCHED = ("--config", f"${CONFIG_ENV}", *(f"./{name}" for name in DEFAULT_FILES))


class TaskSource(Protocol):
    """What the task commands need: a :class:`TesClient`, or the embedded store."""

    async def get_task(self, task_id: str, view: View = ...) -> wire.TesTask: ...
    async def cancel_task(self, task_id: str) -> None: ...
    def iter_tasks(
        self,
        *,
        name_prefix: str | None = None,
        state: wire.State | str | None = None,
        tags: Mapping[str, str] | None = None,
        view: View = ...,
        page_size: int | None = None,
    ) -> AsyncIterator[wire.TesTask]: ...


def configured(path: str | None) -> bool:
    """True when a configuration exists (given, in the environment, or a default file)."""
    return path is not None or find_config_file() is not None or "TESENGINE_URL" in os.environ


def no_config_note() -> str:
    """The start of the embedded note: what was searched."""
    return f"no configuration found (searched {', '.join(SEARCHED)})"


async def open_backend_config(
    stack: contextlib.AsyncExitStack,
    path: str | None,
    backend: str,
    note: Callable[[str], None],
) -> Config:
    """The configured backend; or, with no config at all, an embedded local server."""
    if configured(path):
        return load_config(path, backend)
    from ..local_runs import embedded_config, embedded_root, embedded_server

    root = embedded_root()
    end = await stack.enter_async_context(embedded_server(root))
    note(
        f"{no_config_note()}; using an embedded local TES server at {end.url}"
        f" (storage under {root})"
    )
    return embedded_config(end.url, root, end.token)


@asynccontextmanager
async def open_tasks(path: str | None, backend: str) -> AsyncIterator[tuple[TaskSource, Config]]:
    """The task source for ``status``/``logs``/``list``/``cancel`` and its configuration."""
    from ..tes import TesClient

    if configured(path):
        config = load_config(path, backend)
        async with TesClient.from_config(config) as client:
            yield client, config
        return
    from ..local_runs import embedded_root

    store = EmbeddedTasks(embedded_root())
    try:
        yield store, store.config
    finally:
        await store.aclose()


class EmbeddedTasks:
    """The tasks of every embedded run under ``root``, newest run first."""

    def __init__(self, root: Path) -> None:
        from ..local_runs import embedded_config

        self.root = root
        self.config = embedded_config("http://127.0.0.1", root)
        self._clients: dict[str, TesClient] = {}

    async def get_task(self, task_id: str, view: View | None = None) -> wire.TesTask:
        """The task with ``task_id`` from whichever run holds it."""
        from ..tes import View

        view = view or View.MINIMAL
        _run, doc, url = self._find(task_id)
        if url is not None:
            return await self._client(url).get_task(task_id, view)
        return _task(doc, view)

    async def cancel_task(self, task_id: str) -> None:
        """Cancel a task of a live run; a finished run's tasks are all final already."""
        _run, _doc, url = self._find(task_id)
        if url is not None:
            await self._client(url).cancel_task(task_id)

    async def iter_tasks(
        self,
        *,
        name_prefix: str | None = None,
        state: wire.State | str | None = None,
        tags: Mapping[str, str] | None = None,
        view: View | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[wire.TesTask]:
        """Every matching task, newest run first, newest task first within a run."""
        from ..server.views import matches
        from ..tes import View
        from ..tes import models as wire

        view = view or View.MINIMAL
        wanted = state.value if isinstance(state, wire.State) else state
        for run, url in reversed(self._runs()):
            if url is not None:
                client = self._client(url)
                async for task in client.iter_tasks(
                    name_prefix=name_prefix, state=wanted, tags=tags, view=view
                ):
                    yield task
                continue
            for doc in reversed(list(_docs(run))):
                if matches(doc, name_prefix=name_prefix, state=wanted, tags=(tags or {}).items()):
                    yield _task(doc, view)

    async def aclose(self) -> None:
        """Close the clients of live runs."""
        for client in self._clients.values():
            await client.aclose()

    def _runs(self) -> list[tuple[RunDir, str | None]]:
        """Every run, oldest first, with its URL when it is live."""
        from ..local_runs import finished_runs, live_runs

        runs = [(run, run.url()) for run in live_runs(self.root)]
        runs += [(run, None) for run in finished_runs(self.root)]
        live = [(run, url) for run, url in runs if url is not None or run.database.exists()]
        return sorted(live, key=lambda item: item[0].path.name)

    def _find(self, task_id: str) -> tuple[RunDir, dict[str, Any], str | None]:
        for run, url in self._runs():
            doc = _doc(run, task_id)
            if doc is not None:
                return run, doc, url
        raise TaskNotFound(f"no task {task_id!r} in the embedded store ({self.root / 'runs'})")

    def _client(self, url: str) -> TesClient:
        from ..local_runs import embedded_config
        from ..tes import TesClient

        if url not in self._clients:
            token = next((run.token() for run, live in self._runs() if live == url), None)
            config = embedded_config(url, self.root, token)
            self._clients[url] = TesClient.from_config(config)
        return self._clients[url]


def _connect(run: RunDir) -> sqlite3.Connection:
    # Read-only: a live run's server owns the database (WAL lets us read beside it).
    return sqlite3.connect(f"{run.database.as_uri()}?mode=ro", uri=True, timeout=5)


def _doc(run: RunDir, task_id: str) -> dict[str, Any] | None:
    if not run.database.exists():
        return None
    with contextlib.closing(_connect(run)) as db:
        row = db.execute("SELECT doc FROM tasks WHERE id = ?", (task_id,)).fetchone()
    return json.loads(row[0]) if row else None


def _docs(run: RunDir) -> Iterator[dict[str, Any]]:
    with contextlib.closing(_connect(run)) as db:
        rows = db.execute("SELECT doc FROM tasks ORDER BY seq").fetchall()
    for (text,) in rows:
        yield json.loads(text)


def _task(doc: Mapping[str, Any], view: View) -> wire.TesTask:
    from ..server.views import project
    from ..tes import models as wire

    return wire.TesTask.model_validate(project(doc, view.value))
