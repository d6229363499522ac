"""One poller coroutine per task: wait, read the MINIMAL state, act on it.

A transient error (the client already retried) never fails a task: the poller
logs it and polls again. A state that moves backwards is accepted as it is.
PREEMPTED resubmits (a new output prefix) up to the configured count; the
FULL view is read once, when the state is final.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from ..errors import TesApiError, TesUnavailable
from ..tes.models import State, Task, View
from .result import TaskResult

if TYPE_CHECKING:
    from .run import TaskRun

log = logging.getLogger("tesengine.engine")

Sleep = Callable[[float], Awaitable[None]]
_RNG = random.Random()  # noqa: S311 - jitter, not cryptography


class StatusSource(Protocol):
    """Where pollers read task states: one GET each, or a shared batched listing."""

    async def state(self, task_id: str) -> State: ...
    async def full(self, task_id: str) -> Task: ...


def jittered(interval: float, rng: random.Random = _RNG) -> float:
    """``interval`` +-10%, so thousands of pollers do not fire in lockstep."""
    return interval * rng.uniform(0.9, 1.1)


async def poll(run: TaskRun, source: StatusSource, interval: float, sleep: Sleep) -> TaskResult:
    """Poll ``run`` until it is final; return its result or raise :class:`TaskFailed`."""
    while True:
        await sleep(jittered(interval))
        state = await _read_state(run, source)
        if state is None:
            continue
        run.observe(state)
        if state is State.PREEMPTED and await run.resubmit_after_preemption():
            continue
        if state.is_final:
            return run.finish(await _read_full(run, source, interval, sleep))


async def _read_state(run: TaskRun, source: StatusSource) -> State | None:
    try:
        return await source.state(run.id)
    except TesUnavailable as exc:
        log.warning("task %s: polling failed, will retry: %s", run.id, exc)
    except TesApiError as exc:
        if exc.status == 404:
            raise run.lost(f"the server no longer knows task {run.id}") from None
        log.warning("task %s: polling got %s, will retry", run.id, exc)
    return None


async def _read_full(run: TaskRun, source: StatusSource, interval: float, sleep: Sleep) -> Task:
    while True:
        try:
            return await source.full(run.id)
        except TesUnavailable as exc:
            log.warning("task %s: reading the final view failed, will retry: %s", run.id, exc)
        await sleep(jittered(interval))


class PerTaskStatus:
    """One ``GET /tasks/{id}?view=MINIMAL`` per poll."""

    def __init__(self, client: _Client) -> None:
        self._client = client

    async def state(self, task_id: str) -> State:
        return (await self._client.get_task(task_id, View.MINIMAL)).current_state

    async def full(self, task_id: str) -> Task:
        return await self._client.get_task(task_id, View.FULL)


class _Client(Protocol):
    async def get_task(self, task_id: str, view: View = ...) -> Task: ...
