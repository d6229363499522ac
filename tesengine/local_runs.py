"""The embedded default: a local TES server in process, and a backend pointed at it.

With no configuration at all, ``tesengine run`` uses this, and so can a
program or a test that wants a real TES server with nothing installed::

    async with embedded_backend() as backend:
        result = await (await backend.submit(task))

Layout under the root (``~/.cache/tesengine/embedded`` by default)::

    storage/            shared by every run: inputs/ (content addresses), outputs/
    cache/              the client's digest cache and downloaded outputs
    runs/<run>/lock     held (flock) by the process that owns the run
    runs/<run>/url      the run's server URL, while it runs
    runs/<run>/token    the bearer token its server requires (0600), while it runs
    runs/<run>/work/    the run's server work directory (tasks.sqlite3, tasks/)

Each process gets its own server and work directory, so concurrent runs never
see each other's tasks; a run whose lock is free has ended (or crashed): the
next run marks its unfinished tasks SYSTEM_ERROR and removes its sandboxes,
and its task records stay readable (``tesengine status/logs/list``) until
``tesengine gc`` removes them. The server answers only requests carrying its
run's random bearer token: it listens on loopback, where any local user could
otherwise submit tasks that run as this user.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import SecretStr

from .config import BackendConfig, BearerAuthConfig, Config
from .engine import TesBackend
from .server import LocalTesServer

__all__ = [
    "EMBEDDED_INTERVAL",
    "Endpoint",
    "RunDir",
    "embedded_backend",
    "embedded_config",
    "embedded_root",
    "embedded_server",
    "finished_runs",
    "live_runs",
]

#: Poll interval on the embedded server: it is local, so polls are cheap.
EMBEDDED_INTERVAL = 0.1

_UNFINISHED = frozenset({"QUEUED", "INITIALIZING", "RUNNING", "PAUSED"})
ENDED_LOG = "the tesengine process that ran this task ended before the task finished"


def embedded_root() -> Path:
    """Root of the embedded server's storage, cache and runs (under the user cache dir)."""
    return Path(platformdirs.user_cache_dir("tesengine")) / "embedded"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A live embedded server: its URL and the bearer token it requires."""

    url: str
    token: str = field(repr=False)


def embedded_config(url: str, root: Path, token: str | None = None, **backend: Any) -> Config:
    """A configuration for the embedded server at ``url`` storing under ``root``."""
    storage = (root / "storage").as_uri()
    auth = {"auth": BearerAuthConfig(type="bearer", token=SecretStr(token))} if token else {}
    settings = BackendConfig(
        type="tes",
        url=url,
        inputs=f"{storage}/inputs",
        outputs=f"{storage}/outputs",
        **{"interval": EMBEDDED_INTERVAL, "cache_dir": root / "cache", **auth, **backend},
    )
    return Config(backend_name="embedded", backend=settings)


@dataclass(frozen=True, slots=True)
class RunDir:
    """One process's embedded server directory under ``<root>/runs``."""

    path: Path

    @property
    def work(self) -> Path:
        """The server's work directory."""
        return self.path / "work"

    @property
    def database(self) -> Path:
        """The server's task database."""
        return self.work / "tasks.sqlite3"

    @property
    def url_file(self) -> Path:
        """Holds the server's URL while the run is live."""
        return self.path / "url"

    def url(self) -> str | None:
        """The live server's URL, if it has written one."""
        return _first_line(self.url_file)

    @property
    def token_file(self) -> Path:
        """Holds the live server's bearer token, readable by its owner only."""
        return self.path / "token"

    def token(self) -> str | None:
        """The live server's bearer token, if it has written one."""
        return _first_line(self.token_file)


def _first_line(path: Path) -> str | None:
    """What a run's small state file holds; None while it is absent or empty."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


class _Lock:
    """An exclusive ``flock`` on ``<run>/lock``: held for as long as the process runs."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def try_take(cls, path: Path) -> _Lock | None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return cls(fd)

    def release(self) -> None:
        os.close(self._fd)  # closing the descriptor drops the flock


def _run_dirs(root: Path) -> list[RunDir]:
    try:
        entries = sorted((root / "runs").iterdir())
    except OSError:
        return []
    # Hidden names are runs being created (see _new_run).
    return [
        RunDir(p)
        for p in entries
        if not p.name.startswith(".") and p.is_dir() and (p / "lock").exists()
    ]


