"""A blocking facade over :class:`~tesengine.TesBackend` for thread-based runners.

miniwdl, Snakemake and Toil run each task on a worker thread. :class:`Backend`
gives them one event loop in a daemon thread that owns one shared
``TesBackend`` (so every task shares staging single-flight, the digest cache
and batched polling), and hands each caller a
:class:`concurrent.futures.Future`::

    from tesengine.blocking import Backend

    with Backend.embedded() as backend:           # or Backend(load_config("sprocket.toml"))
        future = backend.submit(task)             # from any thread
        result = future.result()                  # TaskResult, or raises TaskFailed

Cancelling a future (``future.cancel()`` or :meth:`Backend.cancel`) cancels
the remote task. :meth:`Backend.close` (or leaving ``with``) does what the
backend's ``on_close`` says with tasks still in flight, closes every session
and stops the loop; a backend still open when the interpreter exits is closed
by an ``atexit`` hook, so the process neither hangs nor aborts.

Why not anyio's ``BlockingPortal``: its futures cancel through a cancel scope,
which re-cancels every ``await`` of the cleanup that cancels the remote task;
``asyncio.run_coroutine_threadsafe`` cancels the coroutine once, so
:class:`~tesengine.TaskRun` can finish asking the server to cancel.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from .config import Config
from .engine import Task, TaskResult, TaskRun, TesBackend
from .errors import NotReady

__all__ = ["Backend"]

T = TypeVar("T")

#: Opens the shared TesBackend inside the loop thread (an async context manager).
Opener = Callable[[], contextlib.AbstractAsyncContextManager[TesBackend]]

_START_TIMEOUT = 60.0
#: How long closing waits for submissions still staging or creating their task.
_CLOSE_GRACE = 10.0


class Backend:
    """A thread-safe, blocking handle on one :class:`~tesengine.TesBackend`.

    Every method may be called from any thread except the loop's own.
    """

    def __init__(self, config: Config | None = None, *, opener: Opener | None = None) -> None:
        if opener is None:
            if config is None:
                raise TypeError("Backend() needs a config (or use Backend.embedded())")
            opener = _opener(config)
        self._opener: Opener = opener
        self._lock = threading.Lock()
        self._closed = False
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tes: TesBackend | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._staging: set[asyncio.Future[Any]] = set()  # submissions staging or creating
        self._thread = threading.Thread(target=self._main, name="tesengine-loop", daemon=True)
        self._thread.start()
        self._wait_started()
        _close_at_exit(self)

    @classmethod
    def embedded(
        cls, root: Path | None = None, *, runtime: str = "local", **backend: Any
    ) -> Backend:
        """A backend on a local TES server started in the loop thread (no configuration).

        Arguments are those of :func:`tesengine.embedded_backend`.
        """
        from .local_runs import embedded_backend

        return cls(opener=lambda: embedded_backend(root, runtime=runtime, **backend))

    # -- the public, blocking API -----------------------------------------

    @property
    def config(self) -> Config:
        """The shared backend's configuration (the embedded server's, for :meth:`embedded`)."""
        return self.tes.config

    @property
    def tes(self) -> TesBackend:
        """The shared asyncio backend: use it only from coroutines run by :meth:`call`."""
        assert self._tes is not None
        return self._tes

    def submit(self, task: Task) -> concurrent.futures.Future[TaskResult]:
        """Validate, stage and run ``task``; the future resolves to its :class:`TaskResult`.

        It raises what ``await (await backend.submit(task))`` raises
        (``InvalidTask``, ``TaskFailed``...). Cancelling it cancels the remote task.
        """
        return self.start(self._submit_and_wait, task)

    def run(self, task: Task, timeout: float | None = None) -> TaskResult:
        """Submit ``task`` and block until its result (the future's ``result(timeout)``)."""
        return self.submit(task).result(timeout)

    def cancel(self, future: concurrent.futures.Future[Any]) -> bool:
        """Cancel ``future`` (and so its remote task); False if it had already finished."""
        return future.cancel()

    def start(
        self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any
    ) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` on the loop; its result arrives in the returned future."""
        loop = self._open_loop()
        return asyncio.run_coroutine_threadsafe(fn(*args), loop)

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the loop and block until it returns (or raises)."""

        async def wrapped() -> T:
            return await fn(*args)

        return self.start(wrapped).result()

    def close(self) -> None:
        """Close the shared backend (``on_close`` applies to tasks in flight), stop the loop.

        Safe to call more than once and from several threads.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stop.set)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<tesengine.blocking.Backend {self.config.backend_name!r} {state}>"

    # -- the loop thread --------------------------------------------------

    def _wait_started(self) -> None:
        self._ready.wait(_START_TIMEOUT)
        if self._error is not None:
            self._thread.join()
            raise self._error
        if self._tes is None:
            raise NotReady(f"the tesengine loop did not start within {_START_TIMEOUT:g} s")

    def _open_loop(self) -> asyncio.AbstractEventLoop:
        if self._closed or self._loop is None:
            raise NotReady("this tesengine.blocking.Backend is closed")
        if threading.get_ident() == self._thread.ident:
            raise NotReady("blocking calls from the loop thread itself would deadlock")
        return self._loop

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the constructor, or logged by close
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self._opener() as tes:
            self._tes = tes
            self._loop = asyncio.get_running_loop()
            self._ready.set()
            await self._stop.wait()
            await _settle(self._staging, _CLOSE_GRACE)  # no upload may outlive the loop

    async def _submit_and_wait(self, task: Task) -> TaskResult:
        submitting = asyncio.ensure_future(self.tes.submit(task))
        self._staging.add(submitting)
        submitting.add_done_callback(self._staging.discard)
        try:
            # Shielded: a caller's cancel that lands while the task is being
            # created must not leave it on the server with no handle to cancel it.
            run = await asyncio.shield(submitting)
        except asyncio.CancelledError:
            if not submitting.done():
                submitting.add_done_callback(_cancel_created)
            raise
        # Once submitted, closing the TesBackend settles the run as on_close says.
        return await run


def _cancel_created(submitting: asyncio.Future[TaskRun]) -> None:
    """Cancel the task a cancelled caller's submission created after all."""
    if submitting.cancelled() or submitting.exception() is not None:
        return
    run = submitting.result()
    pending = asyncio.ensure_future(run.cancel())
    _background.add(pending)
    pending.add_done_callback(_background.discard)


_background: set[asyncio.Future[Any]] = set()  # strong references until they finish


async def _settle(submissions: set[asyncio.Future[Any]], grace: float) -> None:
    """Let submissions finish for ``grace`` seconds, then cancel the rest.

    A submission in its POST may already have created the task: given the
    time to return it, closing the TesBackend then cancels it (on_close);
    cut short, the server would keep a task no one can cancel.
    """
    if not submissions:
        return
    _done, pending = await asyncio.wait(list(submissions), timeout=grace)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _opener(config: Config) -> Opener:
    return lambda: TesBackend(config)


_open: weakref.WeakSet[Backend] = weakref.WeakSet()


def _close_at_exit(backend: Backend) -> None:
    _open.add(backend)


def _close_all() -> None:
    for backend in list(_open):
        backend.close()


# Closing needs worker threads (file work off the loop), and
# concurrent.futures refuses new work once its own exit hook has run. Hooks
# registered with threading run newest first, before the interpreter joins
# threads and before ``atexit``: register after concurrent.futures' hook, so
# ours runs while the loop thread (a daemon) and thread pools still work.
import concurrent.futures.thread  # noqa: E402 - registers its hook first

threading._register_atexit(_close_all)  # type: ignore[attr-defined]
