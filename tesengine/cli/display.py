"""Progress for ``tesengine run``: a live rich Progress on a terminal, plain lines otherwise.

Progress goes to stderr so stdout stays the result (and ``--json`` stays JSON).
The live line shows ``N/total`` tasks done, a bar, elapsed time and an ETA,
counts by state and the input bytes hashed, uploaded and skipped (already
present). It never names a task, so long names cannot wrap it. At the end, one
summary line: tasks by final state, wall time, bytes uploaded vs deduplicated
(found already in storage, counted once per stored object).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console, RenderableType
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column
from rich.text import Text

from ..errors import TaskFailed, redact_url
from ..tes.models import State
from .safe_text import visible

if TYPE_CHECKING:
    from ..engine.events import RunInfo
    from ..storage import StageResult


class Display:
    """An :class:`~tesengine.engine.EngineEvents` and transfer-progress hook."""

    def __init__(self, *, quiet: bool = False, total: int = 0, console: Console | None = None):
        self._quiet = quiet
        self._console = console or Console(stderr=True, highlight=False)
        self._live = not quiet and self._console.is_terminal
        self._total = total
        self._states: dict[str, State] = {}
        self._hashed = 0
        self._uploaded = 0
        self._skipped = 0
        self._started = time.monotonic()
        self._progress: Progress | None = None
        self._bar: TaskID | None = None
        self._in_flight: int | None = None

    # -- lines ------------------------------------------------------------------

    def note(self, message: str) -> None:
        """One informational line (suppressed by --quiet)."""
        if not self._quiet:
            self._line(f"tesengine: {message}")

    def failure(self, name: str, exc: BaseException, *, tail: bool = True) -> None:
        """A failed task: its one-line reason, then (unless its full stderr was
        printed already) its stderr tail."""
        self.finish()
        self._err(f"tesengine: {exc}")
        if tail and isinstance(exc, TaskFailed) and exc.stderr_tail:
            for line in exc.stderr_tail.splitlines():
                self._err(f"  stderr | {line}")

    def summary(self) -> str:
        """One line: tasks by final state, wall time, bytes uploaded vs deduplicated."""
        counts = Counter(state.value.lower() for state in self._states.values())
        states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none run"
        wall = time.monotonic() - self._started
        return (
            f"{len(self._states)} task{'s' if len(self._states) != 1 else ''}: {states};"
            f" {wall:.1f} s; inputs {decimal(self._uploaded)} uploaded,"
            f" {decimal(self._skipped)} deduplicated"
        )

    def finish(self) -> None:
        """Stop the live line (it clears itself)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def end(self) -> None:
        """Stop the live line and print the summary."""
        self.finish()
        self.note(self.summary())

    def interrupted(self) -> None:
        """Ctrl-C: clear the live line; remember how many tasks are still in flight."""
        self.finish()
        if self._in_flight is None:
            self._in_flight = sum(1 for state in self._states.values() if not state.is_final)

    def cancelled(self) -> None:
        """After Ctrl-C, once the remote tasks are cancelled: say how many, on a fresh line."""
        self.interrupted()
        n = self._in_flight or 0
        self._err(f"tesengine: cancelled {n} task{'s' if n != 1 else ''}")

    # -- EngineEvents -----------------------------------------------------------

    def task_submitted(self, run: RunInfo) -> None:
        self._states[run.id] = run.state
        self._event(f"submitted {run.name} (task {run.id})")

    def task_state(self, run: RunInfo, state: State) -> None:
        self._states[run.id] = state
        self._event(f"{run.name}: {state.value}")

    def input_staged(self, result: StageResult) -> None:
        verb = "uploaded" if result.uploaded else "already present"
        self._event(f"input {result.source} -> {redact_url(result.url)} ({verb})")

    # -- TransferProgress: bytes hashed and uploaded while inputs are staged ------

    def files_found(self, count: int) -> None:
        pass

    def file_done(self, path: Path, cached: bool) -> None:
        pass

    def bytes_hashed(self, n: int) -> None:
        self._hashed += n
        self._refresh()

    def bytes_uploaded(self, n: int) -> None:
        self._uploaded += n
        self._refresh()

    def file_uploaded(self, url: str, size: int) -> None:
        pass

    def file_skipped(self, url: str, size: int) -> None:
        if size > 0:  # -1: a directory marker, no bytes of its own
            self._skipped += size
        self._refresh()

    # -- rendering ----------------------------------------------------------------

    def _event(self, message: str) -> None:
        if self._quiet:
            return
        if self._live:
            self._refresh()
        else:
            self._line(message)

    def _refresh(self) -> None:
        if not self._live:
            return
        if self._progress is None:
            self._progress = _RunProgress(self._console, self._bytes_line)
            self._progress.start()
            self._bar = self._progress.add_task("tasks", total=self._total or None, detail="")
        assert self._bar is not None
        done = sum(1 for state in self._states.values() if state.is_final)
        total = max(self._total, len(self._states)) or None
        counts = Counter(state.value.lower() for state in self._states.values())
        detail = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        self._progress.update(self._bar, completed=done, total=total, detail=detail)

    def _bytes_line(self) -> str:
        return (
            f"inputs: {decimal(self._hashed)} hashed, {decimal(self._uploaded)} uploaded,"
            f" {decimal(self._skipped)} skipped"
        )

    def _line(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def _err(self, message: str) -> None:
        print(visible(message, sys.stderr), file=sys.stderr, flush=True)


class _RunProgress(Progress):
    """Tasks on the first line, input bytes on the second; neither ever wraps."""

    def __init__(self, console: Console, bytes_line: Callable[[], str]) -> None:
        self._bytes_line = bytes_line  # before super(): it renders once at once
        # The detail column is cropped, never wrapped: the live line stays one line.
        detail = Column(no_wrap=True, overflow="ellipsis", ratio=1)
        super().__init__(
            TextColumn("tasks"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}", table_column=detail),
            console=console,
            transient=True,
            expand=True,
            redirect_stderr=False,
            redirect_stdout=False,
        )

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield Text(self._bytes_line(), no_wrap=True, overflow="ellipsis")
