"""At most ``capacity`` CPU slots busy at once; the rest of the tasks wait QUEUED.

A task takes ``resources.cpu_cores`` slots (at least one, at most the
capacity: a larger request waits for the whole machine, never forever),
first come first served: the head of the queue waits for enough free slots
rather than being overtaken, so big tasks are not starved. A queued task
that is canceled leaves the queue at once, and whatever waited behind it
starts if its slots are free.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from ..tes.models import State
from .store import TaskRecord
from .task_doc import TaskDoc

__all__ = ["Scheduler"]

log = logging.getLogger("tesengine.server")


class Scheduler:
    """Starts ``run(record)`` for queued tasks as slots free up."""

    def __init__(
        self, capacity: int, run: Callable[[TaskRecord], Coroutine[Any, Any, None]]
    ) -> None:
        self.capacity = max(1, capacity)
        self._run = run
        self._queue: deque[tuple[TaskRecord, int]] = deque()
        self._free = self.capacity
        self._running: dict[str, asyncio.Task[None]] = {}
        self._closed = False

    @property
    def running(self) -> int:
        """How many tasks are running now."""
        return len(self._running)

    def submit(self, record: TaskRecord) -> None:
        """Queue ``record``; it starts as soon as its slots are free."""
        self._queue.append((record, self.slots(record.summary)))
        self._pump()

    def slots(self, doc: TaskDoc) -> int:
        """The slots a task document takes: its ``cpu_cores``, within 1..capacity."""
        cores = (doc.get("resources") or {}).get("cpu_cores") or 1
        return min(max(1, int(cores)), self.capacity)

    def withdraw(self, task_id: str) -> None:
        """Drop a queued task (it was canceled) and start what waited behind it."""
        self._queue = deque(entry for entry in self._queue if entry[0].id != task_id)
        self._pump()

    def cancel(self, task_id: str) -> bool:
        """Cancel a running task; False when it is not running."""
        task = self._running.get(task_id)
        if task is None:
            return False
        task.cancel()
        return True

    async def close(self) -> None:
        """Stop starting tasks and cancel (and wait for) the running ones."""
        self._closed = True
        self._queue.clear()
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _pump(self) -> None:
        while self._queue and not self._closed:
            record, slots = self._queue[0]
            if record.state is not State.QUEUED:  # canceled while it waited
                self._queue.popleft()
                continue
            if slots > self._free:
                return
            self._queue.popleft()
            self._free -= slots
            task = asyncio.create_task(self._run(record), name=f"tes-task-{record.id}")
            self._running[record.id] = task
            task.add_done_callback(functools.partial(self._done, record=record, slots=slots))

    def _done(self, task: asyncio.Task[None], *, record: TaskRecord, slots: int) -> None:
        self._running.pop(record.id, None)
        self._free += slots
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s: %r", record.id, task.exception())
        self._pump()
