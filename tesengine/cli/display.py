"""Progress for ``tesengine run``: a live line on a terminal, plain lines otherwise.

Progress goes to stderr so stdout stays the result (and ``--json`` stays JSON).
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import TYPE_CHECKING

from rich.console import Console
from rich.status import Status

from ..errors import TaskFailed
from ..tes.models import State

if TYPE_CHECKING:
    from ..engine import TaskRun
    from ..storage import StageResult


class Display:
    """An :class:`~tesengine.engine.EngineEvents` hook that renders progress."""

    def __init__(self, *, quiet: bool = False) -> None:
        self._quiet = quiet
        self._console = Console(stderr=True, highlight=False)
        self._live = not quiet and sys.stderr.isatty()
        self._states: dict[str, State] = {}
        self._status: Status | None = None

    def note(self, message: str) -> None:
        """One informational line (suppressed by --quiet)."""
        if not self._quiet:
            self._line(f"tesengine: {message}")

    def task_submitted(self, run: TaskRun) -> None:
        self._states[run.name] = run.state
        self._progress(f"submitted {run.name} (task {run.id})")

    def task_state(self, run: TaskRun, state: State) -> None:
        self._states[run.name] = state
        self._progress(f"{run.name}: {state.value}")

    def input_staged(self, result: StageResult) -> None:
        verb = "uploaded" if result.uploaded else "already present"
        self._progress(f"input {result.source} -> {result.url} ({verb})")

    def failure(self, name: str, exc: BaseException) -> None:
        """A failed task: its one-line reason, then its stderr tail."""
        self._stop()
        print(f"tesengine: {exc}", file=sys.stderr)
        if isinstance(exc, TaskFailed) and exc.stderr_tail:
            for line in exc.stderr_tail.splitlines():
                print(f"  stderr | {line}", file=sys.stderr)

    def _progress(self, message: str) -> None:
        if self._quiet:
            return
        if not self._live:
            self._line(message)
            return
        counts = Counter(state.value.lower() for state in self._states.values())
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        if self._status is None:
            self._status = self._console.status(summary)
            self._status.start()
        self._status.update(f"{message}  [{summary}]")
        if all(state.is_final for state in self._states.values()):
            self._stop()

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _line(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)