@contextlib.contextmanager
def _held(run: RunDir) -> Iterator[bool]:
    """Take a finished run's lock for a moment; False when a live process holds it."""
    lock = _Lock.try_take(run.path / "lock")
    if lock is None:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()


def live_runs(root: Path) -> list[RunDir]:
    """Runs whose process still holds the lock."""
    result = []
    for run in _run_dirs(root):
        with _held(run) as free:
            if not free:
                result.append(run)
    return result


def finished_runs(root: Path) -> list[RunDir]:
    """Runs whose process has ended, settled (see :func:`settle_run`), oldest first."""
    result = []
    for run in _run_dirs(root):
        with _held(run) as free:
            if free:
                settle_run(run)
                result.append(run)
    return result


def settle_run(run: RunDir) -> None:
    """Make a finished run's records final and drop its sandboxes (its lock must be held).

    A run that crashed leaves tasks QUEUED or RUNNING that no process will
    ever finish: they end SYSTEM_ERROR, saying why, so ``status`` is truthful
    and no later server picks them up.
    """
    marker = run.path / "settled"
    if marker.exists():
        return  # settled by an earlier run: nothing has touched it since
    run.url_file.unlink(missing_ok=True)
    shutil.rmtree(run.work / "tasks", ignore_errors=True)
    if run.database.exists():
        with contextlib.closing(sqlite3.connect(run.database, timeout=5)) as db, db:
            rows = db.execute("SELECT seq, doc FROM tasks").fetchall()
            for seq, text in rows:
                doc = json.loads(text)
                if _settle_doc(doc):
                    db.execute("UPDATE tasks SET doc = ? WHERE seq = ?", (json.dumps(doc), seq))
    marker.touch()


def _settle_doc(doc: dict[str, Any]) -> bool:
    state = doc.get("state")
    if state == "CANCELING":
        doc["state"] = "CANCELED"
        return True
    if state not in _UNFINISHED:
        return False
    doc["state"] = "SYSTEM_ERROR"
    logs = doc.setdefault("logs", [])
    if not logs:
        logs.append({"logs": [], "outputs": []})
    logs[-1].setdefault("system_logs", []).append(ENDED_LOG)
    logs[-1].setdefault("end_time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return True


def _new_run(root: Path) -> tuple[RunDir, _Lock]:
    """A new run directory, locked before any other process can see it.

    It is made and locked under a hidden name, then renamed into place (the
    flock belongs to the file, so it survives the rename): another process
    can never find it unlocked and take it for a finished run.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
    hidden = root / "runs" / f".new-{name}"
    hidden.mkdir(parents=True)
    lock = _Lock.try_take(hidden / "lock")
    if lock is None:  # pragma: no cover - a fresh, uniquely named directory
        raise OSError(f"cannot lock {hidden}")
    run = RunDir(root / "runs" / name)
    hidden.rename(run.path)
    return run, lock


@asynccontextmanager
async def embedded_server(
    root: Path, runtime: str = "local", **server: Any
) -> AsyncIterator[Endpoint]:
    """Start :class:`LocalTesServer` in a new run directory under ``root``; yields its endpoint.

    Finished runs left by other processes are settled first (see
    :func:`settle_run`); live ones are left alone.
    """
    finished_runs(root)
    run, lock = _new_run(root)
    storage = (root / "storage").as_uri()
    token = secrets.token_urlsafe(32)
    try:
        async with LocalTesServer(
            run.work, storage_url=storage, runtime=runtime, bearer=token, **server
        ) as srv:
            _write_private(run.token_file, token)
            run.url_file.write_text(srv.url + "\n")
            try:
                yield Endpoint(srv.url, token)
            finally:
                run.url_file.unlink(missing_ok=True)
                run.token_file.unlink(missing_ok=True)
    finally:
        lock.release()


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner can read (never through a link)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")


@asynccontextmanager
async def embedded_backend(
    root: Path | None = None, *, runtime: str = "local", **backend: Any
) -> AsyncIterator[TesBackend]:
    """A :class:`TesBackend` on a local TES server started in this event loop.

    ``runtime`` is ``"local"`` (sandboxed processes with bubblewrap) or
    ``"noop"``; ``backend`` holds extra backend keys (e.g. ``interval``).
    """
    root = root or embedded_root()
    async with contextlib.AsyncExitStack() as stack:
        end = await stack.enter_async_context(embedded_server(root, runtime))
        config = embedded_config(end.url, root, end.token, **backend)
        yield await stack.enter_async_context(TesBackend(config))
