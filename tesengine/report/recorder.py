""":class:`RunRecorder`: listens to a backend's events and writes the run report.

An embedder needs two lines::

    recorder = RunRecorder("run.html")
    async with recorder, TesBackend(config, events=recorder, progress=recorder) as backend:
        ...

Leaving the ``async with`` (normally, on an error, or cancelled by Ctrl-C)
writes the file after the backend has closed, so it holds every outcome the
run reached. Other hooks (a progress display) are passed as ``events`` /
``progress`` and still get every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from ..engine.events import EngineEvents, RunInfo, TransferProgress, emit
from ..engine.run import TaskRun
from ..errors import ReportError, TaskFailed, redact_url
from ..tes import TesClient
from ..tes.models import State
from .html import render
from .model import FAILED_STATES, MAX_OUTPUTS, RunSnapshot, TaskRow, Transfers, tail

if TYPE_CHECKING:
    from ..engine import TaskResult, TesBackend
    from ..engine.spec import Task
    from ..storage import StageResult

log = logging.getLogger("tesengine.report")

Counts = Callable[[], tuple[int, int]]
"""Returns (TES requests sent, retries) so far."""

_SETTLE_SECONDS = 2.0  # how long closing waits for finished runs' outcomes to be read


def request_counts(client: object) -> Counts | None:
    """``counts`` for a recorder, read from a :class:`~tesengine.TesClient` (else None)."""
    if not isinstance(client, TesClient):
        return None
    return lambda: (client.counts.requests, client.counts.retries)


@dataclass(slots=True, eq=False)  # rows are compared by identity
class _Row:
    """A task while it is being recorded (mutable; frozen into a TaskRow)."""

    name: str
    staging: float | None = None
    id: str = ""
    events: list[tuple[str, float]] = field(default_factory=list)
    exit_codes: tuple[int | None, ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()
    stderr_tail: str = ""
    system_logs: str = ""
    error: str = ""
    ended: bool = False

    def frozen(self) -> TaskRow:
        state = self.events[-1][0] if self.events else "NOT_SUBMITTED"
        return TaskRow(
            name=self.name,
            id=self.id,
            state=state,
            staging=self.staging,
            events=tuple(self.events),
            exit_codes=self.exit_codes,
            outputs=self.outputs,
            stderr_tail=self.stderr_tail,
            system_logs=self.system_logs,
            error=self.error,
            interrupted=not self.ended,
        )


class RunRecorder:
    """An :class:`~tesengine.EngineEvents` and transfer-progress hook that writes a report.

    ``counts``: a zero-argument callable giving (requests sent, retries);
    the summary shows them when it is given.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        title: str = "tesengine run",
        events: EngineEvents | None = None,
        progress: TransferProgress | None = None,
        counts: Counts | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.title = title
        self.counts = counts
        self._events = events
        self._progress = progress
        self._clock = clock
        self._t0 = clock()
        self._started = datetime.now(UTC)
        self._rows: list[_Row] = []
        self._by_run: dict[int, _Row] = {}
        self._staging: dict[str, list[_Row]] = {}
        self._watchers: set[asyncio.Task[None]] = set()
        self._transfers: dict[str, int] = {f.name: 0 for f in fields(Transfers)}
        self._outcome = "running"
        self._error = ""

    def _now(self) -> float:
        return self._clock() - self._t0

    # -- what a caller may tell the recorder ------------------------------------

    async def submit(self, backend: TesBackend, task: Task) -> TaskRun:
        """``backend.submit(task)``, recording when staging began (and a failure to submit)."""
        row = _Row(task.name, staging=self._now())
        self._rows.append(row)
        self._staging.setdefault(task.name, []).append(row)
        try:
            return await backend.submit(task)
        except Exception as exc:
            if row in self._staging.get(task.name, []):  # failed before it was created
                self._staging[task.name].remove(row)
                row.events.append(("NOT_SUBMITTED", self._now()))
                row.error, row.ended = tail(str(exc)), True
            raise

    def not_run(self, name: str, reason: str) -> None:
        """Show a task that was never submitted (e.g. a task it depends on failed)."""
        row = _Row(name, error=f"not run: {reason}", ended=True)
        row.events.append(("NOT_RUN", self._now()))
        self._rows.append(row)

    # -- EngineEvents ----------------------------------------------------------

    def task_submitted(self, run: RunInfo) -> None:
        """Start a row (or note a resubmission after a preemption)."""
        row = self._by_run.get(id(run))
        if row is None:
            waiting = self._staging.get(run.name)
            row = waiting.pop(0) if waiting else None
            if row is None:
                row = _Row(run.name)
                self._rows.append(row)
            self._by_run[id(run)] = row
            if isinstance(run, TaskRun):  # what a backend passes: its outcome fills the row
                self._watch(run, row)
        row.id = run.id
        row.events.append((State.QUEUED.value, self._now()))
        if self._events is not None:
            emit(self._events.task_submitted, run)

    def task_state(self, run: RunInfo, state: State) -> None:
        """Add a phase to the task's row."""
        row = self._by_run.get(id(run))
        if row is not None and (not row.events or row.events[-1][0] != state.value):
            row.events.append((state.value, self._now()))
        if self._events is not None:
            emit(self._events.task_state, run, state)

    def input_staged(self, result: StageResult) -> None:
        """Count staged inputs; the byte counts come from the progress hooks."""
        self._add("inputs_staged", 1)
        self._add("inputs_reused", int(not result.uploaded and result.kind != "url"))
        if self._events is not None:
            emit(self._events.input_staged, result)

    # -- TransferProgress ------------------------------------------------------

    def files_found(self, count: int) -> None:
        """Count files about to be digested."""
        self._add("files_found", count)
        self._forward("files_found", count)

    def bytes_hashed(self, n: int) -> None:
        """Count hashed bytes."""
        self._add("bytes_hashed", n)
        self._forward("bytes_hashed", n)

    def file_done(self, path: Path, cached: bool) -> None:
        """Count digests served from the cache."""
        self._add("files_cached", int(cached))
        self._forward("file_done", path, cached)

    def bytes_uploaded(self, n: int) -> None:
        """Count uploaded bytes."""
        self._add("bytes_uploaded", n)
        self._forward("bytes_uploaded", n)

    def file_uploaded(self, url: str, size: int) -> None:
        """Count uploaded files."""
        self._add("files_uploaded", 1)
        self._forward("file_uploaded", url, size)

    def file_skipped(self, url: str, size: int) -> None:
        """Count inputs already at their content address (the dedup side)."""
        self._add("files_present", 1)
        self._add("bytes_present", max(size, 0))
        self._forward("file_skipped", url, size)

    def _add(self, key: str, n: int) -> None:
        self._transfers[key] += n

    def _forward(self, hook: str, *args: Any) -> None:
        if self._progress is not None:
            emit(getattr(self._progress, hook), *args)

    # -- outcomes ----------------------------------------------------------------

    def _watch(self, run: TaskRun, row: _Row) -> None:
        watcher = asyncio.ensure_future(self._outcome_of(run, row))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _outcome_of(self, run: TaskRun, row: _Row) -> None:
        # wait_stopped never cancels the run; once it has stopped, awaiting it
        # only reads the result (a cancelled poller means the run was stopped).
        try:
            await run.wait_stopped()
            await self._read_outcome(run, row)
        finally:
            # The run is held until here, so its id() cannot have been reused.
            self._by_run.pop(id(run), None)

    async def _read_outcome(self, run: TaskRun, row: _Row) -> None:
        try:
            result = await run
        except TaskFailed as exc:
            row.exit_codes = tuple(exc.exit_codes or ())
            row.stderr_tail = tail(exc.stderr_tail or "")
            row.system_logs = tail("\n".join(exc.system_logs or ()))
            row.error, row.ended = tail(str(exc), lines=3), True
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception as exc:  # e.g. an unsafe reply: shown, never raised here
            row.error, row.ended = tail(str(exc), lines=3), True
        else:
            self._completed(row, result)

    def _completed(self, row: _Row, result: TaskResult) -> None:
        row.exit_codes = result.exit_codes
        outputs = list(result.outputs.items())
        row.outputs = tuple((name, redact_url(out.url)) for name, out in outputs[:MAX_OUTPUTS])
        if len(outputs) > MAX_OUTPUTS:
            row.outputs += (("...", f"{len(outputs) - MAX_OUTPUTS} more"),)
        row.ended = True

    # -- the report ----------------------------------------------------------

    def snapshot(self) -> RunSnapshot:
        """What the report would show now."""
        tasks = tuple(row.frozen() for row in self._rows)
        outcome = self._outcome
        if outcome == "completed" and any(t.state in FAILED_STATES for t in tasks):
            outcome = "failed"
        return RunSnapshot(
            title=self.title,
            started_at=self._started.isoformat(timespec="seconds"),
            wall_seconds=self._now(),
            outcome=outcome,
            tasks=tasks,
            transfers=Transfers(**self._transfers),
            requests=self._requests(),
            error=self._error,
        )

    def _requests(self) -> tuple[int, int] | None:
        if self.counts is None:
            return None
        try:
            requests, retries = self.counts()
        except Exception:  # a broken counter must not cost the report
            return None
        return int(requests), int(retries)

    def write(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the report now (atomically); returns its path."""
        target = Path(path) if path is not None else self.path
        html = render(self.snapshot())
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        try:
            partial.write_text(html, encoding="utf-8")
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return target

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self._outcome = "completed"
        elif issubclass(exc_type, asyncio.CancelledError | KeyboardInterrupt):
            self._outcome = "interrupted"
        else:
            self._outcome, self._error = "failed", tail(str(exc), lines=3)
        await self._settle()
        try:
            self.write()
        except OSError as error:
            failure = ReportError(f"could not write the run report {self.path}: {error}")
            if exc_type is not None:  # the run's own error matters more: keep it
                log.error("%s", failure)
                return
            raise failure from None

    async def _settle(self) -> None:
        """Let watchers of runs that have stopped read their outcomes, then stop the rest."""
        pending = set(self._watchers)
        if pending:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait(pending, timeout=_SETTLE_SECONDS)
        for watcher in pending:
            watcher.cancel()
