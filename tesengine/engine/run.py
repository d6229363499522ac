"""The handle of one submitted task: awaitable, cancellable, observable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import TaskFailed
from ..redact import redact_repr
from ..tes import models as wire
from .events import EngineEvents, emit
from .outputs import RemoteDirectory
from .request import OutputTarget
from .result import TaskResult, interpret, make_outputs

log = logging.getLogger("tesengine.engine")


@dataclass(frozen=True, slots=True)
class Submission:
    """Where one execution of a task lives: its server id and output URLs."""

    task_id: str
    prefix: str
    targets: tuple[OutputTarget, ...]
    logs_url: str

    def __repr__(self) -> str:
        return redact_repr(self)  # the prefix carries the outputs URL's query


class _Owner(Protocol):
    """What a run needs from its backend."""

    events: EngineEvents
    reader: Any
    preempted_retries: int

    async def cancel_remote(self, task_id: str) -> None: ...
    def cancel_in_background(self, task_id: str) -> None: ...


Resubmit = Callable[[], Awaitable[Submission]]


class TaskRun:
    """A task on the server. ``await run`` gives its :class:`TaskResult`.

    ``await run.wait_for(State.RUNNING)`` waits for a state, and
    ``async for state in run.states()`` follows every change, so nobody
    needs to poll :attr:`state` in a loop.

    Cancelling the coroutine that awaits a run cancels the remote task too:
    the awaiter returns at once, and the backend sends the cancel request in
    the background (its ``aclose`` waits for it, or logs why it failed).
    """

    # No instance dict: 100,000 runs in flight are 100,000 of these.
    __slots__ = (
        "__weakref__",
        "_changed",
        "_history",
        "_owner",
        "_poller",
        "_preemptions",
        "_resubmit",
        "_state",
        "_submission",
        "name",
    )

    def __init__(
        self, owner: _Owner, name: str, submission: Submission, resubmit: Resubmit | None
    ) -> None:
        self.name = name
        self._state = wire.State.QUEUED
        #: Every state observed, in order: what :meth:`states` replays to each reader.
        self._history: list[wire.State] = [wire.State.QUEUED]
        #: Set (and dropped) at the next change; made only while :meth:`states` waits,
        #: so 100,000 runs nobody follows carry no event each.
        self._changed: asyncio.Event | None = None
        self._owner = owner
        self._submission = submission
        self._resubmit = resubmit
        self._preemptions = 0
        self._poller: asyncio.Task[TaskResult] | None = None

    def __repr__(self) -> str:
        return f"<TaskRun {self.name!r} id={self.id} state={self.state.value}>"

    @property
    def state(self) -> wire.State:
        """The last state observed (QUEUED until the first poll)."""
        return self._state

    @property
    def id(self) -> str:
        """The server's task id (a new one after a preemption resubmit)."""
        return self._submission.task_id

    @property
    def prefix(self) -> str:
        """The unique output prefix of the current execution."""
        return self._submission.prefix

    def _start(
        self, poller: Awaitable[TaskResult], ended: Callable[[TaskRun], object] | None = None
    ) -> None:
        """Begin polling (called once, by the backend); ``ended(run)`` once it has ended."""
        self._poller = asyncio.ensure_future(poller)
        self._poller.add_done_callback(self._ended)
        if ended is not None:
            self._poller.add_done_callback(lambda _: ended(self))

    def _ended(self, poller: asyncio.Future[TaskResult]) -> None:
        _consume(poller)
        self._wake()

    def _wake(self) -> None:
        # Wake every waiter of :meth:`states`; later ones wait on a fresh event.
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    def done(self) -> bool:
        """True once the run has a result or an error."""
        return self._poller is not None and self._poller.done()

    def __await__(self) -> Generator[Any, None, TaskResult]:
        return self._wait().__await__()

    async def _wait(self) -> TaskResult:
        assert self._poller is not None, "TaskRun._start() was not called"
        try:
            return await asyncio.shield(self._poller)
        except asyncio.CancelledError:
            if not self._poller.done():
                # Never under the caller's deadline: the request retries for as
                # long as the retry policy says, which can be a minute.
                self._owner.cancel_in_background(self.id)
                self._poller.cancel()
            raise

    async def cancel(self) -> None:
        """Ask the server to cancel; awaiting the run then raises ``TaskFailed``."""
        if not self.done():
            await self._owner.cancel_remote(self.id)

    def stop_polling(self) -> None:
        """Stop watching the task locally (it keeps running on the server)."""
        if self._poller is not None:
            self._poller.cancel()

    async def wait_stopped(self) -> None:
        """Wait until the poller has ended, however it ended."""
        if self._poller is not None:
            await asyncio.wait([self._poller])

    async def states(self) -> AsyncIterator[wire.State]:
        """Every state of the run from the first, as it is observed.

        Ends once the run has ended (its final state is the last one
        yielded) or has stopped being watched. Each call starts a new
        iterator from the beginning.
        """
        seen = 0
        while True:
            while seen < len(self._history):
                seen += 1
                yield self._history[seen - 1]
            if self.done() or self._poller is None:
                return
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()

    async def wait_for(self, *states: wire.State) -> wire.State:
        """Wait until the run is in one of ``states``; return the state seen.

        If the run ends (or stops being watched) without reaching one of
        them, its last state is returned instead: compare before relying on it.
        """
        wanted = frozenset(states)
        if self._state in wanted:
            return self._state
        async for state in self.states():
            if state in wanted:
                return state
        return self._state

    # -- called by the poller (engine internals) --------------------------

    def _observe(self, state: wire.State) -> None:
        """Record a polled state and tell the event hook when it changed."""
        if state is not self._state:
            log.debug("task %s (%s): %s -> %s", self.name, self.id, self._state, state)
            self._record(state)
            emit(self._owner.events.task_state, self, state)

    def _record(self, state: wire.State) -> None:
        self._state = state
        self._history.append(state)
        self._wake()

    async def _resubmit_after_preemption(self) -> bool:
        """Resubmit a PREEMPTED task when retries remain; False when they do not."""
        if self._resubmit is None or self._preemptions >= self._owner.preempted_retries:
            return False
        self._preemptions += 1
        old = self.id
        self._submission = await self._resubmit()
        log.info("task %s preempted (%s); resubmitted as %s", self.name, old, self.id)
        self._record(wire.State.QUEUED)
        emit(self._owner.events.task_submitted, self)
        return True

    def _finish(self, task: wire.TesTask) -> TaskResult:
        """Interpret the FULL view of the final state."""
        self._observe(task.current_state)
        reader = self._owner.reader
        outputs = make_outputs(self._submission.targets, reader)
        logs = RemoteDirectory(self._submission.logs_url, reader)
        return interpret(task, self.name, outputs, logs)

    def _lost(self, why: str) -> TaskFailed:
        """The failure raised when the server lost the task."""
        return TaskFailed(
            f"task {self.name!r} (id {self.id}) UNKNOWN: {why}",
            task_id=self.id,
            state=wire.State.UNKNOWN.value,
        )


def _consume(future: asyncio.Future[Any]) -> None:
    # Retrieve the exception so an unawaited failed run does not log
    # "Task exception was never retrieved"; awaiting it still raises.
    if not future.cancelled():
        future.exception()
