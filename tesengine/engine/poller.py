"""One poller coroutine per task: wait for the next MINIMAL state, act on it.

Where states come from is a :class:`StatusSource`: :class:`PerTaskStatus`
sleeps ``interval`` (jittered) and GETs the task; the coalesced
:class:`~tesengine.engine.batch.BatchStatus` answers every poller of a backend
from one tag-filtered listing per interval. A transient error (the client
already retried) never fails a task: the poller logs it and polls again. A
state that moves backwards is accepted as it is. PREEMPTED resubmits (a new
output prefix) up to the configured count; the FULL view is read once, when
the state is final.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from ..errors import TesApiError, TesUnavailable
from ..tes.models import State, TesTask, View
from .result import TaskResult

if TYPE_CHECKING:
    from .run import TaskRun

log = logging.getLogger("tesengine.engine")

Sleep = Callable[[float], Awaitable[None]]
_RNG = random.Random()  # noqa: S311 - jitter, not cryptography


class StatusSource(Protocol):
    """Where pollers read task states: one GET each, or a shared batched listing.

    The backend calls :meth:`watch` for every task it creates or attaches
    (with the task's ``tesengine-run`` tag, None when it has none); the poller
    calls :meth:`unwatch` when it stops watching a task id.
    """

    def watch(self, task_id: str, tag: str | None) -> None: ...
    def unwatch(self, task_id: str) -> None: ...
    async def next_state(self, task_id: str, interval: float, known: State) -> State:
        """The task's state, observed ``interval`` seconds or more after the last call.

        ``known`` is the state the poller holds; a shared source may keep the
        poller waiting (costing nothing) until the task shows a different one.
        """
        ...

    async def full(self, task_id: str) -> TesTask: ...
    async def aclose(self) -> None: ...


def jittered(interval: float, rng: random.Random = _RNG) -> float:
    """``interval`` +-10%, so thousands of pollers do not fire in lockstep."""
    return interval * rng.uniform(0.9, 1.1)


async def poll(run: TaskRun, source: StatusSource, interval: float, sleep: Sleep) -> TaskResult:
    """Poll ``run`` until it is final; return its result or raise :class:`TaskFailed`."""
    try:
        while True:
            # Inline, not a helper coroutine: one frame less for each of 100,000 runs.
            try:
                state = await source.next_state(run.id, interval, run.state)
            except (TesUnavailable, TesApiError) as exc:
                _polling_failed(run, exc)
                continue
            run._observe(state)
            if state is State.PREEMPTED:
                old = run.id
                if await run._resubmit_after_preemption():
                    source.unwatch(old)
                    continue
            if state.is_final:
                return run._finish(await _read_full(run, source, interval, sleep))
    finally:
        source.unwatch(run.id)


def _polling_failed(run: TaskRun, exc: TesUnavailable | TesApiError) -> None:
    """Log a failed poll (the next one retries); raise when the server lost the task."""
    if isinstance(exc, TesUnavailable):
        log.warning("task %s: polling failed, will retry: %s", run.id, exc)
    elif exc.status == 404:
        raise run._lost(f"the server no longer knows task {run.id}") from None
    else:
        log.warning("task %s: polling got %s, will retry", run.id, exc)


async def _read_full(run: TaskRun, source: StatusSource, interval: float, sleep: Sleep) -> TesTask:
    while True:
        try:
            return await source.full(run.id)
        except TesUnavailable as exc:
            log.warning("task %s: reading the final view failed, will retry: %s", run.id, exc)
        await sleep(jittered(interval))


class PerTaskStatus:
    """One ``GET /tasks/{id}?view=MINIMAL`` per poll, after a jittered sleep."""

    def __init__(self, client: _Client, sleep: Sleep = asyncio.sleep) -> None:
        self._client = client
        self._sleep = sleep

    def watch(self, task_id: str, tag: str | None) -> None:
        """Nothing to remember: every poll names its task."""

    def unwatch(self, task_id: str) -> None:
        """Nothing to forget."""

    async def next_state(self, task_id: str, interval: float, known: State) -> State:
        await self._sleep(jittered(interval))
        return await self.read(task_id)

    async def read(self, task_id: str) -> State:
        """GET the MINIMAL view now."""
        return (await self._client.get_task(task_id, View.MINIMAL)).current_state

    async def full(self, task_id: str) -> TesTask:
        return await self._client.get_task(task_id, View.FULL)

    async def aclose(self) -> None:
        """Nothing runs in the background."""


class _Client(Protocol):
    async def get_task(self, task_id: str, view: View = ...) -> TesTask: ...
